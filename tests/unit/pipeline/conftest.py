"""Fixtures of the pipeline tests: a project with a real loop (curate → commit → train → gate → alias → deploy)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from keel.registry import pull_model, register_model
from keel.store import Store, init_workspace
from keel.train import TinyModelOptions, new_tiny_model

TEXTS = [f"Question {i}: what colour is the sky? Answer: the sky is blue." for i in range(60)]
TINY = TinyModelOptions(vocab_size=256, hidden_size=32, num_layers=1, num_heads=2, seq_len=48, steps=5)

PIPELINE = """\
name: tiny-loop
params:
  steps: 2
  min_chrf: 0
stages:
  curate:
    op: curate
    with: {recipe: corpus/recipe.yaml, dataset: kb}
    outputs: ["dataset:kb"]
  pairs:
    op: data.commit
    with: {name: qa, files: [qa.jsonl]}
    inputs: ["dataset:kb@latest"]
    outputs: ["dataset:qa"]
  cases:
    op: data.commit
    with: {name: qa-eval, files: [eval.jsonl]}
    outputs: ["dataset:qa-eval"]
  train:
    op: train
    with:
      config: train.yaml
      set: {training.max_steps: "${params.steps}"}
    inputs: ["dataset:qa@latest", "model:tiny@v1"]
    outputs: ["model:student"]
  gate:
    op: eval.gate
    with:
      suite: suite.yaml
      baseline: model:tiny@v1
      candidate: model:student@latest
      report: reports/gate.md
      set: {metrics.0.threshold: "${params.min_chrf}"}
    inputs: ["model:student@latest", "dataset:qa-eval@latest"]
  alias:
    op: model.alias
    with: {model: "model:student@latest", alias: production, reason: passed the gate}
    inputs: ["model:student@latest"]
    outputs: ["model:student@production"]
    needs: [gate]
  deploy:
    op: deploy.create
    with: {name: assistant, model: "model:student@production", route: {backend: transformers}}
    inputs: ["model:student@production"]
    outputs: ["deployment:assistant"]
"""

TRAIN = """\
name: student
base: tiny@v1
method: full
data: {train: [qa], max_length: 48}
training: {max_steps: 2, batch_size: 4, learning_rate: 0.001, save_steps: 1, logging_steps: 1}
seed: 0
"""

SUITE = """\
name: qa-suite
dataset: qa-eval
subject: {kind: model, model: tiny@v1, sampling: {temperature: 0, max_tokens: 8}}
metrics: [{name: chrf}]
resamples: 100
"""

RECIPE = """\
inputs:
  - path: docs/*.txt
output: curated
steps:
  - normalize: {}
  - exact_dedup: {}
"""


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The files of a tiny model and tokenizer, built once for the whole session."""
    import torch

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("tiny")
    builder = init_workspace(root / "ws")
    try:
        new_tiny_model(builder, "tiny", TEXTS, TINY)
        pull_model(builder, "tiny", root / "files")
    finally:
        builder.close()
    yield root / "files"


def write_project(root: Path) -> Path:
    """The loop's files under `root`; returns the pipeline file."""
    (root / "corpus" / "docs").mkdir(parents=True, exist_ok=True)
    for i in range(3):
        (root / "corpus" / "docs" / f"page{i}.txt").write_text(f"Page {i}: the sky is blue on day {i}.\n")
    (root / "corpus" / "recipe.yaml").write_text(RECIPE)
    rows = [{"id": f"qa-{i}", "prompt": f"Question {i}: what colour is the sky? Answer:", "completion": " blue."}
            for i in range(8)]  # fmt: skip
    (root / "qa.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cases = [{"id": f"c{i}", "input": f"Question {i}: what colour is the sky? Answer:", "expected": "blue."}
             for i in range(4)]  # fmt: skip
    (root / "eval.jsonl").write_text("".join(json.dumps(c) + "\n" for c in cases))
    (root / "train.yaml").write_text(TRAIN)
    (root / "suite.yaml").write_text(SUITE)
    (root / "pipeline.yaml").write_text(PIPELINE)
    return root / "pipeline.yaml"


@pytest.fixture
def project(store: Store, tiny_model_dir: Path) -> Path:
    """The loop's files in the store's workspace, with `tiny@v1` registered; returns the pipeline file."""
    register_model(store, "tiny", tiny_model_dir)
    return write_project(Path(store.settings.workspace))
