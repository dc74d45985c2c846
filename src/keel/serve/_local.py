"""In-process backends: a `transformers` causal LM with dynamic batching, and sentence embeddings.

Generation never runs on the event loop: a batcher task gathers concurrent requests until
`max_batch` are waiting or `max_wait_ms` passed since the first, then one worker thread
generates them together (left-padded), which is where a CPU or GPU earns its throughput. A
streaming request rides in the same batch: each step's new token of its row is decoded and handed
to it as it is generated.
torch, transformers and sentence-transformers are imported when a backend is built, not before.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from keel.core.ids import new_ulid
from keel.serve._backends import Operation
from keel.serve._errors import BadRequestError

__all__ = ["SentenceTransformersBackend", "TransformersBackend"]


@dataclass
class _Job:
    prompt: str
    max_new_tokens: int
    temperature: float
    future: asyncio.Future[tuple[str, int, int, str]] = field(repr=False)
    pieces: asyncio.Queue[str] | None = field(default=None, repr=False)  # streamed text, for a streaming request


class _BatchStreamer:
    """Hands each streaming row's new text to its job while `generate` runs (a transformers streamer).

    transformers' own streamers take one row; this one takes the batch: `generate` calls `put` with the
    prompts first, then with one new token per row per step. A row's text is the decode of all its tokens
    so far; what it adds to what was sent is sent, unless it ends in a partial character (U+FFFD), which the
    next token completes. Rows stop at end-of-sequence or their own `max_tokens`.
    """

    def __init__(self, tokenizer: Any, batch: list[_Job], loop: asyncio.AbstractEventLoop) -> None:
        self.tokenizer, self.batch, self.loop = tokenizer, batch, loop
        self.tokens: list[list[int]] = [[] for _ in batch]
        self.sent = [0] * len(batch)
        self.done = [job.pieces is None for job in batch]
        self.prompt_seen = False

    def put(self, value: Any) -> None:
        if not self.prompt_seen:
            self.prompt_seen = True
            return
        eos = self.tokenizer.eos_token_id
        for row, token in enumerate(value.reshape(-1).tolist()):
            job = self.batch[row]
            if self.done[row] or job.pieces is None or job.future.cancelled():  # cancelled: its client went away
                continue
            if token == eos or len(self.tokens[row]) >= job.max_new_tokens:
                self.done[row] = True
                continue
            self.tokens[row].append(token)
            text = _decode(self.tokenizer, self.tokens[row])
            if len(text) > self.sent[row] and not text.endswith("\ufffd"):
                self.loop.call_soon_threadsafe(job.pieces.put_nowait, text[self.sent[row] :])
                self.sent[row] = len(text)

    def end(self) -> None:
        """Nothing to flush: the answer's final text settles any remainder."""


def _decode(tokenizer: Any, tokens: list[int]) -> str:
    """Tokens as text, the same way for a stream's prefixes and for the whole answer.

    Without clean-up of tokenization spaces: with it (GPT-2-style tokenizers) a later token can change text
    already decoded (`it '` then `it's`), and a stream could not be a prefix of the answer.
    """
    return str(tokenizer.decode(tokens, skip_special_tokens=True, clean_up_tokenization_spaces=False))


def _message_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts: keep the text ones
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


class TransformersBackend:
    """A Hugging Face causal LM generating in a worker thread, batching concurrent requests.

    Args:
        path: A model folder (`from_pretrained` layout, tokenizer included).
        max_batch: Most requests generated together.
        max_wait_ms: How long the first waiting request waits for others.
        threads: torch threads for generation.
    """

    def __init__(
        self, path: str | Path, *, max_batch: int = 8, max_wait_ms: float = 10.0, threads: int | None = None
    ) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if threads is not None:
            torch.set_num_threads(threads)
        self.max_batch = max_batch
        self.max_wait_s = max_wait_ms / 1000
        self.tokenizer = AutoTokenizer.from_pretrained(str(path))
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForCausalLM.from_pretrained(str(path))
        self.model.eval()  # type: ignore[no-untyped-call]
        self.batches: list[int] = []  # sizes of the batches generated, for tests and benchmarks
        self._queue: asyncio.Queue[_Job] | None = None
        self._task: asyncio.Task[None] | None = None
        self._gpu = threading.Lock()

    def _prompt(self, operation: Operation, body: dict[str, Any]) -> str:
        if operation == "completion":
            prompt = body.get("prompt")
            if not isinstance(prompt, str):
                raise BadRequestError("expected `prompt` to be one string for this backend", param="prompt")
            return prompt
        messages = [
            {"role": m.get("role", "user"), "content": _message_text(m.get("content"))} for m in body["messages"]
        ]
        if getattr(self.tokenizer, "chat_template", None):
            return str(self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))
        return "".join(f"{m['role']}: {m['content']}\n" for m in messages) + "assistant:"

    async def _submit(
        self, operation: Operation, body: dict[str, Any], pieces: asyncio.Queue[str] | None = None
    ) -> tuple[str, int, int, str]:
        if operation == "embeddings":
            raise BadRequestError("this deployment serves a text-generation model; it has no embeddings", param="model")
        if self._queue is None:
            self._queue = asyncio.Queue()
            self._task = asyncio.create_task(self._batcher())
        loop = asyncio.get_running_loop()
        job = _Job(
            prompt=self._prompt(operation, body),
            max_new_tokens=int(body.get("max_tokens") or body.get("max_completion_tokens") or 16),
            temperature=float(body["temperature"]) if body.get("temperature") is not None else 1.0,
            future=loop.create_future(),
            pieces=pieces,
        )
        await self._queue.put(job)
        return await job.future

    async def _batcher(self) -> None:
        assert self._queue is not None
        while True:
            batch = [await self._queue.get()]
            deadline = time.monotonic() + self.max_wait_s
            while len(batch) < self.max_batch:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self._queue.get(), remaining))
                except TimeoutError:
                    break
            batch = [job for job in batch if not job.future.done()]  # a caller that left while it waited
            if not batch:
                continue
            self.batches.append(len(batch))
            try:
                results = await asyncio.to_thread(self._generate, batch, asyncio.get_running_loop())
            except Exception as exc:  # request boundary: every waiting caller gets the error
                for job in batch:
                    if not job.future.done():
                        job.future.set_exception(exc)
                continue
            for job, result in zip(batch, results, strict=True):
                if not job.future.done():
                    job.future.set_result(result)

    def _generate(self, batch: list[_Job], loop: asyncio.AbstractEventLoop) -> list[tuple[str, int, int, str]]:
        import torch

        streaming = any(job.pieces is not None for job in batch)

        greedy = all(job.temperature == 0 for job in batch)
        most = max(job.max_new_tokens for job in batch)
        inputs = self.tokenizer([job.prompt for job in batch], return_tensors="pt", padding=True)
        with self._gpu, torch.inference_mode():
            output = self.model.generate(
                **inputs,
                max_new_tokens=most,
                do_sample=not greedy,
                temperature=None if greedy else max(job.temperature for job in batch),
                top_p=None,
                top_k=None,
                pad_token_id=self.tokenizer.pad_token_id,
                num_beams=1,  # requests choose greedy or sampling; a model's own beam setting would refuse a streamer
                streamer=_BatchStreamer(self.tokenizer, batch, loop) if streaming else None,
            )
        width = inputs["input_ids"].shape[1]
        results = []
        for row, job in enumerate(batch):
            tokens = output[row, width : width + job.max_new_tokens].tolist()
            eos = self.tokenizer.eos_token_id
            finish = "length"
            if eos is not None and eos in tokens:
                tokens = tokens[: tokens.index(eos)]
                finish = "stop"
            prompt_tokens = int(inputs["attention_mask"][row].sum())
            text = _decode(self.tokenizer, tokens)
            results.append((text, prompt_tokens, len(tokens), finish))
        return results

    async def complete(self, operation: Operation, body: dict[str, Any]) -> dict[str, Any]:
        """Generate one answer, batched with whatever else is waiting."""
        text, tokens_in, tokens_out, finish = await self._submit(operation, body)
        usage = {"prompt_tokens": tokens_in, "completion_tokens": tokens_out, "total_tokens": tokens_in + tokens_out}
        if operation == "completion":
            choice: dict[str, Any] = {"index": 0, "text": text, "finish_reason": finish, "logprobs": None}
            return {"id": f"cmpl-{new_ulid()}", "object": "text_completion", "created": int(time.time()),
                    "model": body.get("model", ""), "choices": [choice], "usage": usage}  # fmt: skip
        choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}
        return {"id": f"chatcmpl-{new_ulid()}", "object": "chat.completion", "created": int(time.time()),
                "model": body.get("model", ""), "choices": [choice], "usage": usage}  # fmt: skip

    async def stream(self, operation: Operation, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """The answer as content chunks while it is generated (batched like any request), then usage."""
        pieces: asyncio.Queue[str] = asyncio.Queue()
        answer = asyncio.ensure_future(self._submit(operation, body, pieces))
        chat = operation != "completion"
        base = {"id": f"{'chatcmpl' if chat else 'cmpl'}-{new_ulid()}",
                "object": "chat.completion.chunk" if chat else "text_completion",
                "created": int(time.time()), "model": body.get("model", "")}  # fmt: skip

        def chunk(text: str, first: bool) -> dict[str, Any]:
            delta: dict[str, Any] = {"text": text} if not chat else {
                "delta": {"role": "assistant", "content": text} if first else {"content": text}}  # fmt: skip
            return {**base, "choices": [{"index": 0, **delta, "finish_reason": None}]}

        sent = ""
        waiting: asyncio.Future[str] | None = None
        try:
            while not answer.done() or not pieces.empty():
                if pieces.empty():
                    waiting = asyncio.ensure_future(pieces.get())
                    await asyncio.wait({waiting, answer}, return_when=asyncio.FIRST_COMPLETED)
                    if not waiting.done():
                        waiting.cancel()
                        continue
                    piece = waiting.result()
                else:
                    piece = pieces.get_nowait()
                yield chunk(piece, first=not sent)
                sent += piece
            text, tokens_in, tokens_out, finish = answer.result()
        finally:
            if waiting is not None and not waiting.done():
                waiting.cancel()
            if not answer.done():  # the client went away: its row is skipped from now on, its result dropped
                answer.cancel()
        if text.startswith(sent) and len(text) > len(sent):  # what decoding the whole answer settles
            yield chunk(text[len(sent) :], first=not sent)
        elif not sent and chat:
            yield chunk("", first=True)
        usage = {"prompt_tokens": tokens_in, "completion_tokens": tokens_out, "total_tokens": tokens_in + tokens_out}
        end: dict[str, Any] = {"delta": {}} if chat else {"text": ""}
        yield {**base, "choices": [{"index": 0, **end, "finish_reason": finish}]}
        yield {**base, "choices": [], "usage": usage}  # as OpenAI sends it: usage alone, on a last chunk

    async def aclose(self) -> None:
        """Stop the batcher."""
        if self._task is not None:
            self._task.cancel()
            self._task = None


class SentenceTransformersBackend:
    """Sentence embeddings from a sentence-transformers model folder, encoded in a worker thread.

    Args:
        path: The model folder.
    """

    def __init__(self, path: str | Path) -> None:
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(str(path), device="cpu")
        self._lock = threading.Lock()

    def _encode(self, texts: list[str]) -> tuple[list[list[float]], int]:
        with self._lock:
            vectors = self.model.encode(texts, normalize_embeddings=True, convert_to_numpy=True)
            tokens = sum(len(ids) for ids in self.model.tokenizer(texts)["input_ids"])
        return [v.tolist() for v in vectors], int(tokens)

    async def complete(self, operation: Operation, body: dict[str, Any]) -> dict[str, Any]:
        """Embed `input` (a string or a list of strings)."""
        if operation != "embeddings":
            raise BadRequestError("this deployment serves an embedding model; use /v1/embeddings", param="model")
        raw = body.get("input")
        texts = [raw] if isinstance(raw, str) else raw
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts) or not texts:
            raise BadRequestError("expected `input` to be a string or a non-empty list of strings", param="input")
        vectors, tokens = await asyncio.to_thread(self._encode, texts)
        return {
            "object": "list",
            "model": body.get("model", ""),
            "data": [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }

    async def stream(self, operation: Operation, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """Embedding models do not stream."""
        for _ in ():  # never runs: only makes this an async generator, as the protocol asks
            yield {}
        raise BadRequestError("embedding models cannot stream", param="stream")

    async def aclose(self) -> None:
        """Nothing to release."""
