"""The operations a pipeline stage may name: each calls the library function its `keel` command calls.

An operation is typed arguments (pydantic, so `keel pipeline validate` reports a wrong one with its path)
and a function from (context, arguments) to what it made: `{"dataset:acme-kb": "dataset:acme-kb@v3"}`, and
for a gate, whether it passed and its Markdown evidence. Heavy modules load inside each function, so
validating a pipeline imports neither torch nor pyarrow.
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from keel.core.errors import ConfigError, InputError
from keel.store import Store

__all__ = ["OPERATIONS", "OpContext", "OpResult", "Operation", "file_args"]

Progress = Callable[[str, int, int], None]


@dataclass
class OpContext:
    """What a running stage may use: the store, the pipeline file's folder, progress, the stage's run id."""

    store: Store
    base_dir: Path
    progress: Progress
    run_id: str
    stage: str
    # Told the process group of a command the stage starts, then None when it ends: the pipeline's lock records
    # it, so a run killed outright is not taken over while the command it started still runs.
    on_process_group: Callable[[int | None], None] = lambda _group: None

    def path(self, text: str) -> Path:
        """A path argument, relative to the pipeline file's folder."""
        path = Path(text)
        return path if path.is_absolute() else self.base_dir / path


@dataclass
class OpResult:
    """What a stage made (declared output key → version reference), and a gate's verdict and evidence."""

    outputs: dict[str, str] = field(default_factory=dict)
    passed: bool | None = None
    evidence: str | None = None
    summary: str = ""
    details: dict[str, Any] = field(default_factory=dict)  # what the operation measured, for narration


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _bare(ref: str) -> str:
    """`model:chat@v2` → `chat@v2`: arguments accept a reference with or without its kind."""
    kind, sep, rest = ref.partition(":")
    return rest if sep and kind in ("dataset", "model", "index", "prompt", "deployment") else ref


def _set_dotted(data: dict[str, Any], sets: dict[str, Any]) -> dict[str, Any]:
    """Apply `{"training.max_steps": 40}` overrides to a parsed YAML mapping; a number indexes a list.

    Examples:
        >>> _set_dotted({"metrics": [{"name": "chrf"}]}, {"metrics.0.threshold": 50})
        {'metrics': [{'name': 'chrf', 'threshold': 50}]}
    """
    for dotted, value in sets.items():
        node: Any = data
        *parents, leaf = dotted.split(".")
        for part in parents:
            child = node[int(part)] if isinstance(node, list) and part.isdigit() and int(part) < len(node) else None
            if not isinstance(node, list):
                child = node.setdefault(part, {})
            if not isinstance(child, dict | list):
                raise ConfigError(f"expected {part!r} in {dotted!r} to be a mapping or list to set {leaf!r} in; "
                                  f"found {child!r}")  # fmt: skip
            node = child
        if isinstance(node, list):
            if not leaf.isdigit() or int(leaf) >= len(node):
                raise ConfigError(f"expected an index below {len(node)} at the end of {dotted!r}; got {leaf!r}")
            node[int(leaf)] = value
        else:
            node[leaf] = value
    return data


# ---- data -----------------------------------------------------------------------------------------------------


class CurateArgs(_Args):
    recipe: str = Field(description="The recipe YAML.")
    dataset: str = Field(description="The dataset the output is committed to.")
    workers: int | None = None


def _curate(ctx: OpContext, args: CurateArgs) -> OpResult:
    from keel.curate import curate, load_recipe

    result = curate(ctx.store, load_recipe(ctx.path(args.recipe)), dataset=args.dataset, workers=args.workers,
                    progress=ctx.progress)  # fmt: skip
    ref, report = result.version.ref, result.report
    details = {
        "read": report.records_read,
        "kept": report.records_out,
        "dropped": {reason: n for step in report.steps.values() for reason, n in sorted(step.dropped.items())},
        "counters": {name: dict(step.counters) for name, step in report.steps.items()},
    }
    made = {f"dataset:{args.dataset}": f"dataset:{ref}"}
    return OpResult(made, summary=f"{report.records_out} records → {ref}", details=details)


def _curate_inputs(args: dict[str, Any], base: Path) -> list[Path]:
    """The files a recipe reads: editing a raw document re-runs its curate stage."""
    from keel.curate import load_recipe

    recipe = Path(args["recipe"]) if Path(args["recipe"]).is_absolute() else base / args["recipe"]
    try:
        return [spec.path for spec in load_recipe(recipe).resolve_inputs()]
    except (ConfigError, InputError):
        return []


class CommitArgs(_Args):
    name: str
    files: list[str] = Field(min_length=1, description="JSONL, CSV, Parquet or text files.")
    message: str | None = None


def _commit(ctx: OpContext, args: CommitArgs) -> OpResult:
    from keel.curate import source_node
    from keel.data import commit_version

    files = [ctx.path(f) for f in args.files]
    version, created = commit_version(ctx.store, args.name, files, message=args.message,
                                      inputs=[source_node(f) for f in files], run_id=ctx.run_id)  # fmt: skip
    return OpResult(
        {f"dataset:{args.name}": f"dataset:{version.ref}"}, summary=f"{version.num_rows} rows → {version.ref}"
    )


class SplitArgs(_Args):
    dataset: str
    fractions: dict[str, float] = Field(description="Split name → fraction, e.g. {train: 0.8, test: 0.2}.")
    seed: int = 0


def _split(ctx: OpContext, args: SplitArgs) -> OpResult:
    from keel.data import split_version

    parts = split_version(ctx.store, _bare(args.dataset), args.fractions, seed=args.seed)
    outputs = {f"dataset:{v.name}": f"dataset:{v.ref}" for v in parts.values()}
    return OpResult(outputs, summary=", ".join(f"{s}={v.num_rows}" for s, v in parts.items()))


class ValidateArgs(_Args):
    dataset: str
    expectations: str = Field(description="The expectations YAML.")


def _validate(ctx: OpContext, args: ValidateArgs) -> OpResult:
    from keel.data import load_expectations, validate_version

    report = validate_version(ctx.store, _bare(args.dataset), load_expectations(ctx.path(args.expectations)))
    lines = [f"- **{f['check']}**: {f['message']}" for f in report.failures]
    evidence = f"## Expectations of {report.ref}: {report.checked} checked, {len(lines)} failed\n\n" + "\n".join(lines)
    return OpResult(passed=report.ok, evidence=evidence, summary=f"{report.checked} checks, {len(lines)} failed")


# ---- index, train, eval, registry -------------------------------------------------------------------------------


class IndexArgs(_Args):
    name: str
    dataset: str
    model: str | None = Field(None, description="Embedding model (default: the bundled all-MiniLM-L6-v2).")


def _index(ctx: OpContext, args: IndexArgs) -> OpResult:
    from keel.index import build_index

    if args.model:
        built = build_index(ctx.store, args.name, _bare(args.dataset), model=args.model, progress=ctx.progress)
    else:
        built = build_index(ctx.store, args.name, _bare(args.dataset), progress=ctx.progress)
    made = {f"index:{args.name}": f"index:{built.index.ref}"}
    return OpResult(made, summary=f"{built.index.num_chunks} chunks", details={"embedded": built.embedded_chunks})


class TrainArgs(_Args):
    config: str = Field(description="The training config YAML.")
    set: dict[str, Any] = Field(default_factory=dict, description="Overrides by dotted key: {training.max_steps: 40}.")


def _train(ctx: OpContext, args: TrainArgs) -> OpResult:
    from keel.core.settings import read_config_file
    from keel.train import parse_train_config, train

    path = ctx.path(args.config)
    data = _set_dotted(read_config_file(path, "training config"), args.set)
    config = parse_train_config(data, source=str(path))
    # resume="auto": a train run of this config killed with the pipeline resumes from its last checkpoint
    result = train(ctx.store, config, resume="auto", progress=lambda done, total: ctx.progress("train", done, total))
    if result.model is None:
        raise InputError(f"expected training to register a model; {config.name} made none")
    loss = result.metrics.get("train_loss") or result.metrics.get("loss")
    summary = f"{config.method}, {result.train_tokens:,} tokens" + (f", loss {loss:.2f}" if loss is not None else "")
    details = {"run_id": result.run_id, "method": config.method, "base": config.base, "loss": loss,
               "steps": config.training.max_steps, "tokens": result.train_tokens,
               "seconds": result.train_seconds}  # fmt: skip
    return OpResult({f"model:{config.name}": f"model:{result.model.ref}"}, summary=summary, details=details)


class EvalArgs(_Args):
    suite: str = Field(description="The eval suite YAML.")
    set: dict[str, Any] = Field(default_factory=dict)


def _suite(ctx: OpContext, suite: str, sets: dict[str, Any]) -> Any:
    from keel.core.settings import read_config_file
    from keel.evals._suite import parse_suite

    path = ctx.path(suite)
    return parse_suite(_set_dotted(read_config_file(path, "eval suite"), sets), str(path))


def _eval(ctx: OpContext, args: EvalArgs) -> OpResult:
    from keel.evals import run_suite

    result = run_suite(ctx.store, _suite(ctx, args.suite, args.set), progress=ctx.progress)
    means = ", ".join(f"{k} {a.mean:.3f}" for k, a in result.aggregates.items())
    return OpResult(summary=f"eval-result:{result.id}: {means}")


class GateArgs(_Args):
    suite: str = Field(description="The eval suite YAML (its `gate:` section sets alpha and thresholds).")
    baseline: str = Field(description="A model or prompt reference, or an eval result id.")
    candidate: str
    report: str | None = Field(None, description="Write the gate's Markdown report here (a CI job summary).")
    set: dict[str, Any] = Field(default_factory=dict)


def _gate(ctx: OpContext, args: GateArgs) -> OpResult:
    from keel.evals import gate

    verdict = gate(ctx.store, _suite(ctx, args.suite, args.set), _bare(args.baseline), _bare(args.candidate),
                   progress=ctx.progress)  # fmt: skip
    markdown = verdict.to_markdown()
    if args.report:
        ctx.path(args.report).parent.mkdir(parents=True, exist_ok=True)
        ctx.path(args.report).write_text(markdown, encoding="utf-8")
    scores = {r.subject.removeprefix("model-version:"): {k: round(a.mean, 3) for k, a in r.aggregates.items()}
              for r in (verdict.baseline, verdict.candidate)}  # fmt: skip
    details = {"scores": scores, "cases": len(verdict.candidate.cases), "baseline_result": verdict.baseline.id,
               "candidate_result": verdict.candidate.id}  # fmt: skip
    verdict_word = "passed" if verdict.passed else "failed"
    return OpResult(passed=verdict.passed, evidence=markdown, summary=verdict_word, details=details)


class RegisterArgs(_Args):
    name: str
    path: str = Field(description="A folder or file of model weights.")


def _register(ctx: OpContext, args: RegisterArgs) -> OpResult:
    from keel.registry import register_model

    version, _ = register_model(ctx.store, args.name, ctx.path(args.path), run_id=ctx.run_id)
    return OpResult({f"model:{args.name}": f"model:{version.ref}"}, summary=version.ref)


class AliasArgs(_Args):
    model: str = Field(description="The version to alias, e.g. model:chat@latest.")
    alias: str
    reason: str = "set by a pipeline"


def _alias(ctx: OpContext, args: AliasArgs) -> OpResult:
    from keel.registry import alias_model, get_model

    version = get_model(ctx.store, _bare(args.model), with_files=False)
    alias_model(ctx.store, version.name, args.alias, version.version, reason=args.reason, evidence=f"run:{ctx.run_id}")
    made = {f"model:{version.name}@{args.alias}": f"model:{version.ref}"}
    return OpResult(made, summary=f"{version.name}@{args.alias} → {version.ref}")


class PromptArgs(_Args):
    name: str
    file: str = Field(description="The prompt YAML (template, variables, examples).")


def _prompt(ctx: OpContext, args: PromptArgs) -> OpResult:
    from keel.registry import create_prompt, load_prompt_file

    loaded = load_prompt_file(ctx.path(args.file))
    version = create_prompt(ctx.store, args.name, loaded["template"], variables=loaded["variables"],
                            examples=loaded["examples"], description=loaded["description"])  # fmt: skip
    return OpResult({f"prompt:{args.name}": f"prompt:{version.name}@v{version.version}"}, summary=f"v{version.version}")


# ---- serve, monitor ---------------------------------------------------------------------------------------------


class DeployArgs(_Args):
    name: str
    model: str
    route: dict[str, Any] = Field(default_factory=dict, description="Route fields: backend, prompt, index, prices.")


def _deploy(ctx: OpContext, args: DeployArgs) -> OpResult:
    """Create the deployment; if it exists, move every request to this model (canary, then promote: audited)."""
    from keel.core.errors import NotFoundError
    from keel.registry import get_model
    from keel.serve import canary_deployment, create_deployment, get_deployment, promote_deployment

    route = {k: _bare(v) if k in ("prompt", "index") and isinstance(v, str) else v for k, v in args.route.items()}
    model = get_model(ctx.store, _bare(args.model), with_files=False).ref
    try:
        current = get_deployment(ctx.store, args.name)
    except NotFoundError:
        deployment = create_deployment(ctx.store, args.name, model, route=route or None)
    else:
        deployment = current
        if [(r.model, r.weight) for r in current.routes] != [(model, 100)]:
            canary_deployment(ctx.store, args.name, model, weight=50, route=route or None)
            deployment = promote_deployment(ctx.store, args.name, evidence={"pipeline_stage": ctx.stage})
    return OpResult({f"deployment:{args.name}": f"deployment:{deployment.name}"}, summary=_routes(deployment))


def _routes(deployment: Any) -> str:
    return ", ".join(f"{r.model} {r.weight}%" for r in deployment.routes)


class CanaryArgs(_Args):
    name: str
    model: str
    weight: int = Field(10, ge=1, le=99)


def _canary(ctx: OpContext, args: CanaryArgs) -> OpResult:
    from keel.serve import canary_deployment

    deployment = canary_deployment(ctx.store, args.name, _bare(args.model), weight=args.weight)
    return OpResult({f"deployment:{args.name}": f"deployment:{deployment.name}"}, summary=_routes(deployment))


class PromoteArgs(_Args):
    name: str


def _promote(ctx: OpContext, args: PromoteArgs) -> OpResult:
    from keel.serve import promote_deployment

    deployment = promote_deployment(ctx.store, args.name)
    return OpResult({f"deployment:{args.name}": f"deployment:{deployment.name}"}, summary=_routes(deployment))


class ExportArgs(_Args):
    name: str = Field(description="The dataset the feedback is committed to.")
    form: Literal["sft", "dpo"]
    deployment: str | None = None


def _export(ctx: OpContext, args: ExportArgs) -> OpResult:
    from keel.monitor import export_feedback

    made = export_feedback(ctx.store, args.name, form=args.form, deployment=args.deployment)
    return OpResult({f"dataset:{args.name}": f"dataset:{made.version}"}, summary=f"{made.rows} rows → {made.version}")


class CallArgs(_Args):
    function: str = Field(pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$", description="`package.module:function`.")
    args: dict[str, Any] = Field(default_factory=dict, description="Keyword arguments of the function.")


def _call(ctx: OpContext, args: CallArgs) -> OpResult:
    """A Python step of your own, by dotted path: `function(context, **args)` returns an `OpResult`."""
    import importlib

    module, _, name = args.function.partition(":")
    try:
        function = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"expected an importable function {args.function!r}; {type(exc).__name__}: {exc}") from None
    result = function(ctx, **args.args)
    if not isinstance(result, OpResult):
        raise ConfigError(f"expected {args.function} to return an OpResult; it returned {type(result).__name__}")
    return result


class ShellArgs(_Args):
    command: str


def _shell(ctx: OpContext, args: ShellArgs) -> OpResult:
    """Run the stage's command line in its own process group, so it can be stopped and checked as one.

    `sh -c` forks the command's programs: killing only `sh` (what `subprocess.run` does on Ctrl-C) left them
    running, and a kill -9 of Keel left them running while the next run took the pipeline's lock over.
    """
    import os
    import signal

    env = {**os.environ, "KEEL_WORKSPACE": str(ctx.store.settings.workspace), "KEEL_PIPELINE_STAGE": ctx.stage}
    with subprocess.Popen(  # noqa: S602 - the user's own command line, as `run:` says
        args.command, shell=True, cwd=ctx.base_dir, env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
    ) as process:  # fmt: skip
        try:
            ctx.on_process_group(process.pid)  # a new session's group id is its leader's pid
            stdout, stderr = process.communicate()
        except BaseException:  # Ctrl-C or an error here: stop every program of the command, not only `sh`
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            raise
    ctx.on_process_group(None)
    tail = (stdout + stderr).strip()[-4000:]
    code = process.returncode
    evidence = f"## `{args.command}` exited {code}\n\n```\n{tail}\n```" if tail or code else None
    return OpResult(passed=code == 0, evidence=evidence, summary=f"exit {code}")


@dataclass(frozen=True)
class Operation:
    """One operation: its argument model, its function, which arguments name files it reads."""

    args: type[BaseModel]
    run: Callable[[OpContext, Any], OpResult]
    files: tuple[str, ...] = ()
    extra_inputs: Callable[[dict[str, Any], Path], list[Path]] | None = None
    command: str = ""  # the `keel` command that does the same by hand


OPERATIONS: dict[str, Operation] = {
    "curate": Operation(CurateArgs, _curate, ("recipe",), _curate_inputs, "keel curate run"),
    "data.commit": Operation(CommitArgs, _commit, (), None, "keel data commit"),
    "data.split": Operation(SplitArgs, _split, (), None, "keel data split"),
    "data.validate": Operation(ValidateArgs, _validate, ("expectations",), None, "keel data validate"),
    "index.build": Operation(IndexArgs, _index, (), None, "keel index build"),
    "train": Operation(TrainArgs, _train, ("config",), None, "keel train run"),
    "eval.run": Operation(EvalArgs, _eval, ("suite",), None, "keel eval run"),
    "eval.gate": Operation(GateArgs, _gate, ("suite",), None, "keel eval gate"),
    "model.register": Operation(RegisterArgs, _register, ("path",), None, "keel model register"),
    "model.alias": Operation(AliasArgs, _alias, (), None, "keel model alias"),
    "prompt.create": Operation(PromptArgs, _prompt, ("file",), None, "keel prompt create"),
    "deploy.create": Operation(DeployArgs, _deploy, (), None, "keel deploy create"),
    "deploy.canary": Operation(CanaryArgs, _canary, (), None, "keel deploy canary"),
    "deploy.promote": Operation(PromoteArgs, _promote, (), None, "keel deploy promote"),
    "feedback.export": Operation(ExportArgs, _export, (), None, "keel feedback export"),
    "call": Operation(CallArgs, _call, (), None, "a Python function"),
    "shell": Operation(ShellArgs, _shell, (), None, "sh -c"),
}
GATES = ("eval.gate", "data.validate")


def file_args(op: str) -> tuple[str, ...]:
    """The arguments of `op` that name a file it reads (its content is part of the stage's cache key)."""
    found = OPERATIONS.get(op)
    return found.files if found else ()
