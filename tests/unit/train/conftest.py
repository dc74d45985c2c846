"""Fixtures of the training tests: one tiny model built per session, registered into each test's store."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from keel.registry import ModelVersion, pull_model, register_model
from keel.store import Store, init_workspace
from keel.train import TinyModelOptions, new_tiny_model

TEXTS = [
    f"Question {i}: what colour is the sky at noon? Answer: the sky is blue, and the sea is {c}."
    for i, c in enumerate(["blue", "green", "grey", "dark"] * 40)
]
TINY = TinyModelOptions(vocab_size=512, hidden_size=64, num_layers=2, num_heads=4, seq_len=64, steps=15)


@pytest.fixture
def tiny_texts() -> list[str]:
    """A small, repetitive corpus the tiny models learn from."""
    return list(TEXTS)


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


@pytest.fixture
def tiny(store: Store, tiny_model_dir: Path) -> ModelVersion:
    """The tiny model registered as `tiny@v1` in this test's store."""
    return register_model(store, "tiny", tiny_model_dir)[0]


def _commit(store: Store, name: str, rows: list[dict[str, object]]) -> str:
    import pyarrow as pa

    from keel.data import commit_version

    table = pa.Table.from_pylist([{"id": f"{name}-{i}", **row} for i, row in enumerate(rows)])
    version, _ = commit_version(store, name, table)
    return str(version.ref)


@pytest.fixture
def qa_rows() -> list[dict[str, object]]:
    """Prompt/completion rows the tiny model can fit in a few steps."""
    return [
        {"prompt": f"Question {i}: what colour is the sky? Answer:", "completion": " the sky is blue."}
        for i in range(24)
    ]


@pytest.fixture
def commit() -> Callable[[Store, str, list[dict[str, object]]], str]:
    """Commit rows as a dataset version through keel.data and return its ref."""
    return _commit
