"""GGUF export: llama.cpp's converter and quantiser on the demo's tiny tuned model (a LoRA adapter, merged)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import TunedTiny
from typer.testing import CliRunner

from keel.cli import app
from keel.core.errors import InputError
from keel.core.settings import load_settings
from keel.registry import get_model, model_card, render_card_markdown
from keel.store import open_store, walk
from keel.train import export_gguf
from keel.train._gguf_convert import byte_level_gpt2


def test_export_registers_a_gguf_version_derived_from_the_adapter(tuned_tiny: TunedTiny) -> None:
    store = open_store(load_settings(tuned_tiny.workspace))
    try:
        version = get_model(store, tuned_tiny.gguf_f16)
        assert version.format == "gguf" and version.base_model == tuned_tiny.adapter
        assert [f.path for f in version.files] == ["model.f16.gguf"]
        found = version.info["optimization"]
        assert found["quantization"] == "f16" and found["parent"] == tuned_tiny.adapter
        # f16 weights: llama.cpp's perplexity on the same token ids is the parent's within 1%.
        assert abs(found["perplexity_change"]) < 0.01 and found["metrics"]["tokens"] > 100
        assert found["size_ratio"] < 0.75  # half-width weights (plus the vocabulary in the file)
        with store.db.read() as conn:
            upstream = {h.node for h in walk(conn, version.node, "upstream", depth=1)}
        assert f"model-version:{tuned_tiny.adapter}" in upstream
        card = model_card(store, version.ref)
        assert card["optimization"]["quantization"] == "f16"
        text = render_card_markdown(card)
        assert "Quantisation: f16" in text and "Perplexity" in text
    finally:
        store.close()


def test_cli_exports_q4_k_m_with_json(tuned_tiny: TunedTiny) -> None:
    result = CliRunner().invoke(
        app, ["-w", str(tuned_tiny.workspace), "model", "export-gguf", tuned_tiny.merged, "--quant", "q4_k_m",
              "--name", "assistant-q4", "--threads", "1", "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    payload: dict[str, Any] = json.loads(result.stdout)  # llama.cpp's per-tensor notes go to stderr
    assert payload["model"] == "assistant-q4@v1" and payload["quantization"] == "q4_k_m"
    assert payload["parent"] == tuned_tiny.merged and payload["metrics"]["perplexity"] > 0
    assert payload["metrics"]["size_bytes"] < payload["parent_metrics"]["size_bytes"]


def test_cli_refuses_an_unknown_quantisation(tuned_tiny: TunedTiny) -> None:
    result = CliRunner().invoke(
        app, ["-w", str(tuned_tiny.workspace), "model", "export-gguf", tuned_tiny.merged, "--quant", "q3"]
    )
    assert result.exit_code == 2 and "q3" in result.output


def test_export_refuses_a_loss_past_the_limit(tuned_tiny: TunedTiny) -> None:
    store = open_store(load_settings(tuned_tiny.workspace))
    try:
        with pytest.raises(InputError, match="was not registered"):
            export_gguf(store, tuned_tiny.merged, "q8_0", name="refused", max_ppl_increase=-0.5, threads=1)
        with pytest.raises(InputError, match="one of f16, q8_0, q4_k_m"):
            export_gguf(store, tuned_tiny.merged, "q2", threads=1)  # type: ignore[arg-type]
    finally:
        store.close()


def test_byte_level_tokenizers_are_recognised_as_gpt2(tmp_path: Path) -> None:
    file = tmp_path / "tokenizer.json"
    file.write_text(json.dumps({"model": {"type": "BPE"}, "pre_tokenizer": {"type": "ByteLevel", "use_regex": True}}))
    assert byte_level_gpt2(file)
    file.write_text(json.dumps({"model": {"type": "BPE"}, "pre_tokenizer": {"type": "Whitespace"}}))
    assert not byte_level_gpt2(file)
    file.write_text(json.dumps({"model": {"type": "Unigram"}, "pre_tokenizer": {"type": "ByteLevel"}}))
    assert not byte_level_gpt2(file)
