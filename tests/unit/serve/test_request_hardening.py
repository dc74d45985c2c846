"""Hostile and broken requests: size and context limits, validation, failing streams, the breaker, auth."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Route as StarletteRoute

from keel.registry import register_model
from keel.serve import Gateway, ServeSettings, create_app, create_deployment, serve_in_thread, stub_upstream_app
from keel.store import Store

HI = [{"role": "user", "content": "hi"}]


def _in_process(store: Store, calls: Any, **settings: Any) -> Any:
    gateway = Gateway(store, ServeSettings(require_keys=False, **settings), model_dir=store.settings.state_dir / "m")

    async def run() -> Any:
        await gateway.start()
        try:
            transport = httpx.ASGITransport(create_app(gateway))
            async with httpx.AsyncClient(transport=transport, base_url="http://gw", timeout=60) as client:
                return await calls(client, gateway)
        finally:
            await gateway.close()

    return asyncio.run(run())


BAD_CHAT: list[tuple[Any, str | None]] = [
    ({"messages": ["hi"]}, "messages[0]"),
    ({"messages": [None]}, "messages[0]"),
    ({"messages": [[None, None]]}, "messages[0]"),
    ({"messages": []}, "messages"),
    ({"messages": HI, "max_tokens": "abc"}, "max_tokens"),
    ({"messages": HI, "max_tokens": -5}, "max_tokens"),
    ({"messages": HI, "temperature": -1}, "temperature"),
    ({"messages": HI, "temperature": "hot"}, "temperature"),
    ({"messages": [{"role": "user", "content": "\ud800"}]}, "messages[0].content"),
    ({"messages": HI, "stop": ["a", "b", "c", "d", "e"]}, "stop"),
]


def test_bad_input_is_a_400_naming_the_parameter_on_both_backends(
    store: Store, upstream: str, chat_versions: tuple[str, str], tiny_llama: Path
) -> None:
    create_deployment(store, "chat", "chat@v1", route={"upstream": f"{upstream}/v1"})
    create_deployment(
        store, "tiny", register_model(store, "tiny", tiny_llama)[0].ref, route={"backend": "transformers"}
    )

    async def calls(client: httpx.AsyncClient, _: Gateway) -> list[tuple[str | None, httpx.Response]]:
        out = []
        for model in ("chat", "tiny"):
            for body, param in BAD_CHAT:
                raw = json.dumps({"model": model, **body}).encode()  # json.dumps escapes the lone surrogate
                out.append((param, await client.post("/v1/chat/completions", content=raw)))
            out.append(("input[0]", await client.post("/v1/embeddings", json={"model": model, "input": [None]})))
            completion = {"model": model, "prompt": "x", "max_completion_tokens": "abc"}
            out.append(("max_completion_tokens", await client.post("/v1/completions", json=completion)))
            nested = b'{"model": "chat", "messages": ' + b"[" * 5000 + b"]" * 5000 + b"}"
            out.append((None, await client.post("/v1/chat/completions", content=nested)))
            out.append(
                ("model", await client.post("/v1/chat/completions", content=b'{"model":"\\ud800","messages":[]}'))
            )
        out.append(("openapi", await client.get("/openapi.json")))
        return out

    answers = _in_process(store, calls)
    schema = answers.pop()[1].json()
    assert {"/v1/chat/completions", "/v1/completions", "/v1/embeddings"} <= set(schema["paths"])
    for param, response in answers:
        assert response.status_code == 400, (param, response.text)
        error = response.json()["error"]
        assert error["type"] == "invalid_request_error" and error["param"] == param, (param, error)
        assert error["message"]


def test_a_10_mb_request_is_refused_and_the_next_one_is_served(
    store: Store, tiny_llama: Path, gateway_server: Any, api_key: str
) -> None:
    create_deployment(
        store, "tiny", register_model(store, "tiny", tiny_llama)[0].ref, route={"backend": "transformers"}
    )
    huge = {"model": "tiny", "messages": [{"role": "user", "content": "a" * 10_000_000}]}
    long = {"model": "tiny", "messages": [{"role": "user", "content": "hello world " * 20_000}]}  # 240 kB
    over = {"model": "tiny", "messages": [{"role": "user", "content": "hello world, " * 100}]}  # 1.3 kB, > 256 tokens
    headers = {"authorization": f"Bearer {api_key}"}
    with gateway_server() as (url, _), httpx.Client(base_url=url, headers=headers, timeout=120) as client:
        refused = client.post("/v1/chat/completions", json=huge)
        assert refused.status_code == 413 and refused.json()["error"]["code"] == "request_too_large"
        for body in (long, over):  # under the body limit, over the model's context (256 tokens)
            too_long = client.post("/v1/chat/completions", json=body)
            assert too_long.status_code == 400, too_long.text
            error = too_long.json()["error"]
            assert error["param"] == "messages" and "context is 256 tokens" in error["message"]
        normal = client.post("/v1/chat/completions", json={"model": "tiny", "messages": HI, "max_tokens": 3})
        assert normal.status_code == 200 and normal.json()["usage"]["completion_tokens"] <= 3


def _breaking_upstream() -> Starlette:
    """An upstream that sends one chunk of a stream, then drops the connection."""

    async def chat(request: Request) -> StreamingResponse:
        async def chunks() -> Any:
            chunk = {"id": "x", "object": "chat.completion.chunk", "created": 0, "model": "m",
                     "choices": [{"index": 0, "delta": {"content": "partial"}, "finish_reason": None}]}  # fmt: skip
            yield f"data: {json.dumps(chunk)}\n\n".encode()
            await asyncio.sleep(0.05)
            raise RuntimeError("the upstream crashed mid-stream")

        return StreamingResponse(chunks(), media_type="text/event-stream")

    return Starlette(routes=[StarletteRoute("/v1/chat/completions", chat, methods=["POST"])])


def test_a_failing_stream_fails_before_its_first_byte_or_ends_with_an_error_and_done(
    store: Store, chat_versions: tuple[str, str], gateway_server: Any, api_key: str
) -> None:
    create_deployment(store, "down", "chat@v1", route={"upstream": "http://127.0.0.1:9/v1"})  # nothing listens
    stream = {"messages": HI, "stream": True}
    headers = {"authorization": f"Bearer {api_key}"}
    with serve_in_thread(_breaking_upstream()) as broken:
        create_deployment(store, "broken", "chat@v2", route={"upstream": f"{broken}/v1"})
        with gateway_server(upstream_retries=0) as (url, _), httpx.Client(base_url=url, headers=headers) as client:
            down = client.post("/v1/chat/completions", json={"model": "down", **stream})
            assert down.status_code == 502 and down.json()["error"]["code"] == "upstream_error"
            with client.stream("POST", "/v1/chat/completions", json={"model": "broken", **stream}) as response:
                assert response.status_code == 200
                lines = [line for line in response.iter_lines() if line.startswith("data:")]
    assert "partial" in lines[0]
    assert json.loads(lines[-2].removeprefix("data: "))["error"]["code"] == "upstream_error"
    assert lines[-1] == "data: [DONE]"


def test_a_500_caused_by_one_request_is_not_retried_and_does_not_open_the_circuit(
    store: Store, chat_versions: tuple[str, str], gateway_server: Any, api_key: str, openai_client: Any
) -> None:
    stub = stub_upstream_app()
    with serve_in_thread(stub) as upstream:
        create_deployment(store, "chat", "chat@v1", route={"upstream": f"{upstream}/v1"})
        with gateway_server(upstream_retries=2, breaker_failures=2) as (url, _):
            client = openai_client(url, api_key)
            for _ in range(3):
                with pytest.raises(openai.APIStatusError) as failed:
                    client.chat.completions.create(model="chat", messages=[{"role": "user", "content": "stub-500"}])
                assert failed.value.status_code == 502 and "not retried" in failed.value.message
            assert stub.state.requests == 3  # one attempt each
            answer = client.chat.completions.create(model="chat", messages=HI)  # the circuit stayed closed
            assert answer.choices[0].message.content == "chat: hi"


def test_failed_key_checks_are_limited_per_client_address(
    store: Store, upstream: str, chat_versions: tuple[str, str], gateway_server: Any, api_key: str, openai_client: Any
) -> None:
    create_deployment(store, "chat", "chat@v1", route={"upstream": f"{upstream}/v1"})
    with gateway_server(auth_failures=3) as (url, gateway):
        for i in range(3):
            with pytest.raises(openai.AuthenticationError):
                openai_client(url, api_key[:-3] + f"x{i}z").chat.completions.create(model="chat", messages=HI)
        with pytest.raises(openai.RateLimitError) as limited:
            openai_client(url, api_key[:-3] + "abc").chat.completions.create(model="chat", messages=HI)
        assert "too many failed API key checks" in limited.value.message
        assert int(limited.value.response.headers["retry-after"]) > 0
        assert gateway.keys.argon2_checks == 3


def test_a_client_that_leaves_stops_its_generation(
    store: Store, tiny_llama: Path, gateway_server: Any, api_key: str
) -> None:
    create_deployment(
        store, "tiny", register_model(store, "tiny", tiny_llama)[0].ref, route={"backend": "transformers"}
    )
    body = {"model": "tiny", "prompt": "the quick", "max_tokens": 250, "temperature": 0, "ignore_eos": True}
    headers = {"authorization": f"Bearer {api_key}"}
    with gateway_server() as (url, gateway), httpx.Client(base_url=url, headers=headers, timeout=60) as client:
        client.post("/v1/completions", json={**body, "max_tokens": 1})  # builds the backend
        backend = next(iter(gateway._backends.values()))
        forward = backend.model.forward

        def slow(*args: Any, **kwargs: Any) -> Any:  # 250 tokens take >= 5 s: the client surely leaves first
            time.sleep(0.02)
            return forward(*args, **kwargs)

        backend.model.forward = slow
        with client.stream("POST", "/v1/completions", json={**body, "stream": True}) as response:
            lines = response.iter_lines()
            assert next(lines).startswith("data:")
        with pytest.raises(httpx.ReadTimeout):  # a plain request whose client gives up
            client.post("/v1/completions", json=body, timeout=0.5)
        deadline = time.monotonic() + 60
        while len(backend.engine.left) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        left = list(backend.engine.left)[1:]  # after the warm-up request's row
    assert [reason for reason, _ in left] == ["abandoned", "abandoned"]
    assert all(tokens < 250 for _, tokens in left)
