"""A pooled upstream connection the server closed is no upstream failure: the request goes again on a new one.

The upstream here is a real HTTP/1.1 server on 127.0.0.1 (asyncio streams) that plays the race a busy gateway
loses: it answers the first request on a connection and closes the connection when the next one arrives on it,
as a server does whose keep-alive ran out just as the gateway reused the connection. Under load the gateway's
event loop learns of such closes late, so a stalled burst finds every pooled connection closed at once
(tests/unit/serve/test_burst.py gave 502s: the breaker opened on those failures).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from keel.serve import CircuitBreaker, OpenAIBackend
from keel.serve._errors import UpstreamError

BODY = {"messages": [{"role": "user", "content": "hi"}]}
ANSWER = {"object": "chat.completion", "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}}]}


class ClosingUpstream:
    """Answers `answered` requests per connection (0: none), then closes the connection on the next one."""

    def __init__(self, answered: int = 1) -> None:
        self.answered = answered
        self.connections = 0
        self.requests = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        served = 0
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)  # fmt: skip
                body = json.loads(await reader.readexactly(length))
                self.requests += 1
                if served >= self.answered:
                    return  # the keep-alive ran out: closed without an answer
                served += 1
                if body.get("stream"):
                    chunk = {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": "ok"}}]}
                    payload, kind = f"data: {json.dumps(chunk)}\n\ndata: [DONE]\n\n".encode(), b"text/event-stream"
                else:
                    payload, kind = json.dumps(ANSWER).encode(), b"application/json"
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: " + kind)
                writer.write(b"\r\ncontent-length: %d\r\n\r\n" % len(payload) + payload)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            writer.close()


async def _serve(upstream: ClosingUpstream) -> tuple[asyncio.Server, str]:
    server = await asyncio.start_server(upstream.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}/v1"


def test_a_closed_pooled_connection_is_retried_on_a_new_one_without_touching_the_breaker() -> None:
    async def scenario() -> tuple[list[Any], list[Any], OpenAIBackend, ClosingUpstream]:
        upstream = ClosingUpstream()
        server, url = await _serve(upstream)
        # No retries and a breaker that opens on the first failure: any failure would be a 502.
        backend = OpenAIBackend(url, "m", retries=0, breaker=CircuitBreaker(failures=1, cooldown_s=60))
        try:
            answers = [await backend.complete("chat", BODY) for _ in range(6)]  # each reuses the last connection
            answers += await asyncio.gather(*(backend.complete("chat", BODY) for _ in range(16)))
            streams = [[c async for c in backend.stream("chat", BODY)] for _ in range(4)]
        finally:
            await backend.aclose()
            server.close()
            await server.wait_closed()
        return answers, streams, backend, upstream

    answers, streams, backend, upstream = asyncio.run(scenario())
    assert answers == [ANSWER] * 22
    assert all(chunks[0]["choices"][0]["delta"]["content"] == "ok" for chunks in streams) and len(streams) == 4
    assert backend.breaker.state == "closed"
    # Every reuse of a pooled connection met a closed one and went again: the server saw them all twice.
    assert backend.stale_retries >= 3 and upstream.requests == 22 + 4 + backend.stale_retries


def test_an_upstream_that_drops_every_request_still_fails_and_opens_the_circuit() -> None:
    """The new connection is tried once; an upstream that closes it too is failing, and the breaker counts it."""

    async def scenario() -> tuple[OpenAIBackend, ClosingUpstream, list[BaseException]]:
        upstream = ClosingUpstream(answered=0)
        server, url = await _serve(upstream)
        backend = OpenAIBackend(url, "m", retries=1, breaker=CircuitBreaker(failures=2, cooldown_s=60))
        errors: list[BaseException] = []
        try:
            for _ in range(2):
                with pytest.raises(UpstreamError) as failed:
                    await backend.complete("chat", BODY)
                errors.append(failed.value)
        finally:
            await backend.aclose()
            server.close()
            await server.wait_closed()
        return backend, upstream, errors

    backend, upstream, errors = asyncio.run(scenario())
    assert "failed after 2 attempt(s): ServerDisconnectedError" in str(errors[0])
    assert "its circuit is open" in str(errors[1]) and backend.breaker.state == "open"


def test_an_upstream_that_is_not_there_fails_at_once_without_a_second_connection() -> None:
    async def scenario() -> tuple[OpenAIBackend, BaseException]:
        server, url = await _serve(ClosingUpstream())
        server.close()
        await server.wait_closed()  # nothing listens on the port now
        backend = OpenAIBackend(url, "m", retries=0, breaker=CircuitBreaker(failures=1, cooldown_s=60))
        try:
            with pytest.raises(UpstreamError) as failed:
                await backend.complete("chat", BODY)
        finally:
            await backend.aclose()
        return backend, failed.value

    backend, error = asyncio.run(scenario())
    assert "ClientConnectorError" in str(error) and backend.stale_retries == 0 and backend.breaker.state == "open"
