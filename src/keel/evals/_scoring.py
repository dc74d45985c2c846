"""Score a subject's outputs on a suite's cases: per-case values, then aggregates with bootstrap CIs.

Pure with respect to the store: it takes cases, outputs, a judge and (for perplexity) the subject,
and returns numbers. Everything random is seeded by the suite's seed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from keel.core.errors import ConfigError
from keel.evals._metrics import bleu, chrf, embed, exact_match, rouge
from keel.evals._offline_judge import JudgeScore
from keel.evals._probes import is_refusal, toxicity
from keel.evals._stats import bootstrap_ci
from keel.evals._suite import EvalCase, MetricSpec

__all__ = ["CaseScore", "Judge", "MetricAggregate", "aggregate", "score_outputs"]

_NEEDS_EXPECTED = frozenset({"exact_match", "bleu", "chrf", "rouge1", "rouge2", "rougeL", "embedding_similarity"})


class Judge(Protocol):
    """What scores the RAG triad: `OfflineJudge` or `LLMJudge`."""

    name: str

    def groundedness(self, answer: str, contexts: Sequence[str]) -> JudgeScore:
        """How much of the answer the contexts support."""
        ...

    def context_relevance(self, question: str, contexts: Sequence[str]) -> JudgeScore:
        """How relevant the contexts are to the question."""
        ...

    def answer_relevance(self, question: str, answer: str) -> JudgeScore:
        """How directly the answer addresses the question."""
        ...

    def close(self) -> None:
        """Release the judge's connections."""
        ...


@dataclass(frozen=True, slots=True)
class CaseScore:
    """One metric's value for one case, with the judge's evidence when a judge produced it."""

    value: float
    details: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class MetricAggregate:
    """A metric over all cases: mean, bootstrap CI, threshold and whether it was met."""

    metric: str
    mean: float
    low: float
    high: float
    n: int
    threshold: float | None
    higher_is_better: bool
    passed: bool

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "metric": self.metric,
            "mean": self.mean,
            "low": self.low,
            "high": self.high,
            "n": self.n,
            "threshold": self.threshold,
            "higher_is_better": self.higher_is_better,
            "passed": self.passed,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> MetricAggregate:
        """Rebuild from `to_json` output."""
        return cls(**data)


def _check_columns(cases: Sequence[EvalCase], metrics: Sequence[MetricSpec]) -> None:
    problems = []
    for spec in metrics:
        if spec.name in _NEEDS_EXPECTED | {"perplexity"}:
            missing = [c.id for c in cases if c.expected is None]
            if missing:
                problems.append(f"{spec.name} needs `expected` on every case; missing on {missing[:5]}")
        if spec.name == "accuracy":
            missing = [c.id for c in cases if c.labels is None and c.expected is None]
            if missing:
                problems.append(f"accuracy needs `labels` (or `expected`) on every case; missing on {missing[:5]}")
    if problems:
        raise ConfigError("the suite's cases lack columns its metrics need:\n  " + "\n  ".join(problems))


def _judged(score: JudgeScore) -> CaseScore:
    return CaseScore(score.score, {"judge": score.judge, **score.details})


def _one_metric(
    name: str,
    cases: Sequence[EvalCase],
    outputs: Sequence[str],
    judge: Judge,
    perplexities: Callable[[Sequence[str], Sequence[str]], list[float] | None] | None,
) -> list[CaseScore]:
    pairs = list(zip(cases, outputs, strict=True))
    ref = [c.expected or "" for c in cases]
    simple: dict[str, Callable[[EvalCase, str], float]] = {
        "exact_match": lambda c, o: exact_match(o, c.expected or ""),
        "accuracy": lambda c, o: exact_match(o, c.labels if c.labels is not None else c.expected or ""),
        "bleu": lambda c, o: bleu(o, c.expected or ""),
        "chrf": lambda c, o: chrf(o, c.expected or ""),
        "toxicity": lambda c, o: toxicity(o),
        "refusal": lambda c, o: is_refusal(o),
    }
    if name in simple:
        return [CaseScore(simple[name](c, o)) for c, o in pairs]
    if name in ("rouge1", "rouge2", "rougeL"):
        return [CaseScore(rouge(o, c.expected or "")[name]) for c, o in pairs]  # type: ignore[index]
    if name == "embedding_similarity":
        vectors = embed([*outputs, *ref])
        sims = np.sum(vectors[: len(outputs)] * vectors[len(outputs) :], axis=1)
        return [CaseScore(float(s)) for s in sims]
    if name == "perplexity":
        values = perplexities([c.input for c in cases], ref) if perplexities else None
        if values is None:
            raise ConfigError(
                "perplexity needs a `model` subject (or a prompt sent to one); endpoints give no likelihoods"
            )
        return [CaseScore(v) for v in values]
    if name == "groundedness":
        return [_judged(judge.groundedness(o, c.contexts)) for c, o in pairs]
    if name == "context_relevance":
        return [_judged(judge.context_relevance(c.input, c.contexts)) for c in cases]
    if name == "answer_relevance":
        return [_judged(judge.answer_relevance(c.input, o)) for c, o in pairs]
    raise ConfigError(f"unknown metric {name!r}")


def score_outputs(
    cases: Sequence[EvalCase],
    outputs: Sequence[str],
    metrics: Sequence[MetricSpec],
    judge: Judge,
    *,
    perplexities: Callable[[Sequence[str], Sequence[str]], list[float] | None] | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, list[CaseScore]]:
    """Score every case on every metric.

    Args:
        cases: The suite's cases.
        outputs: The subject's output for each case, in order.
        metrics: The metrics to compute.
        judge: Scores groundedness, context relevance and answer relevance.
        perplexities: Per-case perplexity of `expected` given `input` under the subject; None if it has none.
        progress: Called with each metric's name before it is computed.

    Returns:
        Per metric, one score per case.

    Raises:
        ConfigError: A metric needs a column the cases lack, or a subject that was not given.
    """
    _check_columns(cases, metrics)
    prefetch = getattr(judge, "prefetch", None)
    if prefetch is not None:
        prefetch([c.input for c in cases], list(outputs), [c.contexts for c in cases], {s.name for s in metrics})
    scores: dict[str, list[CaseScore]] = {}
    for spec in metrics:
        if progress:
            progress(spec.name)
        scores[spec.name] = _one_metric(spec.name, cases, outputs, judge, perplexities)
    return scores


def aggregate(
    scores: dict[str, list[CaseScore]],
    metrics: Sequence[MetricSpec],
    *,
    seed: int,
    confidence: float = 0.95,
    resamples: int = 2000,
) -> dict[str, MetricAggregate]:
    """Mean of each metric with a seeded bootstrap CI, and whether its threshold is met."""
    result: dict[str, MetricAggregate] = {}
    for spec in metrics:
        values = [s.value for s in scores[spec.name]]
        ci = bootstrap_ci(values, confidence=confidence, resamples=resamples, seed=seed)
        result[spec.name] = MetricAggregate(
            spec.name, ci.value, ci.low, ci.high, ci.n, spec.threshold, spec.higher_is_better, spec.meets(ci.value)
        )
    return result
