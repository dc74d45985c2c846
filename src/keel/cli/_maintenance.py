"""`keel doctor` and `keel gc`: check that everything in a workspace can be read back, and reclaim leftovers."""

from __future__ import annotations

from typing import Annotated

import typer

from keel.cli._context import console, get_store, print_json
from keel.store import collect_garbage, doctor, parse_duration

__all__ = ["doctor_command", "gc_command"]

JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
_MARK = {"ok": "[green]ok[/green]     ", "note": "[yellow]note[/yellow]   ", "problem": "[red]problem[/red]"}


def doctor_command(
    ctx: typer.Context,
    sample: Annotated[
        int | None,
        typer.Option("--sample", min=1, help="Hash-verify N referenced blobs chosen at random (default: all)."),
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Check the database's integrity, every referenced blob, leftovers, the audit chain and permissions.

    Exits 1 when something needs fixing; each problem says what to do.
    """
    report = doctor(get_store(ctx, upgrade=False), sample=sample)
    if json_output:
        print_json(report.to_json())
    else:
        out = console()
        for finding in report.findings:
            out.print(f"{_MARK[finding.severity]} {finding.check:<11} {finding.message}", markup=True)
            if finding.advice and finding.severity != "ok":
                out.print(f"{'':20}→ {finding.advice}", markup=False)
        out.print("No problems found." if report.ok else "Problems found: see the advice above.")
    if not report.ok:
        raise typer.Exit(1)


def gc_command(
    ctx: typer.Context,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would be removed; remove nothing.")] = False,
    grace: Annotated[
        str, typer.Option("--grace", help="Keep unreferenced blobs younger than this (30s, 10m, 1h, 2d).")
    ] = "1h",
    json_output: JsonOption = False,
) -> None:
    """Remove blobs nothing references (left by interrupted writes) and stale partial uploads.

    Safe while others commit: a commit that needed a removed blob writes it again.
    """
    report = collect_garbage(get_store(ctx), grace_seconds=parse_duration(grace), dry_run=dry_run)
    if json_output:
        print_json(report.to_json())
        return
    verb = "Would remove" if dry_run else "Removed"
    console().print(
        f"{verb} {len(report.removed)} unreferenced blob(s), {report.removed_bytes:,} bytes, and "
        f"{report.partials_removed} partial upload(s); kept {report.kept_young} younger than {grace}."
    )
