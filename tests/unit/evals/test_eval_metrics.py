from __future__ import annotations

import math

import pytest

from keel.core.errors import InputError
from keel.evals import (
    bleu,
    chrf,
    classification_report,
    corpus_bleu,
    corpus_chrf,
    embedding_similarity,
    exact_match,
    normalize_text,
    perplexity,
    rouge,
)

# sacrebleu's README example: two reference streams for three system sentences.
SYSTEM = ["The dog bit the man.", "It wasn't surprising.", "The man had just bitten him."]
REFS = [
    ["The dog bit the man.", "It was not unexpected.", "The man bit him first."],
    ["The dog had bit the man.", "No one was surprised.", "The man had bitten the dog."],
]


def test_exact_match_normalises_case_punctuation_and_spaces() -> None:
    assert normalize_text("  The  Answer: 42! ") == "the answer 42"
    assert exact_match("Paris.", "paris") == 1.0
    assert exact_match("Paris.", "paris", normalize=False) == 0.0
    assert exact_match("Lyon", "Paris") == 0.0


def test_sacrebleu_reference_values() -> None:
    # The values sacrebleu's README prints for this example: BLEU 48.53, chrF2 59.73.
    assert corpus_bleu(SYSTEM, REFS) == pytest.approx(48.530827, abs=1e-5)
    assert corpus_chrf(SYSTEM, REFS) == pytest.approx(59.727518, abs=1e-5)
    assert bleu("The dog bit the man.", ["The dog bit the man."]) == pytest.approx(100.0)
    assert chrf("The dog bit the man.", "The dog bit the man.") == pytest.approx(100.0)
    assert 0.0 < bleu("The cat sat on the mat.", "The cat is on the mat.") < 100.0


def test_rouge_score_reference_values() -> None:
    # rouge-score's README example (target first there; prediction first here).
    scores = rouge("The quick brown dog jumps on the log.", "The quick brown fox jumps over the lazy dog")
    assert scores["rouge1"] == pytest.approx(0.7058823529, abs=1e-9)  # P 0.75, R 0.6667
    assert scores["rouge2"] == pytest.approx(0.2666666667, abs=1e-9)  # P 0.2857, R 0.25
    assert scores["rougeL"] == pytest.approx(0.5882352941, abs=1e-9)  # P 0.625, R 0.5556


def test_classification_macro_and_micro_by_hand() -> None:
    predictions = ["cat", "cat", "dog", "dog", "bird", "cat"]
    references = ["cat", "dog", "dog", "dog", "cat", "bird"]
    report = classification_report(predictions, references)
    # cat: tp1 fp2 fn1 -> P 1/3 R 1/2; dog: tp2 fp0 fn1 -> P 1 R 2/3; bird: tp0 fp1 fn1 -> 0, 0.
    assert report.accuracy == pytest.approx(3 / 6)
    assert report.precision_macro == pytest.approx((1 / 3 + 1 + 0) / 3)
    assert report.recall_macro == pytest.approx((1 / 2 + 2 / 3 + 0) / 3)
    assert report.f1_macro == pytest.approx((0.4 + 0.8 + 0) / 3)
    # Single-label micro averages all equal accuracy.
    assert report.precision_micro == report.recall_micro == report.f1_micro == pytest.approx(0.5)
    assert report.support == {"bird": 1, "cat": 2, "dog": 3}
    with pytest.raises(InputError, match="as many predictions"):
        classification_report(["a"], ["a", "b"])


def test_embedding_similarity_ranks_paraphrase_above_unrelated() -> None:
    same = embedding_similarity("The cat sat on the mat.", "The cat sat on the mat.")
    paraphrase = embedding_similarity("How do I reset my password?", "What are the steps to change my password?")
    unrelated = embedding_similarity("How do I reset my password?", "Giant pandas eat bamboo in the mountains.")
    assert same == pytest.approx(1.0, abs=1e-5)
    assert paraphrase > 0.6 > unrelated


def _tiny_llama(vocab: int = 50):  # type: ignore[no-untyped-def]
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.set_num_threads(1)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=32,
    )
    return LlamaForCausalLM(config)


def test_perplexity_of_a_uniform_model_is_its_vocabulary_size() -> None:
    import torch

    model = _tiny_llama(vocab=50)
    with torch.no_grad():
        model.lm_head.weight.zero_()  # every logit 0: a uniform distribution over 50 tokens
    assert perplexity(model, [[1, 2, 3, 4], [5, 6, 7]]) == pytest.approx(50.0, rel=1e-5)


def test_perplexity_matches_the_models_own_loss() -> None:
    import torch

    model = _tiny_llama()
    ids = [3, 9, 27, 4, 11, 8]
    with torch.no_grad():
        loss = model(input_ids=torch.tensor([ids]), labels=torch.tensor([ids])).loss
    assert perplexity(model, [ids]) == pytest.approx(math.exp(float(loss)), rel=1e-5)
    assert model.training  # restored
    # Scoring only the continuation after a 3-token prompt.
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0]
    nll = torch.nn.functional.cross_entropy(logits[2:-1], torch.tensor(ids[3:]))
    assert perplexity(model, [ids], prompt_lengths=[3]) == pytest.approx(math.exp(float(nll)), rel=1e-5)
    with pytest.raises(InputError, match="a token to score"):
        perplexity(model, [[1]])
