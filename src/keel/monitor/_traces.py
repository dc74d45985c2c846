"""Traces: one row per served request, written in batches off the request path, and read back.

`TraceWriter` takes traces from the gateway through a bounded queue: when writing falls behind,
`put` waits (back-pressure) instead of dropping, and `close` drains what is queued. Each batch
is one transaction that also adds the lineage edges `model-version:… → trace:<id>` (`served`).
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select

from keel.core.clock import format_time
from keel.core.errors import NotFoundError
from keel.core.ids import canonical_json
from keel.store import Edge, Store, add_edges
from keel.store.schema import traces

__all__ = ["Trace", "TraceWriter", "get_trace", "list_traces"]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Trace:
    """One served request."""

    id: str
    at: datetime
    deployment: str
    operation: str
    status: int
    latency_ms: float
    model_version: str | None = None
    prompt_version: str | None = None
    key_id: str | None = None
    error: str | None = None
    tokens_in: int = 0
    tokens_out: int = 0
    ttft_ms: float | None = None
    cost: float = 0.0
    cache_hit: bool = False
    flags: list[str] = field(default_factory=list)

    @property
    def node(self) -> str:
        """The trace's lineage node id."""
        return f"trace:{self.id}"

    def to_row(self) -> dict[str, Any]:
        """The `traces` row."""
        row = asdict(self)
        row["cache_hit"] = int(self.cache_hit)
        row["flags"] = canonical_json(self.flags)
        return row

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {**asdict(self), "at": format_time(self.at)}


def _from_row(row: Any) -> Trace:
    values = dict(row._mapping)
    values["cache_hit"] = bool(values["cache_hit"])
    values["flags"] = json.loads(values["flags"])
    return Trace(**values)


class TraceWriter:
    """Writes traces in batches from a background task; bounded, lossless, flushed on close.

    Args:
        store: The workspace store.
        queue_size: Traces that may wait; beyond it `put` waits for the writer.
        batch_size: Most traces per transaction.

    Examples:
        >>> writer = TraceWriter(store)  # doctest: +SKIP
        >>> await writer.start(); await writer.put(trace); await writer.close()  # doctest: +SKIP
    """

    def __init__(self, store: Store, *, queue_size: int = 10_000, batch_size: int = 1_000) -> None:
        self._store = store
        self._batch_size = batch_size
        self._queue: asyncio.Queue[Trace] = asyncio.Queue(maxsize=queue_size)
        self._task: asyncio.Task[None] | None = None
        self.written = 0

    @property
    def running(self) -> bool:
        """Whether the background task is alive."""
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        """Start the background task (in the running event loop)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="keel-trace-writer")

    async def put(self, trace: Trace) -> None:
        """Queue a trace; waits while the queue is full."""
        await self._queue.put(trace)

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self._batch_size and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            await self._write_until_done(batch)
            for _ in batch:
                self._queue.task_done()

    async def _write_until_done(self, batch: list[Trace]) -> None:
        delay = 0.1
        while True:
            try:
                await asyncio.to_thread(self.write, batch)
                return
            except Exception:  # the database is down or locked: keep the batch and try again
                log.exception("writing %d traces failed; retrying in %.1fs", len(batch), delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    def write(self, batch: list[Trace]) -> None:
        """Insert traces and their lineage edges in one transaction (the writer task calls this)."""
        if not batch:
            return
        with self._store.db.write() as conn:
            conn.execute(traces.insert(), [t.to_row() for t in batch])
            edges = [Edge(f"model-version:{t.model_version}", t.node, "served") for t in batch if t.model_version]
            add_edges(conn, edges, at=batch[-1].at)
        self.written += len(batch)

    async def flush(self) -> None:
        """Wait until every queued trace is written."""
        await self._queue.join()

    async def close(self) -> None:
        """Write what is queued, then stop."""
        if self._task is None:
            return
        await self.flush()
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass
        self._task = None


def list_traces(
    store: Store, *, deployment: str | None = None, errors_only: bool = False, limit: int = 50
) -> list[Trace]:
    """The newest traces first, optionally of one deployment or only failed ones."""
    query = select(traces).order_by(traces.c.at.desc(), traces.c.id.desc()).limit(limit)
    if deployment is not None:
        query = query.where(traces.c.deployment == deployment)
    if errors_only:
        query = query.where(traces.c.status >= 400)
    with store.db.read() as conn:
        return [_from_row(row) for row in conn.execute(query)]


def get_trace(store: Store, trace_id: str) -> Trace:
    """One trace by id.

    Raises:
        NotFoundError: No trace has this id.
    """
    with store.db.read() as conn:
        row = conn.execute(select(traces).where(traces.c.id == trace_id)).first()
    if row is None:
        raise NotFoundError(f"no trace with id {trace_id!r}", hint="see `keel trace list`")
    return _from_row(row)
