"""The gate's false-failure rate over 1,000 simulated suites with no real difference, and its power.

The rule simulated is the gate's own: per metric the sign-flip p-value for "worse"
(`sign_flip_p_values`, the function `paired_permutation` calls), Holm-adjusted over the five
metrics (`holm_adjust`); a suite fails when any adjusted p < alpha with the metric worse. A
smaller test checks that `compare_results` on stored-result objects decides exactly this way.
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest
from gate_simulation import HIGHER_IS_BETTER, METRICS, simulate

from keel.evals import EvalResult, compare_results, holm_adjust, sign_flip_p_values
from keel.evals._scoring import CaseScore, MetricAggregate

ALPHA = 0.05
SUITES = 1000


def _fails(base: np.ndarray, cand: np.ndarray, *, correction: bool, resamples: int = 1000) -> np.ndarray:
    """Whether the gate fails each simulated suite (shape: suites)."""
    suites, metrics, n = base.shape
    diffs = (cand - base).reshape(suites * metrics, n)
    _, less, greater = sign_flip_p_values(diffs, resamples=resamples, seed=1)
    up = np.tile(np.array(HIGHER_IS_BETTER), suites)
    p_worse = np.where(up, less, greater).reshape(suites, metrics)
    worse = np.where(up, -diffs.mean(axis=1), diffs.mean(axis=1)).reshape(suites, metrics) > 0
    if correction:
        p_worse = np.array([holm_adjust(list(row)) for row in p_worse])
    return np.any((p_worse < ALPHA) & worse, axis=1)


@pytest.mark.parametrize("n", [20, 60])
def test_false_failures_stay_at_alpha_with_five_metrics(n: int) -> None:
    base, cand = simulate(SUITES, n, seed=n)
    corrected = _fails(base, cand, correction=True).mean()
    uncorrected = _fails(base, cand, correction=False).mean()
    # Target 5% ± 1.5%; the binomial standard error of a 5% rate over 1,000 suites is 0.7%.
    assert corrected <= ALPHA + 0.015, corrected
    # Without Holm the same tests fail far more often: the correction is what holds the level.
    assert uncorrected > 2 * corrected and uncorrected > 0.08, (uncorrected, corrected)


def test_the_gate_still_catches_a_real_regression() -> None:
    # A rougeL loss of 0.08 at n = 60 (sd of differences ≈ 0.17): found in most suites despite Holm.
    base, cand = simulate(300, 60, shift=0.08, seed=7)
    assert _fails(base, cand, correction=True).mean() > 0.8


def _result(ident: str, scores: np.ndarray) -> EvalResult:
    per_metric = {m: [CaseScore(float(v)) for v in scores[i]] for i, m in enumerate(METRICS)}
    aggregates = {
        m: MetricAggregate(m, float(scores[i].mean()), 0.0, 1.0, scores.shape[1], None, up, True)
        for i, (m, up) in enumerate(zip(METRICS, HIGHER_IS_BETTER, strict=True))
    }
    return EvalResult(
        ident, "sim", "0" * 64, ident, None, 0, True, aggregates, {}, "test", datetime.now(UTC), scores=per_metric
    )


def test_compare_results_decides_as_the_simulated_rule() -> None:
    base, cand = simulate(40, 20, shift=0.05, seed=3)
    expected = _fails(base, cand, correction=True, resamples=2000)
    got = []
    for b, c in zip(base, cand, strict=True):
        comparisons = compare_results(_result("b", b), _result("c", c), resamples=2000, seed=1)
        got.append(any(comp.regression for comp in comparisons))
    assert got == list(expected) and 0 < sum(got) < len(got)
