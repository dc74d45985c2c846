"""End to end: LoRA on a committed dataset version through `keel train run`, killed with SIGKILL after its
first checkpoint, resumed from that checkpoint blob, registered with lineage, reloaded and generating."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pytest
import yaml

from keel.core.settings import load_settings
from keel.registry import get_run, list_runs, metric_series, model_card
from keel.store import Store, open_store, walk
from keel.train import TinyModelOptions, load_model, new_tiny_model
from keel.train._tracking import latest_checkpoint

MAX_STEPS = 60
SAVE_STEPS = 3


def _commit(store: Store, name: str, rows: list[dict[str, str]]) -> str:
    from keel.data import commit_version

    table = pa.Table.from_pylist([{"id": f"{name}-{i}", **row} for i, row in enumerate(rows)])
    made = commit_version(store, name, table)
    return str(made[0].ref)


def _keel(workspace: Path, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "KEEL_WORKSPACE": str(workspace)}
    return subprocess.Popen(
        [sys.executable, "-m", "keel", *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


@pytest.fixture
def job(workspace: Path, tmp_path: Path) -> tuple[Store, Path]:
    import torch

    torch.set_num_threads(1)
    store = open_store(load_settings(workspace))
    texts = [f"Question {i}: what colour is the sky? Answer: the sky is blue." for i in range(200)]
    options = TinyModelOptions(vocab_size=400, hidden_size=64, num_layers=2, num_heads=4, seq_len=32, steps=10)
    new_tiny_model(store, "tiny", texts, options)
    ref = _commit(
        store, "sky", [{"prompt": f"Question {i}: what colour is the sky?", "completion": " Blue."} for i in range(32)]
    )
    config = {
        "name": "sky-bot",
        "base": "tiny@v1",
        "data": {"train": ref, "max_length": 32},
        "method": "lora",
        "lora": {"r": 4, "alpha": 8},
        "training": {"max_steps": MAX_STEPS, "batch_size": 2, "save_steps": SAVE_STEPS, "learning_rate": 0.005},
        "output": {"merge": True},
        "seed": 7,
    }
    path = tmp_path / "sky.yaml"
    path.write_text(yaml.safe_dump(config))
    yield store, path
    store.close()


def _wait_for_checkpoint(store: Store, process: subprocess.Popen[str]) -> str:
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the training job ended before it was killed: {process.communicate()}")
        with store.db.read() as conn:
            running = list_runs(conn, kind="train", status="running")
        for run in running:
            if run.params.get("name") == "sky-bot" and latest_checkpoint(store, run.id) is not None:
                return run.id
        time.sleep(0.05)
    raise AssertionError("the training job saved no checkpoint in time")


@pytest.mark.slow
@pytest.mark.timeout(900)  # two cold starts of torch + transformers in subprocesses; slow on a busy machine
def test_lora_run_killed_after_a_checkpoint_resumes_and_registers(job: tuple[Store, Path], workspace: Path) -> None:
    store, config = job
    process = _keel(workspace, "train", "run", str(config), "--json")
    killed = _wait_for_checkpoint(store, process)
    os.kill(process.pid, signal.SIGKILL)
    process.communicate()  # reap it and close its pipes
    found = latest_checkpoint(store, killed)
    assert found is not None
    step, files = found
    assert step < MAX_STEPS and "adapter_model.safetensors" in files and "optimizer.pt" in files
    with store.db.read() as conn:
        assert get_run(conn, killed).status == "running"  # SIGKILL left no chance to record an end

    resumed = _keel(workspace, "train", "run", str(config), "--json")
    out, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, err
    result = yaml.safe_load(out)
    assert (
        result["resumed_from"] == killed and result["model"] == "sky-bot@v1" and result["merged"] == "sky-bot-merged@v1"
    )
    with store.db.read() as conn:
        second = get_run(conn, result["run"])
        losses = metric_series(conn, second.id, "loss")["loss"]
    assert second.status == "finished" and second.params["resumed_from"] == killed
    # The resumed run continued after the checkpoint rather than starting over.
    assert losses[0][0] > step and losses[-1][0] == MAX_STEPS

    card = model_card(store, "sky-bot@v1")
    assert card["format"] == "peft-adapter" and card["base_model"] == "tiny@v1"
    assert card["training_data"] == ["dataset-version:sky@v1"] and card["training"]["run"] == second.id
    with store.db.read() as conn:
        upstream = {hit.node for hit in walk(conn, "model-version:sky-bot@v1", "upstream", depth=3)}
    assert {"dataset-version:sky@v1", "model-version:tiny@v1", f"run:{second.id}", f"run:{killed}"} <= upstream

    import torch

    for ref in ("sky-bot@v1", "sky-bot-merged@v1"):
        model, tokenizer = load_model(store, ref)
        ids = tokenizer("Question 5: what colour is the sky?", return_tensors="pt")
        with torch.no_grad():
            generated = model.generate(**ids, max_new_tokens=4, do_sample=False)
        assert generated.shape[1] > ids["input_ids"].shape[1]
        assert tokenizer.decode(generated[0, ids["input_ids"].shape[1] :]).strip()
