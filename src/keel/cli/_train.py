"""`keel train …`: validate a training config, run it (resuming a killed run), and sweep its hyperparameters."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from keel.cli._context import console, get_store, print_json
from keel.train import load_train_config, sweep, train

__all__ = ["train_app"]

train_app = typer.Typer(help="Fine-tune models: LoRA, full, DPO; resume killed runs; sweep.", no_args_is_help=True)
JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
ConfigArgument = Annotated[Path, typer.Argument(help="The training config (YAML).")]


@contextmanager
def _progress(label: str, quiet: bool) -> Iterator[Callable[[int, int], None] | None]:
    if quiet:
        yield None
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console(), transient=True) as bar:
        task = bar.add_task(label, total=None)

        def update(step: int, total: int) -> None:
            bar.update(task, completed=step, total=total if total > 0 else None)

        yield update


@train_app.command("validate")
def validate(config: ConfigArgument, json_output: JsonOption = False) -> None:
    """Check a training config, reporting every problem with its path in the file."""
    parsed = load_train_config(config)
    if json_output:
        print_json(parsed.model_dump(mode="json"))
    else:
        console().print(f"{config} is valid: {parsed.method} of {parsed.base} → {parsed.name}")


@train_app.command("run")
def run_command(
    ctx: typer.Context,
    config: ConfigArgument,
    resume: Annotated[
        str,
        typer.Option(help="RUN_ID to resume from its last checkpoint; `auto`: a killed run of this config, if any."),
    ] = "auto",
    fresh: Annotated[bool, typer.Option(help="Start from scratch even if a killed run could be resumed.")] = False,
    json_output: JsonOption = False,
) -> None:
    """Fine-tune as CONFIG says, stream metrics into a run, and register the result."""
    parsed = load_train_config(config)
    store = get_store(ctx)
    with _progress(f"Training {parsed.name}", json_output) as progress:
        result = train(store, parsed, resume=None if fresh else resume, progress=progress)
    if result.run_id is None:  # a rank other than zero under torchrun: rank zero reports
        return
    if json_output:
        print_json(result.to_json())
        return
    out = console()
    if result.resumed_from:
        out.print(f"Resumed run {result.resumed_from} from its last checkpoint.")
    out.print(f"Run {result.run_id}: {result.tokens_per_second:,.0f} tokens/s")
    for made in (result.model, result.merged):
        if made is not None:
            out.print(f"Registered {made.ref} ({made.format})")


@train_app.command("sweep")
def sweep_command(
    ctx: typer.Context,
    config: ConfigArgument,
    trials: Annotated[int, typer.Option(min=1, help="How many trials (each one run).")] = 4,
    json_output: JsonOption = False,
) -> None:
    """Search the config's `sweep.space` with Optuna; each trial is a run, the best is registered."""
    parsed = load_train_config(config)
    with console().status(f"Sweeping {parsed.name} over {trials} trial(s)…"):
        result = sweep(get_store(ctx), parsed, trials=trials)
    if json_output:
        print_json(result.to_json())
        return
    out = console()
    for trial in result.trials:
        out.print(f"trial {trial.number}: {trial.params} → {result.metric} {trial.value:.4g} (run {trial.run_id})")
    out.print(f"Best: trial {result.best.number}; registered {result.model.ref}")
