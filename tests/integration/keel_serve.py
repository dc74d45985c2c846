"""`keel serve` in a process of its own, for the integration tests that need a real server (workers, replicas)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx


def free_port() -> int:
    """A TCP port on 127.0.0.1 nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def keel_serve(
    workspace: Path, *extra: str, env: dict[str, str] | None = None, stop: signal.Signals = signal.SIGINT
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`keel serve …` with `env` added to this process's environment; yields its base URL and process once
    /readyz answers 200 (its stderr's tail as the failure otherwise), then stops it with `stop`."""
    with keel_process(workspace, "serve", *extra, ready="/readyz", env=env, stop=stop) as started:
        yield started


@contextmanager
def keel_process(
    workspace: Path,
    command: str,
    *extra: str,
    ready: str,
    env: dict[str, str] | None = None,
    stop: signal.Signals = signal.SIGINT,
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`keel COMMAND --port P …` (a server: `serve`, `ui`) in a process of its own; yields its base URL and process
    once `ready` answers 200 (its stderr's tail as the failure otherwise), then stops it with `stop`."""
    port = free_port()
    cmd = [sys.executable, "-m", "keel", "-w", str(workspace), command, "--port", str(port), *extra]
    proc = subprocess.Popen(cmd, env={**os.environ, **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}{ready}").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise AssertionError(proc.communicate()[1].decode()[-3000:])
            time.sleep(0.2)
        yield url, proc
    finally:
        if proc.poll() is None:
            proc.send_signal(stop)
        proc.communicate(timeout=60)
