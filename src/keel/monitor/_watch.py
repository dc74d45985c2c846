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

__all__ = ["Tick", "monitor_tick", "watch"]

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
        tick.alerts = evaluate_alerts(store, config, now=now)
        tick.sink_failures = send(config.sinks, tick.alerts)
    return tick


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
