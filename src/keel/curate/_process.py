"""Process hygiene for the local engine: workers die with their parent, and one run at a time per output folder.

A worker of a killed run must not keep working (and writing) on its own, re-parented to PID 1; a second run
over the same output folder must not write the same work files at the same time. Curation's own processes
also spare pyarrow its import of pandas (`block_pandas`). This module knows nothing of recipes or steps.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import signal
import sys
import threading
from importlib.machinery import ModuleSpec
from pathlib import Path
from types import ModuleType

from keel.core.errors import InputError

__all__ = ["OutputLock", "block_pandas", "die_with_parent", "lock_output"]

_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
_WATCH_SECONDS = 0.5


def die_with_parent(parent_pid: int) -> None:
    """Make this (worker) process end when `parent_pid` ends, even when the parent is killed with SIGKILL.

    On Linux the kernel sends SIGKILL to this process when its parent dies (PR_SET_PDEATHSIG, through ctypes).
    Everywhere, a daemon thread also checks every half second that the parent is still this process's parent
    and exits otherwise (a dead parent's children are re-parented), which covers other systems and a parent
    that died before the prctl call.
    """
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):  # not glibc/musl: the watcher below still works
            pass
    if os.getppid() != parent_pid:  # the parent died before the prctl call took effect
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent_pid,), name="keel-parent-watch", daemon=True).start()


def _watch_parent(parent_pid: int) -> None:
    event = threading.Event()
    while not event.wait(_WATCH_SECONDS):
        if os.getppid() != parent_pid:
            os._exit(1)  # no cleanup: the parent's run is gone, and its resume redoes unfinished shards


class OutputLock:
    """An exclusive OS file lock (`flock`) held on an open file until `release()` or the holder's death.

    Written here rather than taken from filelock: that package imports asyncio (~0.06 CPU-s on every
    `keel curate run`) for its asynchronous locks, and one non-blocking `flock` is all a run needs.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BaseException:
            os.close(self._fd)
            self._fd = None
            raise

    @property
    def is_locked(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        """Let the lock go (closing the file releases it); a second call does nothing."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)


def lock_output(output_dir: Path) -> OutputLock:
    """Hold the lock of `output_dir` for one run; an `InputError` when another run holds it.

    The lock is an OS file lock (released by the kernel if the holder dies) on `output_dir/.keel.lock`.

    Raises:
        InputError: Another run is writing to this output folder.
    """
    output_dir.mkdir(parents=True, exist_ok=True)
    path = output_dir / ".keel.lock"
    try:
        return OutputLock(path)
    except BlockingIOError:
        raise InputError(
            f"expected no other run writing to {output_dir}; another curation run holds {path}",
            hint="wait for it to finish (or stop it), or give this recipe another output folder",
        ) from None


class _NoPandas:
    """A `sys.meta_path` finder under which `import pandas` fails (see `block_pandas`)."""

    def find_spec(self, name: str, path: object = None, target: ModuleType | None = None) -> ModuleSpec | None:
        if name == "pandas" or name.startswith("pandas."):
            raise ModuleNotFoundError(
                "pandas is not imported in Keel's curation processes (keel.curate._process.block_pandas): "
                "pyarrow would load it only to look for pandas objects, which curation never has",
                name=name,
            )
        return None


def block_pandas() -> bool:
    """Make `import pandas` fail in this process from now on, unless it is imported already; True if it did.

    pyarrow imports pandas the first time it converts Python or numpy data, or converts Arrow data to numpy
    (`pa.array`, `pa.table`, `Array.to_numpy`), only to recognise pandas objects and pandas' nulls; without
    pandas it works as in an environment that lacks it (a supported set-up). That import is 0.2-0.3 CPU-s,
    about 10% of `keel curate run` on the corpus of benchmarks/curation_vs_datatrove.py, in every process.
    Curation hands pyarrow no pandas objects, so its own processes block it: the `keel curate run` command
    with the local engine, and the local engine's worker processes. Never in a library caller's process,
    whose code may use pandas. Each later conversion asks once more and is refused by the first finder on
    `sys.meta_path` (microseconds).
    """
    if "pandas" in sys.modules:
        return False
    if not any(isinstance(finder, _NoPandas) for finder in sys.meta_path):
        sys.meta_path.insert(0, _NoPandas())
    return True
