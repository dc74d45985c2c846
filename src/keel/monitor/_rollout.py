"""Guarded rollouts: a canary stepped up while its guards hold, rolled back when they break.

Each interval the controller reads the canary's and the stable route's traces of that interval,
checks every guard (`error_rate<1%`, `p95_ms<800`, `feedback>=baseline-0.05`) on the canary and
tests whether the canary is worse than stable (Fisher's exact test for error rates, one-sided
Mann–Whitney U for latencies and feedback scores). A breach the test confirms rolls back at
once; a breach it cannot pin on the canary holds the step and rolls back after `max_failures`
such intervals in a row; clean intervals step the weight up, and the last step promotes. Each
decision is a deployment event carrying its evidence (and so audited). Like Argo Rollouts'
and Flagger's analysis runs; this module only decides, the deployment functions act.
"""

from __future__ import annotations

import json
import operator
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from scipy import stats
from sqlalchemy import or_, select, update

from keel.core.clock import format_time
from keel.core.echo import shown
from keel.core.errors import InputError, NotFoundError
from keel.core.ids import canonical_json
from keel.monitor._observe import Observation, trace_observations
from keel.monitor._summary import percentile
from keel.registry import get_model
from keel.serve._deployments import (
    abort_canary,
    canary_deployment,
    get_deployment,
    promote_deployment,
    record_analysis,
)
from keel.store import Store
from keel.store.schema import rollouts

__all__ = [
    "Guard",
    "GuardResult",
    "Rollout",
    "RolloutDecision",
    "check_guard",
    "get_rollout",
    "parse_guard",
    "start_rollout",
    "step_rollouts",
]

Metric = Literal["error_rate", "p50_ms", "p95_ms", "p99_ms", "feedback"]
_METRICS: tuple[str, ...] = ("error_rate", "p50_ms", "p95_ms", "p99_ms", "feedback")
_OPS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
}  # fmt: skip
_GUARD = re.compile(
    r"^\s*(?P<metric>[a-z0-9_]+)\s*(?P<op><=|>=|<|>)\s*(?:(?P<baseline>baseline)\s*(?:(?P<sign>[+-])\s*)?)?"
    r"(?P<value>\d+(?:\.\d+)?)?\s*(?P<unit>%|ms|s)?\s*$"
)


@dataclass(frozen=True, slots=True)
class Guard:
    """One condition the canary must keep: `metric op value`, or `metric op baseline ± value` against stable."""

    metric: Metric
    op: str
    value: float
    relative: bool
    text: str

    def limit(self, stable: float | None) -> float | None:
        """The bound the canary is held to (None when it is relative and stable has no value)."""
        if not self.relative:
            return self.value
        return None if stable is None else stable + self.value

    @property
    def higher_is_worse(self) -> bool:
        """True for upper bounds (`<`, `<=`): errors and latencies."""
        return self.op in ("<", "<=")


def parse_guard(text: str) -> Guard:
    """Parse `error_rate<1%`, `p95_ms<800`, `feedback>=baseline-0.05`, `p95_ms<=baseline+50ms`.

    Raises:
        InputError: Not of the form METRIC OP [baseline±]NUMBER[%|ms|s], or an unknown metric.

    Examples:
        >>> parse_guard("error_rate<1%").value
        0.01
        >>> g = parse_guard("feedback>=baseline-0.05"); (g.relative, g.value)
        (True, -0.05)
    """
    found = _GUARD.match(text)
    if found is None or (found["value"] is None and not found["baseline"]):
        raise InputError(
            f"expected a guard like 'error_rate<1%', 'p95_ms<800' or 'feedback>=baseline-0.05'; got {shown(text)}",
            hint=f"metrics: {', '.join(_METRICS)}; operators: < <= > >=",
        )
    metric = found["metric"]
    if metric not in _METRICS:
        raise InputError(f"expected a guard metric among {', '.join(_METRICS)}; got {metric!r} in {text!r}")
    value = float(found["value"] or 0.0)
    unit = found["unit"]
    if unit == "%":
        value /= 100
    elif unit == "s":
        value *= 1000
    if found["sign"] == "-":
        value = -value
    return Guard(metric, found["op"], value, bool(found["baseline"]), text.strip())  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class GuardResult:
    """A guard checked over one interval."""

    guard: str
    canary: float | None
    stable: float | None
    limit: float | None
    breached: bool
    p_value: float | None
    confirmed: bool
    sentence: str

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Rollout:
    """A guarded rollout of one deployment."""

    id: int
    deployment: str
    canary: str
    stable: str
    guards: tuple[str, ...]
    steps: tuple[int, ...]
    interval_s: float
    alpha: float
    min_requests: int
    max_failures: int
    state: str
    step: int
    failures: int
    window_start: datetime
    updated_at: datetime

    @property
    def weight(self) -> int:
        """The canary's share now, in percent."""
        return self.steps[self.step]

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {**asdict(self), "window_start": format_time(self.window_start),
                "updated_at": format_time(self.updated_at), "weight": self.weight}  # fmt: skip


@dataclass(frozen=True, slots=True)
class RolloutDecision:
    """What the controller did with one rollout at one check."""

    rollout: int
    deployment: str
    decision: Literal["wait", "hold", "step", "promote", "rollback", "cancel"]
    weight: int
    reason: str
    evidence: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


def start_rollout(
    store: Store,
    deployment: str,
    model: str,
    *,
    guards: list[str],
    steps: list[int],
    interval: timedelta,
    route: dict[str, Any] | None = None,
    alpha: float = 0.05,
    min_requests: int = 50,
    max_failures: int = 2,
) -> Rollout:
    """Put `model` on `deployment` as a canary at `steps[0]`% and let the controller take it from there.

    Args:
        store: The workspace store.
        deployment: The deployment, serving its stable version now.
        model: The registry reference of the canary.
        guards: Conditions the canary must keep (see `parse_guard`).
        steps: Increasing weights ending at 100 (`[10, 50, 100]`); 100 means promote.
        interval: How long each analysis window lasts.
        route: Route fields of the canary besides the model (`upstream`, …).
        alpha: Significance of the canary-worse-than-stable tests.
        min_requests: Fewest canary requests in a window before it is judged (fewer: wait).
        max_failures: Windows in a row with a breach the test cannot confirm before a rollback.

    Returns:
        The running rollout.

    Raises:
        InputError: Bad guards or steps, or a rollout already running on the deployment.

    Examples:
        >>> start_rollout(store, "chat", "chat@v2", guards=["error_rate<1%"], steps=[10, 50, 100],
        ...               interval=timedelta(minutes=10))  # doctest: +SKIP
    """
    parsed = [parse_guard(g) for g in guards]
    if not parsed:
        raise InputError("expected at least one --guard for a guarded rollout; got none", hint="e.g. 'error_rate<1%'")
    if not steps or steps[-1] != 100 or any(not 0 < s <= 100 for s in steps) or steps != sorted(set(steps)):
        raise InputError(f"expected increasing canary weights ending at 100, such as 10,50,100; got {steps}")
    if interval <= timedelta(0) or not 0 < alpha < 1 or min_requests < 1 or max_failures < 1:
        raise InputError(
            f"expected a positive interval, 0<alpha<1, min_requests>=1, max_failures>=1; got {interval}, "
            f"{alpha}, {min_requests}, {max_failures}"
        )
    stable = get_deployment(store, deployment).routes[0].model
    if _running(store, deployment) is not None:
        raise InputError(f"deployment {deployment!r} already has a rollout running", hint="wait for it to finish")
    first = steps[0] if steps[0] < 100 else 99
    if get_deployment(store, deployment).routes[0].model == get_model(store, model, with_files=False).ref:
        raise InputError(f"expected a canary other than the stable version {stable}; got {model!r}")
    state = canary_deployment(store, deployment, model, weight=first, route=route,
                              evidence={"decision": "start", "guards": guards, "steps": steps})  # fmt: skip
    spec = {"canary": state.routes[-1].model, "stable": stable, "guards": [g.text for g in parsed],
            "steps": steps, "interval_s": interval.total_seconds(), "alpha": alpha,
            "min_requests": min_requests, "max_failures": max_failures}  # fmt: skip
    now = store.clock()
    with store.db.write() as conn:
        result = conn.execute(
            rollouts.insert().values(
                deployment=deployment,
                spec=canonical_json(spec),
                state="running",
                step=0,
                failures=0,
                window_start=now,
                created_at=now,
                updated_at=now,
            )  # fmt: skip
        )
        assert result.inserted_primary_key is not None
        store.audit(
            conn, "rollout.start", f"deployment:{deployment}", {"rollout": int(result.inserted_primary_key[0]), **spec}
        )
    found = get_rollout(store, deployment)
    assert found is not None
    return found


def _from_row(row: Any) -> Rollout:
    spec = json.loads(row.spec)
    return Rollout(
        id=int(row.id), deployment=row.deployment, canary=spec["canary"], stable=spec["stable"],
        guards=tuple(spec["guards"]), steps=tuple(spec["steps"]), interval_s=float(spec["interval_s"]),
        alpha=float(spec["alpha"]), min_requests=int(spec["min_requests"]), max_failures=int(spec["max_failures"]),
        state=row.state, step=int(row.step), failures=int(row.failures), window_start=row.window_start,
        updated_at=row.updated_at,
    )  # fmt: skip


def _running(store: Store, deployment: str) -> Rollout | None:
    with store.db.read() as conn:
        row = conn.execute(
            select(rollouts).where(rollouts.c.deployment == deployment, rollouts.c.state == "running")
        ).first()
    return None if row is None else _from_row(row)


def get_rollout(store: Store, deployment: str) -> Rollout | None:
    """The newest rollout of `deployment` (running or finished), or None."""
    with store.db.read() as conn:
        row = conn.execute(
            select(rollouts).where(rollouts.c.deployment == deployment).order_by(rollouts.c.id.desc()).limit(1)
        ).first()
    return None if row is None else _from_row(row)


def step_rollouts(store: Store, *, now: datetime | None = None) -> list[RolloutDecision]:
    """Check every running rollout whose interval has elapsed, and act on each: the controller's one tick.

    Args:
        store: The workspace store.
        now: The time of this tick (default: the store's clock); tests pass one to step through intervals.

    Returns:
        The decisions taken, one per rollout checked.
    """
    now = now or store.clock()
    with store.db.read() as conn:
        running = [_from_row(r) for r in conn.execute(select(rollouts).where(rollouts.c.state == "running"))]
    decisions = []
    for rollout in running:
        # Due once per interval: since the window started, and since the last check (a wait keeps its window).
        last = max(rollout.window_start, rollout.updated_at)
        if now - last >= timedelta(seconds=rollout.interval_s) and _claim(store, rollout, now):
            try:
                decisions.append(_check(store, rollout, now))
            finally:
                _release(store, rollout)
    return decisions


# How long a claimed check keeps other controllers off; a controller that died mid-check delays the rollout this long.
CHECK_LEASE = timedelta(minutes=5)


def _claim(store: Store, rollout: Rollout, now: datetime) -> bool:
    """Take this check: False when another controller (a gateway replica, a `keel monitor watch`) took it first.

    A compare-and-set on the row as it was read (`updated_at`, `step`), which also takes a lease: while
    one controller checks, a second that read the row after the claim finds the lease and leaves it,
    even when the check outlasts the interval.
    """
    with store.db.write() as conn:
        claimed = conn.execute(
            update(rollouts)
            .where(rollouts.c.id == rollout.id, rollouts.c.state == "running",
                   rollouts.c.updated_at == rollout.updated_at, rollouts.c.step == rollout.step,
                   or_(rollouts.c.lease_until.is_(None), rollouts.c.lease_until <= now))
            .values(updated_at=now, lease_until=now + CHECK_LEASE)
        ).rowcount  # fmt: skip
    return claimed == 1


def _release(store: Store, rollout: Rollout) -> None:
    with store.db.write() as conn:
        conn.execute(update(rollouts).where(rollouts.c.id == rollout.id).values(lease_until=None))


def _check(store: Store, rollout: Rollout, now: datetime) -> RolloutDecision:
    try:
        routes = get_deployment(store, rollout.deployment).routes
    except NotFoundError:
        routes = ()
    if len(routes) != 2 or routes[-1].model != rollout.canary:
        return _finish(store, rollout, now, "cancel", "cancelled", "the deployment's routes were changed by hand", {})
    canary = trace_observations(store, rollout.deployment, rollout.window_start, now, model_version=rollout.canary)
    stable = trace_observations(store, rollout.deployment, rollout.window_start, now, model_version=rollout.stable)
    evidence: dict[str, Any] = {
        "rollout": rollout.id, "window": [format_time(rollout.window_start), format_time(now)],
        "weight": rollout.weight, "canary": {"model": rollout.canary, "requests": len(canary)},
        "stable": {"model": rollout.stable, "requests": len(stable)},
    }  # fmt: skip
    if len(canary) < rollout.min_requests:
        reason = f"{len(canary)} canary requests in the window; waiting for {rollout.min_requests}"
        evidence.update(decision="wait", reason=reason)
        record_analysis(store, rollout.deployment, evidence)  # the window keeps growing
        return RolloutDecision(rollout.id, rollout.deployment, "wait", rollout.weight, reason, evidence)
    results = [check_guard(parse_guard(g), canary, stable, rollout.alpha) for g in rollout.guards]
    evidence["guards"] = [r.to_json() for r in results]
    confirmed = [r for r in results if r.confirmed]
    breached = [r for r in results if r.breached]
    if confirmed or (breached and rollout.failures + 1 >= rollout.max_failures):
        reason = "; ".join(r.sentence for r in (confirmed or breached))
        evidence.update(decision="rollback", reason=reason)
        abort_canary(store, rollout.deployment, evidence=evidence)
        return _finish(store, rollout, now, "rollback", "rolled_back", reason, evidence)
    if breached:
        reason = "; ".join(r.sentence for r in breached) + " (not yet pinned on the canary: failure "
        reason += f"{rollout.failures + 1} of {rollout.max_failures})"
        evidence.update(decision="hold", reason=reason)
        record_analysis(store, rollout.deployment, evidence)
        _update(store, rollout, now, failures=rollout.failures + 1)
        return RolloutDecision(rollout.id, rollout.deployment, "hold", rollout.weight, reason, evidence)
    reason = "every guard held: " + "; ".join(r.sentence for r in results)
    following = rollout.step + 1
    if following >= len(rollout.steps) - 1:
        evidence.update(decision="promote", reason=reason)
        promote_deployment(store, rollout.deployment, evidence=evidence)
        return _finish(store, rollout, now, "promote", "promoted", reason, evidence)
    weight = rollout.steps[following]
    evidence.update(decision="step", reason=reason, to_weight=weight)
    current = routes[-1].model_dump(exclude={"model", "weight"}, exclude_defaults=True)
    canary_deployment(store, rollout.deployment, rollout.canary, weight=weight, route=current, evidence=evidence)
    _update(store, rollout, now, step=following, failures=0)
    return RolloutDecision(rollout.id, rollout.deployment, "step", weight, reason, evidence)


def _update(store: Store, rollout: Rollout, now: datetime, **values: Any) -> None:
    with store.db.write() as conn:
        conn.execute(
            update(rollouts).where(rollouts.c.id == rollout.id).values(window_start=now, updated_at=now, **values)
        )


def _finish(
    store: Store, rollout: Rollout, now: datetime, decision: Any, state: str, reason: str, evidence: dict[str, Any]
) -> RolloutDecision:
    with store.db.write() as conn:
        conn.execute(update(rollouts).where(rollouts.c.id == rollout.id).values(state=state, updated_at=now))
        store.audit(conn, f"rollout.{state}", f"deployment:{rollout.deployment}",
                    {"rollout": rollout.id, "reason": reason})  # fmt: skip
    weight = 100 if state == "promoted" else 0
    return RolloutDecision(rollout.id, rollout.deployment, decision, weight, reason, evidence)


def _values(metric: str, observations: list[Observation]) -> list[float]:
    if metric == "error_rate":
        return [1.0 if (o.status or 0) >= 400 else 0.0 for o in observations]
    if metric == "feedback":
        return [o.feedback for o in observations if o.feedback is not None]
    return [o.latency_ms for o in observations if o.latency_ms is not None]


def _summary(metric: str, values: list[float]) -> float | None:
    if not values:
        return None
    if metric in ("error_rate", "feedback"):
        return sum(values) / len(values)
    return percentile(sorted(values), {"p50_ms": 0.5, "p95_ms": 0.95, "p99_ms": 0.99}[metric])


def check_guard(guard: Guard, canary: list[Observation], stable: list[Observation], alpha: float) -> GuardResult:
    """Check one guard on the canary's window and test whether the canary is worse than stable.

    Examples:
        >>> ok = [Observation(status=200, latency_ms=10.0)] * 100
        >>> check_guard(parse_guard("error_rate<1%"), ok, ok, 0.05).breached
        False
    """
    a, b = _values(guard.metric, canary), _values(guard.metric, stable)
    value, base = _summary(guard.metric, a), _summary(guard.metric, b)
    limit = guard.limit(base)
    if value is None or limit is None:
        missing = "the canary" if value is None else "stable"
        sentence = f"{guard.text}: no {guard.metric} data for {missing} in this window; not judged"
        return GuardResult(guard.text, value, base, limit, False, None, False, sentence)
    breached = not _OPS[guard.op](value, limit)
    p = None
    if b:
        if guard.metric == "error_rate":
            bad_a, bad_b = round(sum(a)), round(sum(b))
            table = [[bad_a, len(a) - bad_a], [bad_b, len(b) - bad_b]]
            p = float(stats.fisher_exact(table, alternative="greater" if guard.higher_is_worse else "less")[1])
        elif len(set(a) | set(b)) > 1:
            side = "greater" if guard.higher_is_worse else "less"
            p = float(stats.mannwhitneyu(a, b, alternative=side).pvalue)
        else:
            p = 1.0
    confirmed = breached and p is not None and p < alpha
    shown = "p n/a" if p is None else ("p<0.001" if p < 0.001 else f"p={p:.3f}")
    fmt = _formatter(guard.metric)
    sentence = (
        f"{guard.text}: canary {fmt(value)} vs stable {fmt(base) if base is not None else 'n/a'}, limit {fmt(limit)} "
        f"— {'breached' if breached else 'held'} (canary worse than stable: {shown})"
    )
    return GuardResult(guard.text, value, base, limit, breached, p, confirmed, sentence)


def _formatter(metric: str) -> Callable[[float], str]:
    if metric == "error_rate":
        return lambda v: f"{v:.2%}"
    if metric == "feedback":
        return lambda v: f"{v:.3f}"
    return lambda v: f"{v:.0f} ms"
