"""Alert rules evaluated inside one gateway process (`keel serve --alerts` without workers): fire once, resolve."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import yaml
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from keel.govern import create_key
from keel.monitor import AlertEvaluatorLease, list_alerts
from keel.registry import register_model
from keel.serve import Gateway, ServeSettings, create_app, create_deployment, serve_in_thread, stub_upstream_app
from keel.store import Store


def _statuses(received: list[dict[str, Any]]) -> list[str]:
    return [a["status"] for payload in received for a in payload["alerts"]]


def test_a_gateway_with_an_alerts_file_fires_once_and_resolves(store: Store, tmp_path: Path) -> None:
    received: list[dict[str, Any]] = []

    async def hook(request: Request) -> JSONResponse:
        received.append(await request.json())
        return JSONResponse({"ok": True})

    folder = tmp_path / "chat1"
    folder.mkdir()
    (folder / "config.json").write_text('{"version": 1}')
    register_model(store, "chat", folder)
    secret = create_key(store, "app").secret
    with (
        serve_in_thread(stub_upstream_app()) as upstream,
        serve_in_thread(Starlette(routes=[Route("/hook", hook, methods=["POST"])])) as sink,
    ):
        create_deployment(store, "chat", "chat@v1", route={"upstream": f"{upstream}/fail/v1"})
        rules = {
            "rules": [{"name": "ChatErrors", "metric": "error_rate", "deployment": "chat", "window": "3s",
                       "condition": "> 50%", "for": "0s"}],
            "sinks": [{"type": "webhook", "url": f"{sink}/hook"}],
        }  # fmt: skip
        (tmp_path / "alerts.yaml").write_text(yaml.safe_dump(rules), encoding="utf-8")
        settings = ServeSettings(alerts_file=str(tmp_path / "alerts.yaml"), alerts_every_s=0.2, upstream_retries=0)
        with serve_in_thread(create_app(Gateway(store, settings))) as url:
            # The gateway took the evaluator's lease: another process (here, another lease object) cannot.
            deadline = time.monotonic() + 10
            other = AlertEvaluatorLease(store)
            while other.acquire():  # the gateway's first tick may not have run yet
                other.release()
                assert time.monotonic() < deadline, "the gateway never took the evaluator's lease"
                time.sleep(0.05)
            body = {"model": "chat", "messages": [{"role": "user", "content": "hi"}]}
            for _ in range(4):
                r = httpx.post(f"{url}/v1/chat/completions", json=body, headers={"authorization": f"Bearer {secret}"})
                assert r.status_code >= 500
            deadline = time.monotonic() + 30
            while "resolved" not in _statuses(received):
                assert time.monotonic() < deadline, f"no resolve within 30 s; received {received}"
                time.sleep(0.1)
            time.sleep(0.6)  # three more ticks: nothing more may be sent
        assert other.acquire()  # the gateway gave the lease up when it stopped
        other.release()
    assert _statuses(received) == ["firing", "resolved"]
    assert [(a["rule"], a["state"]) for a in list_alerts(store)] == [("ChatErrors", "resolved")]
