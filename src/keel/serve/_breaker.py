"""The circuit breaker of an upstream route: it opens on a failure rate over a rolling window, not a streak.

Decided as resilience4j's time-based breaker and Envoy's outlier detection decide: a circuit opens only when,
within the last `window_s` seconds, at least `failures` calls failed and the failures are at least
`failure_rate` of the calls that finished. A burst of simultaneous failures on a route that was answering
(an upstream restart drops every request in flight at once) is then weighed against the successes around
it instead of counting as a streak. Each call carries the breaker's epoch from when it started; an outcome
from an older epoch (a call started before the circuit last opened, closed or let a trial through) changes
nothing, so the tail of a stalled burst cannot re-open a circuit that a trial has just closed. This module
knows nothing of HTTP: the backend decides which outcomes are failures.
"""

from __future__ import annotations

import math
import time
from collections import deque
from typing import Literal

from keel.core.errors import ConfigError
from keel.serve._errors import UpstreamError

__all__ = ["CircuitBreaker", "CircuitOpenError"]

_BUCKETS = 10  # the window is kept as this many time buckets of counts (resilience4j keeps one per second)


class CircuitOpenError(UpstreamError):
    """The route failed too often lately; it is not called until its cool-down ends."""


class CircuitBreaker:
    """Opens on a failure rate within a rolling window; after `cooldown_s` lets one trial call through.

    Closed, it counts the calls that finish within the last `window_s` seconds. It opens when at least
    `failures` of them failed and failures are at least `failure_rate` of them: a dead upstream opens it
    after `failures` failures, as a streak did, while failures among as many successes do not. Open, it
    refuses calls for `cooldown_s`; then it is half-open and lets one trial through per cool-down. The
    trial's success closes it with an empty window; its failure opens it again. Outcomes of calls started
    before the circuit last changed (see `start`) are ignored.

    Args:
        failures: Failures within the window needed to open the circuit (at least 1).
        cooldown_s: Seconds the open circuit refuses calls before a trial.
        failure_rate: Share of the window's finished calls that must have failed, in (0, 1]; 1.0 opens
            only when every call in the window failed.
        window_s: Length of the rolling window, in seconds.

    Raises:
        ConfigError: A value is out of its range.

    Examples:
        >>> breaker = CircuitBreaker(failures=1, cooldown_s=60)
        >>> breaker.failure(); breaker.allow()
        False
        >>> breaker = CircuitBreaker(failures=2, failure_rate=0.5)
        >>> for _ in range(3): breaker.success()
        >>> breaker.failure(); breaker.failure(); breaker.state  # 2 failures of 5 calls: 40% < 50%
        'closed'
    """

    def __init__(
        self, failures: int = 5, cooldown_s: float = 10.0, *, failure_rate: float = 0.5, window_s: float = 10.0
    ) -> None:
        _check("failures", failures, failures >= 1, "a whole number of at least 1")
        _check("cooldown_s", cooldown_s, cooldown_s > 0 and math.isfinite(cooldown_s), "seconds above 0")
        _check("failure_rate", failure_rate, 0 < failure_rate <= 1, "a share in (0, 1], e.g. 0.5 for 50%")
        _check("window_s", window_s, window_s > 0 and math.isfinite(window_s), "seconds above 0")
        self.failures = failures
        self.cooldown_s = cooldown_s
        self.failure_rate = failure_rate
        self.window_s = window_s
        self.epoch = 0  # bumped at each change of state; a call's outcome counts only in the epoch it started in
        self._opened_at: float | None = None
        self._buckets: deque[list[float]] = deque()  # [start time, calls, failures], oldest first
        self._calls = 0
        self._failed = 0

    @property
    def state(self) -> Literal["closed", "open", "half-open"]:
        """`closed` (calls go through), `open` (refused) or `half-open` (a trial may go)."""
        if self._opened_at is None:
            return "closed"
        return "half-open" if time.monotonic() - self._opened_at >= self.cooldown_s else "open"

    def start(self) -> int | None:
        """Begin a call: the ticket to pass to `success`/`failure`, or None when the circuit refuses it.

        A half-open circuit lets one trial through and refuses others for another cool-down.
        """
        state = self.state
        if state == "open":
            return None
        if state == "half-open":
            self._opened_at = time.monotonic()  # one trial per cool-down
            self.epoch += 1  # only the trial's outcome decides; calls started earlier no longer count
        return self.epoch

    def allow(self) -> bool:
        """Whether a call may go now (`start` without keeping the ticket)."""
        return self.start() is not None

    def success(self, ticket: int | None = None) -> None:
        """Record a successful call started with `ticket` (None: a call of the current epoch)."""
        if ticket is not None and ticket != self.epoch:
            return
        if self._opened_at is not None:  # the trial succeeded: the upstream is back
            self._close()
            return
        self._record(failed=False)

    def failure(self, ticket: int | None = None) -> None:
        """Record a failed call started with `ticket` (None: a call of the current epoch)."""
        if ticket is not None and ticket != self.epoch:
            return
        if self._opened_at is not None:  # the trial failed: open for another cool-down
            self._open()
            return
        self._record(failed=True)
        # A quotient, not `failure_rate * calls`: 0.55 * 100 rounds above 55, so 55 of 100 would not reach 55%.
        if self._failed >= self.failures and self._failed / self._calls >= self.failure_rate:
            self._open()

    def _record(self, *, failed: bool) -> None:
        now = time.monotonic()
        width = self.window_s / _BUCKETS
        while self._buckets and self._buckets[0][0] <= now - self.window_s:
            _, calls, failures = self._buckets.popleft()
            self._calls -= int(calls)
            self._failed -= int(failures)
        if not self._buckets or now - self._buckets[-1][0] >= width:
            self._buckets.append([now, 0, 0])
        bucket = self._buckets[-1]
        bucket[1] += 1
        bucket[2] += failed
        self._calls += 1
        self._failed += failed

    def _open(self) -> None:
        self._opened_at = time.monotonic()
        self.epoch += 1
        self._clear()

    def _close(self) -> None:
        self._opened_at = None
        self.epoch += 1
        self._clear()

    def _clear(self) -> None:
        self._buckets.clear()
        self._calls = self._failed = 0


def _check(name: str, value: float, ok: bool, expected: str) -> None:
    if not ok:
        raise ConfigError(f"circuit breaker {name}: expected {expected}, got {value!r}")
