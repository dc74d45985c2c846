"""What the gateway exposes about itself: metric names and labels, readiness, error shapes, cancelled traces."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import openai
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from keel.govern import create_key
from keel.monitor import list_traces, summarize
from keel.serve import create_deployment, serve_in_thread
from keel.store import Store
from keel.store.schema import traces


def _series(exposition: str) -> set[str]:
    """The series of an exposition (name and labels), without their values."""
    return {line.rsplit(" ", 1)[0] for line in exposition.splitlines() if line and not line.startswith("#")}


def test_labels_come_only_from_the_deployment_table_and_anonymous_requests_are_only_counted(
    store: Store, upstream: str, chat_versions: tuple[str, str], gateway_server: Any, api_key: str
) -> None:
    create_deployment(store, "chat", "chat@v1", route={"upstream": f"{upstream}/v1"})
    auth = {"authorization": f"Bearer {api_key}"}
    messages = [{"role": "user", "content": "hi"}]
    with gateway_server() as (url, _):
        httpx.post(f"{url}/v1/chat/completions", json={"model": "chat", "messages": messages}, headers=auth)
        httpx.post(f"{url}/v1/chat/completions", json={"model": "nope-0", "messages": messages}, headers=auth)
        httpx.post(f"{url}/v1/chat/completions", json={"model": "x" * 100_000, "messages": messages})
        httpx.post(f"{url}/v1/chat/completions", json={"model": "nope-1", "messages": "hi"}, headers=auth)  # a 400
        before = httpx.get(f"{url}/metrics").text
        for i in range(20):  # hostile names, with and without a key
            name = f"{i}" * 100_000 if i % 2 else f"nope-{i}\ud800"
            body = json.dumps({"model": name, "messages": messages}).encode()
            assert httpx.post(f"{url}/v1/chat/completions", content=body).status_code == 401
            # with a key:
            expected = 400  # refused by validation: a lone surrogate, or a name past its length bound
            assert httpx.post(f"{url}/v1/chat/completions", content=body, headers=auth).status_code == expected
        after = httpx.get(f"{url}/metrics").text
    assert _series(after) == _series(before) and len(after) < len(before) + 2_000
    assert 'gen_ai_request_model="unknown"' in after and "nope" not in after and "xxxx" not in after
    assert 'keel_gateway_unauthenticated_requests_total{reason="invalid_api_key"} 21.0' in after
    found = list_traces(store, limit=100)
    assert len(found) == 23 and all(t.key_id is not None for t in found)  # the 21 without a key left none
    assert max(len(t.deployment) for t in found) == 128
    assert sum(r.errors for r in summarize(store)) == 22


def test_metrics_follow_the_genai_conventions(
    store: Store, upstream: str, chat_versions: tuple[str, str], gateway_server: Any, api_key: str, openai_client: Any
) -> None:
    create_deployment(store, "chat", "chat@v1", route={"upstream": f"{upstream}/v1"})
    with gateway_server() as (url, _):
        client = openai_client(url, api_key)
        client.chat.completions.create(model="chat", messages=[{"role": "user", "content": "a b c"}])
        list(client.chat.completions.create(model="chat", messages=[{"role": "user", "content": "a b c"}],
                                            stream=True))  # fmt: skip
        client.completions.create(model="chat", prompt="x")
        client.embeddings.create(model="chat", input="x")
        text = httpx.get(f"{url}/metrics").text
    histograms = set(re.findall(r"^# TYPE (\S+) histogram$", text, re.M))
    assert histograms == {
        "gen_ai_server_request_duration_seconds", "gen_ai_client_operation_duration_seconds",
        "gen_ai_client_token_usage", "gen_ai_server_time_to_first_token_seconds",
        "gen_ai_server_time_per_output_token_seconds",
    }  # fmt: skip
    labels = ('gen_ai_operation_name="{}",gen_ai_provider_name="openai",gen_ai_request_model="chat",'
              'gen_ai_response_model="chat@v1"')  # fmt: skip
    for operation in ("chat", "text_completion", "embeddings"):
        assert f'gen_ai_server_request_duration_seconds_count{{error_type="",{labels.format(operation)}}} ' in text
    assert f"gen_ai_server_time_per_output_token_seconds_count{{{labels.format('chat')}}} 1.0" in text
    assert f'gen_ai_client_token_usage_count{{{labels.format("embeddings")},gen_ai_token_type="output"}}' not in text
    assert 'le="81.92"' in text and 'le="262144.0"' in text and 'le="0.075"' in text  # the conventions' buckets


def test_metrics_may_require_a_key_with_the_metrics_scope(
    store: Store, upstream: str, chat_versions: tuple[str, str], gateway_server: Any
) -> None:
    app_key = create_key(store, "app", scopes=["chat"]).secret
    reader = create_key(store, "prometheus", scopes=["metrics"]).secret
    with gateway_server(metrics_require_key=True) as (url, _):
        anonymous = httpx.get(f"{url}/metrics")
        assert anonymous.status_code == 401 and anonymous.json()["error"]["code"] == "invalid_api_key"
        assert httpx.get(f"{url}/metrics", headers={"authorization": f"Bearer {app_key}"}).status_code == 403
        scraped = httpx.get(f"{url}/metrics", headers={"authorization": f"Bearer {reader}"})
        assert scraped.status_code == 200 and "gen_ai_server_request_duration_seconds" in scraped.text
    with gateway_server() as (url, _):  # the default: open
        assert httpx.get(f"{url}/metrics").status_code == 200


def test_unknown_routes_and_model_retrieval_answer_in_openai_shape(
    store: Store, upstream: str, chat_versions: tuple[str, str], gateway_server: Any, api_key: str, openai_client: Any
) -> None:
    create_deployment(store, "chat", "chat@v1", route={"upstream": f"{upstream}/v1"})
    with gateway_server() as (url, _):
        client = openai_client(url, api_key)
        assert client.models.retrieve("chat").id == "chat"
        with pytest.raises(openai.NotFoundError) as missing:
            client.models.retrieve("nope")
        assert missing.value.body["code"] == "model_not_found"
        nowhere = httpx.get(f"{url}/v1/nowhere")
        assert nowhere.status_code == 404 and set(nowhere.json()["error"]) == {"message", "type", "param", "code"}
        wrong_method = httpx.put(f"{url}/v1/chat/completions")
        assert wrong_method.status_code == 405 and wrong_method.json()["error"]["code"] == "method_not_allowed"
        assert httpx.get(f"{url}/v1/models/chat").status_code == 401


async def _slow_stream(request: Request) -> Response:
    async def chunks() -> AsyncIterator[bytes]:
        for i in range(300):
            chunk = {"id": "s", "object": "chat.completion.chunk", "created": 0, "model": "m",
                     "choices": [{"index": 0, "delta": {"content": f"w{i} "}, "finish_reason": None}]}  # fmt: skip
            yield f"data: {json.dumps(chunk)}\n\n".encode()
            await asyncio.sleep(0.05)
        yield b"data: [DONE]\n\n"

    return StreamingResponse(chunks(), media_type="text/event-stream")


@pytest.fixture
def slow_upstream() -> Iterator[str]:
    """An upstream whose streams take 15 s, so a client can leave in the middle."""
    with serve_in_thread(Starlette(routes=[Route("/v1/chat/completions", _slow_stream, methods=["POST"])])) as url:
        yield url


def test_an_abandoned_stream_is_traced_as_cancelled(
    store: Store, slow_upstream: str, chat_versions: tuple[str, str], gateway_server: Any, api_key: str
) -> None:
    create_deployment(store, "chat", "chat@v1", route={"upstream": f"{slow_upstream}/v1"})
    body = {"model": "chat", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    with gateway_server() as (url, gateway):
        with httpx.stream("POST", f"{url}/v1/chat/completions", json=body,
                          headers={"authorization": f"Bearer {api_key}"}) as response:  # fmt: skip
            lines = response.iter_lines()
            assert next(lines).startswith("data: ")  # one chunk, then the client leaves
        deadline = time.monotonic() + 30
        while gateway.traces.written < 1:
            assert time.monotonic() < deadline, "the abandoned stream was not traced"
            time.sleep(0.05)
    (trace,) = list_traces(store)
    assert (trace.status, trace.error) == (499, "cancelled")


def test_readiness_reports_a_failing_trace_writer(
    store: Store, upstream: str, chat_versions: tuple[str, str], gateway_server: Any, api_key: str
) -> None:
    create_deployment(store, "chat", "chat@v1", route={"upstream": f"{upstream}/v1"})
    body = {"model": "chat", "messages": [{"role": "user", "content": "hi"}]}
    with gateway_server() as (url, gateway):
        assert httpx.get(f"{url}/readyz").json()["status"] == "ready"
        with store.db.write() as conn:
            traces.drop(conn)  # the database refuses trace writes
        assert httpx.post(f"{url}/v1/chat/completions", json=body,
                          headers={"authorization": f"Bearer {api_key}"}).status_code == 200  # fmt: skip
        deadline = time.monotonic() + 30
        while (ready := httpx.get(f"{url}/readyz")).status_code == 200:
            assert time.monotonic() < deadline, "readiness never reported the failing writer"
            time.sleep(0.05)
        assert ready.status_code == 503 and "trace writer has failed to write" in ready.json()["reason"]
        # /readyz answers anyone (load balancers): the database's own error text (SQL, host, user) stays in the log
        assert "INSERT" not in ready.text and "OperationalError" not in ready.text, ready.text
        assert "see the gateway's log" in ready.json()["reason"]
        assert "keel_trace_writer_healthy 0.0" in httpx.get(f"{url}/metrics").text
        with store.db.write() as conn:
            traces.create(conn)
        while httpx.get(f"{url}/readyz").status_code != 200:
            assert time.monotonic() < deadline + 30, "readiness did not come back"
            time.sleep(0.05)
        assert gateway.traces.written == 1
