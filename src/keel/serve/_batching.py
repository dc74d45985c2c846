"""Continuous batching for an in-process causal LM: rows join and leave the batch between steps.

One engine thread owns the model. Each step it drops rows that finished or whose caller left,
admits waiting requests while the batch stays under `max_batch` rows and `max_batch_tokens`
(rows × longest row, the padded size of the KV cache), prefills each newcomer alone and merges
its KV cache into the batch's (left-padded, so every row's newest token shares one column), then
runs one decode step for every row and samples each row with its own temperature, top-p and
seed. A short request never waits for a long one to finish, and an abandoned one stops at once.
Knows nothing of HTTP or OpenAI shapes: requests arrive as token ids, text leaves as pieces.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

__all__ = ["BatchEngine", "GenerationJob", "GenerationResult", "JobThread"]

log = logging.getLogger(__name__)

# How many tokens before a row's newest ones are decoded with them: enough context for tokenizers
# whose first token of a window decodes differently (SentencePiece's leading space), as TGI does.
_WINDOW = 5


@dataclass(slots=True)
class GenerationResult:
    """What one request produced."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str


@dataclass(eq=False)
class GenerationJob:
    """One request: its prompt ids, its own sampling parameters, and where its output goes."""

    ids: list[int]
    max_new_tokens: int
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[GenerationResult] = field(repr=False)
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    ignore_eos: bool = False
    pieces: asyncio.Queue[str] | None = field(default=None, repr=False)
    abandoned: bool = False  # set from the event loop when the caller left; read by the engine
    # engine state
    tokens: list[int] = field(default_factory=list)
    text: str = ""
    sent: int = 0
    prefix: int = 0
    read: int = 0
    finish: str | None = None
    generator: Any = None
    finished_at_step: int = -1

    @property
    def footprint(self) -> int:
        """Most KV-cache columns this row can need: its prompt plus its output budget."""
        return len(self.ids) + self.max_new_tokens


class JobThread:
    """A queue of generation jobs and the one thread that works through it (started by the first job).

    Subclasses set `thread_name`, call `_start_queue()` in `__init__` and implement `_run`.
    """

    thread_name = "keel-generate"

    def _start_queue(self) -> None:
        self._waiting: deque[GenerationJob] = deque()
        self._wake = threading.Condition()
        self._closed = False
        self._thread: threading.Thread | None = None

    def _run(self) -> None:
        raise NotImplementedError

    def submit(self, job: GenerationJob) -> None:
        """Queue a job; the engine thread starts on the first one."""
        with self._wake:
            if self._closed:
                raise RuntimeError("the generation engine was closed")
            self._waiting.append(job)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
                self._thread.start()
            self._wake.notify()

    def _stop_thread(self, timeout: float | None) -> None:
        """Mark closed, wake the thread and wait for it to end (at most `timeout` seconds)."""
        with self._wake:
            self._closed = True
            self._wake.notify()
        if self._thread is not None:
            self._thread.join(timeout=timeout)


class BatchEngine(JobThread):
    """Generates for many requests at once in one thread, admitting new ones between steps.

    Args:
        model: A causal LM (`transformers`), in eval mode.
        tokenizer: Its tokenizer (for decoding output text and the end-of-sequence id).
        max_batch: Most rows generated together.
        max_batch_tokens: Bound of rows × longest row (prompt + output budget): the KV cache's size.
        max_wait_s: When idle, how long the first request waits for others to form a batch.
    """

    thread_name = "keel-batch-engine"

    def __init__(self, model: Any, tokenizer: Any, *, max_batch: int, max_batch_tokens: int, max_wait_s: float) -> None:
        self.model, self.tokenizer = model, tokenizer
        self.max_batch, self.max_batch_tokens, self.max_wait_s = max_batch, max_batch_tokens, max_wait_s
        self.eos = tokenizer.eos_token_id
        self.steps = 0  # decode steps run
        self.step_rows: list[int] = []  # rows in each decode step, for tests and benchmarks
        self.admitted = 0
        self.left: deque[tuple[str, int]] = deque(maxlen=1000)  # (finish reason, tokens) of rows that left
        self.lock = threading.Lock()  # held while the model runs: other users of the model wait on it
        self._start_queue()
        # the batch: rows, their KV cache (a transformers DynamicCache) and attention mask, the token
        # each row feeds next and that token's position
        self._rows: list[GenerationJob] = []
        self._cache: Any = None
        self._mask: Any = None
        self._next: list[int] = []
        self._positions: list[int] = []

    def close(self) -> None:
        """Stop after the current step; waiting and running jobs are cancelled."""
        self._stop_thread(timeout=30)

    def _run(self) -> None:
        import torch

        while True:
            with self._wake:
                while not self._waiting and not self._rows and not self._closed:
                    self._wake.wait()
                if self._closed:
                    break
                if not self._rows:  # idle: give a burst of requests a moment to arrive together
                    deadline = time.monotonic() + self.max_wait_s
                    while len(self._waiting) < self.max_batch and (left := deadline - time.monotonic()) > 0:
                        self._wake.wait(left)
            try:
                with self.lock, torch.inference_mode():
                    self._drop_finished()
                    self._admit()
                    if self._rows:
                        self._step()
            except Exception as exc:  # request boundary: every row in the batch gets the error
                log.exception("generation failed; failing the %d requests of the batch", len(self._rows))
                for job in self._rows:
                    self._fail(job, exc)
                self._reset()
        for job in [*self._rows, *self._waiting]:
            self._fail(job, RuntimeError("the generation engine was closed"))

    # --- batch membership -------------------------------------------------------------------------

    def _reset(self) -> None:
        self._rows, self._cache, self._mask, self._next, self._positions = [], None, None, [], []

    def _drop_finished(self) -> None:
        import torch

        keep = [i for i, job in enumerate(self._rows) if job.finish is None and not job.abandoned]
        if len(keep) == len(self._rows):
            return
        for job in self._rows:
            if job.finish is not None or job.abandoned:
                self.left.append((job.finish or "abandoned", len(job.tokens)))
        if not keep:
            self._reset()
            return
        index = torch.tensor(keep)
        mask = self._mask[index]
        first = int(mask.any(dim=0).nonzero()[0])  # columns every remaining row pads: drop them
        for layer in self._cache.layers:
            layer.keys = layer.keys[index, :, first:]
            layer.values = layer.values[index, :, first:]
        self._mask = mask[:, first:]
        self._rows = [self._rows[i] for i in keep]
        self._next = [self._next[i] for i in keep]
        self._positions = [self._positions[i] for i in keep]

    def _fits(self, job: GenerationJob) -> bool:
        if not self._rows:
            return True  # a lone row always runs (its footprint is bounded by the context length)
        widest = max(job.footprint, *(row.footprint for row in self._rows))
        return len(self._rows) < self.max_batch and (len(self._rows) + 1) * widest <= self.max_batch_tokens

    def _admit(self) -> None:
        while True:
            with self._wake:
                while self._waiting and (self._waiting[0].abandoned or self._waiting[0].future.done()):
                    self._waiting.popleft()  # its caller left while it waited
                if not self._waiting or not self._fits(self._waiting[0]):
                    return
                job = self._waiting.popleft()
            self.admitted += 1
            try:
                self._prefill(job)
            except Exception as exc:  # its own error first; the caller below fails the rest of the batch
                self._fail(job, exc)
                raise

    def _prefill(self, job: GenerationJob) -> None:
        """Run the prompt alone, sample its first token, and merge its cache into the batch's."""
        import torch
        from transformers import DynamicCache

        seed = job.seed % 2**63 if job.seed is not None else random.getrandbits(63)  # torch takes 64 bits
        job.generator = torch.Generator().manual_seed(seed)
        job.prefix = job.read = 0
        cache: Any = DynamicCache()
        out = self.model(input_ids=torch.tensor([job.ids]), cache=cache, use_cache=True)
        token = self._sample(out.logits[:, -1, :], [job])[0]
        width = len(job.ids)
        if self._cache is None:
            self._cache, self._mask = cache, torch.ones(1, width, dtype=torch.long)
        else:
            have = self._mask.shape[1]
            if width > have:  # the newcomer is longer: pad every row on the left
                for layer in self._cache.layers:
                    layer.keys = _pad_left(layer.keys, width - have)
                    layer.values = _pad_left(layer.values, width - have)
                self._mask = torch.nn.functional.pad(self._mask, (width - have, 0))
                have = width
            for layer, new in zip(self._cache.layers, cache.layers, strict=True):
                layer.keys = torch.cat([layer.keys, _pad_left(new.keys, have - width)])
                layer.values = torch.cat([layer.values, _pad_left(new.values, have - width)])
            row_mask = torch.nn.functional.pad(torch.ones(1, width, dtype=torch.long), (have - width, 0))
            self._mask = torch.cat([self._mask, row_mask])
        self._rows.append(job)
        self._next.append(token)
        self._positions.append(width)
        self._emit(job, token)

    # --- one step ---------------------------------------------------------------------------------

    def _step(self) -> None:
        import torch

        live = [job.finish is None for job in self._rows]
        if not any(live):
            return
        self.steps += 1
        self.step_rows.append(sum(live))
        ones = torch.ones(len(self._rows), 1, dtype=torch.long)
        self._mask = torch.cat([self._mask, ones], dim=1)
        out = self.model(
            input_ids=torch.tensor(self._next).unsqueeze(1),
            attention_mask=self._mask,
            position_ids=torch.tensor(self._positions).unsqueeze(1),
            cache=self._cache,
            use_cache=True,
        )
        tokens = self._sample(out.logits[:, -1, :], self._rows)
        for i, (job, token) in enumerate(zip(self._rows, tokens, strict=True)):
            self._positions[i] += 1
            self._next[i] = token
            if job.finish is None and not job.abandoned:
                self._emit(job, token)

    def _sample(self, logits: Any, rows: list[GenerationJob]) -> list[int]:
        """Each row's next token with its own parameters: greedy at temperature 0, else top-p sampling."""
        import torch

        greedy = logits.argmax(dim=-1).tolist()
        out: list[int] = []
        for i, job in enumerate(rows):
            if job.temperature < 1e-4:  # 0, or so near it that dividing by it would overflow: greedy
                out.append(int(greedy[i]))
                continue
            scores = logits[i].float() / job.temperature
            if job.top_p < 1:
                ordered, order = scores.sort(descending=True)
                probs = ordered.softmax(-1)
                ordered[probs.cumsum(-1) - probs > job.top_p] = float("-inf")  # the first token always stays
                scores = torch.full_like(scores, float("-inf")).scatter(0, order, ordered)
            out.append(int(torch.multinomial(scores.softmax(-1), 1, generator=job.generator)))
        return out

    def _emit(self, job: GenerationJob, token: int) -> None:
        """Add a row's new token: decode incrementally, watch stop strings and limits, hand text out."""
        if token == self.eos and not job.ignore_eos:
            self._finish(job, "stop")
            return
        job.tokens.append(token)
        # Incremental decoding (as TGI does): decode a small window, keep what it adds beyond its prefix.
        before = _decode(self.tokenizer, job.tokens[job.prefix : job.read])
        after = _decode(self.tokenizer, job.tokens[job.prefix :])
        if len(after) > len(before) and not after.endswith("\ufffd"):
            start = len(job.text)
            job.text += after[len(before) :]
            job.prefix, job.read = max(0, len(job.tokens) - _WINDOW), len(job.tokens)
            if job.stop:
                longest = max(len(s) for s in job.stop)
                window = job.text[max(0, start - longest + 1) :]
                hits = [window.find(s) for s in job.stop if s and s in window]
                if hits:
                    job.text = job.text[: max(0, start - longest + 1) + min(hits)]
                    self._finish(job, "stop", flush=False)
                    return
        if len(job.tokens) >= job.max_new_tokens:
            self._finish(job, "length")
            return
        held = max((len(s) - 1 for s in job.stop), default=0)  # text that may begin a stop string waits
        self._send(job, len(job.text) - held)

    def _send(self, job: GenerationJob, upto: int) -> None:
        if job.pieces is not None and upto > job.sent:
            job.loop.call_soon_threadsafe(_put, job.pieces, job.text[job.sent : upto])
            job.sent = upto

    def _finish(self, job: GenerationJob, reason: str, *, flush: bool = True) -> None:
        if flush:  # a last token ending in a partial character: what decoding it gives is the answer's end
            before = _decode(self.tokenizer, job.tokens[job.prefix : job.read])
            after = _decode(self.tokenizer, job.tokens[job.prefix :])
            job.text += after[len(before) :]
        job.finish = reason
        job.finished_at_step = self.steps
        self._send(job, len(job.text))
        result = GenerationResult(job.text, len(job.ids), len(job.tokens), reason)
        job.loop.call_soon_threadsafe(_settle, job.future, result)

    def _fail(self, job: GenerationJob, exc: BaseException) -> None:
        job.finish = "error"
        job.loop.call_soon_threadsafe(_settle, job.future, exc)


def _pad_left(tensor: Any, width: int) -> Any:
    import torch

    if width <= 0:
        return tensor
    return torch.nn.functional.pad(tensor, (0, 0, width, 0))  # keys/values are [batch, heads, seq, dim]


def _decode(tokenizer: Any, tokens: list[int]) -> str:
    """Without clean-up of tokenization spaces: with it a later token could change text already sent."""
    return str(tokenizer.decode(tokens, skip_special_tokens=True, clean_up_tokenization_spaces=False))


def _put(queue: asyncio.Queue[str], piece: str) -> None:
    queue.put_nowait(piece)


def _settle(future: asyncio.Future[GenerationResult], outcome: GenerationResult | BaseException) -> None:
    if future.done():  # the caller left
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)
