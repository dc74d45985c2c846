"""Simulated eval suites for calibrating the gate: paired per-case scores of five metrics.

Each case has a difficulty shared by its metrics (so the metrics are correlated, as real ones
are); the baseline's and the candidate's scores are drawn from the same distribution given that
difficulty, so under `shift = 0` there is no real difference, and `shift` lowers the candidate's
rougeL-like metric by that much on average. Metric kinds mimic what suites hold: a 0/1 exact
match, continuous scores in [0, 1] (rougeL, embedding similarity), a judge score in {0, 0.5, 1},
and a lower-is-better 0/1 refusal rate.
"""

from __future__ import annotations

import numpy as np

METRICS = ("exact_match", "rougeL", "embedding_similarity", "groundedness", "refusal")
HIGHER_IS_BETTER = (True, True, True, True, False)


def _draw(rng: np.random.Generator, z: np.ndarray, shift: float) -> np.ndarray:
    """One subject's scores, shape (suites, metrics, n), given case difficulties z (suites, n)."""
    noise = rng.normal(size=(5, *z.shape))
    exact = (rng.random(z.shape) < 1 / (1 + np.exp(-(z + 0.5 * noise[0])))).astype(float)
    rouge = np.clip(0.55 + 0.18 * z + 0.12 * noise[1] - shift, 0, 1)
    similarity = np.clip(0.7 + 0.1 * z + 0.08 * noise[2], 0, 1)
    grounded = np.round(np.clip(0.6 + 0.3 * z + 0.3 * noise[3], 0, 1) * 2) / 2
    refusal = (rng.random(z.shape) < 0.08 / (1 + np.exp(z + noise[4]))).astype(float)
    return np.stack([exact, rouge, similarity, grounded, refusal], axis=1)


def simulate(suites: int, n: int, *, shift: float = 0.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Baseline and candidate scores, each of shape (suites, 5, n)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(suites, n))
    return _draw(rng, z, 0.0), _draw(rng, z, shift)
