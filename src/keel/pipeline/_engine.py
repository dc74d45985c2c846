"""Running a pipeline: plan, cache check, one registry run per pipeline with a child run per stage, a lock.

A stage's cache key is the sha256 of its operation, its arguments (params substituted) and the content digest
of every input (a dataset version's manifest digest, a model's, a file's sha256). A stage whose key matches a
finished execution is skipped and its outputs reused. Each execution is a row of `pipeline_stages`, written
when the stage starts and when it ends, so a run killed outright resumes where it stopped: the stages that
finished are cache hits, the one that was killed runs again (training resumes from its last checkpoint).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy import delete, select, update

from keel.core.errors import ConflictError, InputError, KeelError, NotFoundError
from keel.core.ids import canonical_json
from keel.pipeline._ops import GATES, OPERATIONS, OpContext, OpResult
from keel.pipeline._spec import Pipeline, Reference, Stage
from keel.store import Store, add_edge
from keel.store.schema import pipeline_locks, pipeline_stages

__all__ = [
    "GateFailedError",
    "PipelineBusyError",
    "PlannedStage",
    "StageFailedError",
    "StageOutcome",
    "StageStatus",
    "last_statuses",
    "plan_pipeline",
    "run_pipeline",
]

Progress = Callable[[str, int, int], None]
_PINNED = re.compile(r"v[0-9]+")
StageStatus = Literal["finished", "cached", "failed", "skipped", "would-run", "running"]


class PipelineBusyError(ConflictError):
    """Another run of this pipeline holds its lock; two runs of one pipeline never overlap."""


class StageFailedError(KeelError):
    """A stage failed: its command exited non-zero or its operation raised. The pipeline stops."""

    exit_code = 1

    def __init__(self, message: str, *, evidence: str | None = None, outcomes: list[StageOutcome] | None = None):
        super().__init__(message)
        self.evidence = evidence
        self.outcomes = outcomes or []


class GateFailedError(StageFailedError):
    """A gate stage said no: nothing downstream of it runs. Its evidence is the gate's report."""


@dataclass
class PlannedStage:
    """What `keel pipeline diff` and `--dry-run` say of one stage: run or cached, and why."""

    stage: str
    action: Literal["run", "cached"]
    reasons: list[str]
    cache_key: str | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {"stage": self.stage, "action": self.action, "reasons": self.reasons, "cache_key": self.cache_key}


@dataclass
class StageOutcome:
    """What happened to one stage in a run."""

    stage: str
    status: StageStatus
    run_id: str | None = None
    outputs: dict[str, str] = field(default_factory=dict)
    summary: str = ""
    seconds: float = 0.0
    reasons: list[str] = field(default_factory=list)
    gate_said_no: bool = False
    details: dict[str, Any] = field(default_factory=dict)  # what the operation measured (not for cached stages)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "stage": self.stage,
            "status": self.status,
            "run_id": self.run_id,
            "outputs": self.outputs,
            "summary": self.summary,
            "seconds": round(self.seconds, 3),
            "reasons": self.reasons,
        }


# ---- content digests ------------------------------------------------------------------------------------------


def _file_digest(path: Path) -> str:
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _path_digest(path: Path) -> str | None:
    if path.is_file():
        return _file_digest(path)
    if path.is_dir():
        entries = [(p.relative_to(path).as_posix(), _file_digest(p)) for p in sorted(path.rglob("*")) if p.is_file()]
        return hashlib.sha256(canonical_json(entries).encode()).hexdigest()
    return None


def _object_digest(store: Store, ref: Reference) -> tuple[str, str] | None:
    """(digest, pinned reference) of a Keel object, or None if it does not exist (yet)."""
    version = f"{ref.name}@{ref.version or 'latest'}"
    try:
        if ref.kind == "dataset":
            from keel.data import get_version

            found = get_version(store, version)
            return found.digest, f"dataset:{found.ref}"
        if ref.kind == "model":
            from keel.registry import get_model

            model = get_model(store, version, with_files=False)
            return model.manifest_digest, f"model:{model.ref}"
        if ref.kind == "index":
            from keel.index import get_index

            index = get_index(store, version)
            return index.manifest_digest, f"index:{index.ref}"
        if ref.kind == "prompt":
            from keel.registry import get_prompt

            prompt = get_prompt(store, version)
            return prompt.digest, f"prompt:{prompt.name}@v{prompt.version}"
        from keel.serve import get_deployment

        deployment = get_deployment(store, ref.name)
        routes = [r.model_dump(mode="json") for r in deployment.routes]
        return hashlib.sha256(canonical_json(routes).encode()).hexdigest(), f"deployment:{ref.name}"
    except NotFoundError:
        return None


class _Resolver:
    """Digests of references, each computed once per run; an upstream stage's outputs pin `@latest` inputs."""

    def __init__(self, store: Store, pipeline: Pipeline) -> None:
        self.store = store
        self.pipeline = pipeline
        self.made: dict[str, str] = {}  # output key → pinned reference, from stages run or reused in this run
        self._memo: dict[str, tuple[str, str] | None] = {}

    def resolve(self, ref: Reference) -> tuple[str, str] | None:
        """(digest, pinned reference) or None when the input does not exist."""
        if ref.kind != "path" and ref.key in self.made and not _PINNED.fullmatch(ref.version or ""):
            kind, _, rest = self.made[ref.key].partition(":")
            name, _, version = rest.partition("@")
            ref = Reference(kind, name, version or None)
        text = str(ref)
        if text not in self._memo:
            if ref.kind == "path":
                digest = _path_digest(Path(ref.name))
                self._memo[text] = (digest, text) if digest else None
            else:
                self._memo[text] = _object_digest(self.store, ref)
        return self._memo[text]

    def forget(self, stage: Stage) -> None:
        """Drop memoised digests a stage may have changed (its outputs)."""
        keys = {f"{o.kind}:{o.name}" for o in stage.outputs}
        paths = {o.name for o in stage.outputs if o.kind == "path"}
        self._memo = {t: v for t, v in self._memo.items() if _key_of(t) not in keys and t not in paths}

    def inputs(self, stage: Stage) -> tuple[dict[str, str], list[str]]:
        """Each input's digest (by the reference as written), and the inputs that do not exist."""
        digests: dict[str, str] = {}
        missing: list[str] = []
        for ref in stage.inputs:
            found = self.resolve(ref)
            if found is None:
                missing.append(str(ref))
            else:
                digests[str(ref)] = found[0]
        op = OPERATIONS.get(stage.op)
        if op is not None and op.extra_inputs is not None:
            for path in op.extra_inputs(stage.args, self.pipeline.path.parent):
                found = self.resolve(Reference("path", str(path)))
                if found is not None:
                    digests[str(path)] = found[0]
        return digests, missing


def _key_of(text: str) -> str:
    return text.split("@", 1)[0]


def cache_key(stage: Stage, digests: dict[str, str]) -> str:
    """sha256 of the stage's operation, arguments and input digests."""
    payload = {"op": stage.op, "args": stage.args, "inputs": digests, "gate": stage.gate, "params": stage.params}
    return hashlib.sha256(canonical_json(payload).encode()).hexdigest()


# ---- stage records --------------------------------------------------------------------------------------------


def _cached(conn: sa.Connection, pipeline: str, stage: str, key: str) -> Any:
    return conn.execute(
        select(pipeline_stages)
        .where(
            pipeline_stages.c.pipeline == pipeline,
            pipeline_stages.c.stage == stage,
            pipeline_stages.c.cache_key == key,
            pipeline_stages.c.status == "finished",
        )
        .order_by(pipeline_stages.c.id.desc())
        .limit(1)
    ).first()


def _last_finished(conn: sa.Connection, pipeline: str, stage: str) -> Any:
    return conn.execute(
        select(pipeline_stages)
        .where(
            pipeline_stages.c.pipeline == pipeline,
            pipeline_stages.c.stage == stage,
            pipeline_stages.c.status.in_(("finished", "cached")),
        )
        .order_by(pipeline_stages.c.id.desc())
        .limit(1)
    ).first()


def last_statuses(store: Store, pipeline: Pipeline) -> dict[str, dict[str, Any]]:
    """Each stage's latest execution: status, run, when, outputs (`keel pipeline show`)."""
    latest = (
        select(pipeline_stages.c.stage, sa.func.max(pipeline_stages.c.id).label("id"))
        .where(pipeline_stages.c.pipeline == pipeline.name)
        .group_by(pipeline_stages.c.stage)
        .subquery()
    )
    with store.db.read() as conn:
        rows = conn.execute(select(pipeline_stages).join(latest, pipeline_stages.c.id == latest.c.id)).all()
    return {
        r.stage: {
            "status": r.status,
            "run_id": r.run_id,
            "pipeline_run_id": r.pipeline_run_id,
            "ended_at": r.ended_at,
            "outputs": json.loads(r.outputs),
        }  # fmt: skip
        for r in rows
    }


def _changes(previous: Any, stage: Stage, digests: dict[str, str], base: Path) -> list[str]:
    """Why a stage's key differs from its last successful execution's: each param, input and argument changed."""
    if previous is None:
        return ["never ran"]
    reasons: list[str] = []
    stored = json.loads(previous.args)
    old_params, old_args = stored.get("params", {}), stored.get("with", {})
    for name in sorted(set(old_params) | set(stage.params)):
        if old_params.get(name) != stage.params.get(name):
            reasons.append(f"param {name}: {_short(old_params.get(name))} → {_short(stage.params.get(name))}")
    before = json.loads(previous.inputs)
    for ref, digest in digests.items():
        if ref not in before:
            reasons.append(f"new input {_shown(ref, base)}")
        elif before[ref] != digest:
            reasons.append(f"input {_shown(ref, base)} changed ({before[ref][:12]} → {digest[:12]})")
    reasons += [f"input {_shown(ref, base)} removed" for ref in before if ref not in digests]
    if not reasons:  # an argument written differently, not through a param
        for key in sorted(set(old_args) | set(stage.args)):
            if old_args.get(key) != stage.args.get(key):
                reasons.append(f"{key}: {_short(old_args.get(key))} → {_short(stage.args.get(key))}")
    return reasons or ["the operation or gate flag changed"]


def _shown(ref: str, base: Path) -> str:
    """A path input relative to the pipeline's folder, as the user wrote it; a Keel reference as is."""
    path = Path(ref)
    if path.is_absolute() and path.is_relative_to(base):
        return path.relative_to(base).as_posix()
    return ref


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True) if value is not None else "unset"
    return text if len(text) <= 60 else text[:57] + "…"


# ---- planning -------------------------------------------------------------------------------------------------


def _selected(pipeline: Pipeline, targets: list[str] | None) -> list[Stage]:
    if not targets:
        return list(pipeline.stages.values())
    unknown = [t for t in targets if t not in pipeline.stages]
    if unknown:
        raise InputError(
            f"expected stages of pipeline {pipeline.name!r}; no stage named {', '.join(map(repr, unknown))}",
            hint=f"its stages: {', '.join(pipeline.stages)}",
        )
    wanted = pipeline.upstream(set(targets))
    return [s for s in pipeline.stages.values() if s.name in wanted]


def _check_force(pipeline: Pipeline, force: list[str]) -> set[str]:
    unknown = [f for f in force if f not in pipeline.stages]
    if unknown:
        raise InputError(f"--force names no stage of {pipeline.name!r}: {', '.join(unknown)}",
                         hint=f"its stages: {', '.join(pipeline.stages)}")  # fmt: skip
    return set(force)


def plan_pipeline(
    store: Store, pipeline: Pipeline, targets: list[str] | None = None, *, force: Sequence[str] = ()
) -> list[PlannedStage]:
    """Which stages a run would execute and why, without running anything (`keel pipeline diff`).

    A stage runs when forced, when a stage it waits for runs (its inputs are not made yet), or when its cache
    key matches no finished execution; the reasons name each input and argument that changed.
    """
    forced = _check_force(pipeline, list(force))
    resolver = _Resolver(store, pipeline)
    runs: set[str] = set()
    plan: list[PlannedStage] = []
    with store.db.read() as conn:
        for stage in _selected(pipeline, targets):
            upstream = [a for a in stage.after if a in runs]
            if stage.name in forced:
                plan.append(PlannedStage(stage.name, "run", ["forced (--force)"]))
            elif upstream:
                plural = len(upstream) > 1
                why = f"upstream stage{'s' if plural else ''} {', '.join(upstream)} run{'' if plural else 's'} first"
                plan.append(PlannedStage(stage.name, "run", [why]))
            else:
                digests, missing = resolver.inputs(stage)
                key = cache_key(stage, digests)
                hit = None if missing else _cached(conn, pipeline.name, stage.name, key)
                if hit is not None:
                    resolver.made.update(json.loads(hit.outputs))
                    plan.append(PlannedStage(stage.name, "cached", ["inputs and params unchanged"], key))
                    continue
                reasons = [f"input {m} does not exist yet" for m in missing]
                reasons += _changes(
                    _last_finished(conn, pipeline.name, stage.name), stage, digests, pipeline.path.parent
                )
                plan.append(PlannedStage(stage.name, "run", reasons, key))
            runs.add(stage.name)
    return plan


# ---- the lock -------------------------------------------------------------------------------------------------


@contextmanager
def pipeline_lock(store: Store, pipeline: str, run_id: str) -> Iterator[None]:
    """Hold `pipeline`'s lock for the block; a lock whose holder process died (kill -9) is taken over.

    Raises:
        PipelineBusyError: A live process (or one on another host, which this one cannot check) holds it.
    """
    from keel.registry._env import process_alive, process_identity

    me = canonical_json(process_identity())
    for _ in range(3):
        try:
            with store.db.write() as conn:
                conn.execute(pipeline_locks.insert().values(pipeline=pipeline, run_id=run_id, holder=me,
                                                            acquired_at=store.clock()))  # fmt: skip
            break
        except sa.exc.IntegrityError:
            with store.db.read() as conn:
                row = conn.execute(select(pipeline_locks).where(pipeline_locks.c.pipeline == pipeline)).first()
            if row is None:
                continue
            holder = json.loads(row.holder)
            if process_alive(holder) is not False:
                raise PipelineBusyError(
                    f"pipeline {pipeline!r} is already running (run {row.run_id}, since {row.acquired_at:%H:%M:%S})",
                    hint="wait for it to end; two runs of one pipeline never overlap",
                ) from None
            group = holder.get("stage_group")
            if isinstance(group, int) and _group_alive(group):
                raise PipelineBusyError(
                    f"run {row.run_id} of pipeline {pipeline!r} was killed, but the command of its stage "
                    f"{holder.get('stage')!r} still runs (process group {group})",
                    hint=f"wait for it to end, or stop it with `kill -- -{group}`; then run the pipeline again",
                ) from None
            with store.db.write() as conn:  # its holder died without releasing: take it over
                conn.execute(delete(pipeline_locks).where(pipeline_locks.c.pipeline == pipeline,
                                                          pipeline_locks.c.run_id == row.run_id))  # fmt: skip
                _close_dead(store, conn, pipeline, row.run_id)
    else:
        raise PipelineBusyError(f"could not take the lock of pipeline {pipeline!r} after 3 tries; run it again")
    try:
        yield
    finally:
        with store.db.write() as conn:
            conn.execute(delete(pipeline_locks).where(pipeline_locks.c.pipeline == pipeline,
                                                      pipeline_locks.c.run_id == run_id))  # fmt: skip


def _group_noter(store: Store, pipeline: str, run_id: str, stage: str) -> Callable[[int | None], None]:
    """Record in the lock the process group a stage's command runs in (None: it ended), for `pipeline_lock`."""

    def note(group: int | None) -> None:
        where = (pipeline_locks.c.pipeline == pipeline, pipeline_locks.c.run_id == run_id)
        with store.db.write() as conn:
            text = conn.scalar(select(pipeline_locks.c.holder).where(*where))
            if text is None:
                return
            holder = {k: v for k, v in json.loads(text).items() if k not in ("stage_group", "stage")}
            if group is not None:
                holder.update(stage_group=group, stage=stage)
            conn.execute(update(pipeline_locks).where(*where).values(holder=canonical_json(holder)))

    return note


def _group_alive(group: int) -> bool:
    """Whether any process of a process group still runs (a zombie waiting for its reaper does not count)."""
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - the lock's holder was this user (`process_alive` checked)
        return True
    if not os.path.isdir("/proc"):  # pragma: no cover - not Linux: a zombie member is not told apart
        return True
    with os.scandir("/proc") as entries:
        return any(_in_group(entry, group) for entry in entries if entry.name.isdigit())


def _in_group(entry: os.DirEntry[str], group: int) -> bool:
    try:
        stat = Path(entry.path, "stat").read_text()
    except OSError:  # ended meanwhile
        return False
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (name) ": state, ppid, pgrp, ...
    return fields[0] != "Z" and int(fields[2]) == group


def _close_dead(store: Store, conn: sa.Connection, pipeline: str, run_id: str) -> None:
    """Mark a killed pipeline run's running stages and runs `killed`, so history says what happened."""
    from keel.store.schema import runs

    stage_runs = conn.scalars(
        select(pipeline_stages.c.run_id).where(
            pipeline_stages.c.pipeline_run_id == run_id, pipeline_stages.c.status == "running"
        )  # fmt: skip
    ).all()
    conn.execute(
        update(pipeline_stages)
        .where(pipeline_stages.c.pipeline_run_id == run_id, pipeline_stages.c.status == "running")
        .values(status="failed", ended_at=store.clock())
    )
    error = "killed: its process ended without closing the run; a later pipeline run took over"
    conn.execute(
        update(runs)
        .where(runs.c.id.in_([run_id, *stage_runs]), runs.c.status == "running")
        .values(status="killed", error=error, ended_at=store.clock())
    )
    store.audit(conn, "pipeline.takeover", f"run:{run_id}", {"pipeline": pipeline})


# ---- running --------------------------------------------------------------------------------------------------


Say = Callable[[StageOutcome], None]


def run_pipeline(
    store: Store,
    pipeline: Pipeline,
    targets: list[str] | None = None,
    *,
    force: Sequence[str] = (),
    progress: Progress | None = None,
    on_stage: Say | None = None,
    trigger: str | None = None,
) -> tuple[str, list[StageOutcome]]:
    """Run the pipeline's stages (or `targets` and what they need) in DAG order, skipping cached ones.

    `trigger` says what started the run (a schedule, an alert), kept in the run's parameters.

    Returns:
        The pipeline run's id and each stage's outcome.

    Raises:
        GateFailedError: A gate said no (exit 1); the outcomes so far and the gate's evidence are attached.
        StageFailedError: A stage's command or operation failed (exit 1).
        PipelineBusyError: Another run of this pipeline is under way.
    """
    from keel.registry import start_run

    forced = _check_force(pipeline, list(force))
    stages = _selected(pipeline, targets)
    params = {"pipeline": pipeline.name, "file": str(pipeline.path), "params": pipeline.params,
              "stages": [s.name for s in stages], "force": sorted(forced), "trigger": trigger or "by hand"}  # fmt: skip
    outcomes: list[StageOutcome] = []
    with start_run("pipeline", params, name=pipeline.name, store=store) as run:
        with pipeline_lock(store, pipeline.name, run.id):
            resolver = _Resolver(store, pipeline)
            stage_runs: dict[str, str] = {}
            ran: set[str] = set()
            for stage in stages:
                outcome = _run_stage(store, pipeline, stage, run.id, resolver, stage_runs,
                                     forced=stage.name in forced,
                                     progress=progress or (lambda *_: None))  # fmt: skip
                outcomes.append(outcome)
                if outcome.status == "finished":
                    ran.add(stage.name)
                if on_stage is not None:
                    on_stage(outcome)
                if outcome.status == "failed":
                    error = outcome.reasons[0] if outcome.reasons else "failed"
                    evidence = outcome.summary or None
                    cls = GateFailedError if outcome.gate_said_no else StageFailedError
                    raise cls(f"stage {stage.name!r} failed: {error}", evidence=evidence, outcomes=outcomes)
            run.log_metrics({"stages_run": len(ran), "stages_cached": sum(o.status == "cached" for o in outcomes)})
    return run.id, outcomes


def _run_stage(
    store: Store,
    pipeline: Pipeline,
    stage: Stage,
    parent: str,
    resolver: _Resolver,
    stage_runs: dict[str, str],
    *,
    forced: bool,
    progress: Progress,
) -> StageOutcome:
    import time

    from keel.registry import start_run

    started = time.perf_counter()
    digests, missing = resolver.inputs(stage)
    if missing:
        raise InputError(
            f"stage {stage.name!r} of {pipeline.name!r} reads {', '.join(missing)}, which does not exist",
            hint="make it first, or add the stage that outputs it to the pipeline",
        )
    key = cache_key(stage, digests)
    with store.db.read() as conn:
        hit = None if forced else _cached(conn, pipeline.name, stage.name, key)
        previous = _last_finished(conn, pipeline.name, stage.name) if hit is None else None
    if hit is not None:
        outputs = json.loads(hit.outputs)
        resolver.made.update(outputs)
        stage_runs[stage.name] = hit.run_id
        with store.db.write() as conn:
            _record(conn, store, pipeline, stage, hit.run_id, parent, key, "cached", digests, outputs)
            _edges(conn, store, stage, hit.run_id, parent, stage_runs, "reused")
        return StageOutcome(stage.name, "cached", hit.run_id, outputs, "inputs and params unchanged",
                            time.perf_counter() - started)  # fmt: skip
    reasons = ["forced (--force)"] if forced else _changes(previous, stage, digests, pipeline.path.parent)
    nodes = [n for ref, d in digests.items() if (n := _node(resolver, ref)) is not None]
    run_params = {"pipeline": pipeline.name, "stage": stage.name, "op": stage.op, "args": stage.args,
                  "parent": parent, "cache_key": key}  # fmt: skip
    result: OpResult | None = None
    try:
        with start_run("pipeline-stage", run_params, name=f"{pipeline.name}.{stage.name}", inputs=nodes,
                       store=store) as run:  # fmt: skip
            with store.db.write() as conn:
                row_id = _record(conn, store, pipeline, stage, run.id, parent, key, "running", digests, {})
                _edges(conn, store, stage, run.id, parent, stage_runs, "contains")
            stage_runs[stage.name] = run.id
            context = OpContext(store, pipeline.path.parent, _prefixed(progress, stage.name), run.id, stage.name,
                                _group_noter(store, pipeline.name, parent, stage.name))  # fmt: skip
            result = OPERATIONS[stage.op].run(context, OPERATIONS[stage.op].args.model_validate(stage.args))
            if result.passed is False:
                raise _GateSaidNo(result)
            outputs = _outputs(store, stage, result, resolver)
            for pinned in outputs.values():
                if (node := _pinned_node(pinned)) is not None:
                    run.log_output(node)
    except _GateSaidNo:
        with store.db.write() as conn:
            _end(conn, store, row_id, "failed", {})
        assert result is not None
        is_gate = stage.gate or stage.op in GATES
        what = "gate said no" if is_gate else "command failed"
        return StageOutcome(stage.name, "failed", stage_runs[stage.name], {}, result.evidence or result.summary,
                            time.perf_counter() - started, [f"{what} ({result.summary})"], is_gate,
                            result.details)  # fmt: skip
    except KeelError as exc:
        if stage.name in stage_runs:
            with store.db.write() as conn:
                _end(conn, store, row_id, "failed", {})
        return StageOutcome(stage.name, "failed", stage_runs.get(stage.name), {}, str(exc),
                            time.perf_counter() - started, [f"{type(exc).__name__}: {exc}"])  # fmt: skip
    except BaseException:
        if stage.name in stage_runs:
            with store.db.write() as conn:
                _end(conn, store, row_id, "failed", {})
        raise
    with store.db.write() as conn:
        _end(conn, store, row_id, "finished", outputs)
    resolver.forget(stage)
    resolver.made.update(outputs)
    seconds = time.perf_counter() - started
    return StageOutcome(
        stage.name, "finished", run.id, outputs, result.summary, seconds, reasons, details=result.details
    )


def _prefixed(progress: Progress, stage: str) -> Progress:
    return lambda label, done, total: progress(f"{stage}: {label}", done, total)


class _GateSaidNo(Exception):  # noqa: N818 - internal control flow, never escapes this module
    def __init__(self, result: OpResult) -> None:
        super().__init__(result.summary)
        self.result = result


def _outputs(store: Store, stage: Stage, result: OpResult, resolver: _Resolver) -> dict[str, str]:
    """Each declared output pinned: what the operation reported making, else the object as it is now."""
    outputs: dict[str, str] = {}
    for ref in stage.outputs:
        if ref.key in result.outputs:
            outputs[ref.key] = result.outputs[ref.key]
            continue
        resolver._memo.pop(str(ref), None)
        found = resolver.resolve(ref) if ref.kind != "path" else (("", ref.name) if Path(ref.name).exists() else None)
        if found is None:
            raise InputError(
                f"stage {stage.name!r} declares output {ref} but did not make it",
                hint="fix the stage's command or its outputs: list",
            )
        outputs[ref.key] = found[1]
    return outputs


def _pinned_node(pinned: str) -> str | None:
    kind, _, rest = pinned.partition(":")
    if kind in ("dataset", "model", "index", "prompt"):
        return f"{kind}-version:{rest}"
    if kind == "deployment":
        return pinned
    return None


def _node(resolver: _Resolver, ref_text: str) -> str | None:
    from keel.curate._run import source_node
    from keel.pipeline._spec import parse_reference

    ref = parse_reference(ref_text)
    if ref.kind == "path":
        return source_node(Path(ref.name))
    found = resolver.resolve(ref)
    return _pinned_node(found[1]) if found else None


def _record(
    conn: sa.Connection,
    store: Store,
    pipeline: Pipeline,
    stage: Stage,
    run_id: str,
    parent: str,
    key: str,
    status: str,
    digests: dict[str, str],
    outputs: dict[str, str],
) -> int:
    now = store.clock()
    done = None if status == "running" else now
    values = {"pipeline": pipeline.name, "stage": stage.name, "run_id": run_id, "pipeline_run_id": parent,
              "cache_key": key, "status": status, "inputs": canonical_json(digests),
              "args": canonical_json({"with": stage.args, "params": stage.params}),
              "outputs": canonical_json(outputs), "started_at": now, "ended_at": done}  # fmt: skip
    inserted = conn.execute(pipeline_stages.insert().values(**values)).inserted_primary_key
    assert inserted is not None
    return int(inserted[0])


def _end(conn: sa.Connection, store: Store, row_id: int, status: str, outputs: dict[str, str]) -> None:
    conn.execute(
        update(pipeline_stages)
        .where(pipeline_stages.c.id == row_id)
        .values(status=status, outputs=canonical_json(outputs), ended_at=store.clock())
    )


def _edges(
    conn: sa.Connection, store: Store, stage: Stage, run_id: str, parent: str, stage_runs: dict[str, str], kind: str
) -> None:
    """The DAG in the lineage graph: the pipeline run contains each stage's run; it follows its predecessors'."""
    at = store.clock()
    add_edge(conn, f"run:{parent}", f"run:{run_id}", kind, at=at)
    for before in stage.after:
        if before in stage_runs and stage_runs[before] != run_id:
            add_edge(conn, f"run:{stage_runs[before]}", f"run:{run_id}", "precedes", at=at)
