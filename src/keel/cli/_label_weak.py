"""`keel label weak …`: apply labelling functions to a dataset version and commit the weak labels, or analyse them."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from keel.cli._context import KeelGroup, State, console, get_store, print_json

if TYPE_CHECKING:
    from rich.table import Table

    from keel.label.weak import WeakLabelRun

__all__ = ["weak_app"]

weak_app = typer.Typer(
    cls=KeelGroup,
    help="Weak supervision: label a dataset version with labelling functions combined by a label model.",
    no_args_is_help=True,
)

RefArg = Annotated[str, typer.Argument(help="The dataset version to label, e.g. tickets@v3.")]
LfsOpt = Annotated[Path, typer.Option("--lfs", help="Labelling functions: a .py file or a .yaml file.")]
GoldOpt = Annotated[
    str | None, typer.Option("--gold", help="A column of gold labels: report each function's and the model's accuracy.")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]


@weak_app.callback()
def _weak(ctx: typer.Context) -> None:
    """Weak supervision: label a dataset version with labelling functions combined by a label model."""
    root = ctx.find_root()
    if root.obj is None:  # run on its own (tests), not under `keel`
        root.obj = State(None)


def _table(run: WeakLabelRun) -> Table:
    from rich.table import Table

    table = Table("function", "kind", "classes", "coverage", "overlap", "conflict", "accuracy", "gold votes",
                  title=f"labelling functions on {run.source} ({run.rows:,} rows)", title_justify="left")  # fmt: skip
    for s in run.lfs:
        accuracy = "—" if s.accuracy is None else f"{s.accuracy:.3f}"
        table.add_row(s.name, s.kind, ", ".join(s.polarity) or "—", f"{s.coverage:.3f}", f"{s.overlap:.3f}",
                      f"{s.conflict:.3f}", accuracy, f"{s.gold_votes:,}")  # fmt: skip
    return table


def _run(ctx: typer.Context, ref: str, lfs: Path, gold: str | None, to: str | None, commit: bool, json_output: bool,
         message: str | None = None) -> None:  # fmt: skip
    from keel.label.weak import load_lfs, weak_label_version

    store = get_store(ctx)
    loaded = load_lfs(lfs, cache_dir=store.settings.state_dir / "cache" / "weak")
    if json_output:
        run = weak_label_version(store, ref, loaded, gold=gold, to=to, commit=commit, message=message)
        print_json(run.to_json())
        return
    from rich.progress import Progress

    with Progress(transient=True, console=console()) as bar:
        task = bar.add_task("labelling functions", total=len(loaded.lfs))
        run = weak_label_version(store, ref, loaded, gold=gold, to=to, commit=commit, message=message,
                                 progress=lambda done, _total: bar.update(task, completed=done))  # fmt: skip
    out = console()
    out.print(_table(run))
    out.print(f"covered {run.covered:,} of {run.rows:,} rows; weak labels: "
              + ", ".join(f"{k}={v:,}" for k, v in run.label_counts.items()))  # fmt: skip
    if run.gold.get("gold_rows"):
        g = run.gold
        out.print(f"on {g['gold_rows']:,} gold rows: label model {g['label_model']:.3f}, "
                  f"majority vote {g['majority_vote']:.3f}")  # fmt: skip
    if run.version is not None:
        out.print(f"{'committed' if run.new else 'unchanged'} {run.version} (derived from {run.source})")


@weak_app.command("apply")
def apply(
    ctx: typer.Context,
    ref: RefArg,
    lfs: LfsOpt,
    gold: GoldOpt = None,
    to: Annotated[str | None, typer.Option("--to", help="Commit to this dataset (default: the source's).")] = None,
    message: Annotated[str | None, typer.Option("--message", "-m", help="The version's message.")] = None,
    json_output: JsonOpt = False,
) -> None:
    """Label every row, print the functions' table, and commit a version whose rows carry the weak labels."""
    _run(ctx, ref, lfs, gold, to, True, json_output, message)


@weak_app.command("analyze")
def analyze(ctx: typer.Context, ref: RefArg, lfs: LfsOpt, gold: GoldOpt = None, json_output: JsonOpt = False) -> None:
    """Coverage, overlap, conflict and accuracy of each labelling function, without committing anything."""
    _run(ctx, ref, lfs, gold, None, False, json_output)
