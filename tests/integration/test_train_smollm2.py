"""The real small model that works offline: SmolLM2-135M-Instruct imported from its GGUF file and answering."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from keel.cli import app
from keel.core.settings import load_settings
from keel.store import open_store
from keel.train import load_model


@pytest.mark.slow
@pytest.mark.timeout(900)  # a 540 MB model is written, hashed and read back; slow on a busy 2-core machine
@pytest.mark.usefixtures("smollm2_once")  # the GGUF dequantised once a session (tests/conftest.py)
def test_import_gguf_registers_smollm2_that_generates(workspace: Path) -> None:
    import torch

    torch.set_num_threads(1)
    result = CliRunner().invoke(app, ["-w", str(workspace), "model", "import-gguf", "smollm2", "--json"])
    assert result.exit_code == 0, result.output
    made = json.loads(result.stdout)
    assert made["ref"] == "smollm2@v1" and made["format"] == "hf" and made["size"] > 400_000_000
    assert made["info"]["source_gguf"].endswith(".gguf") and made["info"]["parameters"] > 100_000_000
    store = open_store(load_settings(workspace))
    try:
        model, tokenizer = load_model(store, "smollm2")
        assert getattr(model, "hf_quantizer", None) is None and model.dtype == torch.float32
        chat = [{"role": "user", "content": "What is the capital of France?"}]
        ids = tokenizer.apply_chat_template(chat, add_generation_prompt=True, return_tensors="pt", return_dict=True)
        with torch.no_grad():
            out = model.generate(**ids, max_new_tokens=12, do_sample=False)
        answer = tokenizer.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True)
        assert "Paris" in answer and re.search(r"[a-z]{3,}", answer)
    finally:
        store.close()
