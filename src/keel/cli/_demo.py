"""`keel demo`: run the whole lifecycle on built-in sample data, offline."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from keel.cli._context import console, print_json
from keel.pipeline import run_demo

__all__ = ["demo"]


def demo(
    ctx: typer.Context,
    directory: Annotated[Path, typer.Argument(help="A new folder for the demo workspace.")] = Path("keel-demo"),
    fast: Annotated[
        bool, typer.Option("--fast", help="Use a tiny model Keel trains itself (about a minute on 2 cores).")
    ] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print what each stage made as JSON.")] = False,
) -> None:
    """Run Keel's whole loop on a fictional company's documents, offline, narrating each stage.

    Curate → dataset versions → retrieval index → LoRA fine-tune → evaluate and gate → register and
    alias → deploy behind the gateway → traffic with the openai client → monitoring → roll back and
    forward → feedback → a DPO version → a retrained model → gate → guarded canary (each controller
    decision with its evidence) → lineage of a served response back to its source.
    """
    ctx.find_root().obj.workspace = directory
    out = console()
    columns = (TextColumn("   {task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    # Bars for the long parts (curation shards, embeddings, training steps, eval cases) under the narrative,
    # each removed when done; on a terminal only, so logs and --json stay clean.
    with Progress(*columns, console=out, transient=True, disable=json_output or not out.is_terminal) as bars:
        tasks: dict[str, TaskID] = {}

        def progress(label: str, done: int, total: int) -> None:
            if label not in tasks:
                tasks[label] = bars.add_task(label, total=total)
            bars.update(tasks[label], completed=done, total=total)
            if total and done >= total:
                bars.remove_task(tasks.pop(label))

        report = run_demo(
            directory, fast=fast, say=(lambda _line: None) if json_output else bars.console.print, progress=progress
        )
    if json_output:
        from dataclasses import asdict

        print_json({**asdict(report), "workspace": str(report.workspace)})
    else:
        total = sum(report.seconds.values())
        stages = ", ".join(f"{k} {v:.0f}s" for k, v in report.seconds.items())
        out.print(f"Done in {total:.0f}s ({stages}).")
