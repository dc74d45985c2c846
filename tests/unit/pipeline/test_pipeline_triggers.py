"""Triggers inside `keel monitor check|watch --pipeline`: a schedule, an alert rule, and the lock."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

from typer.testing import CliRunner

from keel.cli import app
from keel.core.settings import load_settings
from keel.pipeline import load_pipeline
from keel.pipeline._engine import pipeline_lock
from keel.pipeline._triggers import PipelineTrigger, due_pipelines, last_started
from keel.store import open_store


def _lines(output: str) -> list[dict[str, object]]:
    decoder, found, at = json.JSONDecoder(), [], 0
    while (start := output.find("{", at)) != -1:
        value, at = decoder.raw_decode(output, start)
        found.append(value)
    return found


def test_a_schedule_starts_a_run_once_per_period(workspace: Path) -> None:
    (workspace / "pipeline.yaml").write_text(
        "name: nightly\ntriggers: {schedule: 1h}\nstages:\n  hello: {run: 'echo hi > hi.txt', outputs: [hi.txt]}\n"
    )
    runner = CliRunner()
    args = ["-w", str(workspace), "monitor", "check", "--pipeline", str(workspace / "pipeline.yaml"), "--json"]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    started = [x for x in _lines(first.output) if "pipeline_started" in x]
    assert started == [{"pipeline_started": {"pipeline": "nightly", "reason": "schedule 1h: never ran"}}]
    assert any(str(x.get("result", "")).endswith("1 ran, 0 cached") for x in _lines(first.output))
    second = runner.invoke(app, args)  # the last run started moments ago: not due
    assert second.exit_code == 0 and not [x for x in _lines(second.output) if "pipeline_started" in x]

    store = open_store(load_settings(workspace))
    try:
        pipeline = load_pipeline(workspace / "pipeline.yaml")
        last = last_started(store, "nightly")
        assert last is not None
        later = due_pipelines(store, [pipeline], [], now=last + timedelta(hours=1, seconds=1))
        assert [d.reason.split(":")[0] for d in later] == ["schedule 1h"]
    finally:
        store.close()


def test_an_alert_starts_the_pipeline_and_the_lock_prevents_an_overlap(workspace: Path) -> None:
    (workspace / "pipeline.yaml").write_text(
        "name: retrain\ntriggers: {alerts: [no-traffic, idle], stages: [hello]}\n"
        "stages:\n  hello: {run: 'echo hi > hi.txt', outputs: [hi.txt]}\n  other: {run: 'exit 1'}\n"
    )
    (workspace / "alerts.yaml").write_text(
        "rules:\n  - {name: no-traffic, metric: requests, condition: '< 1', window: 5m}\n"
    )
    store = open_store(load_settings(workspace))
    try:  # another process holds the lock: the alert's run is skipped, not overlapped
        with pipeline_lock(store, "retrain", "01HOLDER000000000000000000"):
            from keel.monitor import load_alert_config, monitor_tick

            trigger = PipelineTrigger(store, [load_pipeline(workspace / "pipeline.yaml")])
            tick = monitor_tick(store, load_alert_config(workspace / "alerts.yaml"))
            assert [d.reason for d in trigger.on_tick(tick)] == ["alert no-traffic fired"]
            trigger.wait(60)
            assert trigger.results["retrain"].startswith("skipped: pipeline 'retrain' is already running")
        assert not (workspace / "hi.txt").exists()
    finally:
        store.close()
    (workspace / "alerts2.yaml").write_text(
        "rules:\n  - {name: idle, metric: requests, condition: '< 2', window: 5m}\n"
    )
    rules, file = str(workspace / "alerts2.yaml"), str(workspace / "pipeline.yaml")
    result = CliRunner().invoke(app, ["-w", str(workspace), "monitor", "check", "--rules", rules, "--pipeline", file])
    assert result.exit_code == 0, result.output
    assert "pipeline retrain started: alert idle fired" in result.output
    assert "1 ran, 0 cached" in result.output and (workspace / "hi.txt").exists()  # only the trigger's stages
