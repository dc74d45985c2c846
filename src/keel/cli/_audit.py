"""`keel audit …`: list the audit log and verify its hash chain."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from keel.cli._context import console, get_store, print_json
from keel.core.clock import format_time
from keel.core.ids import canonical_json
from keel.store import events, verify

__all__ = ["audit_app"]

audit_app = typer.Typer(help="The tamper-evident audit log of every change.", no_args_is_help=True)


@audit_app.command("log")
def log(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option(min=1, help="How many events to show.")] = 50,
    action: Annotated[str | None, typer.Option(help="Only events with this action, e.g. model.alias.")] = None,
    object_id: Annotated[str | None, typer.Option("--object", help="Only events about this object id.")] = None,
    actor: Annotated[str | None, typer.Option(help="Only events by this actor.")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
) -> None:
    """List audit events, newest first."""
    store = get_store(ctx)
    with store.db.read() as conn:
        found = events(conn, action=action, object_id=object_id, actor=actor, limit=limit)
    if json_output:
        print_json([event.to_json() for event in found])
        return
    table = Table("seq", "time (UTC)", "actor", "action", "object", "details")
    for event in found:
        details = "[dim](redacted)[/dim]" if event.details is None else canonical_json(event.details)
        table.add_row(str(event.seq), format_time(event.at)[:19], event.actor, event.action, event.object_id, details)
    console().print(table)


@audit_app.command("verify")
def verify_chain(
    ctx: typer.Context,
    json_output: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
) -> None:
    """Re-hash the whole audit chain; exit 1 naming the first altered, removed or reordered event."""
    store = get_store(ctx)
    with store.db.read() as conn:
        report = verify(conn)
    if json_output:
        print_json(report.to_json())
    elif report.ok:
        redacted = f", {report.redacted} with redacted details" if report.redacted else ""
        console().print(f"Audit chain intact: {report.checked:,} events verified{redacted}.")
    else:
        console().print(
            f"[red]Audit chain broken at event {report.first_bad_seq}[/red]: {report.reason}.", soft_wrap=True
        )
    if not report.ok:
        raise typer.Exit(1)
