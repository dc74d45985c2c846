from __future__ import annotations

from pathlib import Path

import pytest

from keel.core.errors import ConfigError
from keel.evals import parse_suite, run_suite
from keel.registry import register_model
from keel.store import Store, walk

WORDS = "the a capital of is what france paris japan tokyo city river blue green one two three".split()


def _tiny_model_dir(root: Path) -> Path:
    """A randomly initialised 1-layer Llama and a word-level tokenizer, saved the Hugging Face way."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, **{w: i + 3 for i, w in enumerate(WORDS)}}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="<unk>", bos_token="<s>", eos_token="</s>", pad_token="</s>"
    )
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(vocab),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=64,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=2,
    )
    model = LlamaForCausalLM(config)
    model.save_pretrained(root)
    tokenizer.save_pretrained(root)
    return root


def _suite(model: str, *, seed: int = 0, temperature: float = 0.0) -> dict[str, object]:
    return {
        "name": "tiny",
        "cases": [
            {"id": "1", "input": "what is the capital of france", "expected": "paris"},
            {"id": "2", "input": "what is the capital of japan", "expected": "tokyo is a city"},
            {"id": "3", "input": "the river is blue", "expected": "one two three"},
        ],
        "subject": {"kind": "model", "model": model, "sampling": {"max_tokens": 4, "temperature": temperature}},
        "metrics": [{"name": "chrf"}, {"name": "perplexity"}, {"name": "exact_match"}],
        "seed": seed,
        "resamples": 200,
    }


def test_model_subject_is_deterministic_for_a_fixed_seed(store: Store, tmp_path: Path) -> None:
    version, _ = register_model(store, "tiny", _tiny_model_dir(tmp_path / "tiny"))
    first = run_suite(store, parse_suite(_suite("tiny@v1")))
    second = run_suite(store, parse_suite(_suite("tiny@v1")))
    assert first.id != second.id
    assert first.outputs == second.outputs and all(first.outputs)
    assert first.to_json()["aggregates"] == second.to_json()["aggregates"]
    assert [first.values(m) for m in first.scores] == [second.values(m) for m in second.scores]
    # Random weights over a 20-word vocabulary: perplexity near the vocabulary size, far from 1.
    assert 5 < first.aggregates["perplexity"].mean < 100
    assert not first.aggregates["perplexity"].higher_is_better

    sampled = [run_suite(store, parse_suite(_suite("tiny@v1", seed=7, temperature=1.0))) for _ in range(2)]
    assert sampled[0].outputs == sampled[1].outputs  # sampling, but seeded

    with store.db.read() as conn:
        assert {h.node for h in walk(conn, first.node, "upstream", depth=1)} == {version.node, f"run:{first.run_id}"}


def test_perplexity_needs_a_model_subject() -> None:
    suite = parse_suite(
        {
            **_suite("x"),
            "subject": {"kind": "endpoint", "base_url": "http://127.0.0.1:9/v1", "model": "m"},
        }
    )
    from keel.evals import score_outputs
    from keel.evals._offline_judge import OfflineJudge

    with pytest.raises(ConfigError, match="perplexity needs a `model` subject"):
        score_outputs(suite.inline_cases(), ["a", "b", "c"], suite.metrics, OfflineJudge())


def test_greedy_answers_do_not_depend_on_the_batch(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prompts of different lengths share a left-padded batch; each answer must equal its one-by-one answer.
    from keel.evals import _subjects

    register_model(store, "tiny", _tiny_model_dir(tmp_path / "tiny"))
    batched = run_suite(store, parse_suite(_suite("tiny@v1")))
    monkeypatch.setattr(_subjects, "GREEDY_BATCH", 1)
    single = run_suite(store, parse_suite(_suite("tiny@v1")))
    assert batched.outputs == single.outputs and len(set(batched.outputs)) > 1
