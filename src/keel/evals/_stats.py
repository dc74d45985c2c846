"""Statistics for eval results: bootstrap confidence intervals, paired tests, Holm, Cohen's kappa.

Every resampling function takes a seed and draws from its own `numpy.random.Generator`, so the
same inputs give the same interval or p-value on every machine. Paired tests need the two result
sets to score the same cases in the same order; they test the mean of per-case differences, and
give a two-sided p-value and the two one-sided ones (`p_less`: the candidate is lower;
`p_greater`: it is higher). Every number they return is a plain Python `float`/`int`, never a
numpy scalar, so results serialise as JSON as they are.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np

from keel.core.errors import InputError

__all__ = [
    "ConfidenceInterval",
    "PairedTest",
    "bootstrap_ci",
    "cohen_kappa",
    "holm_adjust",
    "minimum_detectable_effect",
    "paired_bootstrap",
    "paired_permutation",
    "sign_flip_p_values",
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
    interval); `p_value` is two-sided for "no difference"; `p_less` and `p_greater` are the
    one-sided p-values against "the candidate is lower" and "the candidate is higher"; `sd` is
    the standard deviation of the per-case differences (ddof 1; 0 for a single case).
    """

    method: str
    delta: float
    low: float
    high: float
    p_value: float
    n: int
    baseline_mean: float
    candidate_mean: float
    p_less: float = 1.0
    p_greater: float = 1.0
    sd: float = 0.0

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
            "p_less": self.p_less,
            "p_greater": self.p_greater,
            "sd": self.sd,
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
    below = (int(np.count_nonzero(draws <= 0)) + 1) / (resamples + 1)
    above = (int(np.count_nonzero(draws >= 0)) + 1) / (resamples + 1)
    p_value = min(1.0, 2 * min(below, above))
    # One-sided: evidence the candidate is lower is a small share of draws at or above zero.
    return _result("paired-bootstrap", diff, baseline, candidate, (float(low), float(high)), (p_value, above, below))


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
    two, less, greater = sign_flip_p_values(diff[None, :], resamples=resamples, seed=seed)
    interval = paired_bootstrap(baseline, candidate, confidence=confidence, resamples=resamples, seed=seed)
    p_values = (float(two[0]), float(less[0]), float(greater[0]))
    return _result("paired-permutation", diff, baseline, candidate, (interval.low, interval.high), p_values)


def sign_flip_p_values(
    diffs: np.ndarray, *, resamples: int = DEFAULT_RESAMPLES, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sign-flip permutation p-values for many rows of paired differences at once.

    Row i holds one comparison's per-case differences (candidate − baseline). Under "no
    difference" the two scores of a case are exchangeable, so each difference's sign is a fair
    coin: the test holds its level at any n (it is exact when every pattern is enumerated, which
    happens when 2**n ≤ `resamples`; otherwise `resamples` random patterns, +1 corrected). All
    rows share one matrix of sign patterns and the flipped means are one matrix product, which is
    what makes 1,000 simulated suites take a second (written with numpy rather than
    `scipy.stats.permutation_test` for that vectorisation across rows).

    Args:
        diffs: Shape (rows, n): per-case differences of each comparison.
        resamples: Random sign patterns when 2**n exceeds it.
        seed: Seeds the patterns.

    Returns:
        Three arrays of shape (rows,): the two-sided p-value, and the one-sided ones against
        "lower" (`p_less`) and "higher" (`p_greater`).

    Examples:
        >>> two, less, greater = sign_flip_p_values(np.array([[-1.0, -1.0, -1.0, -1.0, -1.0]]))
        >>> float(two[0]), float(less[0]), float(greater[0])
        (0.0625, 0.03125, 1.0)
    """
    diffs = np.atleast_2d(np.asarray(diffs, dtype=np.float64))
    n = diffs.shape[1]
    exact = 2**n <= resamples
    if exact:
        signs = (((np.arange(2**n)[:, None] >> np.arange(n)) & 1) * 2 - 1).astype(np.float64)
    else:
        signs = np.random.default_rng(seed).choice(np.array([-1.0, 1.0]), size=(resamples, n))
    observed = diffs.mean(axis=1)
    tol = 1e-12 * np.maximum(1.0, np.abs(diffs).max(axis=1))
    two = np.empty(len(diffs))
    less = np.empty(len(diffs))
    greater = np.empty(len(diffs))
    for start in range(0, len(diffs), 512):  # bounded memory: (512 rows × patterns) per block
        rows = slice(start, start + 512)
        flipped = diffs[rows] @ signs.T / n
        obs, eps = observed[rows, None], tol[rows, None]
        counts = (
            np.count_nonzero(np.abs(flipped) >= np.abs(obs) - eps, axis=1),
            np.count_nonzero(flipped <= obs + eps, axis=1),
            np.count_nonzero(flipped >= obs - eps, axis=1),
        )
        for out, count in zip((two, less, greater), counts, strict=True):
            out[rows] = count / len(signs) if exact else (count + 1) / (len(signs) + 1)
    return two, less, greater


def holm_adjust(p_values: Sequence[float]) -> list[float]:
    """Holm–Bonferroni adjusted p-values: reject hypothesis i at level α iff its adjusted p < α.

    Controls the family-wise error (the chance of any false rejection) at α for any dependence
    between the tests. Written by hand: five lines, and statsmodels is not a dependency.

    Examples:
        >>> holm_adjust([0.01, 0.04, 0.03, 0.5])
        [0.04, 0.09, 0.09, 0.5]
    """
    m = len(p_values)
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(sorted(range(m), key=lambda k: p_values[k])):
        running = max(running, min(1.0, (m - rank) * float(p_values[i])))
        adjusted[i] = round(running, 12)
    return adjusted


def minimum_detectable_effect(sd: float, n: int, *, alpha: float = 0.05, power: float = 0.8) -> float:
    """The smallest true mean difference a one-sided paired test at `alpha` detects with `power`.

    Normal approximation: (z₁₋α + z_power) · sd / √n, with `sd` the standard deviation of the
    per-case differences. A difference smaller than this usually passes unseen at this suite size.

    Examples:
        >>> round(minimum_detectable_effect(0.2, 60, alpha=0.01), 4)
        0.0818
    """
    if n < 1:
        raise InputError(f"expected at least one case for a detectable effect; got n = {n}")
    z = NormalDist()
    return float((z.inv_cdf(1 - alpha) + z.inv_cdf(power)) * sd / n**0.5)


def _result(
    method: str,
    diff: np.ndarray,
    baseline: Sequence[float] | np.ndarray,
    candidate: Sequence[float] | np.ndarray,
    interval: tuple[float, float],
    p_values: tuple[float, float, float],
) -> PairedTest:
    two, less, greater = p_values
    return PairedTest(
        method=method,
        delta=float(diff.mean()),
        low=float(interval[0]),
        high=float(interval[1]),
        p_value=float(two),
        n=int(diff.size),
        baseline_mean=float(np.mean(np.asarray(baseline, dtype=np.float64))),
        candidate_mean=float(np.mean(np.asarray(candidate, dtype=np.float64))),
        p_less=float(less),
        p_greater=float(greater),
        sd=float(diff.std(ddof=1)) if diff.size > 1 else 0.0,
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
