"""`keel curate …`: validate and run curation recipes."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from keel.cli._context import console, print_json
from keel.cli._render import human_bytes

if TYPE_CHECKING:
    from keel.data import CurationReport

__all__ = ["curate_app"]

curate_app = typer.Typer(
    help="Curate text: read, clean, filter, deduplicate and redact, by recipe.", no_args_is_help=True
)
RecipeArg = Annotated[Path, typer.Argument(help="The recipe YAML file.")]


@curate_app.command("validate")
def validate(recipe_path: RecipeArg, json_output: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Check a recipe and list every problem at once (exit 2 if any)."""
    from keel.data import load_recipe  # pyarrow and friends load only for curate commands

    recipe = load_recipe(recipe_path)
    files = recipe.resolve_inputs()
    names = [name for name, _ in recipe.step_specs()]
    if json_output:
        print_json({"ok": True, "inputs": len(files), "steps": names})
    else:
        console().print(f"{recipe_path} is valid: {len(files)} input file(s), steps: {', '.join(names) or 'none'}")


def _summary(report: CurationReport) -> Table:
    table = Table(
        "step", "in", "out", "dropped (by reason)", "MB in", "seconds", title="curation", title_justify="left"
    )
    for name, stats in report.steps.items():
        reasons = ", ".join(f"{r}={n:,}" for r, n in sorted(stats.dropped.items())) or "—"
        table.add_row(name, f"{stats.records_in:,}", f"{stats.records_out:,}", reasons,
                      f"{stats.bytes_in / 1e6:.2f}", f"{stats.seconds:.2f}")  # fmt: skip
    return table


@curate_app.command("run")
def run(
    recipe_path: RecipeArg,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 1,
    strict: Annotated[bool, typer.Option(help="Stop at the first bad input item instead of quarantining it.")] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Run a recipe: Parquet shards, report.json and quarantine.jsonl in its output folder."""
    from keel.data import LocalEngine, load_recipe

    recipe = load_recipe(recipe_path)
    engine = LocalEngine(workers=workers)
    if json_output:
        report = engine.run(recipe, strict=strict)
        print_json(report.to_json())
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console(), transient=False) as bar:
        tasks: dict[str, TaskID] = {}

        def advance(label: str, done: int, total: int) -> None:
            if label not in tasks:
                tasks[label] = bar.add_task(label, total=total)
            bar.update(tasks[label], completed=done, total=total)

        report = engine.run(recipe, strict=strict, progress=advance)
    out = console()
    out.print(_summary(report))
    quarantined = sum(report.quarantined.values())
    out.print(
        f"Read {report.records_read:,} records from {report.files} file(s) ({quarantined:,} quarantined); "
        f"wrote {report.records_out:,} in {len(report.shards)} shard(s), {human_bytes(report.bytes_out)}, "
        f"to {report.output_dir / 'data'} in {report.seconds:.1f}s"
        + (f" ({report.resumed_shards} finished shard(s) reused)" if report.resumed_shards else "")
    )
