"""The trace writer: a bounded queue drained in batches by one background task, which nothing can stall.

- A batch is one transaction that also adds the lineage edges `model-version:… → trace:<id>`.
- The database down or locked: the batch is kept and retried with backoff; `health()` says so.
- A trace the database refuses on its own (a value it cannot hold) is quarantined: counted,
  logged and appended as escaped JSON to `.keel/traces/quarantine.jsonl`; the others are written.
- `close()` waits a bounded time, then spills whatever is still queued to `.keel/traces/spill-*.jsonl`;
  the next writer started on the workspace writes spilled traces first. Nothing is dropped silently.
It knows rows and files only: what a trace holds is decided by the gateway.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from sqlalchemy import exc as sa_exc
from sqlalchemy import select

from keel.core.clock import format_time
from keel.core.ids import new_ulid
from keel.monitor._traces import Trace, trace_from_json
from keel.store import Edge, Store, add_edges
from keel.store.schema import traces

__all__ = ["TraceWriter"]

log = logging.getLogger(__name__)

# Errors that say a row holds a value the database refuses. Any other error (unreachable, locked,
# a missing table) says the database is unwell: the batch is kept and retried, never quarantined.
_BAD_ROW = (ValueError, TypeError, sa_exc.DataError, sa_exc.IntegrityError)


def _bad_row(exc: BaseException) -> bool:
    return isinstance(exc, _BAD_ROW) or isinstance(getattr(exc, "orig", None), _BAD_ROW)


_QUARANTINE_MAX_BYTES = 64 * 1024 * 1024


class TraceWriter:
    """Writes traces in batches from a background task; bounded, lossless, never stalled by one bad trace.

    Args:
        store: The workspace store.
        queue_size: Traces that may wait; beyond it `put` waits for the writer (back-pressure).
        batch_size: Most traces per transaction.
        folder: Where quarantined and spilled traces go; `.keel/traces` of the workspace by default.
        stuck_after_s: A write running longer than this makes `health()` report the writer stuck.
        on_written: Called (in the writer's thread) with each batch once it is stored, e.g. an OTLP export.

    Examples:
        >>> writer = TraceWriter(store)  # doctest: +SKIP
        >>> await writer.start(); await writer.put(trace); await writer.close(timeout_s=10)  # doctest: +SKIP
    """

    def __init__(
        self,
        store: Store,
        *,
        queue_size: int = 10_000,
        batch_size: int = 1_000,
        folder: Path | None = None,
        stuck_after_s: float = 30.0,
        on_written: Callable[[list[Trace]], None] | None = None,
    ) -> None:
        self._store = store
        self._batch_size = batch_size
        self._queue: asyncio.Queue[Trace] = asyncio.Queue(maxsize=queue_size)
        self._task: asyncio.Task[None] | None = None
        self._inflight: list[Trace] = []
        self._write_started: float | None = None
        self._failing_since: float | None = None
        self._closed = False
        self._overflow_file: IO[str] | None = None
        self._overflow_path: Path | None = None
        self.folder = folder or store.settings.state_dir / "traces"
        self.stuck_after_s = stuck_after_s
        self.on_written = on_written
        self.last_error: str | None = None
        self.written = 0
        self.quarantined = 0
        self.spilled = 0

    @property
    def running(self) -> bool:
        """Whether the background task is alive."""
        return self._task is not None and not self._task.done()

    @property
    def queued(self) -> int:
        """Traces waiting in the queue."""
        return self._queue.qsize()

    def health(self) -> str | None:
        """Why the writer cannot be relied on (not running, failing, stuck), or None when it is fine."""
        if not self.running:
            return "the trace writer is not running"
        now = time.monotonic()
        if self._failing_since is not None:
            return f"the trace writer has failed to write for {now - self._failing_since:.0f}s: {self.last_error}"
        if self._write_started is not None and now - self._write_started > self.stuck_after_s:
            return f"the trace writer is stuck: one write has run for {now - self._write_started:.0f}s"
        return None

    async def start(self) -> None:
        """Start the background task (in the running event loop); it first writes traces spilled earlier."""
        if self._task is None:
            self._closed = False
            self._task = asyncio.create_task(self._run(), name="keel-trace-writer")

    async def put(self, trace: Trace) -> None:
        """Queue a trace (made storable).

        While the queue is full, waits for the writer (back-pressure); but when the writer is failing
        or stuck, appends the trace to an overflow file instead, so no request waits on a dead database.
        """
        trace = trace.storable()
        while True:
            if self._closed or self._task is None:  # a request that ended after shutdown began
                self._spill([trace])
                return
            if not self._queue.full():
                self._queue.put_nowait(trace)
                return
            if self.health() is not None:
                self._overflow([trace])
                return
            try:
                await asyncio.wait_for(self._queue.put(trace), 1.0)
                return
            except TimeoutError:  # look at the writer's health again
                continue

    async def _run(self) -> None:
        await self._recover()
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self._batch_size and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            self._inflight = list(batch)
            await self._store_until_done(self._inflight)
            self._inflight = []
            for _ in batch:
                self._queue.task_done()

    async def _store_until_done(self, pending: list[Trace]) -> None:
        delay = 0.1
        while pending:
            self._write_started = time.monotonic()
            try:
                await asyncio.to_thread(self._write_pending, pending)
            except Exception as exc:  # the database is down or locked: keep the rest and try again
                self.last_error = f"{type(exc).__name__}: {str(exc)[:300]}"
                if self._failing_since is None:
                    self._failing_since = time.monotonic()
                log.exception("writing %d traces failed; retrying in %.1fs", len(pending), delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
            finally:
                self._write_started = None
        self._failing_since = None

    def _write_pending(self, pending: list[Trace]) -> None:
        """Write `pending` (removing what is stored or quarantined); raises when the database is unwell."""
        try:
            self.write(pending)
            done = list(pending)
            pending.clear()
            self._written(done)
            return
        except Exception as exc:
            if not _bad_row(exc):
                raise
            log.warning("a batch of %d traces was refused; writing them one by one", len(pending))
        while pending:
            trace = pending[0]
            try:
                self.write([trace])
                self._written([trace])
            except Exception as exc:
                if not _bad_row(exc):
                    raise
                # This trace cannot be stored: keep it aside, never retry it. (An integrity error may
                # also be a spilled trace that an interrupted write stored after all: then skip it.)
                if not isinstance(exc, sa_exc.IntegrityError) or not self._already_stored(trace):
                    self._quarantine(trace, exc)
            pending.pop(0)

    def _written(self, batch: list[Trace]) -> None:
        if self.on_written is not None:
            try:
                self.on_written(batch)
            except Exception:  # an exporter must never stop the writer
                log.exception("the trace export hook failed")

    def _already_stored(self, trace: Trace) -> bool:
        with self._store.db.read() as conn:
            return conn.scalar(select(traces.c.id).where(traces.c.id == trace.id)) is not None

    def write(self, batch: list[Trace]) -> None:
        """Insert traces and their lineage edges in one transaction (the writer task calls this)."""
        if not batch:
            return
        with self._store.db.write() as conn:
            conn.execute(traces.insert(), [t.to_row() for t in batch])
            edges = [Edge(f"model-version:{t.model_version}", t.node, "served") for t in batch if t.model_version]
            add_edges(conn, edges, at=batch[-1].at)
        self.written += len(batch)

    def _quarantine(self, trace: Trace, exc: Exception) -> None:
        self.quarantined += 1
        reason = f"{type(exc).__name__}: {str(exc)[:500]}"
        log.error("trace %s cannot be stored and is quarantined: %s", trace.id, reason)
        path = self.folder / "quarantine.jsonl"
        if path.exists() and path.stat().st_size > _QUARANTINE_MAX_BYTES:
            log.error("%s is over %d bytes: trace %s is counted only", path, _QUARANTINE_MAX_BYTES, trace.id)
            return
        line = {"quarantined_at": format_time(datetime.now(UTC)), "reason": reason, "trace": _json(trace)}
        self.folder.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="ascii") as f:  # json.dumps escapes every non-ASCII character
            f.write(json.dumps(line) + "\n")

    def _spill(self, batch: list[Trace]) -> None:
        if not batch:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"spill-{new_ulid()}.jsonl"
        temporary = path.with_suffix(".tmp")
        with temporary.open("w", encoding="ascii") as f:
            f.writelines(json.dumps(_json(t)) + "\n" for t in batch)
        temporary.replace(path)
        self.spilled += len(batch)
        log.warning("spilled %d unwritten traces to %s; the next gateway start writes them", len(batch), path)

    def _overflow(self, batch: list[Trace]) -> None:
        """Append to this writer's overflow file, renamed to a spill file (recovered at next start) on close."""
        if self._overflow_file is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._overflow_path = self.folder / f"overflow-{new_ulid()}.jsonl"
            self._overflow_file = self._overflow_path.open("a", encoding="ascii")
            log.error("the trace writer cannot keep up (%s): traces go to %s", self.health(), self._overflow_path)
        self._overflow_file.writelines(json.dumps(_json(t)) + "\n" for t in batch)
        self._overflow_file.flush()
        self.spilled += len(batch)

    def _close_overflow(self) -> None:
        if self._overflow_file is not None and self._overflow_path is not None:
            self._overflow_file.close()
            self._overflow_path.replace(self._overflow_path.with_name(f"spill-{self._overflow_path.name[9:]}"))
            self._overflow_file = self._overflow_path = None

    async def _recover(self) -> None:
        """Write the traces earlier writers spilled; a file is claimed by renaming it, so one writer takes it."""
        for path in sorted(self.folder.glob("spill-*.jsonl")) if self.folder.is_dir() else []:
            claimed = path.with_name(f"recovering-{os.getpid()}-{path.name}")
            try:
                path.rename(claimed)
            except OSError:  # another gateway took it
                continue
            found, bad = [], 0
            for line in claimed.read_text(encoding="ascii", errors="replace").splitlines():
                try:
                    found.append(trace_from_json(json.loads(line)).storable())
                except (ValueError, TypeError, KeyError):
                    bad += 1
            if bad:
                log.error("%s: %d lines were not traces and are left in %s", path, bad, claimed)
            try:
                await self._store_until_done(found)
            except asyncio.CancelledError:  # shut down before the database came back: leave the file for later
                claimed.rename(path)
                raise
            if not bad:
                claimed.unlink()
            log.warning("wrote %d traces spilled by an earlier gateway (%s)", len(found), path.name)

    async def flush(self) -> None:
        """Wait until every queued trace is written or quarantined."""
        await self._queue.join()

    async def close(self, *, timeout_s: float | None = None) -> None:
        """Write what is queued, waiting at most `timeout_s`; then spill what is left to a file, and stop."""
        if self._task is None:
            return
        self._closed = True
        try:
            await asyncio.wait_for(self._queue.join(), timeout_s)
        except TimeoutError:
            log.error("traces were not written within %.1fs of shutdown: %s", timeout_s, self.health())
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass
        except Exception:  # the task died: what it held is spilled below
            log.exception("the trace writer had failed")
        self._task = None
        left = list(self._inflight)
        while not self._queue.empty():
            left.append(self._queue.get_nowait())
            self._queue.task_done()
        self._inflight = []
        self._spill(left)
        self._close_overflow()


def _json(trace: Trace) -> dict[str, Any]:
    return trace.to_json()
