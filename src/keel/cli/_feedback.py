"""`keel feedback …`: record feedback on served answers, list it, and export it as training data."""

from __future__ import annotations

from typing import Annotated, Literal

import typer
from rich.markup import escape
from rich.table import Table

from keel.cli._context import console, get_store, print_json
from keel.core.clock import format_time

__all__ = ["feedback_app"]

feedback_app = typer.Typer(
    help="Feedback on served answers: scores, labels, corrections; exported as SFT or DPO data.", no_args_is_help=True
)
JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]


@feedback_app.command("add")
def add(
    ctx: typer.Context,
    trace_id: Annotated[str, typer.Argument(help="The answer's trace id (its `trace_id` field or x-keel-trace-id).")],
    score: Annotated[str | None, typer.Option(help="0-1, or thumbs `up`/`down`.")] = None,
    label: Annotated[str, typer.Option(help="What is scored: rating, helpfulness, …")] = "rating",
    comment: Annotated[str | None, typer.Option(help="Free text.")] = None,
    correction: Annotated[str | None, typer.Option(help="The answer that should have been given.")] = None,
    source: Annotated[Literal["human", "judge"], typer.Option(help="Who scored: a person or a judge.")] = "human",
    json_output: JsonOption = False,
) -> None:
    """Record feedback on one served answer."""
    from keel.monitor import record_feedback

    made = record_feedback(get_store(ctx), trace_id, score=score, label=label, comment=comment,
                           correction=correction, source=source)  # fmt: skip
    if json_output:
        print_json(made.to_json())
        return
    console().print(escape(f"Recorded feedback {made.id} on trace {made.trace_id} ({made.deployment}, "
                           f"{made.model_version or '—'}): {made.label}={made.score}"))  # fmt: skip


@feedback_app.command("list")
def list_command(
    ctx: typer.Context,
    trace: Annotated[str | None, typer.Option(help="Only feedback on this trace.")] = None,
    deployment: Annotated[str | None, typer.Option(help="Only this deployment's answers.")] = None,
    since: Annotated[str | None, typer.Option(help="Only since this long ago (7d) or this ISO time.")] = None,
    source: Annotated[Literal["human", "judge"] | None, typer.Option(help="Only from people or judges.")] = None,
    limit: Annotated[int, typer.Option(help="How many, newest first.")] = 20,
    json_output: JsonOption = False,
) -> None:
    """List feedback, newest first."""
    from keel.monitor import list_feedback, parse_since

    store = get_store(ctx)
    moment = parse_since(since, store.clock()) if since else None
    found = list_feedback(store, trace_id=trace, deployment=deployment, since=moment, source=source, limit=limit)
    if json_output:
        print_json([f.to_json() for f in found])
        return
    table = Table("time (UTC)", "trace", "deployment", "version", "label", "score", "source", "comment / correction")
    for f in found:
        note = f.correction and f"→ {f.correction}" or f.comment or ""
        table.add_row(format_time(f.at)[:19], f.trace_id, escape(f.deployment or "—"), escape(f.model_version or "—"),
                      escape(f.label), "—" if f.score is None else f"{f.score:g}", f.source,
                      escape(note[:80]))  # fmt: skip
    console().print(table if found else "No feedback yet: POST /v1/feedback or `keel feedback add` records it.")


@feedback_app.command("export")
def export(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The dataset to commit the next version of.")],
    form: Annotated[Literal["sft", "dpo"], typer.Option("--as", help="sft: chat pairs; dpo: preference pairs.")],
    since: Annotated[str | None, typer.Option(help="Only feedback since this long ago (7d) or ISO time.")] = None,
    deployment: Annotated[str | None, typer.Option(help="Only this deployment's answers.")] = None,
    message: Annotated[str | None, typer.Option(help="The version's message.")] = None,
    json_output: JsonOption = False,
) -> None:
    """Commit human feedback on served answers as a dataset version (PII redacted, lineage to the traces)."""
    from keel.monitor import export_feedback, parse_since

    store = get_store(ctx)
    moment = parse_since(since, store.clock()) if since else None
    result = export_feedback(store, name, form=form, since=moment, deployment=deployment, message=message)
    if json_output:
        print_json(result.to_json())
        return
    verb = "Committed" if result.new else "Unchanged:"
    console().print(escape(
        f"{verb} {result.version}: {result.rows} {form} rows ({result.from_corrections} from corrections, "
        f"{result.from_ratings} from ratings) from {result.traces} traces; {result.redacted} texts redacted"
        + (f"; skipped {result.skipped}" if result.skipped else "")))  # fmt: skip
