"""What a run records about where it ran: code version, interpreter, packages, hardware, seed.

Reads only; never imports heavy libraries to ask them questions (torch is consulted only if the
job already imported it).
"""

from __future__ import annotations

import os
import platform
import re
import socket
import subprocess
import sys
from importlib.metadata import Distribution
from pathlib import Path
from typing import Any

__all__ = ["capture_environment", "installed_packages", "process_alive", "process_identity"]


def _git(cwd: Path) -> dict[str, Any] | None:
    def run(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = run("rev-parse", "HEAD")
    if commit is None:
        return None
    status = run("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(status), "branch": run("rev-parse", "--abbrev-ref", "HEAD")}


def _accelerators() -> list[str]:
    torch = sys.modules.get("torch")
    if torch is None:
        return []
    try:
        if torch.cuda.is_available():
            return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    except RuntimeError:  # a broken CUDA install: record no GPU rather than fail the run
        return []
    return []


def _canonical(name: str) -> str:
    """A distribution name as PEP 503 compares them: lower case, runs of `-`, `_`, `.` as one `-`."""
    return re.sub(r"[-_.]+", "-", name).lower()


def installed_packages() -> dict[str, str]:
    """Name (PEP 503 form) -> version of every distribution on `sys.path`; the first of a name, as imports see it.

    Written by hand for speed: `importlib.metadata.distributions()` parses every METADATA file with the email
    parser (0.1-0.4 CPU-s for ~200 packages, paid by every run). An installed wheel's `NAME-VERSION.dist-info`
    folder already says both (the wheel spec escapes `-` in each part), so metadata is read only for the rest
    (`.egg-info`, odd names).
    """
    found: dict[str, str] = {}
    for entry in sys.path:
        try:
            with os.scandir(entry or ".") as listing:
                names = sorted(e.name for e in listing if e.name.endswith((".dist-info", ".egg-info")))
        except OSError:  # a zip file, or a path that does not exist
            continue
        for folder in names:
            stem, _, suffix = folder.rpartition(".")
            name, dash, version = stem.partition("-")
            if suffix != "dist-info" or not dash or not version or "-" in version:
                metadata = Distribution.at(Path(entry or ".") / folder).metadata
                if not metadata or not metadata["Name"]:
                    continue
                name, version = metadata["Name"], metadata["Version"]
            found.setdefault(_canonical(name), version)
    return dict(sorted(found.items()))


def capture_environment(seed: int | None = None, cwd: Path | None = None) -> dict[str, Any]:
    """Describe the current process's environment as JSON-ready data.

    Args:
        seed: The run's random seed, if it set one.
        cwd: Where to look for a git checkout (default: the working directory).

    Returns:
        git (commit, dirty, branch, or None), python, packages (name -> version, `installed_packages`), platform,
        cpu count, accelerators, and seed.

    Examples:
        >>> capture_environment(seed=7)["seed"]
        7
    """
    return {
        "git": _git(cwd or Path.cwd()),
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "packages": installed_packages(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "accelerators": _accelerators(),
        "seed": seed,
    }


def _start_mark(pid: int) -> str | None:
    """`<boot id>:<start time in clock ticks>` of a live process on Linux; None if gone or not on Linux.

    A pid alone is reused by later processes; with the boot and the start time it names one process.
    """
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text(encoding="ascii").strip()
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (command) ": state is field 3, starttime 22
    return f"{boot}:{fields[19]}"


def _pid_namespace() -> int | None:
    """The inode of this process's pid namespace (Linux): pids mean the same thing only within one."""
    try:
        return os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return None


def process_identity() -> dict[str, Any]:
    """This process as a run records it: host name, pid, user, and on Linux boot, start time and pid namespace."""
    pid = os.getpid()
    uid = os.getuid() if hasattr(os, "getuid") else None
    return {"host": socket.gethostname(), "pid": pid, "start": _start_mark(pid), "pid_ns": _pid_namespace(), "uid": uid}


def process_alive(process: dict[str, Any] | None) -> bool | None:
    """Whether the process `process_identity` described still runs; None when this process cannot tell.

    Only a process that this one could see is checked: same host name, same pid namespace (containers sharing
    a host name do not share pids) and same user (`/proc` may hide other users' processes). Elsewhere, and for
    records without a pid, the answer is None.
    """
    if not process or process.get("host") != socket.gethostname() or not isinstance(process.get("pid"), int):
        return None
    if os.name == "nt":  # os.kill(pid, 0) would send CTRL_C_EVENT there, not ask
        return None
    if process.get("pid_ns") is not None and process["pid_ns"] != _pid_namespace():
        return None
    if process.get("uid") is not None and hasattr(os, "getuid") and process["uid"] != os.getuid():
        return None
    pid: int = process["pid"]
    start = process.get("start")
    if start is not None:
        return bool(_start_mark(pid) == start)
    try:
        os.kill(pid, 0)  # no signal sent: only asks whether the pid exists
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True
