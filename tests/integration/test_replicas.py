"""Gateway replicas: real `keel serve` processes sharing one PostgreSQL workspace and one Redis.

Two separate processes (as behind a load balancer), and one process with `--workers 2`: a key
limited to 10 requests a minute gets 10 in total across them (plus one per 6 s of refill), a rollback made
with the CLI is picked up by every replica, and every keyed request is traced once in the shared database.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select
from tests.conftest import PostgresServer
from tests.integration.keel_serve import keel_serve
from typer.testing import CliRunner

from keel.cli import app
from keel.govern import create_key
from keel.registry import register_model
from keel.serve import canary_deployment, create_deployment, promote_deployment, serve_in_thread, stub_upstream_app
from keel.store import Store
from keel.store.schema import traces

pytestmark = pytest.mark.postgres

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture
def redis_url() -> str:
    """Redis on 127.0.0.1:6379 (the machine runs one); skipped without it, failed in CI."""
    try:
        socket.create_connection(("127.0.0.1", 6379), timeout=1).close()
    except OSError:
        if os.environ.get("KEEL_REQUIRE_ALL_TIERS"):
            pytest.fail("replica tests need Redis on 127.0.0.1:6379")
        pytest.skip("replica tests need Redis on 127.0.0.1:6379")
    return REDIS_URL


@pytest.fixture
def shared(
    postgres_url: str, postgres_server: PostgresServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Store]:
    """A workspace on PostgreSQL; the replicas inherit KEEL_DATABASE_URL from this process.

    Its schema starts migrated, as the `store` fixture's does (tests/conftest.py).
    """
    from keel.store import init_workspace

    monkeypatch.setenv("KEEL_DATABASE_URL", postgres_url)
    postgres_server.migrate(postgres_url)
    store = init_workspace(tmp_path / "ws")
    store.audit_key  # noqa: B018 - as in a new workspace, where the migration made it (before the replicas start)
    yield store
    store.close()


@contextmanager
def _gateway(workspace: Path, redis_url: str, *extra: str) -> Iterator[str]:
    """`keel serve` in its own process, with Redis; yields its base URL once /readyz answers 200."""
    with keel_serve(workspace, *extra, env={"KEEL_REDIS_URL": redis_url}, stop=signal.SIGTERM) as (url, _):
        yield url


def _setup(store: Store, upstream: str, tmp_path: Path) -> str:
    """Deployment `chat` serving chat@v2 after a canary and promotion; returns a key limited to 10/min."""
    for i in (1, 2):
        folder = tmp_path / f"chat{i}"
        folder.mkdir()
        (folder / "config.json").write_text(f'{{"version": {i}}}')
        register_model(store, "chat", folder)
    create_deployment(store, "chat", "chat@v1", route={"upstream": f"{upstream}/v1"})
    canary_deployment(store, "chat", "chat@v2", weight=50)
    promote_deployment(store, "chat")
    return create_key(store, "app", scopes=["chat"], rate_per_minute=10, burst=10).secret


def _ask(client: httpx.Client, url: str, secret: str) -> httpx.Response:
    body = {"model": "chat", "messages": [{"role": "user", "content": "hi"}]}
    return client.post(f"{url}/v1/chat/completions", json=body, headers={"authorization": f"Bearer {secret}"})


def _assert_one_bucket(statuses: list[int], seconds: float) -> None:
    """10 granted (the burst), plus one per 6 s the requests took (the bucket refills at 10/min); the rest 429."""
    granted, refills = statuses.count(200), int(seconds / 6)
    assert 10 <= granted <= 10 + refills and statuses.count(429) == 20 - granted, (statuses, seconds)


def _generation(url: str) -> int:
    return int(httpx.get(f"{url}/readyz").json()["generation"])


def test_two_gateway_processes_share_limits_deployments_and_traces(
    shared: Store, redis_url: str, tmp_path: Path
) -> None:
    with ExitStack() as stack:
        upstream = stack.enter_context(serve_in_thread(stub_upstream_app()))
        secret = _setup(shared, upstream, tmp_path)
        workspace = shared.settings.workspace
        a = stack.enter_context(_gateway(workspace, redis_url))
        b = stack.enter_context(_gateway(workspace, redis_url))
        client = stack.enter_context(httpx.Client(timeout=30))

        # 20 requests alternating between the replicas: the shared bucket grants 10, not 10 each.
        started = time.monotonic()
        answers = [_ask(client, (a, b)[i % 2], secret) for i in range(20)]
        statuses = [r.status_code for r in answers]
        _assert_one_bucket(statuses, time.monotonic() - started)
        granted_by = {url: sum(1 for i, r in enumerate(answers) if r.status_code == 200 and (a, b)[i % 2] == url)
                      for url in (a, b)}  # fmt: skip
        assert granted_by[a] > 0 and granted_by[b] > 0
        assert {r.headers["x-keel-model-version"] for r in answers if r.status_code == 200} == {"chat@v2"}

        # A rollback made with the CLI (another process) reaches both replicas.
        before = _generation(a)
        result = CliRunner().invoke(app, ["-w", str(workspace), "deploy", "rollback", "chat", "--json"])
        assert result.exit_code == 0, result.output
        changed = time.monotonic()
        seen: dict[str, float] = {}
        while len(seen) < 2 and time.monotonic() - changed < 30:
            for url in (a, b):
                if url not in seen and _generation(url) > before:
                    seen[url] = time.monotonic() - changed
            time.sleep(0.05)
        assert set(seen) == {a, b}, f"replicas that picked up the rollback: {seen}"
        print(f"rollback picked up after {seen[a]:.2f} s and {seen[b]:.2f} s")  # the bound is measured, not asserted
    # Both replicas have stopped (traces flushed): every request they answered is one trace in PostgreSQL.
    with shared.db.read() as conn:
        count = conn.execute(select(func.count()).select_from(traces).where(traces.c.deployment == "chat")).scalar()
    assert count == 20  # every keyed request, answered or refused with 429, is traced once


def test_workers_share_one_rate_limit(shared: Store, redis_url: str, tmp_path: Path) -> None:
    with ExitStack() as stack:
        upstream = stack.enter_context(serve_in_thread(stub_upstream_app()))
        secret = _setup(shared, upstream, tmp_path)
        url = stack.enter_context(_gateway(shared.settings.workspace, redis_url, "--workers", "2"))
        statuses, started = [], time.monotonic()
        for _ in range(20):  # a new connection each: the kernel spreads them over the two workers
            with httpx.Client(timeout=30) as client:
                statuses.append(_ask(client, url, secret).status_code)
        _assert_one_bucket(statuses, time.monotonic() - started)
    with shared.db.read() as conn:
        count = conn.execute(select(func.count()).select_from(traces).where(traces.c.deployment == "chat")).scalar()
    assert count == 20  # every keyed request, answered or refused with 429, is traced once
