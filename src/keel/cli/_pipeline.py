"""`keel pipeline …` and `keel ci init`: validate, run, show and diff a `pipeline.yaml`; write CI workflows."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from keel.cli._context import console, get_store, print_json
from keel.core.errors import InputError

if TYPE_CHECKING:
    from keel.pipeline import Pipeline, StageOutcome

__all__ = ["ci_app", "pipeline_app"]

pipeline_app = typer.Typer(
    help="Pipelines: the lifecycle declared once in pipeline.yaml, run with caching and gates.", no_args_is_help=True
)
ci_app = typer.Typer(help="CI workflows that run a pipeline on pull requests and on the main branch.",
                     no_args_is_help=True)  # fmt: skip

JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
FileOption = Annotated[
    Path, typer.Option("--file", "-f", help="The pipeline file (or a folder holding pipeline.yaml).")
]
ParamsOption = Annotated[
    Path | None, typer.Option("--params", help="A params YAML (default: params.yaml next to the pipeline file).")
]
SetOption = Annotated[list[str] | None, typer.Option("--set", help="Override a param: --set KEY=VALUE (repeatable).")]
StagesArgument = Annotated[
    list[str] | None, typer.Argument(help="Stages to run (with the stages they need); default: all.")
]
ForceOption = Annotated[list[str] | None, typer.Option("--force", help="Run this stage even if cached (repeatable).")]

_MARK = {"finished": "[green]✓[/]", "cached": "[cyan]○[/]", "failed": "[red]✗[/]", "run": "[yellow]▶[/]"}


def _load(file: Path, params: Path | None, sets: list[str] | None) -> Pipeline:
    from keel.pipeline import load_pipeline
    from keel.pipeline._spec import parse_sets

    return load_pipeline(file, params_path=params, sets=parse_sets(sets or []))


@pipeline_app.command("validate")
def validate(
    file: FileOption = Path("pipeline.yaml"),
    params: ParamsOption = None,
    set_: SetOption = None,
    json_output: JsonOption = False,
) -> None:
    """Check a pipeline file: stages, operations and their arguments, params, references, cycles; every error."""
    pipeline = _load(file, params, set_)
    if json_output:
        print_json({"name": pipeline.name, "params": pipeline.params, "stages": [_stage_json(s) for s in
                    pipeline.stages.values()]})  # fmt: skip
        return
    console().print(f"{pipeline.path} is valid: pipeline {pipeline.name!r}, {len(pipeline.stages)} stages in order "
                    + " → ".join(pipeline.stages))  # fmt: skip


def _stage_json(stage: Any) -> dict[str, Any]:
    return {
        "name": stage.name,
        "op": stage.op,
        "args": stage.args,
        "params": stage.params,
        "after": list(stage.after),
        "inputs": [str(r) for r in stage.inputs],
        "outputs": [str(r) for r in stage.outputs],
        "gate": stage.gate,
    }


@pipeline_app.command("run")
def run(
    ctx: typer.Context,
    stages: StagesArgument = None,
    file: FileOption = Path("pipeline.yaml"),
    force: ForceOption = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what would run and why; run nothing.")] = False,
    params: ParamsOption = None,
    set_: SetOption = None,
    summary: Annotated[
        Path | None, typer.Option(help="Append a Markdown summary here (e.g. $GITHUB_STEP_SUMMARY), gate report too.")
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Run the stages in dependency order; skip those whose inputs and params match a finished run.

    A failed gate or stage stops the pipeline with exit code 1 and its evidence. Each run is a `pipeline` run
    in the registry with a `pipeline-stage` child run per stage executed; a run killed outright resumes
    where it stopped when run again. Two runs of one pipeline never overlap.
    """
    from keel.pipeline import StageFailedError, plan_pipeline, run_pipeline

    pipeline = _load(file, params, set_)
    store = get_store(ctx)
    if dry_run:
        _print_plan(plan_pipeline(store, pipeline, stages or None, force=force or []), json_output)
        return
    out = console()
    outcomes: list[StageOutcome] = []
    error: StageFailedError | None = None
    run_id: str | None = None
    with _bars(json_output) as progress:

        def on_stage(outcome: StageOutcome) -> None:
            if not json_output:
                out.print(_outcome_line(outcome))

        try:
            run_id, outcomes = run_pipeline(store, pipeline, stages or None, force=force or [], progress=progress,
                                            on_stage=on_stage)  # fmt: skip
        except StageFailedError as exc:
            error, outcomes = exc, exc.outcomes
    if summary is not None:
        from keel.pipeline._ci import summary_markdown

        with summary.open("a", encoding="utf-8") as fh:
            fh.write(summary_markdown(pipeline, run_id, outcomes, error.evidence if error else None))
    if json_output:
        print_json({"pipeline": pipeline.name, "run_id": run_id, "ok": error is None,
                    "error": str(error) if error else None, "stages": [o.to_json() for o in outcomes]})  # fmt: skip
    else:
        ran = sum(o.status == "finished" for o in outcomes)
        cached = sum(o.status == "cached" for o in outcomes)
        if error is not None:
            if error.evidence:
                out.print(escape(error.evidence))
            out.print(f"[red]{type(error).__name__}[/]: {escape(str(error))}")
        else:
            out.print(f"Pipeline {pipeline.name!r}: {ran} stage(s) ran, {cached} cached (run {run_id}).")
    if error is not None:
        raise typer.Exit(1)


def _outcome_line(o: StageOutcome) -> str:
    why = "" if o.status != "finished" else f"  [dim]({escape('; '.join(o.reasons))})[/]"
    what = o.summary.splitlines()[0] if o.summary and o.status != "failed" else ""
    if o.status == "failed":
        what = (o.reasons or [""])[0]
    return f"{_MARK.get(o.status, '?')} {o.stage:<16} {o.status:<8} {o.seconds:6.1f}s  {escape(what)}{why}"


class _bars:  # noqa: N801 - used as a context manager like rich's own
    """Rich progress bars for the long operations inside stages (training steps, embeddings), on a terminal."""

    def __init__(self, quiet: bool) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        out = console()
        columns = (TextColumn("   {task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        self.bars = Progress(*columns, console=out, transient=True, disable=quiet or not out.is_terminal)
        self.tasks: dict[str, Any] = {}

    def __enter__(self) -> Any:
        self.bars.__enter__()

        def progress(label: str, done: int, total: int) -> None:
            if label not in self.tasks:
                self.tasks[label] = self.bars.add_task(label, total=total)
            self.bars.update(self.tasks[label], completed=done, total=total)
            if total and done >= total:
                self.bars.remove_task(self.tasks.pop(label))

        return progress

    def __exit__(self, *exc: Any) -> None:
        self.bars.__exit__(*exc)


def _print_plan(plan: list[Any], json_output: bool) -> None:
    if json_output:
        print_json({"stages": [p.to_json() for p in plan], "would_run": [p.stage for p in plan if p.action == "run"]})
        return
    out = console()
    for p in plan:
        out.print(f"{_MARK[p.action]} {p.stage:<16} {'would run' if p.action == 'run' else 'cached':<10} "
                  f"{escape('; '.join(p.reasons))}")  # fmt: skip
    n = sum(p.action == "run" for p in plan)
    out.print(f"{n} of {len(plan)} stage(s) would run.")


@pipeline_app.command("diff")
def diff(
    ctx: typer.Context,
    stages: StagesArgument = None,
    file: FileOption = Path("pipeline.yaml"),
    force: ForceOption = None,
    params: ParamsOption = None,
    set_: SetOption = None,
    json_output: JsonOption = False,
) -> None:
    """Say which stages a run would execute and why: the param, input or upstream stage that changed."""
    from keel.pipeline import plan_pipeline

    pipeline = _load(file, params, set_)
    _print_plan(plan_pipeline(get_store(ctx), pipeline, stages or None, force=force or []), json_output)


@pipeline_app.command("show")
def show(
    ctx: typer.Context,
    file: FileOption = Path("pipeline.yaml"),
    params: ParamsOption = None,
    set_: SetOption = None,
    json_output: JsonOption = False,
) -> None:
    """Draw the DAG, each stage with what it waits for, what it makes, and its last status."""
    from keel.pipeline import last_statuses

    pipeline = _load(file, params, set_)
    last = last_statuses(get_store(ctx), pipeline)
    if json_output:
        print_json({"name": pipeline.name, "stages": [
            {**_stage_json(s), "last": {**last[s.name], "ended_at": _when(last[s.name]["ended_at"])}
             if s.name in last else None} for s in pipeline.stages.values()]})  # fmt: skip
        return
    from rich.tree import Tree

    tree = Tree(f"[bold]{pipeline.name}[/] ({pipeline.path})")
    nodes: dict[str, Any] = {}
    for stage in pipeline.stages.values():
        info = last.get(stage.name)
        status = "· never ran"
        if info:
            when = f"{info['ended_at']:%Y-%m-%d %H:%M:%S}" if info["ended_at"] else "(still running)"
            status = f"{_MARK.get(info['status'], '·')} {info['status']} {when}"
        made = ", ".join(info["outputs"].values()) if info and info["outputs"] else ", ".join(map(str, stage.outputs))
        label = f"[bold]{stage.name}[/] [dim]{stage.op}[/]  {status}" + (f"  → {escape(made)}" if made else "")
        # Drawn under its last predecessor; other predecessors are named, so the DAG reads as a tree.
        parent = nodes.get(stage.after[-1]) if stage.after else None
        others = list(stage.after[:-1])
        if others:
            label += f"  [dim](also after {', '.join(others)})[/]"
        nodes[stage.name] = (parent or tree).add(label)
    console().print(tree)


def _when(at: Any) -> str | None:
    from keel.core.clock import format_time

    return None if at is None else format_time(at)


@ci_app.command("init")
def ci_init(
    kind: Annotated[str, typer.Argument(help="github or gitlab.")],
    file: FileOption = Path("pipeline.yaml"),
    root: Annotated[Path, typer.Option(help="The repository's root, where the workflow file goes.")] = Path("."),
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing workflow file.")] = False,
    json_output: JsonOption = False,
) -> None:
    """Write a CI workflow: eval and gate stages on pull requests (gate report as summary), deploys on main."""
    from keel.pipeline._ci import ci_stages, ci_workflow

    pipeline = _load(file, None, None)
    relative, text = ci_workflow(kind, pipeline, root)
    target = root / relative
    if target.exists() and not overwrite:
        raise InputError(f"expected no {target} yet; it exists", hint="pass --overwrite to replace it")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
    checks, deploys = ci_stages(pipeline)
    if json_output:
        print_json({"path": str(target), "pull_request": checks, "main": deploys})
        return
    console().print(
        f"Wrote {target}: pull requests run {', '.join(checks)}; main runs {', '.join(deploys) or 'nothing'}."
    )
