"""`keel monitor …`: latency, tokens, cost and errors of served traffic."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from keel.cli._context import console, get_store, print_json
from keel.monitor import summarize

__all__ = ["monitor_app"]

monitor_app = typer.Typer(help="Monitoring of served traffic.", no_args_is_help=True)


@monitor_app.command("summary")
def summary(
    ctx: typer.Context,
    deployment: Annotated[str | None, typer.Option(help="Only this deployment.")] = None,
    hours: Annotated[float | None, typer.Option(help="Only the last HOURS hours (default: all).")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
) -> None:
    """p50/p95/p99 latency, tokens, cost and error rate per deployment and model version."""
    store = get_store(ctx)
    since = store.clock() - timedelta(hours=hours) if hours is not None else None
    rows = summarize(store, deployment=deployment, since=since)
    if json_output:
        print_json([r.to_json() for r in rows])
        return
    table = Table("deployment", "version", "requests", "errors", "p50 ms", "p95 ms", "p99 ms", "tokens in/out", "cost")
    for r in rows:
        table.add_row(escape(r.deployment), escape(r.model_version or "—"), str(r.requests),
                      f"{r.errors} ({r.error_rate:.1%})", f"{r.p50_ms:.1f}", f"{r.p95_ms:.1f}", f"{r.p99_ms:.1f}",
                      f"{r.tokens_in}/{r.tokens_out}", f"{r.cost:.4f}")  # fmt: skip
    console().print(table if rows else "No traces yet.")
