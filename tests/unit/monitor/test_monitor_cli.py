from __future__ import annotations

import json
import threading
from datetime import timedelta
from pathlib import Path

import yaml
from typer.testing import CliRunner

from keel.cli import app
from keel.core.ids import new_ulid
from keel.core.settings import load_settings
from keel.monitor import Trace, TraceWriter, load_alert_config, watch
from keel.registry import register_model
from keel.store import open_store

runner = CliRunner()


def _run(workspace: Path, *args: str, code: int = 0) -> str:
    result = runner.invoke(app, ["-w", str(workspace), *args])
    assert result.exit_code == code, result.output
    return result.output


def test_drift_alert_and_guarded_canary_commands(workspace: Path, tmp_path: Path) -> None:
    store = open_store(load_settings(workspace))
    for i in (1, 2):
        (tmp_path / f"m{i}").mkdir()
        (tmp_path / f"m{i}" / "config.json").write_text(str(i))
        register_model(store, "chat", tmp_path / f"m{i}")
    _run(workspace, "deploy", "create", "chat", "--model", "chat@v1", "--upstream=http://127.0.0.1:9/v1")
    now = store.clock()
    batch = [Trace(id=new_ulid(), at=now - timedelta(hours=30 if i < 100 else 2, seconds=i), deployment="chat",
                   operation="chat", status=500 if i >= 150 else 200, latency_ms=10.0, model_version="chat@v1",
                   tokens_in=10 if i < 100 else 40) for i in range(200)]  # fmt: skip
    TraceWriter(store).write(batch)

    report = json.loads(
        _run(workspace, "monitor", "drift", "chat", "--baseline-window", "1d", "--window", "1d", "--json")
    )
    drifted = {f["feature"] for f in report["features"] if f["drifted"]}
    assert {"tokens_in", "error_rate"} <= drifted and report["skipped"]["query_embedding"] == "neither side records it"
    text = _run(workspace, "monitor", "drift", "chat", "--baseline-window", "1d")
    assert "Drift detected." in text and "not tested: query_embedding" in text
    assert _run(workspace, "monitor", "drift", "chat", code=2).count("\n") == 1  # one line, no traceback
    assert "expected a duration" in _run(workspace, "monitor", "drift", "chat", "--baseline-window", "a week", code=2)

    rules = tmp_path / "alerts.yaml"
    rules.write_text(yaml.safe_dump({"rules": [
        {"name": "Errors", "metric": "error_rate", "deployment": "chat", "window": "3h", "condition": "> 10%",
         "severity": "critical"},
        {"name": "TokensDrift", "metric": "drift.tokens_in", "deployment": "chat", "window": "1d", "baseline": "1d",
         "condition": "< 0.01"},
    ], "sinks": [{"type": "log"}]}))  # fmt: skip
    tick = json.loads(_run(workspace, "monitor", "check", "--rules", str(rules), "--json"))
    assert sorted((a["rule"], a["status"]) for a in tick["alerts"]) == [("Errors", "firing"), ("TokensDrift", "firing")]
    assert "Nothing changed." in _run(workspace, "monitor", "check", "--rules", str(rules))  # repeats are not news
    assert {a["rule"] for a in json.loads(_run(workspace, "monitor", "alerts", "--state", "firing", "--json"))} == {
        "Errors", "TokensDrift",
    }  # fmt: skip
    out = tmp_path / "rules.yml"
    _run(workspace, "monitor", "prometheus-rules", str(rules), "-o", str(out))
    prom = yaml.safe_load(out.read_text())
    assert [r["alert"] for r in prom["groups"][0]["rules"]] == ["Errors"]
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules:\n  - name: x\n")
    assert "not a valid alerts file" in _run(workspace, "monitor", "check", "--rules", str(bad), code=2)

    guards = ["--guard", "error_rate<1%", "--guard", "p95_ms<800"]
    started = json.loads(_run(workspace, "deploy", "canary", "chat", "--model", "chat@v2", *guards,
                              "--steps", "10,50,100", "--interval", "1ms", "--json"))  # fmt: skip
    assert (
        started["state"] == "running"
        and started["weight"] == 10
        and started["guards"] == ["error_rate<1%", "p95_ms<800"]
    )
    waited = json.loads(_run(workspace, "monitor", "check", "--json"))
    assert [d["decision"] for d in waited["rollouts"]] == ["wait"]  # no canary traffic yet
    history = _run(workspace, "deploy", "history", "chat")
    assert "analysis" in history and "waiting for 50" in history
    assert "expected a guard" in _run(workspace, "deploy", "canary", "chat", "--model", "chat@v2", "--guard", "vibes>1",
                                      code=2)  # fmt: skip
    assert "comma-separated" in _run(workspace, "deploy", "canary", "chat", "--model", "chat@v2", "--guard",
                                     "error_rate<1%", "--steps", "10,x", code=2)  # fmt: skip


def test_watch_runs_ticks_until_stopped(workspace: Path, tmp_path: Path) -> None:
    store = open_store(load_settings(workspace))
    rules = tmp_path / "alerts.yaml"
    rules.write_text(yaml.safe_dump({"rules": [{"name": "Quiet", "metric": "requests", "window": "5m",
                                                "condition": "< 1"}]}))  # fmt: skip
    stop = threading.Event()
    ticks = []

    def on_tick(tick: object) -> None:
        ticks.append(tick)
        if len(ticks) == 2:
            stop.set()

    watch(store, load_alert_config(rules), every=timedelta(milliseconds=10), stop=stop, on_tick=on_tick)
    assert [len(t.alerts) for t in ticks] == [1, 0]  # fired once (no traffic at all), then a repeat
