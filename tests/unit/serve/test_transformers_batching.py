"""The `transformers` backend's continuous batching: per-row sampling, stop, caps, joining, leaving."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from keel.serve import BadRequestError, TransformersBackend

CHAT = [{"role": "user", "content": "hello world"}]


def _run(folder: Path, work: Any, **options: Any) -> Any:
    import torch

    torch.set_num_threads(1)

    async def main() -> Any:
        backend = TransformersBackend(folder, **{"max_wait_ms": 200.0, **options})
        try:
            return await work(backend)
        finally:
            await backend.aclose()

    return asyncio.run(main())


def _slow_down(backend: TransformersBackend, seconds: float) -> None:
    """Make each forward pass take at least `seconds` (sleeping, so the event loop runs meanwhile)."""
    forward = backend.model.forward

    def slow(*args: Any, **kwargs: Any) -> Any:
        time.sleep(seconds)
        return forward(*args, **kwargs)

    backend.model.forward = slow  # type: ignore[method-assign]


def _text(answer: dict[str, Any]) -> str:
    return str(answer["choices"][0]["message"]["content"])


def test_temperature_zero_is_the_same_alone_and_batched_with_hot_requests(tiny_llama: Path) -> None:
    cold = {"messages": CHAT, "max_tokens": 24, "temperature": 0, "ignore_eos": True}
    hot = {"messages": CHAT, "max_tokens": 24, "temperature": 2.0, "ignore_eos": True}

    async def work(backend: TransformersBackend) -> tuple[str, list[str], list[str], int]:
        alone = _text(await backend.complete("chat", cold))
        together = await asyncio.gather(*(backend.complete("chat", b) for b in [hot, cold, hot, cold, hot, hot]))
        seeded = [_text(await backend.complete("chat", {**hot, "seed": 7})) for _ in range(2)]
        return alone, [_text(a) for a in together], seeded, max(backend.step_rows)

    alone, together, seeded, widest = _run(tiny_llama, work)
    assert widest >= 6  # the six were generated in one batch
    assert together[1] == together[3] == alone  # temperature 0 rows stayed greedy beside temperature 2 rows
    assert {together[0], together[2], together[4], together[5]} != {alone}  # the hot rows were sampled
    assert seeded[0] == seeded[1]  # a seed makes sampling repeatable


def test_stop_strings_cut_the_answer_and_unsupported_parameters_are_refused(tiny_llama: Path) -> None:
    body = {"prompt": "the quick", "max_tokens": 20, "temperature": 0, "ignore_eos": True}

    async def work(backend: TransformersBackend) -> tuple[dict[str, Any], dict[str, Any], list[BadRequestError]]:
        full = await backend.complete("completion", body)
        text = full["choices"][0]["text"]
        stop = text[len(text) // 2 : len(text) // 2 + 2]
        cut = await backend.complete("completion", {**body, "stop": [stop, "never-seen"]})
        refused = []
        for extra in ({"n": 2}, {"logprobs": True}, {"tools": [{"type": "function"}]},
                      {"response_format": {"type": "json_object"}}, {"logit_bias": {"1": 5}}):  # fmt: skip
            with pytest.raises(BadRequestError) as caught:
                await backend.complete("chat", {"messages": CHAT, **extra})
            refused.append(caught.value)
        return full, {**cut, "stop": stop}, refused

    full, cut, refused = _run(tiny_llama, work)
    text = full["choices"][0]["text"]
    assert full["choices"][0]["finish_reason"] == "length" and full["usage"]["completion_tokens"] == 20
    assert cut["choices"][0]["text"] == text[: text.index(cut["stop"])]
    assert cut["choices"][0]["finish_reason"] == "stop"
    assert [e.param for e in refused] == ["n", "logprobs", "tools", "response_format", "logit_bias"]
    assert all("cannot honour" in str(e) for e in refused)


def test_a_short_request_is_not_stuck_behind_a_long_one(tiny_llama: Path) -> None:
    long = {"prompt": "the quick", "max_tokens": 200, "temperature": 0, "ignore_eos": True}
    short = {"prompt": "hello", "max_tokens": 4, "temperature": 0, "ignore_eos": True}

    async def work(backend: TransformersBackend) -> tuple[list[str], dict[str, Any], dict[str, Any], int]:
        order: list[str] = []

        async def one(name: str, body: dict[str, Any]) -> dict[str, Any]:
            answer = await backend.complete("completion", body)
            order.append(name)
            return answer

        _slow_down(backend, 0.002)  # 200 steps take >= 0.4 s, whatever the machine
        running = asyncio.ensure_future(one("long", long))
        while backend.engine.steps < 5:  # the long request is generating
            await asyncio.sleep(0.01)
        started_at = backend.engine.steps
        quick = await one("short", short)
        joined_for = backend.engine.steps - started_at
        return order, quick, await running, joined_for

    order, quick, slow, joined_for = _run(tiny_llama, work, max_wait_ms=0.0)
    assert order == ["short", "long"]  # it joined the running batch and left it when done
    assert quick["usage"]["completion_tokens"] == 4 and slow["usage"]["completion_tokens"] == 200
    assert joined_for < 20  # a few steps after joining, not after the long request's 200


def test_an_abandoned_stream_stops_generating_and_the_output_is_capped(tiny_llama: Path) -> None:
    body = {"prompt": "the quick", "max_tokens": 200, "temperature": 0, "ignore_eos": True}

    async def work(backend: TransformersBackend) -> tuple[list[tuple[str, int]], dict[str, Any]]:
        _slow_down(backend, 0.02)  # 30 steps take >= 0.6 s: the client surely leaves first
        chunks = backend.stream("completion", body)
        for _ in range(3):
            await anext(chunks)
        await chunks.aclose()  # the client went away
        deadline = time.monotonic() + 30
        while not backend.engine.left and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        capped = await backend.complete("chat", {"messages": CHAT, "ignore_eos": True})  # no max_tokens
        return list(backend.engine.left), capped

    left, capped = _run(tiny_llama, work, max_output_tokens=30)
    reason, tokens = left[0]
    assert reason == "abandoned" and tokens < 30
    assert capped["usage"]["completion_tokens"] == 30 and capped["choices"][0]["finish_reason"] == "length"


def test_batches_stay_under_their_token_bound(tiny_llama: Path) -> None:
    body = {"prompt": "the quick brown fox", "max_tokens": 40, "temperature": 0, "ignore_eos": True}

    async def work(backend: TransformersBackend) -> tuple[list[int], list[dict[str, Any]]]:
        answers = await asyncio.gather(*(backend.complete("completion", body) for _ in range(6)))
        return backend.step_rows, answers

    # Each row may reach ~45 positions; 256 (the context, the least bound allowed) holds five of them.
    rows, answers = _run(tiny_llama, work, max_batch=16, max_batch_tokens=1)
    assert max(rows) <= 256 // 45 and len({a["choices"][0]["text"] for a in answers}) == 1
