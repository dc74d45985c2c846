"""Run a command as a child process and SIGKILL it after a delay, for the crash tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys


def child_env() -> dict[str, str]:
    """This environment with the test's import path, so a child `keel` imports the code under test."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}


def run_and_kill(args: list[str], delay: float) -> int | None:
    """Run `args`, SIGKILL it if still running after `delay` seconds; its exit code (negative if killed).

    Whether it finished or was killed, it must not have printed a traceback.
    """
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=child_env())
    try:
        proc.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    assert proc.stderr is not None
    err = proc.stderr.read().decode()
    proc.stderr.close()
    assert "Traceback" not in err, err
    return proc.returncode
