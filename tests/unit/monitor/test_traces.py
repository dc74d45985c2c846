from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from keel.core.errors import NotFoundError
from keel.core.ids import new_ulid
from keel.monitor import Trace, TraceWriter, get_trace, list_traces, percentile, summarize
from keel.registry import register_model
from keel.store import Store, walk


def _trace(store: Store, i: int, **fields: object) -> Trace:
    values: dict[str, object] = {
        "id": new_ulid(),
        "at": store.clock() + timedelta(milliseconds=i),
        "deployment": "chat",
        "operation": "chat",
        "status": 200,
        "latency_ms": float(i + 1),
        "model_version": "chat@v1",
        "tokens_in": 2,
        "tokens_out": 3,
        "cost": 0.5,
    }
    values.update(fields)
    return Trace(**values)  # type: ignore[arg-type]


def test_writer_applies_back_pressure_and_loses_nothing(store: Store, tmp_path: object) -> None:
    folder = store.settings.workspace / "model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    register_model(store, "chat", folder)
    made = [_trace(store, i) for i in range(200)]

    async def run() -> int:
        writer = TraceWriter(store, queue_size=4, batch_size=7)
        await writer.start()
        await asyncio.gather(*(writer.put(t) for t in made))  # 200 puts into a queue of 4
        await writer.close()
        return writer.written

    assert asyncio.run(run()) == 200
    listed = list_traces(store, limit=500)
    assert len(listed) == 200 and listed[0].id == made[-1].id  # newest first
    assert get_trace(store, made[0].id) == made[0]
    with store.db.read() as conn:
        downstream = {hit.node for hit in walk(conn, "model-version:chat@v1", "downstream")}
    assert downstream == {t.node for t in made}
    with pytest.raises(NotFoundError, match="no trace with id"):
        get_trace(store, "nope")


def test_summary_per_deployment_and_version(store: Store) -> None:
    writer = TraceWriter(store)
    batch = [_trace(store, i, model_version=None) for i in range(100)]
    batch += [_trace(store, i, deployment="embed", operation="embeddings", status=502, error="api_error",
                     model_version=None, cache_hit=i == 0) for i in range(4)]  # fmt: skip
    writer.write(batch)
    chat, embed = summarize(store)
    assert (chat.deployment, chat.requests, chat.errors, chat.error_rate) == ("chat", 100, 0, 0.0)
    assert (chat.p50_ms, chat.p95_ms, chat.p99_ms) == (pytest.approx(50.5), pytest.approx(95.05), pytest.approx(99.01))
    assert (chat.tokens_in, chat.tokens_out, chat.cost) == (200, 300, pytest.approx(50.0))
    assert (embed.errors, embed.error_rate, embed.cache_hits) == (4, 1.0, 1)
    assert [r.deployment for r in summarize(store, deployment="embed")] == ["embed"]
    assert summarize(store, since=store.clock() + timedelta(days=1)) == []
    assert len(list_traces(store, errors_only=True)) == 4
    assert percentile([], 0.5) == 0.0


def test_list_traces_pages_by_keyset_through_ties(store: Store) -> None:
    at = store.clock()
    written = [_trace(store, i, at=at + timedelta(seconds=i // 3)) for i in range(7)]  # three share each second
    TraceWriter(store).write([t.storable() for t in written])
    pages, after = [], None
    while page := list_traces(store, limit=2, after=after):
        pages.append([t.id for t in page])
        after = page[-1].id
    newest_first = [t.id for t in sorted(written, key=lambda t: (t.at, t.id), reverse=True)]
    assert [i for p in pages for i in p] == newest_first and len(pages) == 4
