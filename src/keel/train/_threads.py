"""How many torch CPU threads a training run uses, and giving the process its own count back afterwards.

torch's OpenMP threads spin while they wait for each other (libgomp's active wait). When other processes hold
the cores, a thread spins while its partner waits for a core: 100 steps of the demo's fine-tune took 373 s of
wall and 112 s of CPU on torch's default two threads with the machine busy, 22 s and 14 s on one
(docs/training.md). So a run that does not set `training.threads` uses torch's default only as far as the
cores are idle. This module does not know what is trained.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["spare_threads", "torch_threads"]


def spare_threads(default: int, cores: int, load: float) -> int:
    """The `default` torch thread count, capped by the cores other processes leave idle, and at least 1.

    `load` is the 1-minute load average, which counts this process too (about 1 while it prepares a run).

    Examples:
        >>> spare_threads(2, 2, 1.0)  # nothing else runs
        2
        >>> spare_threads(2, 2, 2.1)  # another process holds a core
        1
    """
    idle = round(cores + 1 - load)
    return max(1, min(default, idle))


@contextmanager
def torch_threads(requested: int | None) -> Iterator[int]:
    """Run the block on `requested` torch threads, or the spare ones when None; restore the count after.

    Yields:
        The number of threads the block runs on.
    """
    import torch

    before = torch.get_num_threads()
    if requested is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0  # Windows has no load average
        requested = spare_threads(before, cores, load)
    torch.set_num_threads(requested)
    try:
        yield requested
    finally:
        torch.set_num_threads(before)
