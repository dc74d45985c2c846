"""torch CPU threads of a training run: the config's, else torch's default as far as the cores are idle."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from keel.registry import ModelVersion, get_run
from keel.store import Store
from keel.train import parse_train_config, train
from keel.train._threads import spare_threads

Commit = Callable[[Store, str, list[dict[str, object]]], str]


@pytest.mark.parametrize(
    ("default", "cores", "load", "expected"),
    [
        (2, 2, 0.2, 2),  # idle machine, this process only starting
        (2, 2, 1.0, 2),  # this process alone
        (2, 2, 2.0, 1),  # another process holds the other core
        (2, 2, 11.5, 1),  # both cores oversubscribed
        (1, 2, 0.0, 1),  # OMP_NUM_THREADS=1 (torch's default) is never raised
        (8, 8, 3.0, 6),
    ],
)
def test_spare_threads_caps_torch_default_by_the_idle_cores(
    default: int, cores: int, load: float, expected: int
) -> None:
    assert spare_threads(default, cores, load) == expected


def _threads_seen(store: Store, ref: str, threads: int | None) -> tuple[list[int], int]:
    """Train 2 steps with `threads`: torch's thread count after each step, and the count the run recorded."""
    import torch

    training = {"max_steps": 2, "batch_size": 4, "save_steps": 2, "threads": threads}
    config = {
        "name": f"bot{threads}",
        "base": "tiny@v1",
        "data": {"train": ref, "max_length": 48},
        "training": training,
    }
    seen: list[int] = []
    result = train(store, parse_train_config(config), progress=lambda *_: seen.append(torch.get_num_threads()))
    with store.db.read() as conn:
        return seen, int(get_run(conn, result.run_id or "").params["torch_threads"])


def test_a_run_trains_on_its_threads_and_gives_the_process_its_count_back(
    store: Store, tiny: ModelVersion, commit: Commit, qa_rows: list[dict[str, object]]
) -> None:
    import torch

    ref = commit(store, "qa", qa_rows)
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert _threads_seen(store, ref, 1) == ([1, 1], 1) and torch.get_num_threads() == 2
        seen, used = _threads_seen(store, ref, None)  # torch's 2, or 1 while other processes hold a core
        assert seen == [used, used] and used in (1, 2) and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(previous)
