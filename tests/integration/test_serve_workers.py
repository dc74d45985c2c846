"""`keel serve --workers 2` as a real process on 127.0.0.1: alert rules evaluated inside it, and the console.

Alerts: a rule whose condition failing traffic makes true fires once to a webhook the test serves
(not once per worker: one worker holds the evaluator's lease), then resolves when the traffic stops.
Console: signed in once, page loads over fresh connections land on both workers (which worker
answered is read from the kernel's socket table) and each sees the session.
"""

from __future__ import annotations

import http.client
import re
import signal
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import yaml
from filelock import FileLock, Timeout
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from tests.integration.keel_serve import keel_serve

from keel.govern import create_key, grant
from keel.monitor import list_alerts
from keel.registry import register_model
from keel.serve import create_deployment, serve_in_thread, stub_upstream_app
from keel.store import Store, events

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def _webhook() -> tuple[Starlette, list[dict[str, Any]]]:
    received: list[dict[str, Any]] = []

    async def hook(request: Request) -> JSONResponse:
        received.append(await request.json())
        return JSONResponse({"ok": True})

    return Starlette(routes=[Route("/hook", hook, methods=["POST"])]), received


def _model(store: Store, tmp_path: Path) -> None:
    folder = tmp_path / "chat1"
    folder.mkdir()
    (folder / "config.json").write_text('{"version": 1}')
    register_model(store, "chat", folder)


def _wait_for(predicate: Any, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds}s waiting for {what}")
        time.sleep(0.2)


def test_alert_rules_evaluated_in_keel_serve_fire_once_across_workers_and_resolve(store: Store, tmp_path: Path) -> None:
    _model(store, tmp_path)
    hook_app, received = _webhook()
    with ExitStack() as stack:
        upstream = stack.enter_context(serve_in_thread(stub_upstream_app()))
        hook = stack.enter_context(serve_in_thread(hook_app))
        # Every request fails upstream: the error rate over the last 4 s is 100% while traffic flows.
        create_deployment(store, "chat", "chat@v1", route={"upstream": f"{upstream}/fail/v1"})
        secret = create_key(store, "app").secret
        rules = {
            "rules": [{"name": "ChatErrors", "metric": "error_rate", "deployment": "chat", "window": "4s",
                       "condition": "> 50%", "for": "0s", "severity": "critical"}],
            "sinks": [{"type": "webhook", "url": f"{hook}/hook"}],
        }  # fmt: skip
        rules_file = tmp_path / "alerts.yaml"
        rules_file.write_text(yaml.safe_dump(rules), encoding="utf-8")
        workspace = store.settings.workspace
        url, _ = stack.enter_context(
            keel_serve(workspace, "--workers", "2", "--alerts", str(rules_file), "--alerts-every", "0.5s")
        )

        # One worker holds the evaluator's lease while the server runs: the test cannot take it.
        lease = FileLock(store.settings.state_dir / "alerts-evaluator.lock", thread_local=False)
        with pytest.raises(Timeout):
            lease.acquire(blocking=False)

        client = stack.enter_context(httpx.Client(timeout=30))
        body = {"model": "chat", "messages": [{"role": "user", "content": "hi"}]}
        headers = {"authorization": f"Bearer {secret}"}
        statuses = [client.post(f"{url}/v1/chat/completions", json=body, headers=headers).status_code
                    for _ in range(6)]  # fmt: skip
        assert all(s >= 500 for s in statuses), statuses
        _wait_for(lambda: any(a["status"] == "firing" for p in received for a in p["alerts"]), 30, "the firing")
        # No more traffic: the 4 s window empties and the rule resolves.
        _wait_for(lambda: any(a["status"] == "resolved" for p in received for a in p["alerts"]), 30, "the resolve")
        time.sleep(1.5)  # three more ticks of both workers: nothing else may arrive

    sent = [(a["rule"], a["status"]) for payload in received for a in payload["alerts"]]
    assert sent == [("ChatErrors", "firing"), ("ChatErrors", "resolved")]
    incidents = list_alerts(store)
    assert [(i["rule"], i["state"], i["notified"]) for i in incidents] == [("ChatErrors", "resolved", True)]
    # stored and audited
    with store.db.read() as conn:
        audited = [e.action for e in events(conn, limit=500)]
    assert "alert.firing" in audited and "alert.resolved" in audited, sorted(set(audited))
    # Stopped cleanly, the lease is free again.
    lease.acquire(blocking=False)
    lease.release()


def _worker_of(server_pids: list[int], client_port: int) -> int:
    """The worker process whose socket is connected to `client_port` (the kernel's socket table)."""
    for pid in server_pids:
        for conn in psutil.Process(pid).net_connections(kind="tcp"):
            if conn.raddr and conn.raddr.port == client_port:
                return pid
    raise AssertionError(f"no worker holds the connection from port {client_port}")


def test_keel_serve_workers_with_console_share_one_session(store: Store, tmp_path: Path) -> None:
    _model(store, tmp_path)
    create_deployment(store, "chat", "chat@v1", route={"upstream": "http://127.0.0.1:9/v1"})
    admin = create_key(store, "console-admin")
    grant(store, f"key:{admin.key.id}", "admin")
    pages = ["/ui/", "/ui/datasets", "/ui/models", "/ui/deployments", "/ui/deployments/chat", "/ui/traces",
             "/ui/audit", "/ui/runs"]  # fmt: skip
    with keel_serve(store.settings.workspace, "--workers", "2", "--ui") as (url, proc):
        workers = [c.pid for c in psutil.Process(proc.pid).children(recursive=True)]
        with httpx.Client(base_url=url, follow_redirects=False, timeout=30) as login:
            form = login.get("/ui/login")
            assert form.status_code == 200
            csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
            assert csrf is not None
            signed = login.post("/ui/login", data={"key": admin.secret, "csrf": csrf.group(1), "next": "/"})
            assert signed.status_code == 303, signed.text
            cookies = dict(login.cookies)
        assert cookies, "signing in set no session cookie"

        answered_by: dict[int, list[str]] = {}
        cookie = "; ".join(f"{k}={v}" for k, v in cookies.items())
        for round_ in range(6):
            for page in pages:
                # A fresh connection per load, so the kernel hands each to whichever worker accepts first.
                conn = http.client.HTTPConnection("127.0.0.1", int(url.rsplit(":", 1)[1]), timeout=30)
                try:
                    conn.connect()
                    port = conn.sock.getsockname()[1]
                    conn.request("GET", page, headers={"Cookie": cookie})
                    response = conn.getresponse()
                    text = response.read().decode()
                    assert response.status == 200, (page, response.status, text[:300])
                    answered_by.setdefault(_worker_of(workers, port), []).append(page)
                finally:
                    conn.close()
            if len(answered_by) >= 2 and round_ >= 1:
                break
        # Signed out through one worker, a copy of the cookie is refused by both at once: the sign-out is recorded
        # in the workspace database, which each worker reads on every request.
        with httpx.Client(base_url=url, follow_redirects=False, timeout=30, cookies=cookies) as browser:
            token = re.search(r'name="csrf" value="([^"]+)"', browser.get("/ui/").text)
            assert token is not None
            assert browser.post("/ui/logout", data={"csrf": token.group(1)}).status_code == 303
        refused_by: set[int] = set()
        for _ in range(40):
            conn = http.client.HTTPConnection("127.0.0.1", int(url.rsplit(":", 1)[1]), timeout=30)
            try:
                conn.connect()
                port = conn.sock.getsockname()[1]
                conn.request("GET", "/ui/audit", headers={"Cookie": cookie})
                response = conn.getresponse()
                response.read()
                assert response.status == 303 and response.getheader("location", "").startswith("/ui/login")
                refused_by.add(_worker_of(workers, port))
            finally:
                conn.close()
            if len(refused_by) == 2:
                break
        assert len(refused_by) == 2, f"every refused load landed on one worker: {refused_by}"
        # Without a session the same pages send to the sign-in page: the 200s above were the session's.
        with httpx.Client(base_url=url, follow_redirects=False, timeout=30) as anonymous:
            assert anonymous.get("/ui/models").status_code in (303, 307, 401)
    assert len(answered_by) == 2, f"every load landed on one worker: {answered_by}"
    assert proc.returncode is not None and proc.returncode in (0, -signal.SIGINT), proc.returncode
