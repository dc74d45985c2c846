"""What a run records about where it ran: code version, interpreter, packages, hardware, seed.

Reads only; never imports heavy libraries to ask them questions (torch is consulted only if the
job already imported it).
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from importlib.metadata import distributions
from pathlib import Path
from typing import Any

__all__ = ["capture_environment"]


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


def capture_environment(seed: int | None = None, cwd: Path | None = None) -> dict[str, Any]:
    """Describe the current process's environment as JSON-ready data.

    Args:
        seed: The run's random seed, if it set one.
        cwd: Where to look for a git checkout (default: the working directory).

    Returns:
        git (commit, dirty, branch, or None), python, packages (name -> version), platform,
        cpu count, accelerators, and seed.

    Examples:
        >>> capture_environment(seed=7)["seed"]
        7
    """
    packages = {dist.metadata["Name"].lower(): dist.version for dist in distributions() if dist.metadata["Name"]}
    return {
        "git": _git(cwd or Path.cwd()),
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "packages": dict(sorted(packages.items())),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "accelerators": _accelerators(),
        "seed": seed,
    }
