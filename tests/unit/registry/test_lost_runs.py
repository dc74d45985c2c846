from __future__ import annotations

import json
import signal
import subprocess
import sys
from typing import Any

import pytest
from typer.testing import CliRunner

from keel.cli import app
from keel.core.errors import InputError
from keel.registry import close_run, get_run, list_runs, start_run
from keel.registry._env import process_alive, process_identity
from keel.store import Store

CHILD = """
import os, signal, sys
from keel.core.settings import load_settings
from keel.registry import start_run
from keel.store import open_store

store = open_store(load_settings(sys.argv[1]))
with start_run("train", {"lr": 0.1}, store=store) as run:
    run.log_metric("loss", 1.5, step=1)
    print(run.id, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)  # as the kernel's OOM killer would: no handler runs
"""


def _killed_run(store: Store) -> str:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(store.settings.workspace)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == -signal.SIGKILL, done.stderr
    return done.stdout.strip()


def test_a_run_killed_outright_is_reported_lost_and_can_be_closed(store: Store) -> None:
    run_id = _killed_run(store)
    with store.db.read() as conn:
        run = get_run(conn, run_id)
        listed = {r.id: r for r in list_runs(conn)}
    assert run.status == "running" and run.lost  # the database says running; its process is gone
    assert listed[run_id].lost and listed[run_id].to_json()["lost"] is True
    assert run.env["process"]["pid"] > 0 and run.metrics == {"loss": 1.5}  # what it logged is kept

    workspace = str(store.settings.workspace)
    runner = CliRunner()
    shown = runner.invoke(app, ["-w", workspace, "run", "show", run_id])
    assert shown.exit_code == 0 and "lost:" in shown.output and f"keel run close {run_id}" in shown.output
    assert "lost" in runner.invoke(app, ["-w", workspace, "run", "list"]).output

    closed = runner.invoke(app, ["-w", workspace, "run", "close", run_id, "--json"])
    assert closed.exit_code == 0, closed.output
    data = json.loads(closed.output)
    assert data["status"] == "killed" and not data["lost"] and "ended without closing the run" in data["error"]
    with store.db.read() as conn:
        assert get_run(conn, run_id).ended_at is not None
    again = runner.invoke(app, ["-w", workspace, "run", "close", run_id])
    assert again.exit_code == 2 and "already killed" in again.output


def test_a_live_run_is_not_lost_and_is_not_closed_without_force(store: Store) -> None:
    with start_run("eval", store=store) as run:
        with store.db.read() as conn:
            assert not get_run(conn, run.id).lost
        with pytest.raises(InputError, match="still running here"):
            close_run(store, run.id)
        with pytest.raises(InputError, match="expected status 'killed' or 'failed'"):
            close_run(store, run.id, "finished")  # type: ignore[arg-type]
        assert close_run(store, run.id, "failed", "stuck on a dead NFS mount", force=True).status == "failed"
    with store.db.read() as conn:
        # the process then ended its block normally and recorded that, as the last word
        assert get_run(conn, run.id).status == "finished"


def test_a_run_recorded_on_another_host_is_never_called_lost(store: Store) -> None:
    from sqlalchemy import update

    from keel.store.schema import runs

    run_id = _killed_run(store)
    with store.db.write() as conn:
        row = conn.execute(runs.select().where(runs.c.id == run_id)).first()
        assert row is not None
        env = json.loads(row.env)
        env["process"]["host"] = "another-machine"
        conn.execute(update(runs).where(runs.c.id == run_id).values(env=json.dumps(env)))
    with store.db.read() as conn:
        assert not get_run(conn, run_id).lost  # this host cannot see that machine's processes
    assert close_run(store, run_id).error == (
        f"closed by hand: pid {env['process']['pid']} on another-machine ended without closing the run"
    )


def test_old_runs_without_a_process_record_are_not_lost(store: Store) -> None:
    from sqlalchemy import update

    from keel.store.schema import runs

    run_id = _killed_run(store)
    with store.db.write() as conn:
        row = conn.execute(runs.select().where(runs.c.id == run_id)).first()
        assert row is not None
        env = {k: v for k, v in json.loads(row.env).items() if k != "process"}
        conn.execute(update(runs).where(runs.c.id == run_id).values(env=json.dumps(env)))
    with store.db.read() as conn:
        assert not get_run(conn, run_id).lost


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({}, True),  # this very process
        ({"pid_ns": -1}, None),  # another pid namespace (a container sharing the host name): cannot tell
        ({"uid": -1}, None),  # another user: /proc may hide their processes
        ({"host": "elsewhere"}, None),
        ({"start": "another-boot:1"}, False),  # the pid now belongs to a different process
    ],
)
def test_process_alive_answers_only_for_processes_it_can_see(change: dict[str, Any], expected: bool | None) -> None:
    assert process_alive({**process_identity(), **change}) is expected
