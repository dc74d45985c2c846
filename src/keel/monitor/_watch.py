"""The monitor's loop: each tick steps the guarded rollouts, evaluates the alert rules and notifies.

`keel monitor check` runs one tick (for cron or CI), `keel monitor watch` runs them forever.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from keel.monitor._alerts import AlertConfig, AlertEvent, evaluate_alerts
from keel.monitor._rollout import RolloutDecision, step_rollouts
from keel.monitor._sinks import send
from keel.store import Store

__all__ = ["AlertEvaluatorLease", "Tick", "alert_tick", "monitor_tick", "watch"]

log = logging.getLogger("keel.monitor")


@dataclass(slots=True)
class Tick:
    """What one tick did."""

    at: datetime
    rollouts: list[RolloutDecision] = field(default_factory=list)
    alerts: list[AlertEvent] = field(default_factory=list)
    sink_failures: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        from keel.core.clock import format_time

        return {
            "at": format_time(self.at),
            "rollouts": [d.to_json() for d in self.rollouts],
            "alerts": [e.to_json() for e in self.alerts],
            "sink_failures": self.sink_failures,
        }


def monitor_tick(store: Store, config: AlertConfig | None = None, *, now: datetime | None = None) -> Tick:
    """Step every guarded rollout that is due, then evaluate `config`'s rules and send what changed.

    Examples:
        >>> monitor_tick(store, load_alert_config("alerts.yaml"))  # doctest: +SKIP
    """
    now = now or store.clock()
    tick = Tick(at=now, rollouts=step_rollouts(store, now=now))
    if config is not None:
        alerted = alert_tick(store, config, now=now)
        tick.alerts, tick.sink_failures = alerted.alerts, alerted.sink_failures
    return tick


def alert_tick(store: Store, config: AlertConfig, *, now: datetime | None = None) -> Tick:
    """Evaluate `config`'s rules once and send what changed (no rollouts): the alert half of `monitor_tick`.

    `keel serve --alerts` runs this on its own interval; the gateway steps rollouts on another.
    """
    now = now or store.clock()
    tick = Tick(at=now, alerts=evaluate_alerts(store, config, now=now))
    tick.sink_failures = send(config.sinks, tick.alerts)
    return tick


class AlertEvaluatorLease:
    """One alert evaluator among the processes serving a workspace from this machine (`keel serve --workers N`).

    An OS file lock on `.keel/alerts-evaluator.lock` (filelock): the worker that takes it evaluates
    the rules, the others try again at their next tick, and the kernel drops it when its holder exits
    or dies, so another worker takes over without a stale lease to wait out. Processes on other
    machines sharing a PostgreSQL workspace each hold their own; there, each transition is still
    claimed in the database (`evaluate_alerts`), so it is stored and sent once.
    """

    def __init__(self, store: Store) -> None:
        from filelock import FileLock

        path = store.settings.state_dir / "alerts-evaluator.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        # Not thread-local: the gateway takes it from one worker thread and may check it from another.
        self._lock = FileLock(path, thread_local=False)

    @property
    def held(self) -> bool:
        """True while this process holds the lease."""
        return bool(self._lock.is_locked)

    def acquire(self) -> bool:
        """Take the lease if it is free (never waits); True when this process holds it."""
        from filelock import Timeout

        if self._lock.is_locked:
            return True
        try:
            self._lock.acquire(blocking=False)
        except Timeout:
            return False
        return True

    def release(self) -> None:
        """Give the lease up (at shutdown)."""
        if self._lock.is_locked:
            self._lock.release(force=True)


def watch(
    store: Store,
    config: AlertConfig | None,
    *,
    every: timedelta,
    stop: threading.Event | None = None,
    on_tick: Callable[[Tick], None] | None = None,
) -> None:
    """Run `monitor_tick` every `every` until `stop` is set; a failing tick is logged and the loop goes on."""
    stop = stop or threading.Event()
    while not stop.is_set():
        try:
            tick = monitor_tick(store, config)
        except Exception:  # a process boundary: one bad tick (a database blip) must not end the watch
            log.exception("a monitor tick failed; retrying in %s", every)
        else:
            if on_tick is not None:
                on_tick(tick)
        stop.wait(every.total_seconds())
