"""In-process backends: a `transformers` causal LM with continuous batching, and sentence embeddings.

Generation never runs on the event loop: requests are checked and tokenised here (each alone,
bounded by the model's context length before any tokenisation), then `_batching.BatchEngine`
generates them in its thread, rows joining and leaving between steps, each sampled with its own
parameters. A streaming request gets each token's text as it is generated. Parameters a backend
cannot honour are refused with 400 naming them, never ignored.
torch, transformers and sentence-transformers are imported when a backend is built, not before.
"""

from __future__ import annotations

import asyncio
import base64
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from keel.core.ids import new_ulid
from keel.serve._backends import Operation
from keel.serve._batching import BatchEngine, GenerationJob, GenerationResult
from keel.serve._errors import BadRequestError

__all__ = ["SentenceTransformersBackend", "TransformersBackend"]

# Tokenising more characters than this happens in a worker thread, not on the event loop.
_INLINE_CHARS = 4096


def _message_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts: keep the text ones
        return "".join(str(p.get("text") or "") for p in content if isinstance(p, dict))
    return ""


def _set(value: Any) -> bool:
    """Whether an optional parameter asks for something (not absent, null, false, zero or empty)."""
    return value not in (None, False, 0, "", [], {})


def _unsupported(operation: Operation, body: dict[str, Any]) -> list[str]:
    """Parameters of `body` this backend cannot honour; refused rather than silently ignored."""
    names = ["logprobs", "top_logprobs", "tools", "functions", "logit_bias", "presence_penalty",
             "frequency_penalty", "audio", "prediction", "web_search_options", "suffix", "echo"]  # fmt: skip
    found = [name for name in names if _set(body.get(name))]
    if body.get("tool_choice") not in (None, "none"):
        found.append("tool_choice")
    if body.get("function_call") not in (None, "none"):
        found.append("function_call")
    response_format = body.get("response_format")
    if response_format is not None and response_format.get("type") != "text":
        found.append("response_format")
    if body.get("modalities") not in (None, ["text"]):
        found.append("modalities")
    for name in ("n", "best_of"):
        if body.get(name) not in (None, 1):
            found.append(name)
    if operation == "completion" and not isinstance(body.get("prompt"), str):
        found.append("prompt")
    return found


class TransformersBackend:
    """A Hugging Face causal LM generating in a worker thread, batching concurrent requests continuously.

    Args:
        path: A model folder (`from_pretrained` layout, tokenizer included).
        max_batch: Most requests generated together.
        max_wait_ms: When idle, how long the first request waits for others to form a batch.
        threads: torch threads for generation.
        max_batch_tokens: Bound of rows × longest row (prompt + output budget) in one batch; the
            KV cache never holds more token positions than this (a lone request excepted, which
            the context length bounds).
        max_output_tokens: Most tokens generated for one request, whatever it asks.
        default_max_tokens: Output budget of a request that names none (completions; chat requests
            get `max_output_tokens`, as OpenAI's default is "until the context ends").
    """

    runtime = "transformers"  # named in refusals

    def __init__(
        self,
        path: str | Path,
        *,
        max_batch: int = 8,
        max_wait_ms: float = 10.0,
        threads: int | None = None,
        max_batch_tokens: int = 65_536,
        max_output_tokens: int = 4096,
        default_max_tokens: int = 16,
    ) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if threads is not None:
            torch.set_num_threads(threads)
        self.tokenizer = AutoTokenizer.from_pretrained(str(path))
        self.model = AutoModelForCausalLM.from_pretrained(str(path))
        self.model.eval()  # type: ignore[no-untyped-call]
        self.context = _context_length(self.model.config, self.tokenizer)
        # A token covers at most this many characters: `chars > context * longest` proves a prompt
        # too long without tokenising it (a 10 MB message is refused in microseconds).
        self.longest_token = max((len(t) for t in self.tokenizer.get_vocab()), default=1) or 1
        self.max_output_tokens = max_output_tokens
        self.default_max_tokens = default_max_tokens
        self.engine = BatchEngine(
            self.model, self.tokenizer, max_batch=max_batch,
            max_batch_tokens=max(max_batch_tokens, self.context), max_wait_s=max_wait_ms / 1000,
        )  # fmt: skip

    @property
    def step_rows(self) -> list[int]:
        """Rows in each decode step so far (for tests and benchmarks)."""
        return self.engine.step_rows

    def _prompt(self, operation: Operation, body: dict[str, Any]) -> tuple[str, str]:
        """The prompt text and the parameter it came from; refuses one provably over the context."""
        if operation == "completion":
            prompt, param = str(body["prompt"]), "prompt"
            self._bound(len(prompt), param)
            return prompt, param
        messages = [
            {"role": m.get("role", "user"), "content": _message_text(m.get("content"))} for m in body["messages"]
        ]
        self._bound(sum(len(m["content"]) for m in messages), "messages")
        if getattr(self.tokenizer, "chat_template", None):
            text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            return str(text), "messages"
        return "".join(f"{m['role']}: {m['content']}\n" for m in messages) + "assistant:", "messages"

    def _bound(self, chars: int, param: str) -> None:
        if chars > self.context * self.longest_token:
            raise BadRequestError(
                f"this model's context is {self.context} tokens; the {param} has {chars} characters, which is "
                f"more than {self.context} tokens of at most {self.longest_token} characters each",
                hint="shorten the input",
                param=param,
            )

    async def _job(
        self, operation: Operation, body: dict[str, Any], pieces: asyncio.Queue[str] | None
    ) -> GenerationJob:
        if operation == "embeddings":
            raise BadRequestError("this deployment serves a text-generation model; it has no embeddings", param="model")
        refused = _unsupported(operation, body)
        if refused:
            names = ", ".join(f"`{n}`" for n in refused)
            raise BadRequestError(
                f"this deployment's model runs in process ({self.runtime}), which cannot honour {names}; "
                "remove them or call a deployment on an upstream server that supports them",
                param=refused[0],
            )
        text, param = self._prompt(operation, body)
        if len(text) > _INLINE_CHARS:
            ids = await asyncio.to_thread(self._tokenize, text)
        else:
            ids = self._tokenize(text)
        if len(ids) >= self.context:
            raise BadRequestError(
                f"this model's context is {self.context} tokens; the {param} take {len(ids)}",
                hint="shorten the input", param=param,
            )  # fmt: skip
        asked = body.get("max_completion_tokens") or body.get("max_tokens")
        budget = (
            int(asked) if asked else (self.default_max_tokens if operation == "completion" else self.max_output_tokens)
        )
        stop = body.get("stop")
        loop = asyncio.get_running_loop()
        return GenerationJob(
            ids=ids,
            max_new_tokens=max(1, min(budget, self.max_output_tokens, self.context - len(ids))),
            loop=loop,
            future=loop.create_future(),
            temperature=float(body["temperature"]) if body.get("temperature") is not None else 1.0,
            top_p=float(body["top_p"]) if body.get("top_p") is not None else 1.0,
            seed=body.get("seed"),
            stop=(stop,) if isinstance(stop, str) else tuple(stop or ()),
            ignore_eos=body.get("ignore_eos") is True,  # vLLM's extension: generate the whole budget
            pieces=pieces,
        )

    def _tokenize(self, text: str) -> list[int]:
        ids = list(self.tokenizer(text)["input_ids"])
        if not ids:
            if self.tokenizer.bos_token_id is None:
                raise BadRequestError("expected a non-empty prompt; this model has no start token to begin from")
            ids = [self.tokenizer.bos_token_id]
        return ids

    async def _submit(
        self, operation: Operation, body: dict[str, Any], pieces: asyncio.Queue[str] | None = None
    ) -> GenerationResult:
        job = await self._job(operation, body, pieces)
        self.engine.submit(job)
        try:
            return await asyncio.shield(job.future)
        finally:
            if not job.future.done():  # the caller left (cancelled): the engine drops its row at the next step
                job.abandoned = True
                job.future.cancel()

    async def complete(self, operation: Operation, body: dict[str, Any]) -> dict[str, Any]:
        """Generate one answer, batched with whatever else is running."""
        result = await self._submit(operation, body)
        usage = _usage(result)
        if operation == "completion":
            choice: dict[str, Any] = {"index": 0, "text": result.text, "finish_reason": result.finish_reason,
                                      "logprobs": None}  # fmt: skip
            return {"id": f"cmpl-{new_ulid()}", "object": "text_completion", "created": int(time.time()),
                    "model": body.get("model", ""), "choices": [choice], "usage": usage}  # fmt: skip
        choice = {"index": 0, "message": {"role": "assistant", "content": result.text},
                  "finish_reason": result.finish_reason}  # fmt: skip
        return {"id": f"chatcmpl-{new_ulid()}", "object": "chat.completion", "created": int(time.time()),
                "model": body.get("model", ""), "choices": [choice], "usage": usage}  # fmt: skip

    async def stream(self, operation: Operation, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """Content chunks while the answer is generated, a finishing chunk, then a usage chunk (`choices: []`)."""
        pieces: asyncio.Queue[str] = asyncio.Queue()
        job = await self._job(operation, body, pieces)  # a refusal raises here, before any chunk
        self.engine.submit(job)
        chat = operation != "completion"
        base = {"id": f"{'chatcmpl' if chat else 'cmpl'}-{new_ulid()}",
                "object": "chat.completion.chunk" if chat else "text_completion",
                "created": int(time.time()), "model": body.get("model", "")}  # fmt: skip

        def chunk(text: str, first: bool) -> dict[str, Any]:
            delta: dict[str, Any] = {"text": text} if not chat else {
                "delta": {"role": "assistant", "content": text} if first else {"content": text}}  # fmt: skip
            return {**base, "choices": [{"index": 0, **delta, "finish_reason": None}]}

        sent = ""
        waiting: asyncio.Future[Any] | None = None
        answer: asyncio.Future[Any] = job.future
        try:
            while not job.future.done() or not pieces.empty():
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
            result = job.future.result()
        finally:
            if waiting is not None and not waiting.done():
                waiting.cancel()
            if not job.future.done():  # the client went away: the engine drops its row at the next step
                job.abandoned = True
                job.future.cancel()
        if result.text.startswith(sent) and len(result.text) > len(sent):
            yield chunk(result.text[len(sent) :], first=not sent)
        elif not sent and chat:
            yield chunk("", first=True)
        end: dict[str, Any] = {"delta": {}} if chat else {"text": ""}
        yield {**base, "choices": [{"index": 0, **end, "finish_reason": result.finish_reason}]}
        yield {**base, "choices": [], "usage": _usage(result)}

    async def aclose(self) -> None:
        """Stop the engine (its thread ends after the current step)."""
        await asyncio.to_thread(self.engine.close)


def _usage(result: GenerationResult) -> dict[str, int]:
    return {"prompt_tokens": result.prompt_tokens, "completion_tokens": result.completion_tokens,
            "total_tokens": result.prompt_tokens + result.completion_tokens}  # fmt: skip


def _context_length(config: Any, tokenizer: Any) -> int:
    """The model's context in tokens: its position embeddings, else the tokenizer's stated maximum."""
    for name in ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    stated = getattr(tokenizer, "model_max_length", None)
    return stated if isinstance(stated, int) and 0 < stated < 1_000_000 else 2048


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
        """Embed `input` (a string or a list of strings), as float lists or base64 float32 (`encoding_format`)."""
        if operation != "embeddings":
            raise BadRequestError("this deployment serves an embedding model; use /v1/embeddings", param="model")
        raw = body.get("input")
        texts = [raw] if isinstance(raw, str) else raw
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts) or not texts:
            raise BadRequestError(
                "expected `input` to be a string or a non-empty list of strings (this model takes text, not token ids)",
                param="input",
            )
        dimensions = body.get("dimensions")
        size = self.model.get_embedding_dimension() if dimensions is not None else None
        if dimensions is not None and dimensions != size:
            raise BadRequestError(
                f"this embedding model gives {size} dimensions and cannot shorten them; got `dimensions` {dimensions}",
                param="dimensions",
            )
        vectors, tokens = await asyncio.to_thread(self._encode, texts)
        encoded: list[Any] = vectors
        if body.get("encoding_format") == "base64":  # what the official client asks for by default
            import numpy as np

            encoded = [base64.b64encode(np.asarray(v, dtype="<f4").tobytes()).decode() for v in vectors]
        return {
            "object": "list",
            "model": body.get("model", ""),
            "data": [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(encoded)],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }

    async def stream(self, operation: Operation, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """Embedding models do not stream."""
        for _ in ():  # never runs: only makes this an async generator, as the protocol asks
            yield {}
        raise BadRequestError("embedding models cannot stream", param="stream")

    async def aclose(self) -> None:
        """Nothing to release."""
