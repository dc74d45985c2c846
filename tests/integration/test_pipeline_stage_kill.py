"""A pipeline whose `keel` process dies (kill -9, Ctrl-C) while a shell stage runs its command.

The command runs as `sh -c`, whose programs are its children: before, a kill -9 of Keel left them running
and the next `keel pipeline run` took the dead run's lock over and started the same stage again beside
them; a Ctrl-C killed `sh` only and left its programs running.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from tests.integration.sigkill import child_env
from typer.testing import CliRunner

from keel.cli import app
from keel.core.settings import load_settings
from keel.store import open_store
from keel.store.schema import pipeline_locks

runner = CliRunner()

# The command says it started, then waits for the test to let it finish, then appends to a log; the waiting is in
# a subshell, a child of `sh` (as any program a command line runs is), so killing only `sh` does not stop it.
PIPELINE = """\
name: waits
stages:
  slow:
    run: echo $$ > started; (while [ ! -e release ]; do sleep 0.05; done; echo "finished by $$" >> log); true
"""


def _wait_for_stage(workspace: Path, project: Path, timeout: float = 60.0) -> int:
    """Wait until the stage's command runs and the lock records its process group (a kill -9 in the milliseconds
    between the two is not covered: the group is known only once the command has started); the group."""
    store = open_store(load_settings(workspace))
    deadline = time.monotonic() + timeout
    try:
        while True:
            assert time.monotonic() < deadline, "the stage never started"
            with store.db.read() as conn:
                holder = conn.scalar(select(pipeline_locks.c.holder))
            group = json.loads(holder).get("stage_group") if holder else None
            if group is not None and (project / "started").is_file() and (project / "started").read_text().strip():
                return int(group)
            time.sleep(0.05)
    finally:
        store.close()


def _start(workspace: Path, project: Path) -> subprocess.Popen[bytes]:
    args = [sys.executable, "-m", "keel", "-w", str(workspace), "pipeline", "run", "-f", str(project / "p.yaml")]
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=child_env())


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Path]:
    """The pipeline's folder; whatever the test's outcome, its commands are let finish at the end."""
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "p.yaml").write_text(PIPELINE)
    yield folder
    (folder / "release").touch()


def test_a_killed_runs_command_still_running_keeps_the_lock(workspace: Path, project: Path) -> None:
    keel = _start(workspace, project)
    group = _wait_for_stage(workspace, project)
    assert group == int((project / "started").read_text())  # `sh` leads its own group
    keel.send_signal(signal.SIGKILL)
    keel.wait(timeout=60)
    assert keel.stderr is not None
    keel.stderr.close()

    again = runner.invoke(app, ["-w", str(workspace), "pipeline", "run", "-f", str(project / "p.yaml")])
    assert again.exit_code == 1, again.output  # as for a live run holding the lock (a ConflictError)
    output = " ".join(again.output.split())
    assert "PipelineBusyError" in output and "still runs" in output, again.output
    assert f"kill -- -{group}" in output, again.output
    assert not (project / "log").exists()  # nothing ran a second copy of the stage

    (project / "release").touch()  # the orphaned command finishes; then the pipeline may run again
    deadline = time.monotonic() + 30
    while not (project / "log").exists():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    for _ in range(100):  # its shell exits just after writing the log line
        retry = runner.invoke(app, ["-w", str(workspace), "pipeline", "run", "-f", str(project / "p.yaml")])
        if "still runs" not in retry.output:
            break
        time.sleep(0.1)
    assert retry.exit_code == 0, retry.output
    second = int((project / "started").read_text())  # the retry's own run of the stage
    assert (project / "log").read_text().splitlines() == [f"finished by {group}", f"finished by {second}"]


def test_ctrl_c_stops_every_program_of_the_stage(workspace: Path, project: Path) -> None:
    keel = _start(workspace, project)
    _wait_for_stage(workspace, project)
    keel.send_signal(signal.SIGINT)
    keel.wait(timeout=60)
    assert keel.stderr is not None
    keel.stderr.close()
    (project / "release").touch()
    time.sleep(1.0)  # ample for the loop's next check (every 0.05 s), had it survived
    assert not (project / "log").exists(), "the stage's command kept running after Ctrl-C"
    again = runner.invoke(app, ["-w", str(workspace), "pipeline", "run", "-f", str(project / "p.yaml")])
    assert again.exit_code == 0, again.output  # the interrupted run released its lock
