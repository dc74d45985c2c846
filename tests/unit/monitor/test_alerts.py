from __future__ import annotations

import json
import sys
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from keel.core.errors import InputError
from keel.core.ids import new_ulid
from keel.monitor import (
    AlertConfig,
    Trace,
    TraceWriter,
    list_alerts,
    load_alert_config,
    monitor_tick,
    prometheus_rules,
)
from keel.store import Store, events


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A webhook receiver on 127.0.0.1: its URL and the JSON bodies it received, by path."""
    received: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the http.server hook name
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append({"path": self.path, "body": json.loads(body)})
            status = 500 if self.path == "/broken" else 200
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", received
    server.shutdown()
    server.server_close()
    thread.join()


def _traffic(store: Store, minutes_ago: float, count: int, *, failing: float, latency_ms: float = 20.0) -> None:
    start = store.clock() - timedelta(minutes=minutes_ago)
    batch = [
        Trace(id=new_ulid(), at=start + timedelta(milliseconds=i), deployment="chat", operation="chat",
              status=500 if i < failing * count else 200, latency_ms=latency_ms, model_version="chat@v1")
        for i in range(count)
    ]  # fmt: skip
    TraceWriter(store).write(batch)


def _config(url: str, tmp_path: Path, **extra: Any) -> AlertConfig:
    append = f"import sys; open({str(tmp_path / 'cmd.jsonl')!r}, 'a').write(sys.stdin.read() + '\\n')"
    data = {
        "rules": [{"name": "HighErrorRate", "metric": "error_rate", "deployment": "chat", "window": "5m",
                   "condition": "> 5%", "severity": "critical", "labels": {"team": "search"}}],
        "sinks": [
            {"type": "webhook", "url": f"{url}/alertmanager", "format": "alertmanager"},
            {"type": "webhook", "url": f"{url}/slack", "format": "slack"},
            {"type": "command", "command": [sys.executable, "-c", append]},
            {"type": "log"},
        ],
        **extra,
    }  # fmt: skip
    path = tmp_path / "alerts.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return load_alert_config(path)


def test_an_alert_fires_to_a_webhook_is_not_repeated_and_resolves(
    store: Store, webhook: tuple[str, list[dict[str, Any]]], tmp_path: Path
) -> None:
    url, received = webhook
    config = _config(url, tmp_path)
    _traffic(store, 2, 100, failing=0.2)
    now = store.clock()

    first = monitor_tick(store, config, now=now)
    assert [(e.rule, e.status, e.notify) for e in first.alerts] == [("HighErrorRate", "firing", True)]
    assert first.alerts[0].value == pytest.approx(0.2) and first.sink_failures == {}
    alertmanager = next(r["body"] for r in received if r["path"] == "/alertmanager")
    assert alertmanager["version"] == "4" and alertmanager["status"] == "firing"
    alert = alertmanager["alerts"][0]
    assert alert["labels"] == {"alertname": "HighErrorRate", "severity": "critical", "deployment": "chat",
                               "team": "search"}  # fmt: skip
    assert alert["annotations"]["value"] == "0.2" and alert["endsAt"] == "0001-01-01T00:00:00Z"
    slack = next(r["body"] for r in received if r["path"] == "/slack")
    assert slack["text"] == "[keel] 1 firing, 0 resolved"
    assert slack["attachments"][0]["title"] == "[FIRING] HighErrorRate (critical)"
    assert json.loads((tmp_path / "cmd.jsonl").read_text().splitlines()[0])["alerts"][0]["status"] == "firing"

    # Still failing a minute later: stored, not sent again.
    repeat = monitor_tick(store, config, now=now + timedelta(minutes=1))
    assert repeat.alerts == [] and len(received) == 2
    assert [a["state"] for a in list_alerts(store)] == ["firing"]

    # Ten minutes on, the window holds no failing traffic: resolved, and said so once.
    resolved = monitor_tick(store, config, now=now + timedelta(minutes=10))
    assert [(e.status, e.notify) for e in resolved.alerts] == [("resolved", True)]
    last = [r["body"] for r in received if r["path"] == "/alertmanager"][-1]
    assert last["status"] == "resolved" and last["alerts"][0]["endsAt"] != "0001-01-01T00:00:00Z"
    assert monitor_tick(store, config, now=now + timedelta(minutes=11)).alerts == []
    assert len(received) == 4
    with store.db.read() as conn:
        actions = [e.action for e in events(conn) if e.object_id == "alert:HighErrorRate"][::-1]
    assert actions == ["alert.firing", "alert.resolved"]
    stored = list_alerts(store)[0]
    assert stored["state"] == "resolved" and stored["notified"] and stored["resolved_at"] is not None


def test_cool_down_for_duration_and_inhibition(
    store: Store, webhook: tuple[str, list[dict[str, Any]]], tmp_path: Path
) -> None:
    url, received = webhook
    config = _config(url, tmp_path, cooldown="30m")
    slow = {"name": "SlowAnswers", "metric": "p95_ms", "condition": "> 500", "severity": "warning", "for_": "2m"}
    config.rules.append(config.rules[0].model_copy(update=slow))
    _traffic(store, 2, 50, failing=0.5, latency_ms=900.0)
    now = store.clock()
    first = monitor_tick(store, config, now=now)
    assert [e.rule for e in first.alerts] == ["HighErrorRate"]  # SlowAnswers is pending for 2 minutes
    assert [a["state"] for a in list_alerts(store)] == ["pending", "firing"]
    later = monitor_tick(store, config, now=now + timedelta(minutes=2, seconds=30))
    assert len(later.alerts) == 1 and later.alerts[0].rule == "SlowAnswers"
    assert not later.alerts[0].notify and later.alerts[0].suppressed == "inhibited by firing HighErrorRate (critical)"
    assert len([r for r in received if r["path"] == "/slack"]) == 1  # only the critical one was sent

    resolved = monitor_tick(store, config, now=now + timedelta(minutes=10))
    assert {(e.rule, e.notify) for e in resolved.alerts} == {("HighErrorRate", True), ("SlowAnswers", False)}
    # Failing again five minutes after resolving, within the 30-minute cool-down: stored, audited, not sent.
    _traffic(store, -13, 50, failing=0.5)
    again = monitor_tick(store, config, now=now + timedelta(minutes=15))
    assert [(e.rule, e.status, e.notify) for e in again.alerts] == [("HighErrorRate", "firing", False)]
    assert again.alerts[0].suppressed is not None and "cool-down" in again.alerts[0].suppressed
    with store.db.read() as conn:
        details = [e.details for e in events(conn) if e.action == "alert.firing"]
    assert any(d.get("suppressed") and "cool-down" in d["suppressed"] for d in details)


def test_a_failing_sink_does_not_stop_the_others(
    store: Store, webhook: tuple[str, list[dict[str, Any]]], tmp_path: Path
) -> None:
    url, received = webhook
    config = _config(url, tmp_path)
    config.sinks.insert(0, config.sinks[0].model_copy(update={"url": f"{url}/broken"}))
    config.sinks.insert(0, config.sinks[0].model_copy(update={"url": "http://127.0.0.1:9/nothing-listens"}))
    _traffic(store, 1, 20, failing=1.0)
    tick = monitor_tick(store, config)
    assert set(tick.sink_failures) == {"0:webhook", "1:webhook"}
    assert {r["path"] for r in received} == {"/broken", "/alertmanager", "/slack"}


def test_alert_files_are_validated_with_every_error_at_once(tmp_path: Path) -> None:
    path = tmp_path / "alerts.yaml"
    path.write_text(yaml.safe_dump({"rules": [{"name": "x", "metric": "vibes", "condition": "about 3",
                                               "window": "soon"}]}))  # fmt: skip
    with pytest.raises(InputError) as caught:
        load_alert_config(path)
    message = str(caught.value)
    assert "rules.0.metric" in message and "rules.0.condition" in message and "rules.0.window" in message
    path.write_text("rules: [unclosed")
    with pytest.raises(InputError, match="readable YAML"):
        load_alert_config(path)
    path.write_text(yaml.safe_dump({"rules": [], "sinks": [{"type": "webhook"}]}))
    with pytest.raises(InputError, match="webhook sink needs a url"):
        load_alert_config(path)
    with pytest.raises(InputError, match="readable YAML"):
        load_alert_config(tmp_path / "missing.yaml")


def test_prometheus_rules_translate_gateway_metrics_and_name_the_rest(tmp_path: Path) -> None:
    config = AlertConfig.model_validate({"rules": [
        {"name": "Errors", "metric": "error_rate", "deployment": "chat", "window": "5m", "condition": "> 5%",
         "for": "2m", "severity": "critical"},
        {"name": "Slow", "metric": "p95_ms", "window": "10m", "condition": ">= 800"},
        {"name": "QueriesDrift", "metric": "drift.query_embedding", "deployment": "chat", "window": "1d",
         "condition": "< 0.01"},
    ]})  # fmt: skip
    rules, skipped = prometheus_rules(config)
    errors, slow = rules["groups"][0]["rules"]
    assert errors["expr"] == (
        'sum(rate(keel_gateway_requests_total{gen_ai_request_model="chat",status=~"[45].."}[5m])) '
        '/ sum(rate(keel_gateway_requests_total{gen_ai_request_model="chat"}[5m])) > 0.05'
    )
    assert errors["for"] == "2m" and errors["labels"] == {"severity": "critical", "deployment": "chat"}
    assert slow["expr"].startswith("histogram_quantile(0.95, sum by (le) (rate(gen_ai_server_request_duration_seconds")
    assert slow["expr"].endswith("{}[10m]))) * 1000 >= 800") and "for" not in slow
    assert skipped == ["QueriesDrift: drift.query_embedding is computed from traces, not exported to Prometheus"]
