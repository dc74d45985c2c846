"""Hostile request bodies: a 4xx whose message is short and free of control characters, never a 500."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from keel.serve import create_deployment
from keel.store import Store

MEGABYTE = "\x1b[2J\x9b31m\u202e" + "é" * 1_000_000
DEEP = b"[" * 200_000 + b"]" * 200_000
# Feedback bodies are held to 64 KiB: as long and as deep as fits.
LONG = "\x1b[2J\x9b31m\u202e" + "é" * 25_000
SHALLOW_DEEP = b"[" * 30_000 + b"]" * 30_000


def _assert_short_and_clean(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text[:500]
    message = response.json()["error"]["message"]
    assert len(message) < 1_000, len(message)
    assert not any(c in message for c in ("\x1b", "\x9b", "\u202e")), message
    return str(message)


def test_feedback_nested_deeper_than_any_parser_stack_is_a_400(store: Store, gateway_server: Any) -> None:
    """json.loads raised RecursionError on this body, which the feedback route answered as a 500."""
    with gateway_server() as (url, _):
        deep = httpx.post(f"{url}/v1/feedback", content=b'{"trace_id": ' + SHALLOW_DEEP + b"}")
        deep_object = httpx.post(f"{url}/v1/feedback", content=b'{"a": ' * 9_000 + b"1" + b"}" * 9_000)
        surrogate = httpx.post(f"{url}/v1/feedback", content=b'{"trace_id": "\\ud800", "score": 1}')
    assert "nested at most 64 levels" in _assert_short_and_clean(deep, 400)
    assert "nested at most 64 levels" in _assert_short_and_clean(deep_object, 400)
    # Feedback stores lone surrogates escaped, so this body parses and is then refused for want of a key.
    assert "API key" in _assert_short_and_clean(surrogate, 401)


@pytest.mark.parametrize(
    "body",
    [
        {"trace_id": LONG, "score": 1},
        {"trace_id": "01J0000000000000000000000", "score": LONG},
        {"trace_id": "01J0000000000000000000000", "score": 1, "label": LONG},
        {"trace_id": "01J0000000000000000000000", "score": 1, LONG: 1},
    ],
    ids=["trace_id", "score", "label", "field"],
)
def test_feedback_messages_show_a_long_value_short(store: Store, gateway_server: Any, body: dict[str, Any]) -> None:
    with gateway_server() as (url, _):
        response = httpx.post(f"{url}/v1/feedback", content=json.dumps(body, ensure_ascii=False).encode())
    assert 400 <= response.status_code < 500, response.text[:300]
    _assert_short_and_clean(response, response.status_code)


def test_chat_requests_with_megabyte_values_get_short_clean_4xx_messages(
    store: Store, upstream: str, chat_versions: tuple[str, str], gateway_server: Any
) -> None:
    create_deployment(store, "chat", "chat@v1", route={"upstream": f"{upstream}/v1"})
    hi = [{"role": "user", "content": "hi"}]
    with gateway_server(require_keys=False) as (url, _):
        post = lambda body: httpx.post(f"{url}/v1/chat/completions", content=body, timeout=60)  # noqa: E731
        send = lambda body: post(json.dumps(body, ensure_ascii=False).encode())  # noqa: E731
        huge = send({"model": MEGABYTE, "messages": hi})
        unknown = send({"model": "\x1b[2J\u202e" + "m" * 250, "messages": hi})
        typed = send({"model": "chat", "messages": hi, "temperature": MEGABYTE})
        role = send({"model": "chat", "messages": [{"role": MEGABYTE, "content": "x"}]})
        deep = post(b'{"model": "chat", "messages": ' + DEEP + b"}")
        junk = post(MEGABYTE.encode())
    _assert_short_and_clean(unknown, 404)
    for response in (huge, typed, role, deep, junk):
        _assert_short_and_clean(response, 400)
