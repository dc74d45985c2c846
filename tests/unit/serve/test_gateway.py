from __future__ import annotations

import time
from typing import Any

import httpx
import openai
import pytest

from keel.govern import AuthenticationError, create_key, revoke_key
from keel.monitor import list_traces, summarize
from keel.serve import DeploymentSettings, Route, create_deployment, get_deployment
from keel.store import Store, walk


def test_chat_stream_completion_embeddings_models_and_traces(
    store: Store, upstream: str, chat_versions: tuple[str, str], gateway_server: Any, api_key: str, openai_client: Any
) -> None:
    create_deployment(store, "chat", "chat@v1", route={"upstream": f"{upstream}/v1", "price_in": 1.0, "price_out": 2.0})
    with gateway_server() as (url, gateway):
        client = openai_client(url, api_key)
        chat = client.chat.completions.create(model="chat", messages=[{"role": "user", "content": "hello there"}])
        assert chat.choices[0].message.content == "chat: hello there"
        assert chat.model == "chat" and chat.usage is not None and chat.usage.prompt_tokens == 3

        stream = client.chat.completions.create(
            model="chat", messages=[{"role": "user", "content": "one two three"}], stream=True
        )
        pieces = [c.choices[0].delta.content or "" for c in stream if c.choices]
        assert "".join(pieces) == "chat: one two three" and len(pieces) > 2

        completion = client.completions.create(model="chat", prompt="say hi")
        assert completion.choices[0].text == "chat: say hi"

        embedded = client.embeddings.create(model="chat", input=["abc", "hello"])
        assert [d.embedding for d in embedded.data] == [[3.0, 1.0, 0.0], [5.0, 1.0, 0.0]]

        assert [m.id for m in client.models.list()] == ["chat"]
        assert httpx.get(f"{url}/healthz").json() == {"status": "ok"}
        ready = httpx.get(f"{url}/readyz")
        assert ready.status_code == 200 and ready.json()["deployments"] == 1
        metrics = httpx.get(f"{url}/metrics").text
        for name in ("gen_ai_client_operation_duration_seconds", "gen_ai_client_token_usage",
                     "gen_ai_server_time_to_first_token_seconds", "gen_ai_server_request_duration_seconds",
                     "gen_ai_server_time_per_output_token_seconds"):  # fmt: skip
            assert f"{name}_bucket" in metrics
        assert (
            'gen_ai_token_type="input"' in metrics
            and 'keel_gateway_requests_total{gen_ai_request_model="chat"' in metrics
            and 'gen_ai_operation_name="text_completion"' in metrics
            and 'gen_ai_provider_name="openai"' in metrics
        )
    # The server stopped: its trace writer flushed every trace.
    traces = list_traces(store, limit=100)
    assert len(traces) == 4 and {t.operation for t in traces} == {"chat", "completion", "embeddings"}
    first = traces[-1]
    assert first.status == 200 and first.model_version == "chat@v1" and first.tokens_in == 3 and first.tokens_out == 3
    assert first.cost == pytest.approx((3 * 1.0 + 3 * 2.0) / 1000)
    streamed = traces[-2]
    assert streamed.ttft_ms is not None and streamed.tokens_out == 4
    served = {hit.node for hit in walk_down(store, "model-version:chat@v1")}
    assert {t.node for t in traces} <= served
    (row,) = summarize(store)
    assert row.deployment == "chat" and row.requests == 4 and row.errors == 0 and row.p99_ms >= row.p50_ms > 0


def walk_down(store: Store, node: str) -> list[Any]:
    with store.db.read() as conn:
        return list(walk(conn, node, "downstream"))


def test_auth_failures_have_openai_shape(
    store: Store, upstream: str, chat_versions: tuple[str, str], gateway_server: Any, api_key: str, openai_client: Any
) -> None:
    create_deployment(store, "chat", "chat@v1", route={"upstream": f"{upstream}/v1"})
    create_deployment(store, "other", "chat@v2", route={"upstream": f"{upstream}/v1"})
    scoped_key = create_key(store, "scoped", scopes=["other"])
    scoped = scoped_key.secret
    messages = [{"role": "user", "content": "hi"}]
    with gateway_server() as (url, gateway):
        missing = httpx.post(f"{url}/v1/chat/completions", json={"model": "chat", "messages": messages})
        assert missing.status_code == 401 and missing.json() == {
            "error": {
                "message": "expected an API key in the header 'Authorization: Bearer keel_…'; got none",
                "type": "invalid_request_error",
                "param": None,
                "code": "invalid_api_key",
            }
        }
        with pytest.raises(openai.AuthenticationError):
            openai_client(url, api_key[:-4] + "AAAA").chat.completions.create(model="chat", messages=messages)
        with pytest.raises(openai.AuthenticationError) as malformed:
            openai_client(url, "sk-not-a-keel-key").chat.completions.create(model="chat", messages=messages)
        assert malformed.value.status_code == 401 and malformed.value.body["code"] == "invalid_api_key"
        with pytest.raises(openai.PermissionDeniedError) as denied:
            openai_client(url, scoped).chat.completions.create(model="chat", messages=messages)
        assert denied.value.status_code == 403 and "may not call deployment 'chat'" in denied.value.message
        answer = openai_client(url, scoped).chat.completions.create(model="other", messages=messages)
        assert answer.choices[0].message.content == "chat: hi"
        assert [m.id for m in openai_client(url, scoped).models.list()] == ["other"]
        with pytest.raises(openai.NotFoundError) as unknown:
            openai_client(url, api_key).chat.completions.create(model="nope", messages=messages)
        assert unknown.value.body["code"] == "model_not_found"
        revoke_key(store, scoped_key.key.id)  # takes effect at the next refresh, without a restart
        _wait_until_revoked(gateway, scoped)
        with pytest.raises(openai.AuthenticationError, match="revoked"):
            openai_client(url, scoped).chat.completions.create(model="other", messages=messages)
        raw = httpx.post(
            f"{url}/v1/chat/completions", content=b"{not json", headers={"authorization": f"Bearer {api_key}"}
        )
        assert raw.status_code == 400 and raw.json()["error"]["type"] == "invalid_request_error"
        unauthenticated = httpx.get(f"{url}/metrics").text
        assert 'keel_gateway_unauthenticated_requests_total{reason="invalid_api_key"} 4.0' in unauthenticated
    statuses = sorted(t.status for t in list_traces(store))
    assert statuses == [200, 400, 403, 404]  # the four 401s are counted, not traced


def _wait_until_revoked(gateway: Any, secret: str) -> None:
    deadline = time.monotonic() + 10
    while True:
        try:
            gateway.keys.cached(secret)
        except AuthenticationError:
            return
        assert time.monotonic() < deadline, "the gateway did not see the revocation"
        time.sleep(0.05)


@pytest.mark.parametrize("backend", ["memory", "redis"])
def test_rate_limit_answers_429(
    store: Store, upstream: str, chat_versions: tuple[str, str], gateway_server: Any, backend: str, openai_client: Any
) -> None:
    create_deployment(store, "chat", "chat@v1", route={"upstream": f"{upstream}/v1"})
    key = create_key(store, "limited", rate_per_minute=1, burst=3).secret
    settings = {"redis_url": "redis://127.0.0.1:6379/0"} if backend == "redis" else {}
    messages = [{"role": "user", "content": "hi"}]
    with gateway_server(**settings) as (url, _):
        client = openai_client(url, key)
        for _ in range(3):
            client.chat.completions.create(model="chat", messages=messages)
        with pytest.raises(openai.RateLimitError) as limited:
            client.chat.completions.create(model="chat", messages=messages)
        assert limited.value.status_code == 429 and limited.value.response.headers["retry-after"] == "60"
    if backend == "redis":  # a second replica shares the spent bucket
        with gateway_server(**settings) as (url, _), pytest.raises(openai.RateLimitError):
            openai_client(url, key).chat.completions.create(model="chat", messages=messages)


def test_upstream_failure_falls_back(
    store: Store, upstream: str, chat_versions: tuple[str, str], gateway_server: Any, api_key: str, openai_client: Any
) -> None:
    fallback = Route(model="chat@v2", upstream=f"{upstream}/v1", upstream_model="backup")
    settings = DeploymentSettings(fallback=fallback)
    create_deployment(store, "chat", "chat@v1", route={"upstream": f"{upstream}/fail/v1"}, settings=settings)
    create_deployment(store, "alone", "chat@v2", route={"upstream": f"{upstream}/fail/v1"})
    messages = [{"role": "user", "content": "anyone?"}]
    with gateway_server(upstream_retries=1, breaker_failures=2) as (url, gateway):
        client = openai_client(url, api_key)
        for _ in range(3):  # retries, then the open circuit: the fallback answers every time
            answer = client.chat.completions.create(model="chat", messages=messages)
            assert answer.choices[0].message.content == "backup: anyone?"
        stream = client.chat.completions.create(model="chat", messages=messages, stream=True)
        assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "backup: anyone?"
        with pytest.raises(openai.APIStatusError) as failed:
            client.chat.completions.create(model="alone", messages=messages)
        assert failed.value.status_code == 502 and "failed after 2 attempt(s)" in failed.value.message
        with pytest.raises(openai.APIStatusError) as refused:  # two failures opened its circuit
            client.chat.completions.create(model="alone", messages=messages)
        assert refused.value.status_code == 502 and "its circuit is open" in refused.value.message
    traces = list_traces(store)
    assert sum("fallback" in t.flags and t.model_version == "chat@v2" for t in traces) == 4
    assert get_deployment(store, "chat").settings.fallback == fallback
