"""`keel curate …`: validate and run curation recipes, and explain why a record was dropped."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from keel.cli._context import State, console, get_store, print_json
from keel.core.echo import shown
from keel.core.errors import InputError, WorkspaceNotFoundError

if TYPE_CHECKING:
    from rich.progress import TaskID
    from rich.table import Table

    from keel.curate import CurationReport, DropExplanation
    from keel.curate import Progress as ProgressCallback
    from keel.data import DatasetVersion
    from keel.store import Store

# What only the human-readable output uses (rich's progress bar and tables, the renderers, which load the
# registry) is imported where it is printed, so `keel curate run --json` does not pay for it.

__all__ = ["curate_app"]

curate_app = typer.Typer(
    help="Curate text: read, clean, filter, deduplicate and redact, by recipe.", no_args_is_help=True
)
RecipeArg = Annotated[Path, typer.Argument(help="The recipe YAML file.")]


@curate_app.command("validate")
def validate(
    recipe_path: RecipeArg,
    json_output: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Check a recipe and list every problem at once (exit 2 if any)."""
    from keel.curate import load_recipe  # pyarrow and friends load only for curate commands

    recipe = load_recipe(recipe_path)
    files = recipe.resolve_inputs()
    names = [name for name, _ in recipe.step_specs()]
    if json_output:
        print_json({"ok": True, "inputs": len(files), "steps": names})
    else:
        console().print(f"{recipe_path} is valid: {len(files)} input file(s), steps: {', '.join(names) or 'none'}")


def _summary(report: CurationReport) -> Table:
    from rich.table import Table

    table = Table(
        "step", "in", "out", "dropped (by reason)", "MB in", "seconds", title="curation", title_justify="left"
    )
    for name, stats in report.steps.items():
        reasons = ", ".join(f"{r}={n:,}" for r, n in sorted(stats.dropped.items())) or "—"
        table.add_row(name, f"{stats.records_in:,}", f"{stats.records_out:,}", reasons,
                      f"{stats.bytes_in / 1e6:.2f}", f"{stats.seconds:.2f}")  # fmt: skip
    return table


def _warn(report: CurationReport) -> None:
    """Print the run's warnings where they cannot be missed: on stderr, each on its own line."""
    from rich.console import Console

    err = Console(stderr=True, highlight=False, soft_wrap=True)
    for warning in report.warnings:
        err.print(f"[bold yellow]WARNING[/]: {warning}")


def _open_workspace(ctx: typer.Context, dataset: str | None, commit: bool) -> Store | None:
    """The workspace to commit into, or None to run without one (only when no dataset was asked for)."""
    if not commit:
        return None
    try:
        return get_store(ctx)
    except WorkspaceNotFoundError:
        if dataset is not None:
            raise
        return None


@curate_app.command("run")
def run(
    ctx: typer.Context,
    recipe_path: RecipeArg,
    workers: Annotated[
        int | None,
        typer.Option(min=1, help="Worker processes (default 1), or the CPUs of a local Ray runtime (default: all)."),
    ] = None,
    engine: Annotated[str, typer.Option(help="`local` (process pool) or `ray` (Ray Data, same results).")] = "local",
    address: Annotated[str | None, typer.Option(help="Ray cluster for --engine ray (default: a local Ray).")] = None,
    strict: Annotated[bool, typer.Option(help="Stop at the first bad input item instead of quarantining it.")] = False,
    dataset: Annotated[
        str | None, typer.Option(help="Dataset to commit the output to (default: the recipe file's name).")
    ] = None,
    commit: Annotated[bool, typer.Option(help="Commit the output as a dataset version when in a workspace.")] = True,
    json_output: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Run a recipe: Parquet shards, report.json and quarantine.jsonl in its output folder.

    Inside a workspace the run is recorded as a `curate` run and its output committed as the
    next version of a dataset, with lineage from the input files through the run to the version.
    """
    from keel.curate import curate, load_recipe

    if engine not in ("local", "ray"):
        raise InputError(f"expected --engine local or ray; got {shown(engine)}")
    if engine == "local" and State.owns_process:  # Ray Data uses pandas; the local engine never does
        from keel.curate._process import block_pandas

        block_pandas()
    recipe = load_recipe(recipe_path)
    store = _open_workspace(ctx, dataset, commit)
    workspace = ctx.find_root().obj.workspace if store is None else None
    if workspace is not None:  # -w with --no-commit: model steps still cache in (and load models from) it
        recipe = recipe.with_workspace(workspace)
    name = dataset or recipe_path.name.split(".")[0]

    def execute(progress: ProgressCallback | None) -> tuple[CurationReport, DatasetVersion | None, bool]:
        if store is None:
            if engine == "ray":  # Ray Data's imports only when asked for
                from keel.curate import RayEngine

                return RayEngine(address, num_cpus=workers).run(recipe, strict=strict, progress=progress), None, False
            from keel.curate import LocalEngine

            return LocalEngine(workers=workers or 1).run(recipe, strict=strict, progress=progress), None, False
        result = curate(store, recipe, dataset=name, workers=workers, strict=strict, progress=progress,
                        engine=engine, address=address)  # fmt: skip
        return result.report, result.version, result.created

    if json_output:
        report, version, created = execute(None)
        print_json({**report.to_json(), "version": version.to_json() if version else None, "created": created})
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from keel.cli._render import human_bytes

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console(), transient=False) as bar:
        tasks: dict[str, TaskID] = {}

        def advance(label: str, done: int, total: int) -> None:
            if label not in tasks:
                tasks[label] = bar.add_task(label, total=total)
            bar.update(tasks[label], completed=done, total=total)

        report, version, created = execute(advance)
    out = console()
    out.print(_summary(report))
    _warn(report)
    quarantined = sum(report.quarantined.values())
    reasons = ", ".join(f"{reason} {count:,}" for reason, count in report.quarantined.most_common())
    why = f": {reasons}; see quarantine.jsonl" if quarantined else ""
    out.print(
        f"Read {report.records_read:,} records from {report.files} file(s) ({quarantined:,} quarantined{why}); "
        f"wrote {report.records_out:,} in {len(report.shards)} shard(s), {human_bytes(report.bytes_out)}, "
        f"to {report.output_dir / 'data'} in {report.seconds:.1f}s"
        + (f" ({report.resumed_shards} finished shard(s) reused)" if report.resumed_shards else "")
    )
    if version is None:
        out.print("Not in a Keel workspace: output not committed (`keel init` first to version it).")
    elif created:
        out.print(f"Committed {version.ref} ({version.num_rows:,} records, {human_bytes(version.new_bytes)} new).")
    else:
        out.print(f"{version.ref} already holds exactly these records; nothing new committed.")


def _bound(check: Any) -> str:
    if check.bound == "flag":
        return "must be absent" if check.limit else "allowed"
    return f"must be {'>=' if check.bound == 'min' else '<='} {check.limit:g}"


def _render_explanation(explanation: DropExplanation) -> None:
    out = console()
    if explanation.step is None:
        out.print(f"{explanation.record_id} was kept (it is in the output's data/).")
        return
    out.print(f"{explanation.record_id} was dropped by steps[{explanation.position}].{explanation.step}: "
              f"{explanation.reason}")  # fmt: skip
    failed = [c for c in explanation.checks if c.failed]
    for check in failed:
        out.print(f"  {check.reason}: {check.signal} = {check.value:.4g}, {_bound(check)}")
    if explanation.checks:
        out.print(f"  ({len(explanation.checks) - len(failed)} other enabled rule(s) passed)")
    for key, value in explanation.details.items():
        out.print(f"  {key}: {value}")
    out.print(f"  text: {explanation.preview!r}")


@curate_app.command("explain")
def explain(
    record_id: Annotated[str, typer.Argument(help="The record's id.")],
    recipe_path: Annotated[Path, typer.Option("--recipe", help="The recipe that was run (keep_dropped: true).")],
    json_output: Annotated[bool, typer.Option("--json", help="Print the explanation as JSON.")] = False,
) -> None:
    """Say which step and rule dropped a record, with the measured value and the threshold."""
    from keel.curate import explain_record, load_recipe

    explanation = explain_record(load_recipe(recipe_path), record_id)
    if json_output:
        print_json(explanation.to_json())
    else:
        _render_explanation(explanation)
