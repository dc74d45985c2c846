"""`keel govern …` (erase a data subject, enforce retention) and `keel scan` (a model version's files)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from keel.cli._context import console, get_store, print_json

__all__ = ["govern_app", "scan"]

govern_app = typer.Typer(
    help="Governance: data-subject erasure with a signed certificate, retention.", no_args_is_help=True
)
JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]


@govern_app.command("erase")
def erase(
    ctx: typer.Context,
    subject: Annotated[
        list[str] | None, typer.Option(help="A data subject as TYPE:VALUE, e.g. email:jane@example.com (repeat).")
    ] = None,
    record: Annotated[list[str] | None, typer.Option(help="A record id to erase (repeat).")] = None,
    yes: Annotated[bool, typer.Option("--yes", help="Carry out the erasure; without it, show the impact.")] = False,
    json_output: JsonOption = False,
) -> None:
    """Show everything a subject reaches; with --yes, erase it everywhere and print the signed certificate."""
    from keel.pipeline._erase import erase_subjects, erasure_impact

    store = get_store(ctx)
    if not yes:
        impact = erasure_impact(store, subject or [], record or [])
        if json_output:
            print_json({"impact": impact.to_json(), "erased": False})
            return
        _print_impact(impact.to_json())
        console().print("Nothing found." if impact.empty else "Run again with --yes to erase all of it.")
        return
    impact, certificate = erase_subjects(store, subject or [], record or [])
    if json_output:
        print_json({"impact": impact.to_json(), "erased": certificate is not None,
                    "certificate": certificate.to_json() if certificate else None})  # fmt: skip
        return
    _print_impact(impact.to_json())
    if certificate is None:
        console().print("Nothing found: nothing to erase.")
        return
    done = certificate.document["done"]
    console().print(
        f"Erased: {len(done['dataset_versions'])} dataset version(s) rewritten, {len(done['blobs_deleted'])} blob(s) "
        f"deleted, {len(done['index_versions'])} index version(s) rebuilt, {done['traces_deleted']} trace(s) deleted."
    )
    console().print(f"Certificate erasure:{certificate.document['id']} sha256 {certificate.sha256}")
    console().print(f"  signature {certificate.signature}")


def _print_impact(found: dict[str, object]) -> None:
    out = console()
    out.print(f"Subjects (keyed hashes): {', '.join(str(s)[:16] + '…' for s in found['subjects']) or '—'}")  # type: ignore[attr-defined]
    out.print(f"  records: {found['records']} live ({found['shard_rows']} stored rows)")
    for ref, count in found["dataset_versions"].items():  # type: ignore[attr-defined]
        out.print(f"    {escape(ref)}: {count}")
    out.print(f"  index versions: {escape(', '.join(found['index_versions']) or '—')}")  # type: ignore[arg-type]
    out.print(f"  traces: {found['traces']}")
    feedback = found["feedback"]
    out.print(f"  feedback: {'no feedback table' if feedback is None else feedback}")
    out.print(f"  models trained on them: {escape(', '.join(found['models']) or '—')}")  # type: ignore[arg-type]
    out.print(f"  deployments serving those: {escape(', '.join(found['deployments']) or '—')}")  # type: ignore[arg-type]
    out.print(f"  cached model generations: {found.get('cached_generations', 0)}")


@govern_app.command("enforce")
def enforce(ctx: typer.Context, json_output: JsonOption = False) -> None:
    """Delete each deployment's traces (and feedback) older than its --retain setting; audited."""
    from keel.monitor._retention import enforce_retention

    results = enforce_retention(get_store(ctx))
    if json_output:
        print_json([r.to_json() for r in results])
        return
    if not results:
        console().print("No deployment has a retention setting: `keel deploy configure NAME --retain 30d`.")
    for r in results:
        console().print(
            f"{escape(r.deployment)}: deleted {r.traces} trace(s) older than {r.retain} (before {r.before})"
        )


def scan(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="The model version: NAME@vN, NAME or NAME@alias.")],
    json_output: JsonOption = False,
) -> None:
    """Scan a model version's files: pickles that import or call, executables, safetensors headers."""
    from keel.registry._models import scan_model

    model, report = scan_model(get_store(ctx), ref)
    if json_output:
        print_json({"model": model.ref, **report.to_json()})
    else:
        for f in report.findings:
            console().print(f"  {f.severity}: {escape(f.path)}: {escape(f.detail)}")
        verdict = "safe" if report.safe else "UNSAFE"
        console().print(f"{model.ref}: {verdict} ({report.files} file(s), {len(report.findings)} finding(s))")
    if not report.safe:
        raise typer.Exit(2)


@govern_app.command("classify")
def classify(
    ctx: typer.Context,
    dataset: Annotated[str, typer.Argument(help="The dataset's name (it may have no version yet).")],
    classification: Annotated[str, typer.Argument(help="public, internal, confidential or restricted.")],
    json_output: JsonOption = False,
) -> None:
    """Classify a dataset; versions of a restricted one are committed encrypted (AES-256-GCM) from now on."""
    from keel.data._classification import classify_dataset

    result = classify_dataset(get_store(ctx), dataset, classification)
    if json_output:
        print_json(result)
        return
    console().print(f"{escape(dataset)} is {classification} (was {result['before'] or 'unclassified'}).")
    if classification == "restricted" and result["existing_versions"]:
        console().print(
            f"  its {result['existing_versions']} existing version(s) stay as they were written; "
            "commit a new version to hold its rows encrypted, and erase the old ones' records if need be."
        )


@govern_app.command("rotate-key")
def rotate_key(ctx: typer.Context, json_output: JsonOption = False) -> None:
    """Re-wrap every data key under a new key-encryption key and retire the old one; audited."""
    from keel.data._classification import rotate_keys

    rotation = rotate_keys(get_store(ctx))
    if json_output:
        print_json(rotation.to_json())
        return
    console().print(
        f"Re-wrapped {rotation.data_keys} data key(s) under {rotation.new_kek}; retired {', '.join(rotation.retired)}."
    )
