"""The circuit breaker against a real upstream on 127.0.0.1 that fails a burst and recovers.

The upstream is an `aiohttp.web` server in the test's event loop. A request whose message is `hold` waits
until the test releases it and is then answered 503, so a burst of requests in flight fails together, as
when an upstream restarts under load; `fail` is answered 503 at once; anything else 200 (or 503 while the
server is `down`). The backend calls it with no retries, so each request is one call the breaker counts.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiohttp import web

from keel.core.errors import ConfigError
from keel.serve import (
    CircuitBreaker,
    CircuitOpenError,
    Gateway,
    OpenAIBackend,
    Route,
    ServeSettings,
    load_serve_settings,
)
from keel.serve._errors import UpstreamError
from keel.store import Store

ANSWER = {"object": "chat.completion", "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}}]}


class RestartingUpstream:
    """An OpenAI-shaped chat server whose `hold` requests fail together when the test releases them."""

    def __init__(self) -> None:
        self.down = False
        self.held = 0
        self.release = asyncio.Event()
        self.served = 0

    async def chat(self, request: web.Request) -> web.Response:
        content = (await request.json())["messages"][0]["content"]
        if content == "hold":
            self.held += 1
            await self.release.wait()
            return web.json_response({"error": {"message": "restarting"}}, status=503)
        if content == "fail" or self.down:
            return web.json_response({"error": {"message": "down"}}, status=503)
        self.served += 1
        return web.json_response(ANSWER)


@asynccontextmanager
async def serving(upstream: RestartingUpstream, port: int = 0) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_post("/v1/chat/completions", upstream.chat)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/v1"
    finally:
        upstream.release.set()
        await runner.cleanup()


def ask(backend: OpenAIBackend, content: str) -> Any:
    return backend.complete("chat", {"messages": [{"role": "user", "content": content}]})


async def hold_burst(backend: OpenAIBackend, upstream: RestartingUpstream, n: int) -> list[asyncio.Task[Any]]:
    """Start `n` requests and wait until the upstream holds every one of them."""
    tasks = [asyncio.create_task(ask(backend, "hold")) for _ in range(n)]
    deadline = time.monotonic() + 60
    while upstream.held < n:
        assert time.monotonic() < deadline, f"the upstream holds {upstream.held} of {n} requests"
        await asyncio.sleep(0.01)
    return tasks


async def fail_together(upstream: RestartingUpstream, tasks: list[asyncio.Task[Any]]) -> list[BaseException]:
    upstream.release.set()
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    return [o for o in outcomes if isinstance(o, BaseException)]


def test_a_burst_failing_together_among_successes_leaves_the_circuit_closed() -> None:
    """38 requests in flight fail at once on a route that was answering: 38 of 98 calls is under 50%."""

    async def scenario() -> None:
        upstream = RestartingUpstream()
        async with serving(upstream) as url:
            backend = OpenAIBackend(url, "m", retries=0, breaker=CircuitBreaker(5, 10.0, window_s=60.0))
            for _ in range(60):
                assert (await ask(backend, "hi"))["choices"][0]["message"]["content"] == "ok"
            errors = await fail_together(upstream, await hold_burst(backend, upstream, 38))
            assert len(errors) == 38 and all("HTTP 503" in str(e) for e in errors)
            assert backend.breaker.state == "closed"
            assert (await ask(backend, "hi"))["choices"][0]["message"]["content"] == "ok"  # served at once
            await backend.aclose()
        assert upstream.served == 61

    asyncio.run(scenario())


def test_the_same_burst_with_nothing_else_in_the_window_opens_the_circuit() -> None:
    """The rate is what decides: when the failures are most of the window's calls, the circuit opens."""

    async def scenario() -> None:
        upstream = RestartingUpstream()
        async with serving(upstream) as url:
            backend = OpenAIBackend(url, "m", retries=0, breaker=CircuitBreaker(5, 60.0, window_s=60.0))
            for _ in range(4):
                await ask(backend, "hi")
            errors = await fail_together(upstream, await hold_burst(backend, upstream, 38))
            assert len(errors) == 38 and backend.breaker.state == "open"
            with pytest.raises(CircuitOpenError, match="its circuit is open"):
                await ask(backend, "hi")
            await backend.aclose()
        assert upstream.served == 4  # the refused request never reached the upstream

    asyncio.run(scenario())


def test_failures_of_requests_started_before_a_trial_closed_the_circuit_do_not_reopen_it() -> None:
    """The tail of a stalled burst lands after the upstream is back and a trial closed the circuit: ignored."""

    async def scenario() -> None:
        upstream = RestartingUpstream()
        async with serving(upstream) as url:
            backend = OpenAIBackend(url, "m", retries=0, breaker=CircuitBreaker(5, 0.3, window_s=60.0))
            stalled = await hold_burst(backend, upstream, 38)
            for _ in range(5):  # the upstream is down for new requests: five failures open the circuit
                with pytest.raises(UpstreamError, match="HTTP 503"):
                    await ask(backend, "fail")
            assert backend.breaker.state == "open"
            await asyncio.sleep(0.35)
            assert backend.breaker.state == "half-open"
            assert (await ask(backend, "hi"))["choices"][0]["message"]["content"] == "ok"  # the trial
            assert backend.breaker.state == "closed"
            errors = await fail_together(upstream, stalled)  # 38 failures, all started before the trial
            assert len(errors) == 38 and backend.breaker.state == "closed"
            for _ in range(3):
                assert (await ask(backend, "hi"))["choices"][0]["message"]["content"] == "ok"
            await backend.aclose()

    asyncio.run(scenario())


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def test_a_dead_upstream_opens_the_circuit_and_a_half_open_trial_closes_it_once_it_is_back() -> None:
    async def scenario() -> None:
        port = _free_port()  # nothing listens there yet: every connection is refused
        backend = OpenAIBackend(f"http://127.0.0.1:{port}/v1", "m", retries=0, breaker=CircuitBreaker(3, 0.3))
        for _ in range(3):
            with pytest.raises(UpstreamError, match="ClientConnectorError"):
                await ask(backend, "hi")
        assert backend.breaker.state == "open"
        with pytest.raises(CircuitOpenError):
            await ask(backend, "hi")
        await asyncio.sleep(0.35)
        with pytest.raises(UpstreamError, match="ClientConnectorError"):  # the trial finds it still down
            await ask(backend, "hi")
        assert backend.breaker.state == "open"  # open for another cool-down
        upstream = RestartingUpstream()
        async with serving(upstream, port):
            with pytest.raises(CircuitOpenError):
                await ask(backend, "hi")
            await asyncio.sleep(0.35)
            assert (await ask(backend, "hi"))["choices"][0]["message"]["content"] == "ok"  # the trial closes it
            assert backend.breaker.state == "closed" and upstream.served == 1
            await backend.aclose()

    asyncio.run(scenario())


def test_a_failure_rate_of_one_opens_only_when_every_call_in_the_window_failed() -> None:
    async def scenario() -> None:
        upstream = RestartingUpstream()
        async with serving(upstream) as url:
            breaker = CircuitBreaker(2, 60.0, failure_rate=1.0, window_s=60.0)
            backend = OpenAIBackend(url, "m", retries=0, breaker=breaker)
            await ask(backend, "hi")
            for _ in range(4):
                with pytest.raises(UpstreamError):
                    await ask(backend, "fail")
            assert breaker.state == "closed"  # 4 of 5 calls failed: not all
            await backend.aclose()

    asyncio.run(scenario())


def test_the_gateway_builds_each_route_breaker_from_its_settings(store: Store) -> None:
    settings = ServeSettings(breaker_failures=7, breaker_cooldown_s=3.0, breaker_failure_rate=0.8, breaker_window_s=30)

    async def build() -> CircuitBreaker:
        gateway = Gateway(store, settings)
        backend = await gateway.backend(Route(model="chat@v1", upstream="http://127.0.0.1:9/v1"))
        assert isinstance(backend, OpenAIBackend)
        await backend.aclose()
        return backend.breaker

    breaker = asyncio.run(build())
    assert (breaker.failures, breaker.cooldown_s, breaker.failure_rate, breaker.window_s) == (7, 3.0, 0.8, 30.0)


def test_breaker_settings_are_validated_with_the_variable_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEEL_BREAKER_FAILURE_RATE", "50")
    with pytest.raises(ConfigError) as percent:
        load_serve_settings()
    expected = "KEEL_BREAKER_FAILURE_RATE: expected a share of calls in (0, 1], e.g. 0.5 for 50%; got '50'"
    assert expected in str(percent.value)
    monkeypatch.delenv("KEEL_BREAKER_FAILURE_RATE")
    with pytest.raises(ConfigError, match="KEEL_BREAKER_WINDOW_S: Input should be greater than 0; got 0"):
        load_serve_settings(breaker_window_s=0)
    with pytest.raises(ConfigError, match=r"failure_rate: expected a share in \(0, 1\], e.g. 0.5 for 50%, got 0"):
        CircuitBreaker(failure_rate=0)
    with pytest.raises(ConfigError, match="failures: expected a whole number of at least 1, got 0"):
        CircuitBreaker(failures=0)
    defaults = load_serve_settings()  # the old settings keep their names and defaults
    assert (defaults.breaker_failures, defaults.breaker_cooldown_s) == (5, 10.0)
    assert (defaults.breaker_failure_rate, defaults.breaker_window_s) == (0.5, 10.0)


def test_failures_older_than_the_window_no_longer_count() -> None:
    breaker = CircuitBreaker(5, 60.0, window_s=0.2)
    for _ in range(4):
        breaker.failure()
    time.sleep(0.25)
    for _ in range(4):
        breaker.failure()
    assert breaker.state == "closed"  # 8 failures, but never 5 within 0.2 s
    breaker.failure()
    assert breaker.state == "open"


def test_failures_exactly_at_the_failure_rate_open_the_circuit() -> None:
    # 55 failures of 100 calls are 55%: at a rate of 0.55 they open it (0.55 * 100 is 55.000000000000007 in floats).
    breaker = CircuitBreaker(1, 60.0, failure_rate=0.55, window_s=60.0)
    for _ in range(45):
        breaker.success()
    for _ in range(54):
        breaker.failure()
    assert breaker.state == "closed"  # 54 of 99: 54.5%
    breaker.failure()
    assert breaker.state == "open"


def test_an_infinite_breaker_window_or_cooldown_is_refused_when_the_settings_load(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # `CircuitBreaker` refuses them, but only when a route's backend is built: at a request, not at startup.
    for name in ("KEEL_BREAKER_WINDOW_S", "KEEL_BREAKER_COOLDOWN_S"):
        monkeypatch.setenv(name, "inf")
        with pytest.raises(ConfigError, match=f"{name}: Input should be a finite number; got 'inf'"):
            load_serve_settings()
        monkeypatch.delenv(name)
