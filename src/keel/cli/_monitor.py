"""`keel monitor …`: latency, tokens, cost and errors of served traffic."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from keel.cli._context import console, get_store, print_json
from keel.core.clock import format_time
from keel.monitor import parse_duration, summarize

__all__ = ["monitor_app"]

monitor_app = typer.Typer(help="Monitoring of served traffic.", no_args_is_help=True)


@monitor_app.command("summary")
def summary(
    ctx: typer.Context,
    deployment: Annotated[str | None, typer.Option(help="Only this deployment.")] = None,
    hours: Annotated[float | None, typer.Option(help="Only the last HOURS hours (default: all).")] = None,
    by: Annotated[
        str | None, typer.Option(help="A time series: one row per bucket of this length (30s, 5m, 1h, 1d).")
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
) -> None:
    """p50/p95/p99 latency, tokens, cost, error rate and feedback per deployment and model version."""
    store = get_store(ctx)
    since = store.clock() - timedelta(hours=hours) if hours is not None else None
    bucket = parse_duration(by) if by is not None else None
    rows = summarize(store, deployment=deployment, since=since, by=bucket)
    if json_output:
        print_json([r.to_json() for r in rows])
        return
    columns = ["deployment", "version", "requests", "errors", "p50 ms", "p95 ms", "p99 ms", "tokens in/out", "cost",
               "feedback", "score", "judge"]  # fmt: skip
    table = Table(*(["start (UTC)"] if bucket else []), *columns)
    for r in rows:
        table.add_row(*([format_time(r.start)[:19]] if r.start else []), escape(r.deployment),
                      escape(r.model_version or "—"), str(r.requests), f"{r.errors} ({r.error_rate:.1%})",
                      f"{r.p50_ms:.1f}", f"{r.p95_ms:.1f}", f"{r.p99_ms:.1f}", f"{r.tokens_in}/{r.tokens_out}",
                      f"{r.cost:.4f}", str(r.feedback), _score(r.feedback_score), _score(r.judge_score))  # fmt: skip
    console().print(table if rows else "No traces yet.")


def _score(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"
