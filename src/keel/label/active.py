"""Active learning: which unlabelled item to label next, and a simulation of how many labels a strategy needs.

`rank` orders the items not yet labelled. Strategies: `random` (seeded shuffle); `uncertainty` (smallest margin
between the top two classes, or highest entropy, of a logistic regression trained on the labelled items over
MiniLM sentence embeddings, or of a generative model's class log-probabilities when given); `diversity`
(k-center greedy over the embeddings: the item farthest from everything labelled next); `judge_disagreement`
(largest gap between two judges' scores). `simulate` replays labelling with gold labels to count the labels a
strategy needs to reach a target accuracy. It does not know where texts come from (a queue, a dataset version).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from keel.core.echo import shown
from keel.core.errors import InputError

__all__ = [
    "STRATEGIES",
    "SimulationResult",
    "Strategy",
    "classifier_accuracy",
    "embed",
    "generative_class_logprobs",
    "labels_needed",
    "rank",
    "simulate",
]

Strategy = Literal["random", "uncertainty", "diversity", "judge_disagreement"]
STRATEGIES: tuple[str, ...] = ("random", "uncertainty", "diversity", "judge_disagreement")
Vectors = npt.NDArray[np.float32]
_K_CENTER_PICKS = 5_000


def embed(texts: Sequence[str], *, model: str | None = None) -> Vectors:
    """Unit-length sentence embeddings (the offline MiniLM by default), one row per text.

    The last few calls are remembered per process: a queue that re-ranks the same items after every label
    (`rank` without `embeddings=`) embeds them once. The returned array is read-only.
    """
    from keel.index._embedding import DEFAULT_MODEL

    return _embed_cached(model or DEFAULT_MODEL, tuple(texts))


@lru_cache(maxsize=4)
def _embed_cached(model: str, texts: tuple[str, ...]) -> Vectors:
    from keel.index._embedding import SentenceTransformerEmbedder

    vectors = SentenceTransformerEmbedder(model).embed(list(texts))
    vectors.setflags(write=False)
    return vectors


def _classifier(x: Vectors, y: Sequence[str], seed: int) -> Any:
    from sklearn.linear_model import LogisticRegression

    # C=10: unit-length 384-dim embeddings with few labels underfit at sklearn's default C=1.
    return LogisticRegression(C=10.0, max_iter=2000, random_state=seed).fit(x, list(y))


def classifier_accuracy(
    x_train: Vectors, y_train: Sequence[str], x_test: Vectors, y_test: Sequence[str], *, seed: int = 0
) -> float:
    """Accuracy on the test rows of a logistic regression trained on the train rows (0 with fewer than 2 classes)."""
    if len(set(y_train)) < 2:
        return float(np.mean([y == y_train[0] for y in y_test])) if y_train else 0.0
    predicted = _classifier(x_train, y_train, seed).predict(x_test)
    return float(np.mean(predicted == np.asarray(y_test)))


def _tie_order(n: int, seed: int) -> npt.NDArray[np.int64]:
    """A seeded permutation: sorting by (score, this) breaks ties the same way every run."""
    return np.random.default_rng(seed).permutation(n).astype(np.int64)


def _uncertainty(probs: npt.NDArray[np.float64], measure: str) -> npt.NDArray[np.float64]:
    """Higher = more uncertain."""
    if measure == "entropy":
        p = np.clip(probs, 1e-12, 1.0)
        return np.asarray(-(p * np.log(p)).sum(axis=1), dtype=np.float64)
    if measure == "margin":
        top = np.sort(probs, axis=1)
        return np.asarray(-(top[:, -1] - (top[:, -2] if probs.shape[1] > 1 else 0.0)), dtype=np.float64)
    raise InputError(f"expected an uncertainty measure `margin` or `entropy`; got {shown(measure)}")


def _diversity(vectors: Vectors, pool: list[int], labelled: Sequence[int], seed: int) -> list[int]:
    """k-center greedy (farthest-first): each pick is the item farthest from everything labelled or picked.

    O(items × dimension) per pick; past `_K_CENTER_PICKS` picks the rest follow in a seeded random order, so
    ranking 100,000 items stays seconds while the first thousands of picks (all a person labels) are spread out.
    """
    x = np.asarray(vectors, dtype=np.float32)
    anchors = list(labelled)
    if not anchors:  # nothing labelled: start from the item nearest the centre of everything
        anchors = [min(pool, key=lambda i: (float(np.linalg.norm(x[i] - x.mean(axis=0))), i))]
        first = [anchors[0]]
    else:
        first = []
    # Cosine distance on unit vectors: 1 - similarity; the minimum over anchors is the distance to the labelled set.
    nearest = 1.0 - (x @ x[anchors].T).max(axis=1)
    remaining = np.zeros(len(x), dtype=bool)
    remaining[pool] = True
    remaining[first] = False
    order = list(first)
    ties = _tie_order(len(x), seed).astype(np.float64) * 1e-12  # a deterministic, seed-dependent tie-break
    while remaining.any() and len(order) < _K_CENTER_PICKS:
        pick = int(np.argmax(np.where(remaining, nearest + ties, -np.inf)))
        order.append(pick)
        remaining[pick] = False
        nearest = np.minimum(nearest, 1.0 - x @ x[pick])
    rest = np.nonzero(remaining)[0]
    order.extend(rest[np.random.default_rng(seed).permutation(len(rest))].tolist())
    return order


def rank(
    texts: list[str],
    *,
    strategy: str,
    labelled: dict[int, str] | None = None,
    seed: int = 0,
    embeddings: Vectors | None = None,
    class_logprobs: npt.NDArray[np.float64] | None = None,
    judge_scores: tuple[Sequence[float], Sequence[float]] | None = None,
    measure: str = "margin",
) -> list[int]:
    """The indices of `texts` not yet labelled, in the order to label them.

    Args:
        texts: Every item (labelled ones included: they train the uncertainty model and steer diversity).
        strategy: `random`, `uncertainty`, `diversity` or `judge_disagreement`.
        labelled: Index → label of the items already labelled.
        seed: Seeds the shuffle, k-means and tie-breaking; the same inputs give the same order.
        embeddings: Precomputed unit-length embeddings of `texts` (else MiniLM embeds them).
        class_logprobs: (items × classes) log-probabilities a generative model gives each class; with
            `uncertainty`, used instead of a classifier on the embeddings.
        judge_scores: Two judges' scores per item, for `judge_disagreement`.
        measure: `margin` (default) or `entropy`, for `uncertainty`.

    Returns:
        Every unlabelled index once. `uncertainty` with fewer than two labelled classes and no log-probabilities
        falls back to `diversity` (there is no classifier to be uncertain yet).

    Raises:
        InputError: An unknown strategy, a labelled index out of range, or missing judge scores.

    Examples:
        >>> rank(["a", "b", "c"], strategy="random", labelled={1: "x"}, seed=0)  # doctest: +SKIP
        [2, 0]
    """
    labelled = dict(labelled or {})
    n = len(texts)
    bad = [i for i in labelled if not 0 <= i < n]
    if bad:
        raise InputError(f"expected labelled indices in 0…{n - 1}; got {bad[:5]}")
    pool = [i for i in range(n) if i not in labelled]
    ties = _tie_order(n, seed)
    if strategy == "random":
        return [pool[i] for i in np.random.default_rng(seed).permutation(len(pool)).tolist()]
    if strategy == "judge_disagreement":
        if judge_scores is None or len(judge_scores[0]) != n or len(judge_scores[1]) != n:
            raise InputError(f"judge_disagreement needs two judges' scores for all {n} items; got "
                             f"{'none' if judge_scores is None else [len(s) for s in judge_scores]}")  # fmt: skip
        gap = np.abs(np.asarray(judge_scores[0], float) - np.asarray(judge_scores[1], float))
        return sorted(pool, key=lambda i: (-gap[i], ties[i]))
    if strategy == "uncertainty" and class_logprobs is not None:
        logp = np.asarray(class_logprobs, dtype=np.float64)
        if logp.shape[0] != n:
            raise InputError(f"expected class log-probabilities for {n} items; got {logp.shape[0]}")
        probs = np.exp(logp - logp.max(axis=1, keepdims=True))
        score = _uncertainty(probs / probs.sum(axis=1, keepdims=True), measure)
        return sorted(pool, key=lambda i: (-score[i], ties[i]))
    if strategy not in STRATEGIES:
        raise InputError(f"expected a strategy among {', '.join(STRATEGIES)}; got {shown(strategy)}")
    if not pool:
        return []
    vectors = embed(texts) if embeddings is None else np.asarray(embeddings, dtype=np.float32)
    if vectors.shape[0] != n:
        raise InputError(f"expected one embedding per text ({n}); got {vectors.shape[0]}")
    known = sorted(labelled)
    if strategy == "diversity" or len(set(labelled.values())) < 2:
        return _diversity(vectors, pool, known, seed)
    model = _classifier(vectors[known], [labelled[i] for i in known], seed)
    score = _uncertainty(model.predict_proba(vectors[pool]), measure)
    by_index = dict(zip(pool, score.tolist(), strict=True))
    return sorted(pool, key=lambda i: (-by_index[i], ties[i]))


@dataclass
class SimulationResult:
    """Labels a strategy needed to reach `target` accuracy on held-out items (None: not within the budget)."""

    strategy: str
    seed: int
    target: float
    labels_to_target: int | None
    curve: list[tuple[int, float]] = field(default_factory=list)  # (labels, test accuracy)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


def simulate(
    texts: Sequence[str],
    gold: Sequence[str],
    *,
    strategy: str,
    target: float,
    seed: int = 0,
    embeddings: Vectors | None = None,
    initial: int = 10,
    batch: int = 10,
    max_labels: int = 500,
    test_fraction: float = 0.3,
) -> SimulationResult:
    """Replay labelling with gold labels and count the labels a strategy needs to reach `target` accuracy.

    It starts from `initial` random labels, then labels `batch` at a time in the strategy's order, retraining
    the classifier each round, until its held-out accuracy reaches `target` or `max_labels` are spent. The
    held-out split and the initial labels depend only on `seed`, so strategies are compared on the same items.
    """
    if len(texts) != len(gold):
        raise InputError(f"expected one gold label per text; got {len(texts)} texts and {len(gold)} labels")
    vectors = embed(texts) if embeddings is None else np.asarray(embeddings, dtype=np.float32)
    order = np.random.default_rng(seed).permutation(len(texts))
    n_test = int(len(texts) * test_fraction)
    test, pool = order[:n_test].tolist(), order[n_test:].tolist()
    x_test, y_test = vectors[test], [gold[i] for i in test]
    pool_vectors, pool_texts = vectors[pool], [texts[i] for i in pool]
    labelled = {k: gold[pool[k]] for k in range(min(initial, len(pool)))}  # the pool is already shuffled
    result = SimulationResult(strategy, seed, target, None)
    while True:
        known = sorted(labelled)
        accuracy = classifier_accuracy(pool_vectors[known], [labelled[k] for k in known], x_test, y_test, seed=seed)
        result.curve.append((len(labelled), accuracy))
        if accuracy >= target:
            result.labels_to_target = len(labelled)
            return result
        if len(labelled) >= min(max_labels, len(pool)):
            return result
        picks = rank(pool_texts, strategy=strategy, labelled=labelled, seed=seed + len(labelled),
                     embeddings=pool_vectors)[:batch]  # fmt: skip
        labelled.update({k: gold[pool[k]] for k in picks})


def generative_class_logprobs(
    texts: Sequence[str],
    classes: Sequence[str],
    model: Any,
    tokenizer: Any,
    *,
    prompt: str = "Text: {text}\nCategory:",
    batch_size: int = 8,
) -> npt.NDArray[np.float64]:
    """The log-probability of " class" after the prompt under a causal LM, summed over its tokens: texts × classes.

    `model` and `tokenizer` are a transformers causal LM and its tokenizer (a registered model, SmolLM2, Keel's
    tiny model). The result feeds `rank(..., strategy="uncertainty", class_logprobs=...)`.
    """
    import torch

    pairs = [(prompt.replace("{text}", t), " " + c) for t in texts for c in classes]
    out = np.empty(len(pairs), dtype=np.float64)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    model.eval()
    with torch.no_grad():
        for start in range(0, len(pairs), batch_size):
            chunk = pairs[start : start + batch_size]
            heads = [tokenizer(p, add_special_tokens=True)["input_ids"] for p, _ in chunk]
            tails = [tokenizer(c, add_special_tokens=False)["input_ids"] for _, c in chunk]
            seqs = [h + t for h, t in zip(heads, tails, strict=True)]
            width = max(len(s) for s in seqs)
            ids = torch.tensor([s + [pad] * (width - len(s)) for s in seqs])
            mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in seqs])
            logp = torch.log_softmax(model(input_ids=ids, attention_mask=mask).logits.float(), dim=-1)
            for row, (h, t) in enumerate(zip(heads, tails, strict=True)):
                positions = torch.arange(len(h) - 1, len(h) + len(t) - 1)
                out[start + row] = float(logp[row, positions, torch.tensor(t)].sum())
    return out.reshape(len(texts), len(classes))


def labels_needed(results: Mapping[str, Sequence[SimulationResult]], budget: int) -> dict[str, float]:
    """Mean labels-to-target per strategy, counting a run that never reached it as `budget`."""
    return {s: float(np.mean([r.labels_to_target or budget for r in rs])) for s, rs in results.items()}
