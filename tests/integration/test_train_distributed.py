"""The same training config under `torchrun` with 2 CPU processes (gloo) reaches a single process's loss."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest
import yaml

from keel.core.settings import load_settings
from keel.registry import get_run
from keel.store import open_store
from keel.train import TinyModelOptions, new_tiny_model


def _commit(store: object, name: str, rows: list[dict[str, str]]) -> str:
    from keel.data import commit_version

    table = pa.Table.from_pylist([{"id": f"{name}-{i}", **row} for i, row in enumerate(rows)])
    made = commit_version(store, name, table)
    return str(made[0].ref)


def _run(workspace: Path, launcher: list[str], config: Path) -> dict[str, object]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "KEEL_WORKSPACE": str(workspace)}
    done = subprocess.run(
        [*launcher, "train", "run", str(config), "--fresh", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return dict(json.loads(done.stdout))


@pytest.mark.slow
@pytest.mark.timeout(900)  # two cold starts of torch + transformers in subprocesses; slow on a busy machine
def test_two_gloo_processes_match_one_process(workspace: Path, tmp_path: Path) -> None:
    import torch

    torch.set_num_threads(1)
    store = open_store(load_settings(workspace))
    texts = [f"Question {i}: what colour is the sky? Answer: the sky is blue." for i in range(100)]
    new_tiny_model(store, "tiny", texts, TinyModelOptions(vocab_size=400, hidden_size=64, num_layers=2, seq_len=32))
    rows = [{"prompt": f"Question {i}: what colour is the sky?", "completion": " Blue."} for i in range(40)]
    ref = _commit(store, "sky", rows)
    held = _commit(store, "sky-eval", rows[:8])

    def config(name: str, batch_size: int) -> Path:
        raw = {
            "name": name,
            "base": "tiny@v1",
            "data": {"train": ref, "eval": held, "max_length": 32},
            "method": "lora",
            "training": {"max_steps": 8, "batch_size": batch_size, "save_steps": 8, "learning_rate": 0.003},
            "seed": 3,
        }
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(raw))
        return path

    single = _run(workspace, [sys.executable, "-m", "keel"], config("single", 4))
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "keel"]
    double = _run(workspace, torchrun, config("ddp", 2))  # 2 processes x 2 = the same global batch of 4
    with store.db.read() as conn:
        one, two = get_run(conn, str(single["run"])), get_run(conn, str(double["run"]))
    assert one.status == two.status == "finished" and double["model"] == "ddp@v1"
    losses = {key: (one.metrics[key], two.metrics[key]) for key in ("eval_loss", "train_loss")}
    for single_loss, ddp_loss in losses.values():
        assert ddp_loss == pytest.approx(single_loss, rel=0.05), losses
    store.close()
