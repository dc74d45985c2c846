"""`keel pipeline run` on a real loop (curate → commit → train → gate → alias → deploy) with a tiny model:
cache hits, re-runs from a changed param, a failing gate, a kill during train, the lock, the lineage."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from keel.cli import app
from keel.core.errors import NotFoundError
from keel.pipeline import (
    GateFailedError,
    PipelineBusyError,
    load_pipeline,
    plan_pipeline,
    run_pipeline,
)
from keel.pipeline._engine import pipeline_lock
from keel.pipeline._spec import parse_sets
from keel.registry import get_model, list_runs
from keel.serve import get_deployment
from keel.store import Store, walk
from keel.store.schema import pipeline_locks, pipeline_stages

pytestmark = pytest.mark.timeout(600)
UPSTREAM = ["curate", "cases", "pairs"]
DOWNSTREAM = ["train", "gate", "alias", "deploy"]


def _statuses(outcomes: list) -> dict[str, str]:  # type: ignore[type-arg]
    return {o.stage: o.status for o in outcomes}


def test_unchanged_run_is_all_cached_and_a_train_param_reruns_train_and_downstream(store: Store, project: Path) -> None:
    pipeline = load_pipeline(project)
    run_id, first = run_pipeline(store, pipeline)
    assert set(_statuses(first).values()) == {"finished"} and len(first) == 7
    assert get_model(store, "student@production").ref == "student@v1"
    assert [(r.model, r.weight) for r in get_deployment(store, "assistant").routes] == [("student@v1", 100)]

    with store.db.read() as conn:
        stage_runs_before = len(list_runs(conn, kind="pipeline-stage"))
    _, second = run_pipeline(store, pipeline)
    assert set(_statuses(second).values()) == {"cached"}
    with store.db.read() as conn:
        assert len(list_runs(conn, kind="pipeline-stage")) == stage_runs_before  # no stage ran
        assert len(list_runs(conn, kind="train")) == 1

    changed = load_pipeline(project, sets=parse_sets(["steps=3"]))
    plan = {p.stage: p for p in plan_pipeline(store, changed)}
    assert plan["train"].action == "run" and plan["train"].reasons == ["param steps: 2 → 3"]
    assert all(plan[s].action == "cached" for s in UPSTREAM)
    assert plan["gate"].reasons == ["upstream stage train runs first"]
    _, third = run_pipeline(store, changed)
    statuses = _statuses(third)
    assert [statuses[s] for s in UPSTREAM] == ["cached"] * 3
    assert [statuses[s] for s in DOWNSTREAM] == ["finished"] * 4
    assert get_model(store, "student@production").ref == "student@v2"
    assert [(r.model, r.weight) for r in get_deployment(store, "assistant").routes] == [("student@v2", 100)]

    # the first pipeline run is a registry run containing its stages' runs; the DAG is in the lineage graph
    with store.db.read() as conn:
        contained = {h.node for h in walk(conn, f"run:{run_id}", "downstream", depth=1)}
        rows = conn.execute(select(pipeline_stages).where(pipeline_stages.c.pipeline_run_id == run_id)).all()
        train_run = next(r.run_id for r in rows if r.stage == "train")
        gate_run = next(r.run_id for r in rows if r.stage == "gate")
        after_train = {h.node for h in walk(conn, f"run:{train_run}", "downstream", depth=1)}
    assert {f"run:{r.run_id}" for r in rows} <= contained and len(rows) == 7
    assert f"run:{gate_run}" in after_train and "model-version:student@v1" in after_train


def test_a_failing_gate_stops_before_alias_and_deploy_with_exit_1(store: Store, project: Path) -> None:
    summary = project.parent / "summary.md"
    runner = CliRunner()
    ws = ["-w", str(store.settings.workspace)]
    result = runner.invoke(app, [*ws, "pipeline", "run", "-f", str(project), "--set", "min_chrf=101",
                                 "--summary", str(summary)])  # fmt: skip
    assert result.exit_code == 1, result.output
    assert "GateFailedError: stage 'gate' failed: gate said no" in result.output
    assert "chrf" in result.output  # the gate's Markdown report is the evidence
    with pytest.raises(NotFoundError):
        get_model(store, "student@production")
    with pytest.raises(NotFoundError):
        get_deployment(store, "assistant")
    text = summary.read_text()
    assert "| gate | failed | gate said no" in text and "alias" not in text.split("| gate |")[1].split("\n\n")[0]
    assert (project.parent / "reports" / "gate.md").read_text() in text

    with pytest.raises(GateFailedError) as caught:  # run again: the failed gate is not a cache hit
        run_pipeline(store, load_pipeline(project, sets={"min_chrf": 101}))
    assert _statuses(caught.value.outcomes)["gate"] == "failed"
    assert _statuses(caught.value.outcomes)["train"] == "cached"


def _keel(*args: str) -> list[str]:
    return [sys.executable, "-c", "from keel.cli import main; main()", *args]


def test_a_kill_during_train_resumes_there(store: Store, project: Path) -> None:
    workspace = str(store.settings.workspace)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen(_keel("-w", workspace, "pipeline", "run", "-f", str(project)), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline:
            with store.db.read() as conn:
                training = conn.execute(
                    select(pipeline_stages.c.id).where(
                        pipeline_stages.c.stage == "train", pipeline_stages.c.status == "running"
                    )  # fmt: skip
                ).first()
            if training is not None or proc.poll() is not None:
                break
            time.sleep(0.05)
        assert training is not None, "the pipeline never reached its train stage"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    with store.db.read() as conn:
        assert conn.execute(select(pipeline_locks)).first() is not None  # left behind by the killed process
        killed = [r.id for r in list_runs(conn, kind="pipeline")]

    run_id, outcomes = run_pipeline(store, load_pipeline(project))
    statuses = _statuses(outcomes)
    assert [statuses[s] for s in UPSTREAM] == ["cached"] * 3  # finished before the kill: not run again
    assert [statuses[s] for s in DOWNSTREAM] == ["finished"] * 4
    with store.db.read() as conn:
        assert conn.execute(select(pipeline_locks)).first() is None
        runs = {r.id: r.status for r in list_runs(conn, kind="pipeline")}
        stage_rows = conn.execute(select(pipeline_stages.c.stage, pipeline_stages.c.status)
                                  .where(pipeline_stages.c.pipeline_run_id == killed[0])).all()  # fmt: skip
    assert runs[killed[0]] == "killed" and runs[run_id] == "finished"
    assert ("train", "failed") in [tuple(r) for r in stage_rows]


def test_two_runs_of_one_pipeline_never_overlap(store: Store, project: Path) -> None:
    pipeline = load_pipeline(project)
    with pipeline_lock(store, pipeline.name, "01HOLDER000000000000000000"):
        with pytest.raises(PipelineBusyError, match="is already running"):
            run_pipeline(store, pipeline, ["cases"])
    _, outcomes = run_pipeline(store, pipeline, ["cases"])  # released: runs, and only what `cases` needs
    assert _statuses(outcomes) == {"cases": "finished"}
