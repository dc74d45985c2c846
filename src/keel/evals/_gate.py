"""Compare two eval results case by case, and gate a candidate against a baseline for CI.

A comparison pairs the two results' per-case scores (the same suite on the same cases) and runs
a paired bootstrap or permutation test per metric. The gate fails when a metric got worse with
statistical significance (p < alpha, by more than `min_delta`) or when the candidate misses a
threshold; it writes the same verdict as Markdown for people and JSON for machines.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from keel.core.errors import InputError, NotFoundError
from keel.evals._results import EvalResult, get_result, run_suite
from keel.evals._stats import PairedTest, paired_bootstrap, paired_permutation
from keel.evals._suite import EndpointSubject, EvalSuite, ModelSubject, PromptSubject
from keel.store import Store

__all__ = ["GateReport", "MetricComparison", "compare_results", "gate", "subject_for_ref"]

Method = Literal["paired-bootstrap", "paired-permutation"]


@dataclass(frozen=True, slots=True)
class MetricComparison:
    """One metric compared: the paired test, and whether the candidate is significantly worse or better."""

    metric: str
    test: PairedTest
    higher_is_better: bool
    regression: bool
    improvement: bool

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "metric": self.metric,
            **self.test.to_json(),
            "higher_is_better": self.higher_is_better,
            "regression": self.regression,
            "improvement": self.improvement,
        }


def compare_results(
    baseline: EvalResult,
    candidate: EvalResult,
    *,
    method: Method = "paired-bootstrap",
    alpha: float = 0.05,
    min_delta: float = 0.0,
    resamples: int = 2000,
    seed: int = 0,
) -> list[MetricComparison]:
    """Paired test per metric the two results share.

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
    comparisons = []
    for metric, agg in baseline.aggregates.items():
        if metric not in candidate.aggregates:
            continue
        result = test(baseline.values(metric), candidate.values(metric), resamples=resamples, seed=seed)
        worse = -result.delta if agg.higher_is_better else result.delta
        significant = result.p_value < alpha
        comparisons.append(
            MetricComparison(
                metric=metric,
                test=result,
                higher_is_better=agg.higher_is_better,
                regression=significant and worse > min_delta,
                improvement=significant and worse < 0,
            )
        )
    return comparisons


@dataclass
class GateReport:
    """The gate's verdict, the comparisons behind it, and why it failed if it did."""

    passed: bool
    baseline: EvalResult
    candidate: EvalResult
    comparisons: list[MetricComparison]
    reasons: list[str] = field(default_factory=list)
    alpha: float = 0.05
    method: str = "paired-bootstrap"

    def to_json(self) -> dict[str, Any]:
        """The machine-readable report."""
        return {
            "passed": self.passed,
            "reasons": self.reasons,
            "alpha": self.alpha,
            "method": self.method,
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
            f"- test: {self.method}, alpha {self.alpha}, {self.candidate.num_cases} paired cases",
            "",
            "| metric | baseline | candidate | Δ (95% CI) | p | threshold | verdict |",
            "|---|---|---|---|---|---|---|",
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
                f"{t.delta:+.4f} ({t.low:+.4f}, {t.high:+.4f}) | {t.p_value:.4f} | {bound} | {status} |"
            )
        if self.reasons:
            lines += ["", "Reasons:", *[f"- {r}" for r in self.reasons]]
        return "\n".join(lines) + "\n"


def subject_for_ref(suite: EvalSuite, ref: str) -> EvalSuite:
    """The suite with its subject pointed at `ref`: a model name (endpoint), a model ref, or a prompt ref."""
    subject = suite.subject
    new: EndpointSubject | ModelSubject | PromptSubject
    if isinstance(subject, PromptSubject):
        new = subject.model_copy(update={"prompt": ref})
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
    )
    reasons = [
        f"{c.metric} regressed by {abs(c.test.delta):.4f} (p = {c.test.p_value:.4f} < {spec.alpha})"
        for c in comparisons
        if c.regression
    ]
    reasons += [
        f"{name} = {agg.mean:.4f} misses its threshold {agg.threshold:g}"
        for name, agg in cand.aggregates.items()
        if not agg.passed and agg.threshold is not None
    ]
    return GateReport(not reasons, base, cand, comparisons, reasons, spec.alpha, spec.method)
