"""Batch writers: a bounded queue drained in batches by one background task, which nothing can stall.

`BatchWriter` is the design; `TraceWriter` writes traces (and what they asked and answered), and
`keel.monitor._feedback.FeedbackWriter` writes feedback, each with its lineage edges:
- A batch is one transaction that also adds the lineage edges `model-version:… → trace:<id>`.
- The database down or locked: the batch is kept and retried with backoff; `health()` says so.
- A trace the database refuses on its own (a value it cannot hold) is quarantined: counted,
  logged and appended as escaped JSON to `.keel/traces/quarantine.jsonl`; the others are written.
- `close()` waits a bounded time, then spills whatever is still queued to `.keel/traces/spill-*.jsonl`;
  the next writer started on the workspace writes spilled traces first. Nothing is dropped silently.
It knows rows and files only: what a trace holds is decided by the gateway.
(Feedback goes the same way, under `.keel/feedback/`.)
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Generic, Protocol, Self, TypeVar

from sqlalchemy import Connection, select
from sqlalchemy import exc as sa_exc

from keel.core.clock import format_time
from keel.core.ids import new_ulid
from keel.monitor._traces import Trace, trace_from_json
from keel.store import Edge, Store, add_edges
from keel.store.schema import NODE_ID_LENGTH, trace_contents, trace_retrievals, trace_subjects, traces

__all__ = ["BatchWriter", "TraceWriter"]

log = logging.getLogger(__name__)

# Errors that say a row holds a value the database refuses. Any other error (unreachable, locked,
# a missing table) says the database is unwell: the batch is kept and retried, never quarantined.
_BAD_ROW = (ValueError, TypeError, sa_exc.DataError, sa_exc.IntegrityError)


def _bad_row(exc: BaseException) -> bool:
    return isinstance(exc, _BAD_ROW) or isinstance(getattr(exc, "orig", None), _BAD_ROW)


_QUARANTINE_MAX_BYTES = 64 * 1024 * 1024


class _Item(Protocol):
    @property
    def id(self) -> str: ...

    def storable(self) -> Self: ...

    def to_json(self) -> dict[str, Any]: ...


Item = TypeVar("Item", bound=_Item)


class BatchWriter(Generic[Item]):
    """Writes items in batches from a background task; bounded, lossless, never stalled by one bad item.

    Subclasses say what an item is (`noun`, `folder_name`) and implement `write`, `_already_stored` and `_load`.

    Args:
        store: The workspace store.
        queue_size: Items that may wait; beyond it `put` waits for the writer (back-pressure).
        batch_size: Most items per transaction.
        folder: Where quarantined and spilled items go; `.keel/<folder_name>` of the workspace by default.
        stuck_after_s: A write running longer than this makes `health()` report the writer stuck.
        on_written: Called (in the writer's thread) with each batch once it is stored, e.g. an OTLP export.

    Examples:
        >>> writer = TraceWriter(store)  # doctest: +SKIP
        >>> await writer.start(); await writer.put(trace); await writer.close(timeout_s=10)  # doctest: +SKIP
    """

    noun = "item"
    folder_name = "items"

    def __init__(
        self,
        store: Store,
        *,
        queue_size: int = 10_000,
        batch_size: int = 1_000,
        folder: Path | None = None,
        stuck_after_s: float = 30.0,
        on_written: Callable[[list[Item]], None] | None = None,
    ) -> None:
        self._store = store
        self._batch_size = batch_size
        self._queue: asyncio.Queue[Item] = asyncio.Queue(maxsize=queue_size)
        self._task: asyncio.Task[None] | None = None
        self._inflight: list[Item] = []
        self._write_started: float | None = None
        self._failing_since: float | None = None
        self._closed = False
        self._overflow_file: IO[str] | None = None
        self._overflow_path: Path | None = None
        # Writes run on one thread of the writer's own, over one connection kept open between batches:
        # opening a SQLite connection (and its PRAGMAs) per batch was ~13% of a busy gateway's CPU.
        self._executor: ThreadPoolExecutor | None = None
        self._conn: Connection | None = None
        self._conn_thread = 0
        self.folder = folder or store.settings.state_dir / self.folder_name
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
        """Items waiting in the queue."""
        return self._queue.qsize()

    def health(self, *, detail: bool = True) -> str | None:
        """Why the writer cannot be relied on (not running, failing, stuck), or None when it is fine.

        `detail=False` leaves out the database's error text (SQL, parameters, host and user), for answers to
        callers who are not operators (the gateway's unauthenticated `/readyz`); the log has it.
        """
        if not self.running:
            return f"the {self.noun} writer is not running"
        now = time.monotonic()
        if self._failing_since is not None:
            why = self.last_error if detail else "see the gateway's log"
            return f"the {self.noun} writer has failed to write for {now - self._failing_since:.0f}s: {why}"
        if self._write_started is not None and now - self._write_started > self.stuck_after_s:
            return f"the {self.noun} writer is stuck: one write has run for {now - self._write_started:.0f}s"
        return None

    async def start(self) -> None:
        """Start the background task (in the running event loop); it first writes items spilled earlier."""
        if self._task is None:
            self._closed = False
            if self._executor is None:
                self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"keel-{self.noun}-writer")
            self._task = asyncio.create_task(self._run(), name=f"keel-{self.noun}-writer")

    async def put(self, item: Item) -> None:
        """Queue an item (made storable).

        While the queue is full, waits for the writer (back-pressure); but when the writer is failing
        or stuck, appends the item to an overflow file instead, so no request waits on a dead database.
        """
        item = item.storable()
        while True:
            if self._closed or self._task is None:  # a request that ended after shutdown began
                self._spill([item])
                return
            if not self._queue.full():
                self._queue.put_nowait(item)
                return
            if self.health() is not None:
                self._overflow([item])
                return
            try:
                await asyncio.wait_for(self._queue.put(item), 1.0)
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

    async def _store_until_done(self, pending: list[Item]) -> None:
        delay = 0.1
        while pending:
            self._write_started = time.monotonic()
            try:
                await asyncio.get_running_loop().run_in_executor(self._executor, self._write_pending, pending)
            except Exception as exc:  # the database is down or locked: keep the rest and try again
                self.last_error = f"{type(exc).__name__}: {str(exc)[:300]}"
                if self._failing_since is None:
                    self._failing_since = time.monotonic()
                log.exception("writing %d %ss failed; retrying in %.1fs", len(pending), self.noun, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
            finally:
                self._write_started = None
        self._failing_since = None

    def _write_pending(self, pending: list[Item]) -> None:
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
            log.warning("a batch of %d %ss was refused; writing them one by one", len(pending), self.noun)
        while pending:
            item = pending[0]
            try:
                self.write([item])
                self._written([item])
            except Exception as exc:
                if not _bad_row(exc):
                    raise
                # This item cannot be stored: keep it aside, never retry it. (An integrity error may
                # also be a spilled item that an interrupted write stored after all: then skip it.)
                if not isinstance(exc, sa_exc.IntegrityError) or not self._already_stored(item):
                    self._quarantine(item, exc)
            pending.pop(0)

    @contextmanager
    def _transaction(self) -> Iterator[Connection]:
        """A write transaction on the writer's own connection, opened on first use and kept.

        As `Database.write`: `BEGIN IMMEDIATE` on SQLite, committed on success, rolled back on error. A
        failure other than a refused row closes the connection, so a database that went away is connected
        to again on the next try. Called on the writer's thread only.
        """
        if self._conn is not None and self._conn_thread != threading.get_ident():
            self._conn = None  # `write` called from another thread (a test, a script): SQLite's are per thread
        if self._conn is None:
            self._conn = self._store.db.engine.connect().execution_options(keel_write=True)
            self._conn_thread = threading.get_ident()
        try:
            with self._conn.begin():
                yield self._conn
        except BaseException as exc:
            if not _bad_row(exc):
                self._release()
            raise

    def _release(self) -> None:
        """Close the writer's connection (on the writer's thread)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # a broken connection: nothing more to release
                log.debug("closing the %s writer's connection failed", self.noun, exc_info=True)

    def _written(self, batch: list[Item]) -> None:
        if self.on_written is not None:
            try:
                self.on_written(batch)
            except Exception:  # an exporter must never stop the writer
                log.exception("the %s export hook failed", self.noun)

    def _already_stored(self, item: Item) -> bool:
        """Whether `item` is in the database (a spilled item an interrupted write stored after all)."""
        raise NotImplementedError

    def write(self, batch: list[Item]) -> None:
        """Insert items and their lineage edges in one transaction (the writer task calls this)."""
        raise NotImplementedError

    def _load(self, data: dict[str, Any]) -> Item:
        """The item `to_json` made (as spill files hold them)."""
        raise NotImplementedError

    def _quarantine(self, item: Item, exc: Exception) -> None:
        self.quarantined += 1
        reason = f"{type(exc).__name__}: {str(exc)[:500]}"
        log.error("%s %s cannot be stored and is quarantined: %s", self.noun, item.id, reason)
        path = self.folder / "quarantine.jsonl"
        if path.exists() and path.stat().st_size > _QUARANTINE_MAX_BYTES:
            log.error("%s is over %d bytes: %s %s is counted only", path, _QUARANTINE_MAX_BYTES, self.noun, item.id)
            return
        line = {"quarantined_at": format_time(datetime.now(UTC)), "reason": reason, self.noun: item.to_json()}
        self.folder.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="ascii") as f:  # json.dumps escapes every non-ASCII character
            f.write(json.dumps(line) + "\n")

    def _spill(self, batch: list[Item]) -> None:
        if not batch:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"spill-{new_ulid()}.jsonl"
        temporary = path.with_suffix(".tmp")
        with temporary.open("w", encoding="ascii") as f:
            f.writelines(json.dumps(t.to_json()) + "\n" for t in batch)
        temporary.replace(path)
        self.spilled += len(batch)
        log.warning("spilled %d unwritten %ss to %s; the next gateway start writes them", len(batch), self.noun, path)

    def _overflow(self, batch: list[Item]) -> None:
        """Append to this writer's overflow file, renamed to a spill file (recovered at next start) on close."""
        if self._overflow_file is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._overflow_path = self.folder / f"overflow-{new_ulid()}.jsonl"
            self._overflow_file = self._overflow_path.open("a", encoding="ascii")
            log.error("the %s writer cannot keep up (%s): writing to %s", self.noun, self.health(), self._overflow_path)
        self._overflow_file.writelines(json.dumps(t.to_json()) + "\n" for t in batch)
        self._overflow_file.flush()
        self.spilled += len(batch)

    def _close_overflow(self) -> None:
        if self._overflow_file is not None and self._overflow_path is not None:
            self._overflow_file.close()
            self._overflow_path.replace(self._overflow_path.with_name(f"spill-{self._overflow_path.name[9:]}"))
            self._overflow_file = self._overflow_path = None

    async def _recover(self) -> None:
        """Write the items earlier writers spilled; a file is claimed by renaming it, so one writer takes it."""
        for path in sorted(self.folder.glob("spill-*.jsonl")) if self.folder.is_dir() else []:
            claimed = path.with_name(f"recovering-{os.getpid()}-{path.name}")
            try:
                path.rename(claimed)
            except OSError:  # another gateway took it
                continue
            found, bad = [], 0
            for line in claimed.read_text(encoding="ascii", errors="replace").splitlines():
                try:
                    found.append(self._load(json.loads(line)).storable())
                except (ValueError, TypeError, KeyError):
                    bad += 1
            if bad:
                log.error("%s: %d lines were not %ss and are left in %s", path, bad, self.noun, claimed)
            try:
                await self._store_until_done(found)
            except asyncio.CancelledError:  # shut down before the database came back: leave the file for later
                claimed.rename(path)
                raise
            if not bad:
                claimed.unlink()
            log.warning("wrote %d %ss spilled by an earlier gateway (%s)", len(found), self.noun, path.name)

    async def flush(self) -> None:
        """Wait until every queued item is written or quarantined."""
        await self._queue.join()

    async def close(self, *, timeout_s: float | None = None) -> None:
        """Write what is queued, waiting at most `timeout_s`; then spill what is left to a file, and stop."""
        if self._task is None:
            return
        self._closed = True
        try:
            await asyncio.wait_for(self._queue.join(), timeout_s)
        except TimeoutError:
            log.error("%ss were not written within %.1fs of shutdown: %s", self.noun, timeout_s, self.health())
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass
        except Exception:  # the task died: what it held is spilled below
            log.exception("the %s writer had failed", self.noun)
        self._task = None
        left = list(self._inflight)
        while not self._queue.empty():
            left.append(self._queue.get_nowait())
            self._queue.task_done()
        self._inflight = []
        self._spill(left)
        self._close_overflow()
        if self._executor is not None:  # after any write still running on it: the thread runs one thing at a time
            await asyncio.get_running_loop().run_in_executor(self._executor, self._release)
            self._executor.shutdown(wait=False)
            self._executor = None


def _node(kind: str, identity: Any) -> str | None:
    """A lineage node id, or None when the identity cannot make one (too long, blank, with spaces)."""
    text = f"{kind}:{identity}"
    return text if isinstance(identity, str) and identity and len(text) <= NODE_ID_LENGTH and not any(
        c.isspace() for c in identity) else None  # fmt: skip


def _retrieval_edges(trace: Trace) -> list[Edge]:
    """Lineage of a RAG answer: index version, prompt version and each cited record → the trace; source → record.

    So `keel data trace RECORD` finds the answers that cited it, and a path from the trace reaches the
    source page through retrieval as well as through training.
    """
    from keel.curate._run import uri_node  # the same node the curation run gave the source

    retrieval = trace.retrieval
    assert retrieval is not None
    found: list[tuple[str | None, str | None, str]] = [
        (_node("index-version", retrieval.index_version), trace.node, "retrieved"),
        (_node("prompt-version", retrieval.prompt_version), trace.node, "prompted"),
    ]
    for chunk in retrieval.chunks:
        record = _node("record", chunk.get("record_id"))
        found.append((record, trace.node, "cited"))
        uri = chunk.get("source")
        if isinstance(uri, str) and uri and not any(c.isspace() for c in uri):
            found.append((uri_node(uri), record, "holds"))
    return [Edge(up, down, kind) for up, down, kind in found if up is not None and down is not None]


class TraceWriter(BatchWriter[Trace]):
    """Writes traces, what they asked and answered (`trace_contents`), and `model-version → trace` edges."""

    noun = "trace"
    folder_name = "traces"

    def _already_stored(self, item: Trace) -> bool:
        with self._store.db.read() as conn:
            return conn.scalar(select(traces.c.id).where(traces.c.id == item.id)) is not None

    def _load(self, data: dict[str, Any]) -> Trace:
        return trace_from_json(data)

    def write(self, batch: list[Trace]) -> None:
        """Insert traces, their contents and their lineage edges in one transaction (the writer task calls this)."""
        if not batch:
            return
        contents = [row for row in (t.content_row() for t in batch) if row is not None]
        with self._transaction() as conn:
            conn.execute(traces.insert(), [t.to_row() for t in batch])
            if contents:
                conn.execute(trace_contents.insert(), contents)
            subjects = [{"subject": k, "trace_id": t.id} for t in batch for k in dict.fromkeys(t.subjects)]
            if subjects:
                conn.execute(trace_subjects.insert(), subjects)
            edges = [Edge(f"model-version:{t.model_version}", t.node, "served") for t in batch if t.model_version]
            retrieved = [t for t in batch if t.retrieval is not None]
            if retrieved:
                conn.execute(trace_retrievals.insert(), [t.retrieval.to_row(t.id) for t in retrieved if t.retrieval])
                edges += [e for t in retrieved for e in _retrieval_edges(t)]
            add_edges(conn, list(dict.fromkeys(edges)), at=batch[-1].at)
        self.written += len(batch)
