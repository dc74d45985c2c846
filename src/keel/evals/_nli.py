"""A learned entailment head for the offline groundedness judge, over frozen MiniLM token features.

No NLI model ships offline, and fine-tuning MiniLM as a cross-encoder measured 3 CPU-s per batch
of 16 on this machine (too slow to train or to run per claim). Instead the claim and its context
sentences are each encoded once by all-MiniLM-L6-v2 (the offline embedding model) into contextual
token vectors; every claim token is aligned to its most similar context token, and a logistic
regression reads the alignment: the least-supported token pair's product and absolute difference
(the directions on which "permitted" and "prohibited", or "ten" and "two", differ although close),
the mean aligned-pair product, the sentence vectors' product and difference, and alignment
statistics. It was trained by scripts/train_groundedness_nli.py on generated perturbations of real
sentences (Python documentation prose, hand-written seed paragraphs, role/comparative templates);
its weights ship as package data (`groundedness_nli.npz`, float32); nothing is downloaded.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from keel.core.errors import ConfigError

__all__ = ["NLI_FILE", "EntailmentHead", "TokenEncoder", "pair_features", "shipped_head"]

NLI_FILE = "groundedness_nli.npz"
DIM = 384
N_FEATURES = 5 * DIM + 6


def pair_features(claim: np.ndarray, premise: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """The head's input for one claim against its premise.

    Args:
        claim: Unit-length contextual token vectors of the claim (special tokens dropped), n x 384.
        premise: Those of the premise sentences, stacked, m x 384.
        u: The claim's sentence embedding (unit length).
        v: The premise's best-matching sentence embedding (unit length).
    """
    if len(claim) == 0 or len(premise) == 0:
        return np.zeros(N_FEATURES, dtype=np.float32)
    sim = claim @ premise.T
    best = sim.max(axis=1)
    aligned = premise[sim.argmax(axis=1)]
    worst = int(np.argmin(best))
    ordered = np.sort(best)
    stats = [
        ordered[0],
        ordered[min(1, len(ordered) - 1)],
        float(best.mean()),
        float(np.mean(best < 0.6)),
        float(np.mean(best < 0.8)),
        float(u @ v),
    ]
    return np.concatenate(
        [
            claim[worst] * aligned[worst],
            np.abs(claim[worst] - aligned[worst]),
            (claim * aligned).mean(axis=0),
            u * v,
            np.abs(u - v),
            np.asarray(stats, dtype=np.float32),
        ]
    ).astype(np.float32)


class TokenEncoder:
    """Contextual token vectors (unit length, [CLS]/[SEP] dropped) from the offline MiniLM, cached per text."""

    def __init__(self, cache_size: int = 20_000) -> None:
        self._cache: dict[str, np.ndarray] = {}
        self._cache_size = cache_size

    def encode(self, texts: Sequence[str]) -> list[np.ndarray]:
        """Token vectors of each text (computed in batches for the ones not cached)."""
        missing = list(dict.fromkeys(t for t in texts if t not in self._cache))
        if missing:
            from keel.evals._metrics import _embedding_model

            if len(self._cache) + len(missing) > self._cache_size:
                self._cache.clear()
            outputs = _embedding_model().encode(
                missing, batch_size=64, output_value="token_embeddings", show_progress_bar=False
            )
            for text, tokens in zip(missing, outputs, strict=True):
                array = np.asarray(tokens.float().numpy() if hasattr(tokens, "numpy") else tokens, dtype=np.float32)
                array = array[1:-1] if len(array) > 2 else array
                norms = np.linalg.norm(array, axis=1, keepdims=True)
                self._cache[text] = array / np.maximum(norms, 1e-9)
        return [self._cache[t] for t in texts]


class EntailmentHead:
    """A logistic regression over `pair_features`: P(the premise supports the claim)."""

    def __init__(self, mean: np.ndarray, scale: np.ndarray, coef: np.ndarray, intercept: float, meta: dict[str, Any]):
        self.mean, self.scale, self.coef, self.intercept, self.meta = mean, scale, coef, intercept, meta

    def probability(self, features: np.ndarray) -> np.ndarray:
        """P(supported) for each row of features (or one vector)."""
        z = ((np.atleast_2d(features) - self.mean) / self.scale) @ self.coef + self.intercept
        return np.asarray(1.0 / (1.0 + np.exp(-np.clip(z, -30.0, 30.0))), dtype=np.float64)

    def save(self, path: Path) -> None:
        """Write the head (float32 arrays and a JSON meta block)."""
        meta = np.frombuffer(json.dumps(self.meta).encode(), dtype=np.uint8)
        np.savez_compressed(
            path,
            mean=self.mean.astype(np.float32),
            scale=self.scale.astype(np.float32),
            coef=self.coef.astype(np.float32),
            intercept=np.asarray([self.intercept], dtype=np.float32),
            meta=meta,
        )

    @classmethod
    def load(cls, path: Path | None = None) -> EntailmentHead:
        """The head at `path`, or the one shipped with Keel.

        Raises:
            ConfigError: The file is not a head over these features.
        """
        source = path or resources.files("keel.evals").joinpath("data", NLI_FILE)
        with source.open("rb") as handle:
            arrays = dict(np.load(handle))
        if arrays.get("coef") is None or arrays["coef"].shape != (N_FEATURES,):
            raise ConfigError(
                f"expected an entailment head over {N_FEATURES} features in {source}",
                hint="retrain it with scripts/train_groundedness_nli.py",
            )
        meta = json.loads(bytes(arrays["meta"]).decode())
        return cls(arrays["mean"], arrays["scale"], arrays["coef"], float(arrays["intercept"][0]), meta)


@cache
def shipped_head() -> EntailmentHead:
    """The shipped entailment head, loaded once per process."""
    return EntailmentHead.load()


def blend(rule: float, learned: float, weight: float) -> float:
    """The judge's claim support: a weighted geometric mean of the rule model's and the head's probabilities.

    Examples:
        >>> round(blend(0.9, 0.1, 0.5), 3), blend(0.8, 0.2, 0.0)
        (0.3, 0.8)
    """
    if weight <= 0:
        return rule
    eps = 1e-6
    return math.exp((1 - weight) * math.log(max(rule, eps)) + weight * math.log(max(learned, eps)))
