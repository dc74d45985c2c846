from __future__ import annotations

import asyncio
import json
import time
from datetime import timedelta
from pathlib import Path

from keel.core.ids import new_ulid
from keel.monitor import Trace, TraceWriter, get_trace, list_traces, storable
from keel.store import Store
from keel.store.schema import traces


def _trace(store: Store, i: int = 0, **fields: object) -> Trace:
    values: dict[str, object] = {
        "id": new_ulid(),
        "at": store.clock() + timedelta(milliseconds=i),
        "deployment": "chat",
        "operation": "chat",
        "status": 200,
        "latency_ms": 1.0,
    }
    values.update(fields)
    return Trace(**values)  # type: ignore[arg-type]


async def _until(check: object, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.02)


def test_storable_escapes_surrogates_and_nul_and_bounds_length() -> None:
    assert storable("\ud800") == "\\ud800"
    assert storable("a\x00b") == "a\\x00b"
    assert storable("é" * 300, limit=10) == "é" * 9 + "…"
    assert storable("plain") == "plain"
    fixed = Trace(id="x", at=None, deployment="\udfff" * 200, operation="chat", status=401, latency_ms=0,  # type: ignore[arg-type]
                  prompt_version="p\x00", flags=["\ud800"] * 40).storable()  # fmt: skip
    assert len(fixed.deployment) == 128 and fixed.deployment.startswith("\\udfff")
    assert fixed.prompt_version == "p\\x00" and fixed.flags == ["\\ud800"] * 32
    fixed.deployment.encode("utf-8")  # no surrogate left


def test_a_trace_the_database_refuses_is_quarantined_and_never_blocks_the_writer(store: Store) -> None:
    # `put` makes every field storable except the id the gateway makes itself: a bad id is what no fix can store.
    good = [_trace(store, i) for i in range(5)]
    poison = _trace(store, 9, id="\ud800" + new_ulid()[1:])

    async def run() -> TraceWriter:
        writer = TraceWriter(store, batch_size=10)
        await writer.start()
        for t in [*good[:2], poison, *good[2:]]:
            await writer.put(t)
        await asyncio.wait_for(writer.flush(), 30)
        assert writer.health() is None
        later = _trace(store, 20)
        await writer.put(later)  # the writer still writes after the poison
        await asyncio.wait_for(writer.flush(), 30)
        await writer.close(timeout_s=10)
        return writer

    writer = asyncio.run(run())
    assert (writer.written, writer.quarantined, writer.spilled) == (6, 1, 0)
    assert len(list_traces(store, limit=100)) == 6 and get_trace(store, good[3].id) == good[3]
    (line,) = (writer.folder / "quarantine.jsonl").read_text(encoding="ascii").splitlines()
    kept = json.loads(line)
    assert kept["trace"]["id"] == poison.id and "surrogates not allowed" in kept["reason"]


def test_database_down_writer_reports_failing_spills_on_close_and_next_start_writes_all(store: Store) -> None:
    with store.db.write() as conn:
        traces.drop(conn)  # the database refuses every write, as an outage would
    made = [_trace(store, i) for i in range(5)]

    async def outage() -> TraceWriter:
        writer = TraceWriter(store, queue_size=2, batch_size=2)
        await writer.start()
        await writer.put(made[0])
        await _until(lambda: writer.health() is not None)
        assert "failed to write" in (writer.health() or "")
        for t in made[1:]:  # the queue is full and the writer failing: no put waits, the rest overflow to a file
            await asyncio.wait_for(writer.put(t), 10)
        await writer.close(timeout_s=0.5)
        return writer

    down = asyncio.run(outage())
    assert down.spilled == 5 and down.written == 0
    assert len(list(down.folder.glob("spill-*.jsonl"))) == 2 and not list(down.folder.glob("overflow-*"))
    with store.db.write() as conn:
        traces.create(conn)

    async def back() -> TraceWriter:
        writer = TraceWriter(store)
        await writer.start()
        await _until(lambda: writer.written == 5)
        await writer.close(timeout_s=10)
        return writer

    up = asyncio.run(back())
    assert up.written == 5 and not list(up.folder.glob("*.jsonl"))
    assert sorted(t.id for t in list_traces(store, limit=10)) == sorted(t.id for t in made)


def test_a_write_held_up_by_a_lock_is_reported_stuck_then_completes(workspace: Path) -> None:
    import sqlite3

    from keel.core.settings import load_settings
    from keel.store import open_store

    store = open_store(load_settings(workspace))
    trace = _trace(store)
    locker = sqlite3.connect(workspace / ".keel" / "keel.db", isolation_level=None)

    async def run() -> list[str | None]:
        writer = TraceWriter(store, stuck_after_s=0.2)
        await writer.start()
        locker.execute("BEGIN EXCLUSIVE")  # another process holds the database: the write waits on it
        await writer.put(trace)
        await _until(lambda: writer.health() is not None)
        seen = [writer.health()]
        locker.execute("COMMIT")
        await asyncio.wait_for(writer.flush(), 60)
        seen.append(writer.health())
        await writer.close(timeout_s=10)
        return seen

    try:
        stuck, after = asyncio.run(run())
    finally:
        locker.close()
        store.close()
    assert stuck is not None and "stuck" in stuck and after is None
    reopened = open_store(load_settings(workspace))
    assert get_trace(reopened, trace.id).id == trace.id
    reopened.close()


def test_the_writer_keeps_one_connection_and_opens_another_when_the_database_drops_it(store: Store) -> None:
    from sqlalchemy import event, text

    checkouts: list[int] = []
    event.listen(store.db.engine, "checkout", lambda *_: checkouts.append(1))
    made = [_trace(store, i) for i in range(4)]

    async def run() -> TraceWriter:
        writer = TraceWriter(store)
        await writer.start()
        for t in made[:3]:  # three batches, one connection (a connection per batch cost a busy gateway ~13%)
            await writer.put(t)
            await asyncio.wait_for(writer.flush(), 30)
        assert len(checkouts) == 1
        if store.db.dialect == "postgresql":  # the server ends the writer's session between batches
            loop = asyncio.get_running_loop()
            conn = writer._conn
            assert conn is not None
            pid = await loop.run_in_executor(writer._executor, lambda: conn.scalar(text("select pg_backend_pid()")))
            with store.db.read() as other:
                other.execute(text("select pg_terminate_backend(:pid)"), {"pid": pid})
        await writer.put(made[3])
        await asyncio.wait_for(writer.flush(), 60)
        assert writer.health() is None
        await writer.close(timeout_s=10)
        return writer

    writer = asyncio.run(run())
    assert writer.written == 4 and writer.spilled == 0
    assert sorted(t.id for t in list_traces(store, limit=10)) == sorted(t.id for t in made)
    if store.db.dialect == "postgresql":
        assert writer.last_error is not None  # the write on the dropped session failed, and was retried
