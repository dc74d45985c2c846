"""Summaries of traces per deployment and model version: latency percentiles, tokens, cost, errors.

Rows are grouped in SQL; latency percentiles are computed here from the latencies of each group
(SQLite has no percentile function), reading two columns only.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass
from datetime import datetime

from sqlalchemy import select

from keel.store import Store
from keel.store.schema import traces

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

    def to_json(self) -> dict[str, object]:
        """A JSON-ready dict."""
        return asdict(self)


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


def summarize(store: Store, *, deployment: str | None = None, since: datetime | None = None) -> list[SummaryRow]:
    """Per deployment and model version: requests, error rate, p50/p95/p99 latency, tokens, cost.

    Args:
        store: The workspace store.
        deployment: Only this deployment.
        since: Only traces at or after this time.

    Returns:
        Rows sorted by deployment, then model version.
    """
    query = select(
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
    latencies: dict[tuple[str, str | None], list[float]] = defaultdict(list)
    totals: dict[tuple[str, str | None], list[float]] = defaultdict(lambda: [0, 0, 0, 0.0, 0])
    with store.db.read() as conn:
        for row in conn.execute(query):
            group = (row.deployment, row.model_version)
            latencies[group].append(float(row.latency_ms))
            total = totals[group]
            total[0] += int(row.status) >= 400
            total[1] += int(row.tokens_in)
            total[2] += int(row.tokens_out)
            total[3] += float(row.cost)
            total[4] += int(row.cache_hit)
    rows = []
    for group in sorted(latencies, key=lambda g: (g[0], g[1] or "")):
        values = sorted(latencies[group])
        errors, tokens_in, tokens_out, cost, hits = totals[group]
        rows.append(
            SummaryRow(
                deployment=group[0],
                model_version=group[1],
                requests=len(values),
                errors=int(errors),
                error_rate=errors / len(values),
                p50_ms=percentile(values, 0.50),
                p95_ms=percentile(values, 0.95),
                p99_ms=percentile(values, 0.99),
                tokens_in=int(tokens_in),
                tokens_out=int(tokens_out),
                cost=round(cost, 10),
                cache_hits=int(hits),
            )
        )
    return rows
