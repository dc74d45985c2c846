"""Retention: `--retain` per deployment, enforced by `keel govern enforce`, audited; feedback when it exists."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from keel.cli._app import app
from keel.monitor import Trace, TraceWriter, list_traces, record_feedback
from keel.monitor._retention import enforce_retention
from keel.registry import register_model
from keel.serve import DeploymentSettings, create_deployment
from keel.store import Store, events


def _traces(store: Store, deployment: str, ages_h: list[float], prefix: str) -> None:
    now = datetime.now(UTC)
    TraceWriter(store).write(
        [
            Trace(
                id=f"{prefix}{i:0{26 - len(prefix)}d}",
                at=now - timedelta(hours=h),
                deployment=deployment,
                operation="chat",
                status=200,
                latency_ms=1.0,
                subjects=["a" * 64],
            )
            for i, h in enumerate(ages_h)
        ]  # fmt: skip
    )


def _model(store: Store, tmp_path: Path) -> str:
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    return register_model(store, "chat", folder)[0].ref


def test_enforce_deletes_only_traces_older_than_each_deployments_retention(store: Store, tmp_path: Path) -> None:
    ref = _model(store, tmp_path)
    route = {"upstream": "http://127.0.0.1:9/v1"}
    create_deployment(store, "short", ref, route=route, settings=DeploymentSettings(retain="1h"))
    create_deployment(store, "forever", ref, route=route)
    _traces(store, "short", [0.1, 0.5, 2, 30, 24 * 40], "01JSHXRT")
    _traces(store, "forever", [0.1, 24 * 400], "01JFXREVER")
    record_feedback(store, "01JSHXRT000000000000000003", score="down", comment="slow")  # on an expired trace
    record_feedback(store, "01JSHXRT000000000000000000", score="up", comment="ok")
    results = enforce_retention(store)
    assert [(r.deployment, r.traces, r.feedback) for r in results] == [("short", 3, 1)]
    left = sorted(t.id for t in list_traces(store, limit=100))
    assert left == ["01JFXREVER0000000000000000", "01JFXREVER0000000000000001",
                    "01JSHXRT000000000000000000", "01JSHXRT000000000000000001"]  # fmt: skip
    with store.db.read() as conn:
        audited = events(conn, action="govern.retention")
        assert conn.execute(text("SELECT COUNT(*) FROM trace_subjects")).scalar() == 4
        assert conn.execute(text("SELECT trace_id FROM feedback")).scalars().all() == ["01JSHXRT000000000000000000"]
    assert audited[0].object_id == "deployment:short" and audited[0].details["traces_deleted"] == 3
    assert enforce_retention(store)[0].traces == 0  # idempotent


def test_the_cli_sets_and_enforces_retention(workspace: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(workspace)
    runner = CliRunner()
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    assert runner.invoke(app, ["model", "register", "chat", str(folder)]).exit_code == 0
    up = ["--upstream", "http://127.0.0.1:9/v1"]
    bad = runner.invoke(app, ["deploy", "create", "d", "--model", "chat@v1", *up, "--retain", "soon"])
    assert bad.exit_code == 2 and "Traceback" not in bad.output
    assert runner.invoke(app, ["deploy", "create", "d", "--model", "chat@v1", *up, "--retain", "30d"]).exit_code == 0
    shown = json.loads(runner.invoke(app, ["deploy", "show", "d", "--json"]).output)
    assert shown["settings"]["retain"] == "30d"
    assert runner.invoke(app, ["deploy", "configure", "d", "--retain", "12h"]).exit_code == 0
    enforced = runner.invoke(app, ["govern", "enforce", "--json"])
    assert enforced.exit_code == 0
    assert json.loads(enforced.output) == [
        {**json.loads(enforced.output)[0], "deployment": "d", "retain": "12h", "traces_deleted": 0}
    ]
