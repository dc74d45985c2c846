"""Compare two eval results case by case, and gate a candidate against a baseline for CI.

A comparison pairs the two results' per-case scores (the same suite on the same cases) and runs
a paired test per metric: the sign-flip permutation test by default, which holds its level at
any suite size (the paired bootstrap is anti-conservative at n = 20 and stays as an option).
Each metric's one-sided p-value for "the candidate is worse" is Holm-adjusted over the metrics,
so with no real difference the gate fails at most `alpha` of the time however many metrics the
suite lists (`tests/unit/evals/test_gate_calibration.py` simulates 1,000 suites to show it).

The gate fails when a metric got worse with adjusted p < alpha and by more than `min_delta`, or
when the candidate misses a threshold. For each metric it also reports the minimum detectable
effect at the suite's size (80% power at the Holm level of the first step, alpha / metrics): a
worsening smaller than that passes unseen, and the report says so. The verdict is written as
Markdown for people and JSON (plain Python types only) for machines.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from keel.core.errors import InputError, NotFoundError
from keel.evals._results import EvalResult, get_result, run_suite
from keel.evals._stats import (
    PairedTest,
    holm_adjust,
    minimum_detectable_effect,
    paired_bootstrap,
    paired_permutation,
)
from keel.evals._suite import AppSubject, DeploymentSubject, EndpointSubject, EvalSuite, ModelSubject, PromptSubject
from keel.store import Store

__all__ = ["GateReport", "MetricComparison", "blind_spots", "compare_results", "gate", "subject_for_ref"]

Method = Literal["paired-bootstrap", "paired-permutation"]
Correction = Literal["holm", "none"]
POWER = 0.8
"""The power at which the minimum detectable effect is stated."""


@dataclass(frozen=True, slots=True)
class MetricComparison:
    """One metric compared: the paired test, and whether the candidate is significantly worse or better.

    `p_worse` / `p_better` are the one-sided p-values in the metric's bad / good direction,
    adjusted over the compared metrics (Holm) unless the correction is "none"; `mde` is the
    smallest worsening the suite detects with 80% power at its size.
    """

    metric: str
    test: PairedTest
    higher_is_better: bool
    regression: bool
    improvement: bool
    p_worse: float = 1.0
    p_better: float = 1.0
    mde: float = 0.0

    @property
    def worsening(self) -> float:
        """How much worse the candidate is in the metric's bad direction (negative when better)."""
        return -self.test.delta if self.higher_is_better else self.test.delta

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict of plain Python values."""
        return {
            "metric": self.metric,
            **self.test.to_json(),
            "higher_is_better": bool(self.higher_is_better),
            "regression": bool(self.regression),
            "improvement": bool(self.improvement),
            "p_worse_adjusted": float(self.p_worse),
            "p_better_adjusted": float(self.p_better),
            "mde": float(self.mde),
        }


def compare_results(
    baseline: EvalResult,
    candidate: EvalResult,
    *,
    method: Method = "paired-permutation",
    alpha: float = 0.05,
    min_delta: float = 0.0,
    resamples: int = 2000,
    seed: int = 0,
    correction: Correction = "holm",
) -> list[MetricComparison]:
    """Paired test per metric the two results share, corrected for the number of metrics.

    A metric regressed when its one-sided p-value for "worse" (Holm-adjusted over the metrics
    unless `correction` is "none") is below `alpha` and it got worse by more than `min_delta`;
    it improved when the same holds in the good direction.

    Raises:
        InputError: The results did not score the same cases in the same order.
    """
    base_ids = [c.id for c in baseline.cases]
    if base_ids != [c.id for c in candidate.cases]:
        raise InputError(
            f"expected two results over the same cases to compare; {baseline.id} and {candidate.id} differ",
            hint="run the same suite (same dataset version) for both",
        )
    test: Callable[..., PairedTest] = paired_bootstrap if method == "paired-bootstrap" else paired_permutation
    shared = [(m, agg.higher_is_better) for m, agg in baseline.aggregates.items() if m in candidate.aggregates]
    tests = [test(baseline.values(m), candidate.values(m), resamples=resamples, seed=seed) for m, _ in shared]
    p_worse = [t.p_less if up else t.p_greater for t, (_, up) in zip(tests, shared, strict=True)]
    p_better = [t.p_greater if up else t.p_less for t, (_, up) in zip(tests, shared, strict=True)]
    if correction == "holm":
        p_worse, p_better = holm_adjust(p_worse), holm_adjust(p_better)
    # Holm's first step tests at alpha / m: the level a lone real regression must reach.
    level = alpha / len(shared) if correction == "holm" and shared else alpha
    comparisons = []
    for (metric, up), result, worse_p, better_p in zip(shared, tests, p_worse, p_better, strict=True):
        worse = -result.delta if up else result.delta
        comparisons.append(
            MetricComparison(
                metric=metric,
                test=result,
                higher_is_better=up,
                regression=bool(worse_p < alpha and worse > min_delta),
                improvement=bool(better_p < alpha and worse < 0),
                p_worse=float(worse_p),
                p_better=float(better_p),
                mde=_mde(result, baseline.values(metric), candidate.values(metric), level),
            )
        )
    return comparisons


def _mde(result: PairedTest, baseline: list[float], candidate: list[float], level: float) -> float:
    """Detectable effect from the observed spread of the differences.

    When the two results never differ (the same outputs), that spread is 0 and says nothing about
    a future candidate; the spread of unpaired scores, sqrt(var(baseline) + var(candidate)), is used.
    """
    sd = result.sd
    if sd == 0.0 and result.n > 1:
        sd = float(np.sqrt(np.var(baseline, ddof=1) + np.var(candidate, ddof=1)))
    return minimum_detectable_effect(sd, result.n, alpha=level, power=POWER)


@dataclass
class GateReport:
    """The gate's verdict, the comparisons behind it, why it failed if it did, and what it could not see."""

    passed: bool
    baseline: EvalResult
    candidate: EvalResult
    comparisons: list[MetricComparison]
    reasons: list[str] = field(default_factory=list)
    alpha: float = 0.05
    method: str = "paired-permutation"
    correction: str = "holm"
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The machine-readable report: plain Python types only (real booleans, floats)."""
        return {
            "passed": bool(self.passed),
            "reasons": list(self.reasons),
            "notes": list(self.notes),
            "alpha": float(self.alpha),
            "method": self.method,
            "correction": self.correction,
            "power": POWER,
            "baseline": self.baseline.to_json(),
            "candidate": self.candidate.to_json(),
            "comparisons": [c.to_json() for c in self.comparisons],
        }

    def to_markdown(self) -> str:
        """The human-readable report, for a CI summary or a pull request comment."""
        verdict = "PASSED" if self.passed else "FAILED"
        lines = [
            f"## Eval gate {verdict}: suite `{self.candidate.suite}`",
            "",
            f"- baseline: `{self.baseline.subject}` (result `{self.baseline.id}`)",
            f"- candidate: `{self.candidate.subject}` (result `{self.candidate.id}`)",
            f"- test: {self.method}, one-sided for 'worse', {self.correction} correction over "
            f"{len(self.comparisons)} metrics, alpha {self.alpha}, {self.candidate.num_cases} paired cases",
            "",
            f"| metric | baseline | candidate | Δ (95% CI) | p worse (adj.) | detectable Δ ({POWER:.0%} power) "
            "| threshold | verdict |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for c in self.comparisons:
            agg = self.candidate.aggregates[c.metric]
            bound = "—" if agg.threshold is None else f"{'≥' if agg.higher_is_better else '≤'} {agg.threshold:g}"
            status = "regression" if c.regression else "improved" if c.improvement else "no significant change"
            if not agg.passed:
                status += ", below threshold"
            t = c.test
            lines.append(
                f"| {c.metric} | {t.baseline_mean:.4f} | {t.candidate_mean:.4f} | "
                f"{t.delta:+.4f} ({t.low:+.4f}, {t.high:+.4f}) | {c.p_worse:.4f} | {c.mde:.4f} | {bound} | {status} |"
            )
        if self.reasons:
            lines += ["", "Reasons:", *[f"- {r}" for r in self.reasons]]
        if self.notes:
            lines += ["", "Notes:", *[f"- {n}" for n in self.notes]]
        return "\n".join(lines) + "\n"


def blind_spots(comparisons: list[MetricComparison]) -> list[str]:
    """One note per metric that got worse without being flagged: the suite was too small to see it.

    Examples:
        A metric that lost 0.04 where the suite detects 0.06 gets "suite too small to detect
        Δ < 0.06 in rougeL at n = 60 (observed −0.04)".
    """
    notes = []
    for c in comparisons:
        if c.regression or c.worsening <= 0 or c.worsening >= c.mde:
            continue
        notes.append(
            f"suite too small to detect Δ < {c.mde:.4f} in {c.metric} at n = {c.test.n} "
            f"(observed {c.test.delta:+.4f}; {POWER:.0%} power)"
        )
    return notes


def subject_for_ref(suite: EvalSuite, ref: str) -> EvalSuite:
    """The suite with its subject pointed at `ref`.

    `ref` is a model name (endpoint), a model ref, a prompt ref, a deployment name, or for an app
    a version of its index or prompt (`kb@v2`, `support@v4`: whichever the name matches; any other
    name is the target model's).
    """
    subject = suite.subject
    new: EndpointSubject | ModelSubject | PromptSubject | DeploymentSubject | AppSubject
    if isinstance(subject, PromptSubject):
        new = subject.model_copy(update={"prompt": ref})
    elif isinstance(subject, DeploymentSubject):
        new = subject.model_copy(update={"deployment": ref})
    elif isinstance(subject, AppSubject):
        name = ref.split("@", 1)[0]
        if subject.index is not None and name == subject.index.split("@", 1)[0]:
            new = subject.model_copy(update={"index": ref})
        elif subject.prompt is not None and name == subject.prompt.split("@", 1)[0]:
            new = subject.model_copy(update={"prompt": ref})
        else:
            new = subject.model_copy(update={"target": subject.target.model_copy(update={"model": ref})})
    else:
        new = subject.model_copy(update={"model": ref})
    return suite.model_copy(update={"subject": new})


def _resolve(store: Store, suite: EvalSuite, ref: str, progress: Callable[[str, int, int], None] | None) -> EvalResult:
    """A stored result if `ref` is one's id, else a fresh run of the suite with the subject set to `ref`."""
    try:
        existing = get_result(store, ref)
    except (InputError, NotFoundError):
        return run_suite(store, subject_for_ref(suite, ref), progress=progress)
    if existing.suite_digest != suite.digest():
        raise InputError(
            f"eval result {existing.id} was made by a different suite (or version of it) than the one given",
            hint="gate results of the same suite, or pass a model/prompt ref to evaluate it now",
        )
    return existing


def gate(
    store: Store,
    suite: EvalSuite,
    baseline: str,
    candidate: str,
    *,
    progress: Callable[[str, int, int], None] | None = None,
) -> GateReport:
    """Evaluate (or load) baseline and candidate on the suite and decide whether the candidate may ship.

    Args:
        store: The workspace store.
        suite: The suite; its `gate` section sets alpha, min_delta and the test.
        baseline: An eval result id, or a subject ref (model name for an endpoint, model or prompt ref).
        candidate: Same forms as `baseline`.
        progress: Called as (stage, done, total) while evaluating.

    Returns:
        The report; `passed` is False on a significant regression or a broken threshold.
    """
    base = _resolve(store, suite, baseline, progress)
    cand = _resolve(store, suite, candidate, progress)
    spec = suite.gate
    comparisons = compare_results(
        base,
        cand,
        method=spec.method,
        alpha=spec.alpha,
        min_delta=spec.min_delta,
        resamples=suite.resamples,
        seed=suite.seed,
        correction=spec.correction,
    )
    reasons = [
        f"{c.metric} regressed by {abs(c.test.delta):.4f} (adjusted p = {c.p_worse:.4f} < {spec.alpha})"
        for c in comparisons
        if c.regression
    ]
    reasons += [
        f"{name} = {agg.mean:.4f} misses its threshold {agg.threshold:g}"
        for name, agg in cand.aggregates.items()
        if not agg.passed and agg.threshold is not None
    ]
    notes = blind_spots(comparisons)
    return GateReport(not reasons, base, cand, comparisons, reasons, spec.alpha, spec.method, spec.correction, notes)
