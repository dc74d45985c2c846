"""Active learning: each strategy's order, and uncertainty beating random in labels needed to reach a target
accuracy on the ticket-intent task (MiniLM embeddings, averaged over seeds so one lucky draw cannot decide)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from keel.core.errors import InputError
from keel.label.active import generative_class_logprobs, labels_needed, rank, simulate


def test_random_is_a_seeded_permutation_of_the_unlabelled_items() -> None:
    texts = [f"t{i}" for i in range(20)]
    order = rank(texts, strategy="random", labelled={3: "a", 7: "b"}, seed=4)
    assert sorted(order) == [i for i in range(20) if i not in (3, 7)]
    assert order == rank(texts, strategy="random", labelled={3: "a", 7: "b"}, seed=4)
    assert order != rank(texts, strategy="random", labelled={3: "a", 7: "b"}, seed=5)


def test_judge_disagreement_puts_the_widest_gap_first() -> None:
    a, b = [0.9, 0.1, 0.5, 0.5, 0.0], [0.8, 0.9, 0.5, 0.1, 1.0]
    assert rank(["x"] * 5, strategy="judge_disagreement", judge_scores=(a, b)) == [4, 1, 3, 0, 2]
    assert rank(["x"] * 5, strategy="judge_disagreement", judge_scores=(a, b), labelled={4: "y"})[0] == 1
    with pytest.raises(InputError, match="two judges"):
        rank(["x"] * 5, strategy="judge_disagreement")


def test_uncertainty_from_a_generative_models_class_logprobs() -> None:
    logp = np.log(np.array([[0.98, 0.01, 0.01], [0.4, 0.35, 0.25], [0.5, 0.49, 0.01], [0.7, 0.2, 0.1]]))
    assert rank(["x"] * 4, strategy="uncertainty", class_logprobs=logp) == [2, 1, 3, 0]
    assert rank(["x"] * 4, strategy="uncertainty", class_logprobs=logp, measure="entropy")[0] == 1


def test_unknown_strategy_and_bad_indices_are_user_errors(ticket_task: Any) -> None:
    with pytest.raises(InputError, match="strategy among"):
        rank(ticket_task.texts, strategy="loudest", embeddings=ticket_task.embeddings)
    with pytest.raises(InputError, match="labelled indices"):
        rank(["a"], strategy="random", labelled={5: "x"})


def test_diversity_reaches_every_intent_sooner_than_random(ticket_task: Any) -> None:
    def first_covering(order: list[int]) -> int:
        seen: set[str] = set()
        for n, i in enumerate(order, 1):
            seen.add(ticket_task.gold[i])
            if len(seen) == 6:
                return n
        return len(order)

    x = ticket_task.embeddings
    diverse = [first_covering(rank(ticket_task.texts, strategy="diversity", embeddings=x, seed=s)) for s in range(4)]
    randomly = [first_covering(rank(ticket_task.texts, strategy="random", seed=s)) for s in range(4)]
    assert np.mean(diverse) < np.mean(randomly), (diverse, randomly)


def test_uncertainty_needs_fewer_labels_than_random_to_reach_the_target(ticket_task: Any) -> None:
    budget, seeds = 300, range(5)
    results = {
        strategy: [
            simulate(
                ticket_task.texts,
                ticket_task.gold,
                strategy=strategy,
                target=0.95,
                seed=seed,
                embeddings=ticket_task.embeddings,
                max_labels=budget,
            )  # fmt: skip
            for seed in seeds
        ]
        for strategy in ("random", "uncertainty")
    }
    needed = labels_needed(results, budget)
    assert needed["uncertainty"] < 0.85 * needed["random"], needed
    assert all(r.labels_to_target is not None for r in results["uncertainty"])
    curve = results["uncertainty"][0].curve
    assert curve[0][0] == 10 and curve[-1][1] >= 0.95


def test_generative_class_logprobs_sum_the_class_tokens_under_a_causal_lm() -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from keel.train._tiny import _tokenizer

    corpus = ["refund my order", "where is my shipping", "the tent is broken", "refund shipping warranty"] * 20
    tokenizer = _tokenizer(corpus, 300)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64)  # fmt: skip
    model = LlamaForCausalLM(config)
    classes = ["refund", "shipping", "warranty"]
    texts = ["refund my order please", "where is it"]
    logp = generative_class_logprobs(texts, classes, model, tokenizer, batch_size=4)
    assert logp.shape == (2, 3) and np.all(logp < 0)
    # The same number by hand for one (text, class) pair, unbatched and unpadded.
    head = tokenizer("Text: where is it\nCategory:")["input_ids"]
    tail = tokenizer(" warranty", add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        full = torch.log_softmax(model(input_ids=torch.tensor([head + tail])).logits[0], dim=-1)
    by_hand = sum(float(full[len(head) - 1 + k, t]) for k, t in enumerate(tail))
    assert logp[1, 2] == pytest.approx(by_hand, abs=1e-4)
    order = rank(texts, strategy="uncertainty", class_logprobs=logp)
    assert sorted(order) == [0, 1]


def test_rank_embeds_with_minilm_when_not_given_embeddings_and_remembers_them(ticket_task: Any) -> None:
    from keel.label.active import _embed_cached

    labelled = {i: ticket_task.gold[i] for i in range(30)}
    before = _embed_cached.cache_info().hits
    order = rank(ticket_task.texts, strategy="uncertainty", labelled=labelled, seed=1)
    assert _embed_cached.cache_info().hits == before + 1  # the session fixture embedded the same texts
    assert order == rank(ticket_task.texts, strategy="uncertainty", labelled=labelled, seed=1,
                         embeddings=ticket_task.embeddings)  # fmt: skip
    assert sorted(order) == list(range(30, len(ticket_task.texts)))
