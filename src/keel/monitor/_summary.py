"""Summaries of traces per deployment and model version: latency percentiles, tokens, cost, errors, feedback.

Latency percentiles are computed here from the latencies of each group (SQLite has no percentile
function), reading a few columns only. With `by`, every row is one time bucket of one group: a time
series for charts.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from keel.core.clock import format_time
from keel.core.errors import InputError
from keel.store import Store
from keel.store.schema import feedback, traces

__all__ = ["SummaryRow", "percentile", "summarize"]


@dataclass(frozen=True, slots=True)
class SummaryRow:
    """Traffic of one (deployment, model version) pair."""

    deployment: str
    model_version: str | None
    requests: int
    errors: int
    error_rate: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    tokens_in: int
    tokens_out: int
    cost: float
    cache_hits: int
    feedback: int = 0
    feedback_score: float | None = None
    judge_score: float | None = None
    start: datetime | None = None

    def to_json(self) -> dict[str, object]:
        """A JSON-ready dict (`start` only in a time series)."""
        data = asdict(self)
        if self.start is None:
            del data["start"]
        else:
            data["start"] = format_time(self.start)
        return data


def percentile(sorted_values: list[float], q: float) -> float:
    """The `q`-quantile (0..1) of sorted values, interpolated linearly; 0 for none.

    Examples:
        >>> percentile([1.0, 2.0, 3.0, 4.0], 0.5)
        2.5
    """
    if not sorted_values:
        return 0.0
    pos = (len(sorted_values) - 1) * q
    low = int(pos)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (pos - low)


Group = tuple[datetime | None, str, str | None]
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _bucket(at: datetime, seconds: float | None) -> datetime | None:
    if seconds is None:
        return None
    offset = (at - _EPOCH).total_seconds()
    return _EPOCH + timedelta(seconds=offset - offset % seconds)


def summarize(
    store: Store,
    *,
    deployment: str | None = None,
    since: datetime | None = None,
    by: timedelta | None = None,
) -> list[SummaryRow]:
    """Per deployment and model version: requests, error rate, p50/p95/p99 latency, tokens, cost, feedback.

    Args:
        store: The workspace store.
        deployment: Only this deployment.
        since: Only traces and feedback at or after this time.
        by: Also group by time buckets of this length (aligned to the epoch, UTC), for a time series.

    Returns:
        Rows sorted by bucket start, deployment, then model version. Feedback counts every piece
        given in the window; `feedback_score` and `judge_score` are the mean human and judge scores.
    """
    if by is not None and by.total_seconds() <= 0:
        raise InputError(f"expected a positive bucket length; got {by}")
    seconds = by.total_seconds() if by is not None else None
    latencies, totals = _trace_groups(store, deployment, since, seconds)
    scores = _feedback_groups(store, deployment, since, seconds)
    rows = []
    for group in sorted(set(latencies) | set(scores), key=lambda g: (g[0] or _EPOCH, g[1], g[2] or "")):
        values = sorted(latencies.get(group, []))
        errors, tokens_in, tokens_out, cost, hits = totals.get(group, [0, 0, 0, 0.0, 0])
        count, human, judge = scores.get(group, (0, [], []))
        rows.append(
            SummaryRow(
                deployment=group[1],
                model_version=group[2],
                requests=len(values),
                errors=int(errors),
                error_rate=errors / len(values) if values else 0.0,
                p50_ms=percentile(values, 0.50),
                p95_ms=percentile(values, 0.95),
                p99_ms=percentile(values, 0.99),
                tokens_in=int(tokens_in),
                tokens_out=int(tokens_out),
                cost=round(cost, 10),
                cache_hits=int(hits),
                feedback=count,
                feedback_score=round(sum(human) / len(human), 6) if human else None,
                judge_score=round(sum(judge) / len(judge), 6) if judge else None,
                start=group[0],
            )
        )
    return rows


def _trace_groups(
    store: Store, deployment: str | None, since: datetime | None, seconds: float | None
) -> tuple[dict[Group, list[float]], dict[Group, list[Any]]]:
    query = select(
        traces.c.at,
        traces.c.deployment,
        traces.c.model_version,
        traces.c.status,
        traces.c.latency_ms,
        traces.c.tokens_in,
        traces.c.tokens_out,
        traces.c.cost,
        traces.c.cache_hit,
    )
    if deployment is not None:
        query = query.where(traces.c.deployment == deployment)
    if since is not None:
        query = query.where(traces.c.at >= since)
    latencies: dict[Group, list[float]] = defaultdict(list)
    totals: dict[Group, list[Any]] = defaultdict(lambda: [0, 0, 0, 0.0, 0])
    with store.db.read() as conn:
        for row in conn.execute(query):
            group = (_bucket(row.at, seconds), row.deployment, row.model_version)
            latencies[group].append(float(row.latency_ms))
            total = totals[group]
            total[0] += int(row.status) >= 400
            total[1] += int(row.tokens_in)
            total[2] += int(row.tokens_out)
            total[3] += float(row.cost)
            total[4] += int(row.cache_hit)
    return latencies, totals


def _feedback_groups(
    store: Store, deployment: str | None, since: datetime | None, seconds: float | None
) -> dict[Group, tuple[int, list[float], list[float]]]:
    query = select(feedback.c.at, feedback.c.deployment, feedback.c.model_version, feedback.c.score,
                   feedback.c.source).where(feedback.c.deployment.is_not(None))  # fmt: skip
    if deployment is not None:
        query = query.where(feedback.c.deployment == deployment)
    if since is not None:
        query = query.where(feedback.c.at >= since)
    found: dict[Group, tuple[int, list[float], list[float]]] = {}
    with store.db.read() as conn:
        for row in conn.execute(query):
            group = (_bucket(row.at, seconds), row.deployment, row.model_version)
            count, human, judge = found.get(group, (0, [], []))
            if row.score is not None:
                (judge if row.source == "judge" else human).append(float(row.score))
            found[group] = (count + 1, human, judge)
    return found
