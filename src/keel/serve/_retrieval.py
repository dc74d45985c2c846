"""Query embedding for RAG routes, batched across concurrent requests.

One forward pass of a sentence encoder over 16 short queries costs a few times one query's pass,
not 16 times: under load, requests that arrive while a batch is being embedded wait for the next
batch together. An idle gateway embeds a lone query at once (no timer, no added latency). Batches
run on one thread of their own whose torch uses one OpenMP thread (`threads`): see `EmbedBatcher`.
The model runs in ONNX Runtime by default (a third of torch's CPU per query), in torch where it cannot.
"""

from __future__ import annotations

import asyncio
import functools
import importlib.util
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from keel.index import (
    Embedder,
    QueryEncoderUnavailableError,
    QueryRuntime,
    SentenceTransformerEmbedder,
    load_query_encoder,
)

__all__ = ["EmbedBatcher", "Followed"]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Pending:
    text: str
    future: asyncio.Future[Any] = field(repr=False)
    then: Callable[[npt.NDArray[np.float32]], Any] | None = None


@dataclass(frozen=True, slots=True)
class Followed:
    """What `EmbedBatcher.embed_then` gives: the query's vector, what `then` made of it, and when `then` began.

    `then_started` is a `time.perf_counter()` reading on the embedding thread: embedding (and waiting for
    a batch) ends there, and the follow-up's time (`then` plus the hop back to the event loop) begins.
    """

    vector: npt.NDArray[np.float32]
    result: Any
    then_started: float


def _torch_threads(count: int) -> None:
    """Give the calling thread's torch `count` OpenMP threads, leaving other threads' default as it was."""
    if importlib.util.find_spec("torch") is None:  # an embedder without torch has no OpenMP pool to size
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(count)  # the calling thread's OpenMP pool
    # set_num_threads also sets the count threads started later begin with; put that back from another
    # thread (whose own call changes only itself and that default), so a generation backend keeps its cores.
    restore = threading.Thread(target=torch.set_num_threads, args=(before,), name="keel-torch-threads")
    restore.start()
    restore.join()


class EmbedBatcher:
    """Embeds queries with one embedder, in batches formed by whatever arrived while the last one ran.

    Batches run on one worker thread of the batcher's own, with `threads` torch (OpenMP) threads. One
    is the default because a gateway under load has no idle core for a second: measured on this
    2-core machine under load (benchmarks/rag_serving.py), MiniLM cost 269 ms of CPU per lone query
    with torch's default two threads, whose OpenMP workers spin waiting for each other, and 11 ms
    with one; concurrency comes from batching queries, not from splitting one small pass.

    With `runtime` `onnx` (or `onnx-int8`) a sentence-transformers model runs in ONNX Runtime on one
    intra-op thread, exported into `cache` on first use (`keel.index._onnx`); the worker thread loads it
    before its first batch. Where that cannot be (onnxruntime missing, a model it cannot export, a
    failed check), the batcher logs why once and embeds with torch; `runtime` then says `torch`.

    Args:
        embedder: The index version's embedder (shared by every route using that model).
        max_batch: Most queries in one forward pass.
        threads: Torch threads for the forward pass (None: torch's default); ONNX Runtime gets one.
        runtime: `onnx` (vectors within 1e-5 of torch's), `onnx-int8` (lossy, opt-in) or `torch`.
        cache: Folder of exported ONNX graphs (required for an ONNX runtime).

    Examples:
        >>> batcher = EmbedBatcher(embedder)  # doctest: +SKIP
        >>> vector = await batcher.embed("how do refunds work?")  # doctest: +SKIP
    """

    def __init__(
        self,
        embedder: Embedder,
        *,
        max_batch: int = 32,
        threads: int | None = 1,
        runtime: QueryRuntime = "torch",
        cache: Path | None = None,
    ) -> None:
        self.embedder = embedder
        self.max_batch = max_batch
        self.runtime: QueryRuntime = "torch"  # what embeds now; set by the worker thread once it loaded one
        # A sentence-transformers embedder embeds a batch of queries without `encode`'s per-call work.
        self._encode: Callable[[Sequence[str]], npt.NDArray[np.float32]] = getattr(
            embedder, "embed_queries", embedder.embed
        )
        self._executor = ThreadPoolExecutor(
            1, "keel-embed", initializer=functools.partial(_torch_threads, threads) if threads else None
        )
        if runtime != "torch":  # the first job of the worker thread: every batch runs after it
            self._executor.submit(self._load_runtime, runtime, cache)
        self._queue: asyncio.Queue[_Pending] | None = None
        self._worker: asyncio.Task[None] | None = None
        self.batches = 0
        self.embedded = 0

    async def embed(self, text: str) -> npt.NDArray[np.float32]:
        """The unit vector of `text`; raises what the embedder raised."""
        return await self._submit(_Pending(text, asyncio.get_running_loop().create_future()))  # type: ignore[no-any-return]

    async def embed_then(self, text: str, then: Callable[[npt.NDArray[np.float32]], Any]) -> Followed:
        """Embed `text`, then run `then(vector)` on the embedding thread after its batch; raises what either raised.

        A RAG route searches its index here: the request crosses to a worker thread and back once, not
        twice (embedding thread, then a search thread). Each thread hop waits for a core when the machine
        is busy (measured: benchmarks/rag_serving.py, docs/serving.md).
        """
        return await self._submit(_Pending(text, asyncio.get_running_loop().create_future(), then))  # type: ignore[no-any-return]

    async def _submit(self, pending: _Pending) -> Any:
        if self._queue is None:
            self._queue = asyncio.Queue()
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._run(self._queue), name="keel-embed-batcher")
        await self._queue.put(pending)
        return await pending.future

    async def _run(self, queue: asyncio.Queue[_Pending]) -> None:
        while True:
            batch = [await queue.get()]
            while len(batch) < self.max_batch and not queue.empty():
                batch.append(queue.get_nowait())
            live = [p for p in batch if not p.future.done()]  # a caller that left needs no vector
            if not live:
                continue
            try:
                outcomes = await asyncio.get_running_loop().run_in_executor(self._executor, self._embed, live)
            except Exception as exc:  # handed to each waiting request, which answers 503
                log.warning("embedding %d queries failed: %s", len(live), exc)
                for pending in live:
                    if not pending.future.done():
                        pending.future.set_exception(exc)
                continue
            self.batches += 1
            self.embedded += len(live)
            for pending, (failed, outcome) in zip(live, outcomes, strict=True):
                if pending.future.done():
                    continue
                if failed:
                    pending.future.set_exception(outcome)
                else:
                    pending.future.set_result(outcome)

    def _embed(self, batch: Sequence[_Pending]) -> list[tuple[bool, Any]]:
        """(failed, vector or `Followed` or exception) per query; runs on the worker thread."""
        # Looked up on the worker thread, after `_load_runtime` (its first job) chose the runtime.
        vectors = self._encode([p.text for p in batch])
        outcomes: list[tuple[bool, Any]] = []
        for pending, vector in zip(batch, vectors, strict=True):
            if pending.then is None:
                outcomes.append((False, vector))
                continue
            started = time.perf_counter()
            try:  # one request's failing follow-up must not fail the others of its batch
                outcomes.append((False, Followed(vector, pending.then(vector), started)))
            except Exception as exc:  # handed to that request alone
                outcomes.append((True, exc))
        return outcomes

    def _load_runtime(self, runtime: QueryRuntime, cache: Path | None) -> None:
        """Swap the torch pass for an ONNX Runtime session of the same model, or say once why not."""
        try:
            if not isinstance(self.embedder, SentenceTransformerEmbedder):
                raise QueryEncoderUnavailableError(
                    f"expected a sentence-transformers embedder to export; got {type(self.embedder).__name__}"
                )
            if cache is None:
                raise QueryEncoderUnavailableError("expected a cache folder for the exported ONNX graph; got none")
            encoder = load_query_encoder(self.embedder, runtime, cache)
        except QueryEncoderUnavailableError as exc:
            log.warning("queries for %s are embedded with torch, not %s: %s", self.embedder.model_id, runtime, exc)
            return
        except Exception:  # worker-thread boundary: a broken runtime must leave the torch path serving
            log.exception("queries for %s are embedded with torch: loading %s failed", self.embedder.model_id, runtime)
            return
        self._encode = encoder.embed_queries
        self.runtime = runtime
        log.info("queries for %s are embedded with %s (%s)", self.embedder.model_id, runtime, encoder.path)

    async def aclose(self) -> None:
        """Stop the worker; queries still waiting are cancelled."""
        if self._worker is not None:
            self._worker.cancel()
            try:
                await self._worker
            except asyncio.CancelledError:
                pass
            self._worker = None
        while self._queue is not None and not self._queue.empty():
            self._queue.get_nowait().future.cancel()
        self._executor.shutdown(wait=False)
