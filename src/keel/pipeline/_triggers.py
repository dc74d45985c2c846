"""Triggers: `keel monitor watch --pipeline FILE` starts a pipeline run on its schedule or when an alert fires.

After each monitor tick, `due_pipelines` says which pipelines should start and why: a `triggers.schedule`
longer than the time since the pipeline's last run started, or a `triggers.alerts` rule that started firing
in this tick. `PipelineTrigger` runs a due pipeline in a background thread so ticks go on meanwhile; the
pipeline's lock (`_engine.pipeline_lock`) keeps two runs of one pipeline from overlapping, across processes.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from keel.pipeline._engine import PipelineBusyError, StageFailedError, run_pipeline
from keel.pipeline._spec import Pipeline
from keel.store import Store
from keel.store.schema import runs

__all__ = ["PipelineTrigger", "TriggerDecision", "due_pipelines", "last_started"]

log = logging.getLogger("keel.pipeline")


@dataclass(frozen=True, slots=True)
class TriggerDecision:
    """A pipeline to start, and why (`schedule 24h: last run 25h ago`, `alert drift-high fired`)."""

    pipeline: str
    reason: str

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {"pipeline": self.pipeline, "reason": self.reason}


def last_started(store: Store, pipeline: str) -> datetime | None:
    """When the newest run of `pipeline` started, or None if it never ran."""
    with store.db.read() as conn:
        last: datetime | None = conn.scalar(
            select(func.max(runs.c.started_at)).where(runs.c.kind == "pipeline", runs.c.name == pipeline)
        )
    return last


def due_pipelines(
    store: Store, pipelines: Sequence[Pipeline], alerts: Sequence[Any], *, now: datetime
) -> list[TriggerDecision]:
    """Which pipelines should start after a tick whose alert transitions are `alerts` (`AlertEvent`s)."""
    from keel.monitor import parse_duration

    fired = {e.rule for e in alerts if e.status == "firing"}
    due: list[TriggerDecision] = []
    for pipeline in pipelines:
        triggers = pipeline.triggers
        hit = sorted(fired & set(triggers.alerts))
        if hit:
            due.append(TriggerDecision(pipeline.name, f"alert {', '.join(hit)} fired"))
            continue
        if triggers.schedule is not None:
            last = last_started(store, pipeline.name)
            if last is None or now - last >= parse_duration(triggers.schedule):
                since = "never ran" if last is None else f"last run started {now - last} ago"
                due.append(TriggerDecision(pipeline.name, f"schedule {triggers.schedule}: {since}"))
    return due


class PipelineTrigger:
    """Starts due pipelines in background threads, at most one thread per pipeline in this process.

    Examples:
        >>> trigger = PipelineTrigger(store, [load_pipeline("pipeline.yaml")])  # doctest: +SKIP
        >>> watch(store, config, every=timedelta(seconds=30), on_tick=trigger.on_tick)  # doctest: +SKIP
    """

    def __init__(self, store: Store, pipelines: Sequence[Pipeline]) -> None:
        self.store = store
        self.pipelines = {p.name: p for p in pipelines}
        self.threads: dict[str, threading.Thread] = {}
        self.results: dict[str, str] = {}  # pipeline → how its last triggered run ended

    def on_tick(self, tick: Any) -> list[TriggerDecision]:
        """Start every pipeline due after `tick` (a monitor `Tick`) that is not already running here."""
        started = []
        for decision in due_pipelines(self.store, list(self.pipelines.values()), tick.alerts, now=tick.at):
            running = self.threads.get(decision.pipeline)
            if running is not None and running.is_alive():
                continue
            thread = threading.Thread(target=self._run, args=(decision,), name=f"pipeline-{decision.pipeline}",
                                      daemon=True)  # fmt: skip
            self.threads[decision.pipeline] = thread
            thread.start()
            started.append(decision)
        return started

    def wait(self, timeout: float | None = None) -> None:
        """Wait for the runs started so far to end."""
        for thread in list(self.threads.values()):
            thread.join(timeout)

    def _run(self, decision: TriggerDecision) -> None:
        pipeline = self.pipelines[decision.pipeline]
        try:
            run_id, outcomes = run_pipeline(self.store, pipeline, pipeline.triggers.stages or None,
                                           trigger=decision.reason)  # fmt: skip
        except PipelineBusyError as exc:  # another process runs it: the lock did its job
            self.results[pipeline.name] = f"skipped: {exc}"
        except StageFailedError as exc:
            self.results[pipeline.name] = f"failed: {exc}"
        except Exception as exc:  # a thread boundary: a failed triggered run must not end the watch
            log.exception("the triggered run of pipeline %s failed", pipeline.name)
            self.results[pipeline.name] = f"error: {type(exc).__name__}: {exc}"
        else:
            ran = sum(o.status == "finished" for o in outcomes)
            self.results[pipeline.name] = f"run {run_id}: {ran} ran, {len(outcomes) - ran} cached"
