"""Statistics for eval results: bootstrap confidence intervals, paired tests, Cohen's kappa.

Every resampling function takes a seed and draws from its own `numpy.random.Generator`, so the
same inputs give the same interval or p-value on every machine. Paired tests need the two result
sets to score the same cases in the same order; they test the mean of per-case differences.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from keel.core.errors import InputError

__all__ = [
    "ConfidenceInterval",
    "PairedTest",
    "bootstrap_ci",
    "cohen_kappa",
    "paired_bootstrap",
    "paired_permutation",
]

DEFAULT_RESAMPLES = 2000


@dataclass(frozen=True, slots=True)
class ConfidenceInterval:
    """A point estimate with a percentile-bootstrap interval."""

    value: float
    low: float
    high: float
    confidence: float
    n: int

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {"value": self.value, "low": self.low, "high": self.high, "confidence": self.confidence, "n": self.n}


@dataclass(frozen=True, slots=True)
class PairedTest:
    """A paired comparison of candidate against baseline on the same cases.

    `delta` is mean(candidate) − mean(baseline); `low`/`high` bound it (bootstrap percentile
    interval); `p_value` is two-sided for "no difference".
    """

    method: str
    delta: float
    low: float
    high: float
    p_value: float
    n: int
    baseline_mean: float
    candidate_mean: float

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "method": self.method,
            "delta": self.delta,
            "low": self.low,
            "high": self.high,
            "p_value": self.p_value,
            "n": self.n,
            "baseline_mean": self.baseline_mean,
            "candidate_mean": self.candidate_mean,
        }


def _as_array(values: Sequence[float] | np.ndarray, what: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1 or array.size == 0:
        raise InputError(f"expected a non-empty list of per-case {what}; got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise InputError(f"expected finite per-case {what}; got NaN or infinity")
    return array


def bootstrap_ci(
    values: Sequence[float] | np.ndarray,
    *,
    statistic: Callable[[np.ndarray], float] | None = None,
    confidence: float = 0.95,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> ConfidenceInterval:
    """Percentile-bootstrap confidence interval of a statistic (the mean by default) of per-case scores.

    Args:
        values: One score per case.
        statistic: Maps a resampled score array to a number; `numpy.mean` if omitted.
        confidence: Coverage of the interval.
        resamples: Number of bootstrap resamples.
        seed: Seeds the resampling; the same seed gives the same interval.

    Returns:
        The statistic on all cases, and the interval.

    Examples:
        >>> ci = bootstrap_ci([1, 0, 1, 1, 0, 1, 1, 1], seed=0)
        >>> ci.value, ci.low <= ci.value <= ci.high
        (0.75, True)
    """
    array = _as_array(values, "scores")
    stat = statistic or (lambda a: float(np.mean(a)))
    rng = np.random.default_rng(seed)
    indices = rng.integers(0, array.size, size=(resamples, array.size))
    if statistic is None:
        draws = array[indices].mean(axis=1)  # vectorised fast path for the common case
    else:
        draws = np.array([stat(array[row]) for row in indices])
    alpha = (1 - confidence) / 2
    low, high = np.quantile(draws, [alpha, 1 - alpha])
    return ConfidenceInterval(float(stat(array)), float(low), float(high), confidence, int(array.size))


def _paired(baseline: Sequence[float] | np.ndarray, candidate: Sequence[float] | np.ndarray) -> np.ndarray:
    a = _as_array(baseline, "baseline scores")
    b = _as_array(candidate, "candidate scores")
    if a.size != b.size:
        raise InputError(
            f"expected paired results over the same cases; baseline has {a.size} and candidate {b.size}",
            hint="evaluate both with the same suite and dataset version",
        )
    return np.asarray(b - a)


def paired_bootstrap(
    baseline: Sequence[float] | np.ndarray,
    candidate: Sequence[float] | np.ndarray,
    *,
    confidence: float = 0.95,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> PairedTest:
    """Paired bootstrap over cases of the mean difference candidate − baseline.

    The p-value is the two-sided bootstrap estimate: twice the smaller share of resampled mean
    differences on either side of zero (with the +1 correction so it is never exactly 0).

    Examples:
        >>> t = paired_bootstrap([1, 1, 1, 1, 1, 1, 1, 1], [0, 0, 0, 0, 0, 0, 0, 1], seed=0)
        >>> t.delta, t.p_value < 0.05
        (-0.875, True)
    """
    diff = _paired(baseline, candidate)
    rng = np.random.default_rng(seed)
    draws = diff[rng.integers(0, diff.size, size=(resamples, diff.size))].mean(axis=1)
    alpha = (1 - confidence) / 2
    low, high = np.quantile(draws, [alpha, 1 - alpha])
    below = (np.count_nonzero(draws <= 0) + 1) / (resamples + 1)
    above = (np.count_nonzero(draws >= 0) + 1) / (resamples + 1)
    p_value = min(1.0, 2 * min(below, above))
    return _result("paired-bootstrap", diff, baseline, candidate, float(low), float(high), p_value)


def paired_permutation(
    baseline: Sequence[float] | np.ndarray,
    candidate: Sequence[float] | np.ndarray,
    *,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    confidence: float = 0.95,
) -> PairedTest:
    """Paired (sign-flip) permutation test of the mean difference candidate − baseline.

    Under "no difference" each case's pair is exchangeable, so each difference's sign is flipped at
    random; the p-value is the share of flipped means at least as far from zero as the observed
    one (+1 corrected). With 2**n ≤ `resamples` sign patterns every pattern is enumerated (exact).
    The interval reported is the paired bootstrap's, with the same seed.

    Examples:
        >>> t = paired_permutation([0.5, 0.6, 0.7], [0.5, 0.6, 0.7])
        >>> t.delta, t.p_value
        (0.0, 1.0)
    """
    diff = _paired(baseline, candidate)
    observed = abs(diff.mean())
    if 2**diff.size <= resamples:
        patterns = ((np.arange(2**diff.size)[:, None] >> np.arange(diff.size)) & 1) * 2 - 1
        flipped = np.abs((patterns * diff).mean(axis=1))
        p_value = float(np.count_nonzero(flipped >= observed - 1e-12) / len(flipped))
    else:
        rng = np.random.default_rng(seed)
        signs = rng.choice(np.array([-1.0, 1.0]), size=(resamples, diff.size))
        flipped = np.abs((signs * diff).mean(axis=1))
        p_value = float((np.count_nonzero(flipped >= observed - 1e-12) + 1) / (resamples + 1))
    interval = paired_bootstrap(baseline, candidate, confidence=confidence, resamples=resamples, seed=seed)
    return _result("paired-permutation", diff, baseline, candidate, interval.low, interval.high, p_value)


def _result(
    method: str,
    diff: np.ndarray,
    baseline: Sequence[float] | np.ndarray,
    candidate: Sequence[float] | np.ndarray,
    low: float,
    high: float,
    p_value: float,
) -> PairedTest:
    return PairedTest(
        method=method,
        delta=float(diff.mean()),
        low=low,
        high=high,
        p_value=p_value,
        n=int(diff.size),
        baseline_mean=float(np.mean(np.asarray(baseline, dtype=np.float64))),
        candidate_mean=float(np.mean(np.asarray(candidate, dtype=np.float64))),
    )


def cohen_kappa(rater_a: Sequence[Hashable], rater_b: Sequence[Hashable]) -> float:
    """Cohen's kappa: agreement between two raters on the same items, corrected for chance.

    Returns 1.0 when both raters give every item the same single label (no disagreement possible).

    Examples:
        >>> round(cohen_kappa(["y", "y", "n", "n", "y"], ["y", "n", "n", "n", "y"]), 4)
        0.6154
    """
    if len(rater_a) != len(rater_b):
        raise InputError(f"expected two ratings of the same items; got {len(rater_a)} and {len(rater_b)} ratings")
    if not rater_a:
        raise InputError("expected at least one rated item to compute Cohen's kappa; got none")
    n = len(rater_a)
    observed = sum(a == b for a, b in zip(rater_a, rater_b, strict=True)) / n
    labels = set(rater_a) | set(rater_b)
    expected = sum((list(rater_a).count(label) / n) * (list(rater_b).count(label) / n) for label in labels)
    if expected >= 1.0:
        return 1.0
    return (observed - expected) / (1 - expected)
