"""`keel trace …`: list and show the traces of served requests."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from keel.cli._context import console, get_store, print_json
from keel.core.clock import format_time
from keel.monitor import get_trace, list_traces

__all__ = ["traces_app"]

traces_app = typer.Typer(help="Traces: one per request the gateway served.", no_args_is_help=True)
JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]


@traces_app.command("list")
def list_command(
    ctx: typer.Context,
    deployment: Annotated[str | None, typer.Option(help="Only this deployment.")] = None,
    errors: Annotated[bool, typer.Option("--errors", help="Only failed requests.")] = False,
    limit: Annotated[int, typer.Option(help="How many, newest first.")] = 20,
    json_output: JsonOption = False,
) -> None:
    """List the newest traces."""
    found = list_traces(get_store(ctx), deployment=deployment, errors_only=errors, limit=limit)
    if json_output:
        print_json([t.to_json() for t in found])
        return
    table = Table("id", "time (UTC)", "deployment", "version", "status", "tokens", "latency ms", "flags")
    for t in found:
        table.add_row(t.id, format_time(t.at)[:19], escape(t.deployment), escape(t.model_version or "—"),
                      str(t.status), f"{t.tokens_in}/{t.tokens_out}", f"{t.latency_ms:.1f}",
                      escape(", ".join(t.flags)))  # fmt: skip
    console().print(table if found else "No traces yet: requests to `keel serve` make them.")


@traces_app.command("show")
def show(
    ctx: typer.Context,
    trace_id: Annotated[str, typer.Argument(help="The trace's id.")],
    json_output: JsonOption = False,
) -> None:
    """Show one trace; for a RAG route, the chunks it retrieved and the time of each step."""
    found = get_trace(get_store(ctx), trace_id)
    trace = found.to_json()
    if json_output:
        print_json(trace)
        return
    out = console()
    for key, value in trace.items():
        if key != "retrieval":
            out.print(escape(f"{key}: {value}"))
    retrieval = found.retrieval
    if retrieval is None:
        return
    out.print(escape(f"index: {retrieval.index_version or '—'}  prompt: {retrieval.prompt_version or '—'}"
                     f"{'  (retrieval FAILED)' if retrieval.failed else ''}"))  # fmt: skip
    generation = "—" if retrieval.generation_ms is None else f"{retrieval.generation_ms:.1f}"
    out.print(f"retrieval ms: embed {retrieval.embed_ms:.1f}, search {retrieval.search_ms:.1f}, "
              f"render {retrieval.render_ms:.1f}; generation ms: {generation}")  # fmt: skip
    table = Table("rank", "chunk", "record", "score", "source")
    for chunk in retrieval.chunks:
        table.add_row(str(chunk.get("rank")), escape(str(chunk.get("chunk_id"))), escape(str(chunk.get("record_id"))),
                      f"{float(chunk.get('score') or 0):.4f}", escape(str(chunk.get("source") or "—")))  # fmt: skip
    out.print(table if retrieval.chunks else "No chunks retrieved.")
