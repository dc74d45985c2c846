"""`keel audit …`: list the audit log, verify its keyed hash chain, and emit signed checkpoints of its head."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from keel.cli._context import console, get_store, print_json
from keel.core.clock import format_time
from keel.core.echo import shown
from keel.core.errors import InputError
from keel.core.ids import canonical_json
from keel.core.settings import read_config_file
from keel.store import Checkpoint, checkpoint, events, verify

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
        details = Text("(redacted)", style="dim") if event.details is None else Text(canonical_json(event.details))
        actor = f"{event.actor} (for {event.on_behalf_of})" if event.on_behalf_of else event.actor
        # Text cells: ids such as principal:key:01… must not turn into markup or emoji (":key:").
        table.add_row(
            str(event.seq), format_time(event.at)[:19], Text(actor), event.action, Text(event.object_id), details
        )
    console().print(table)


@audit_app.command("verify")
def verify_chain(
    ctx: typer.Context,
    checkpoint_file: Annotated[
        Path | None,
        typer.Option("--checkpoint", help="A checkpoint from `keel audit checkpoint`: the log must still hold it."),
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
) -> None:
    """Re-hash the audit chain and check every event's MAC; exit 1 naming the first altered, removed or forged event."""
    store = get_store(ctx)
    anchor = None
    if checkpoint_file is not None:
        anchor = Checkpoint.from_json(
            read_config_file(checkpoint_file, "checkpoint", holds="a checkpoint", syntax="json", error=InputError),
            f"checkpoint {checkpoint_file}",
        )
    with store.db.read() as conn:
        report = verify(conn, key=store.audit_key, checkpoint=anchor)
    if json_output:
        print_json(report.to_json())
    elif report.ok:
        redacted = f", {report.redacted} with redacted details" if report.redacted else ""
        anchored = f"; checkpoint at event {report.checkpoint_seq} holds" if anchor else ""
        console().print(f"Audit chain intact: {report.checked:,} events verified{redacted}{anchored}.")
    else:
        console().print(
            f"[red]Audit chain broken at event {report.first_bad_seq}[/red]: {report.reason}.", soft_wrap=True
        )
    if not report.ok:
        raise typer.Exit(1)


@audit_app.command("checkpoint")
def checkpoint_command(
    ctx: typer.Context,
    output: Annotated[Path | None, typer.Option(help="Also write the checkpoint to this file.")] = None,
    webhook: Annotated[str | None, typer.Option(help="Also POST the checkpoint as JSON to this URL.")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
) -> None:
    """Sign the chain's head (seq, hash, time) and emit it to stdout, a file or a webhook, to keep elsewhere."""
    if webhook is not None and not webhook.startswith(("http://", "https://")):
        raise InputError(f"expected an http:// or https:// webhook URL; got {shown(webhook)}")
    store = get_store(ctx)
    with store.db.read() as conn:
        signed = checkpoint(conn, store.audit_key, at=store.clock())
    body = json.dumps(signed.to_json(), indent=2) + "\n"
    if output is not None:
        output.write_text(body, encoding="utf-8")
    if webhook is not None:
        _post(webhook, body.encode())
    if json_output or (output is None and webhook is None):
        print_json(signed.to_json())
    else:
        where = " and ".join(x for x in (str(output) if output else "", webhook or "") if x)
        console().print(f"Checkpoint of event {signed.seq} ({signed.hash[:16]}…) sent to {where}.")


def _post(url: str, body: bytes) -> None:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - the scheme is checked above
            response.read()
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise InputError(
            f"could not POST the checkpoint to {url}: {reason}", hint="check the URL and run it again"
        ) from None
