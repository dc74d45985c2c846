"""Hostile requests against the trace path: a real `keel serve` process, raw bytes on the wire."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
from sqlalchemy import func, select

from keel.govern import create_key
from keel.monitor import list_traces, summarize
from keel.serve import create_deployment
from keel.store import Store
from keel.store.schema import traces

SURROGATE_BODY = b'{"model":"\\ud800","messages":[]}'


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def keel_serve(store: Store, *args: str) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`keel serve` in its own process, until the block ends (then SIGKILL if still alive)."""
    port = _free_port()
    cmd = [sys.executable, "-m", "keel", "-w", str(store.settings.workspace), "serve", "--port", str(port), *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=dict(os.environ))
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            try:
                if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "keel serve did not become ready"
            time.sleep(0.2)
        yield url, proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()


def _count(store: Store) -> int:
    with store.db.read() as conn:
        return int(conn.scalar(select(func.count()).select_from(traces)) or 0)


def _wait_for_traces(store: Store, n: int) -> None:
    deadline = time.monotonic() + 30
    while _count(store) < n:
        assert time.monotonic() < deadline, f"expected {n} traces written; found {_count(store)}"
        time.sleep(0.1)


def test_lone_surrogate_without_key_neither_blocks_traces_nor_metrics_nor_shutdown(
    store: Store, upstream: str, chat_versions: tuple[str, str]
) -> None:
    create_deployment(store, "chat", "chat@v1", route={"upstream": f"{upstream}/v1"})
    key = create_key(store, "tests").secret
    ok = {"model": "chat", "messages": [{"role": "user", "content": "hi"}]}
    auth = {"authorization": f"Bearer {key}"}
    with keel_serve(store) as (url, proc):
        raw = httpx.post(f"{url}/v1/chat/completions", content=SURROGATE_BODY,
                         headers={"content-type": "application/json"})  # fmt: skip
        assert raw.status_code == 401
        # The same body with a valid key: authenticated, so traced (its name made storable), and refused by
        # validation: a lone surrogate is no valid string (400 naming the parameter).
        hostile = httpx.post(f"{url}/v1/chat/completions", content=SURROGATE_BODY, headers=auth)
        assert hostile.status_code == 400 and hostile.json()["error"]["type"] == "invalid_request_error"
        for _ in range(3):
            assert httpx.post(f"{url}/v1/chat/completions", json=ok, headers=auth).status_code == 200
        _wait_for_traces(store, 4)
        metrics = httpx.get(f"{url}/metrics")
        assert metrics.status_code == 200 and "\\ud800" not in metrics.text
        assert 'keel_gateway_unauthenticated_requests_total{reason="invalid_api_key"} 1.0' in metrics.text
        assert httpx.get(f"{url}/readyz").status_code == 200
        proc.send_signal(signal.SIGTERM)
        # uvicorn shuts down gracefully (lifespan end: traces flushed), then re-raises the signal.
        assert proc.wait(timeout=60) in (0, -signal.SIGTERM)
    found = list_traces(store, limit=10)
    assert sorted(t.status for t in found) == [200, 200, 200, 400]
    (bad,) = [t for t in found if t.status == 400]
    # the body is refused before its `model` is read, so the trace names no deployment ("-")
    assert bad.deployment == "-" and bad.key_id is not None
    assert [r.deployment for r in summarize(store)] == ["-", "chat"]


def test_sigint_stops_the_gateway_too(store: Store, upstream: str, chat_versions: tuple[str, str]) -> None:
    create_deployment(store, "chat", "chat@v1", route={"upstream": f"{upstream}/v1"})
    with keel_serve(store) as (url, proc):
        assert httpx.post(f"{url}/v1/chat/completions", content=SURROGATE_BODY).status_code == 401
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) in (0, -signal.SIGINT, 130)
    assert _count(store) == 0  # unauthenticated: counted, not traced
