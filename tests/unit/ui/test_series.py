"""The deployment page's SQL aggregates against `keel.monitor.summarize`'s exact Python computation."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest

from keel.core.ids import new_ulid
from keel.monitor import Trace, TraceWriter, record_feedback, summarize
from keel.store import Store
from keel.ui._series import LATENCY_BOUNDS, RATIO, approx_percentile, latency_bucket, series

pytest.importorskip("fastapi")


def _traces(store: Store, latencies: list[float], *, spread: timedelta, seed: int = 3) -> list[Trace]:
    rng = random.Random(seed)
    now = store.clock()
    made = [
        Trace(id=new_ulid(), at=now - spread * rng.random(), deployment="chat", operation="chat",
              status=rng.choice([200, 200, 200, 429, 500]), latency_ms=latency,
              model_version=rng.choice(["chat@v1", "chat@v2"]), tokens_in=rng.randint(1, 500),
              tokens_out=rng.randint(0, 900), cost=rng.random() / 1000, cache_hit=rng.random() < 0.2)
        for latency in latencies
    ]  # fmt: skip
    TraceWriter(store).write([t.storable() for t in made])
    return made


def test_series_equals_summarize_within_the_bucket_error(store: Store) -> None:
    rng = random.Random(11)
    # Latencies from 0 to minutes (log-normal around 300 ms, some cache-fast under 1 ms).
    latencies = [rng.lognormvariate(5.7, 1.2) for _ in range(1500)] + [rng.random() for _ in range(50)]
    made = _traces(store, latencies, spread=timedelta(hours=3))
    for t in made[:40]:
        record_feedback(store, t.id, score=rng.choice(["up", "down"]))
    record_feedback(store, made[50].id, score=0.25, source="judge", label="answer_relevance")
    since = store.clock() - timedelta(hours=4)
    by = timedelta(minutes=5)

    exact = {(r.start, r.model_version): r for r in summarize(store, deployment="chat", since=since, by=by)}
    approx = {(r.start, r.model_version): r for r in series(store, "chat", since, by)}

    assert set(approx) == set(exact) and len(exact) > 40
    for key, e in exact.items():
        a = approx[key]
        assert (a.requests, a.errors, a.tokens_in, a.tokens_out, a.cache_hits) == (
            e.requests, e.errors, e.tokens_in, e.tokens_out, e.cache_hits)  # fmt: skip
        assert a.error_rate == e.error_rate and a.cost == pytest.approx(e.cost, rel=1e-9, abs=1e-12)
        assert (a.feedback, a.feedback_score, a.judge_score) == (e.feedback, e.feedback_score, e.judge_score)
        for approximate, true in ((a.p50_ms, e.p50_ms), (a.p95_ms, e.p95_ms), (a.p99_ms, e.p99_ms)):
            if true >= 1.0:
                assert true / RATIO <= approximate <= true * RATIO, (key, approximate, true)
            else:
                assert abs(approximate - true) < 1.0, (key, approximate, true)


def test_sql_latency_bucket_matches_python_at_the_bounds(store: Store) -> None:
    """A latency exactly on a bound, or just below it, lands in the bucket Python's bisect gives."""
    picks = [0.0, 0.5, *LATENCY_BOUNDS[::37], LATENCY_BOUNDS[-1], LATENCY_BOUNDS[-1] * 10]
    latencies = [x for p in picks for x in (p, p * (1 - 1e-9))]
    now = store.clock()
    # One trace per hour, so each bucket's p50 is its one latency's estimate.
    made = [Trace(id=new_ulid(), at=now - timedelta(hours=i, minutes=1), deployment="chat", operation="chat",
                  status=200, latency_ms=x, model_version="chat@v1", tokens_in=1, tokens_out=1, cost=0.0)
            for i, x in enumerate(latencies)]  # fmt: skip
    TraceWriter(store).write([t.storable() for t in made])
    rows = series(store, "chat", now - timedelta(hours=len(latencies) + 1), timedelta(hours=1))
    got = sorted(r.p50_ms for r in rows)
    expected = sorted(approx_percentile([(latency_bucket(x), 1)], 0.5) for x in latencies)
    assert got == pytest.approx(expected, rel=1e-12)


def test_series_of_an_empty_window_and_bad_bucket(store: Store) -> None:
    assert series(store, "nothing", store.clock() - timedelta(hours=1), timedelta(minutes=5)) == []
    with pytest.raises(Exception, match="whole seconds"):
        series(store, "chat", store.clock(), timedelta(milliseconds=1500))
