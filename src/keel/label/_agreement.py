"""Inter-annotator agreement: Cohen's kappa per pair, Fleiss' kappa, Krippendorff's alpha, per-class confusion.

Cohen's kappa is `keel.evals.cohen_kappa` (tests check it against scikit-learn's). Fleiss' kappa and
Krippendorff's alpha are written here: statsmodels and the `krippendorff` package are not dependencies,
and each is a few lines of counting; tests check them against the textbook examples (Fleiss' kappa on
Wikipedia's 10 × 14 table, Krippendorff's 2011 worked examples with missing values).

Answers agree when their canonical values are equal: multi-label sets and span lists as wholes, free
text exactly. Ratings also get Krippendorff's alpha with the interval metric.
"""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from keel.core.errors import InputError
from keel.core.ids import canonical_json
from keel.evals._stats import cohen_kappa
from keel.label._queue import Queue, list_labels
from keel.store import Store

__all__ = ["AgreementReport", "agreement", "fleiss_kappa", "krippendorff_alpha"]

Metric = Literal["nominal", "ordinal", "interval"]


def fleiss_kappa(counts: Sequence[Sequence[int]]) -> float:
    """Fleiss' kappa of `counts[item][category]`: how many raters put each item in each category.

    Every item must have the same number of ratings (two or more).

    Examples:
        >>> round(fleiss_kappa([[2, 0], [0, 2], [1, 1]]), 4)
        0.3333
    """
    if not counts:
        raise InputError("expected at least one rated item to compute Fleiss' kappa; got none")
    raters = {sum(row) for row in counts}
    if len(raters) != 1 or min(raters) < 2:
        raise InputError(f"expected every item rated by the same number (>= 2) of raters; got {sorted(raters)}")
    n, items = raters.pop(), len(counts)
    p_items = [(sum(c * c for c in row) - n) / (n * (n - 1)) for row in counts]
    p_bar = sum(p_items) / items
    shares = [sum(row[j] for row in counts) / (items * n) for j in range(len(counts[0]))]
    p_e = sum(p * p for p in shares)
    if p_e >= 1.0:
        return 1.0  # every rating in one category: no disagreement was possible
    return (p_bar - p_e) / (1 - p_e)


def _delta(metric: Metric, values: list[Any], totals: dict[Any, float]) -> Any:
    if metric == "nominal":
        return lambda a, b: 0.0 if a == b else 1.0
    if metric == "interval":
        return lambda a, b: float(a - b) ** 2
    order = sorted(values)
    rank = {v: i for i, v in enumerate(order)}

    def ordinal(a: Any, b: Any) -> float:
        low, high = sorted((rank[a], rank[b]))
        between = sum(totals[order[g]] for g in range(low, high + 1))
        return (between - (totals[a] + totals[b]) / 2) ** 2

    return ordinal


def krippendorff_alpha(units: Sequence[Sequence[Hashable]], metric: Metric = "nominal") -> float:
    """Krippendorff's alpha over units, each the values its raters gave (missing ratings simply absent).

    Units with fewer than two values are not pairable and are left out, as the coefficient defines.

    Examples:
        >>> round(krippendorff_alpha([["a", "a"], ["b", "b"], ["a", "b"]]), 4)
        0.4444
    """
    coincidence: defaultdict[tuple[Any, Any], float] = defaultdict(float)
    for unit in units:
        m = len(unit)
        if m < 2:
            continue
        for i, j in itertools.permutations(range(m), 2):
            coincidence[(unit[i], unit[j])] += 1 / (m - 1)
    totals: defaultdict[Any, float] = defaultdict(float)
    for (c, _), weight in coincidence.items():
        totals[c] += weight
    n = sum(totals.values())
    if n <= 1:
        raise InputError("expected at least one item with two or more ratings to compute Krippendorff's alpha")
    delta = _delta(metric, list(totals), totals)
    observed = sum(w * delta(c, k) for (c, k), w in coincidence.items())
    expected = sum(totals[c] * totals[k] * delta(c, k) for c in totals for k in totals)
    if expected == 0:
        return 1.0  # one value throughout: no disagreement was possible
    return float(1 - (n - 1) * observed / expected)


@dataclass(frozen=True, slots=True)
class AgreementReport:
    """Agreement among a queue's annotators on the items two or more of them labelled."""

    queue: str
    kind: str
    annotators: list[str]
    items: int
    pairwise: list[dict[str, Any]]
    cohen_kappa: float | None
    fleiss_kappa: dict[str, Any] | None
    krippendorff_alpha: dict[str, Any] | None
    categories: list[str] = field(default_factory=list)
    confusion: dict[str, Any] | None = None
    per_class: dict[str, dict[str, float]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {"queue": self.queue, "kind": self.kind, "annotators": self.annotators, "items": self.items,
                "pairwise": self.pairwise, "cohen_kappa": self.cohen_kappa, "fleiss_kappa": self.fleiss_kappa,
                "krippendorff_alpha": self.krippendorff_alpha, "categories": self.categories,
                "confusion": self.confusion, "per_class": self.per_class}  # fmt: skip


def _category(value: Any) -> str:
    return value if isinstance(value, str) else canonical_json(value)


def _coincidence(by_item: dict[int, dict[str, str]], categories: list[str]) -> list[list[float]]:
    """Krippendorff's coincidence matrix: each item's ordered pairs of answers, weighted 1/(raters - 1)."""
    index = {c: i for i, c in enumerate(categories)}
    matrix = [[0.0] * len(categories) for _ in categories]
    for answers in by_item.values():
        values = list(answers.values())
        for i, j in itertools.permutations(range(len(values)), 2):
            matrix[index[values[i]]][index[values[j]]] += 1 / (len(values) - 1)
    return [[round(v, 6) for v in row] for row in matrix]


def _confusion(by_item: dict[int, dict[str, str]], annotators: list[str], categories: list[str]) -> dict[str, Any]:
    """Two annotators: rows are the first's answers, columns the second's. More: the coincidence matrix."""
    if len(annotators) != 2:
        return {"kind": "coincidence", "matrix": _coincidence(by_item, categories)}
    index = {c: i for i, c in enumerate(categories)}
    matrix = [[0] * len(categories) for _ in categories]
    first, second = annotators
    for answers in by_item.values():
        if first in answers and second in answers:
            matrix[index[answers[first]]][index[answers[second]]] += 1
    return {"kind": "pair", "rows": first, "columns": second, "matrix": matrix}


def agreement(store: Store, queue: Queue) -> AgreementReport:
    """Agreement among the annotators of `queue`, on the items labelled by two or more of them.

    Raises:
        InputError: No item has two labels yet.

    Examples:
        >>> agreement(store, get_queue(store, "tickets-1")).krippendorff_alpha  # doctest: +SKIP
        {'value': 0.74, 'metric': 'nominal', 'items': 40}
    """
    by_item: dict[int, dict[str, str]] = {}
    raw: dict[int, dict[str, Any]] = {}
    for label in list_labels(store, queue):
        if label.status == "labelled":
            by_item.setdefault(label.position, {})[label.annotator] = _category(label.value)
            raw.setdefault(label.position, {})[label.annotator] = label.value
    shared = {p: a for p, a in by_item.items() if len(a) >= 2}
    if not shared:
        raise InputError(
            f"no item of queue {queue.name!r} has labels from two annotators yet",
            hint="make the queue with --overlap 2 (or more) and have several people label it",
        )
    annotators = sorted({a for answers in shared.values() for a in answers})
    pairwise: list[dict[str, Any]] = []
    for a, b in itertools.combinations(annotators, 2):
        both = [p for p, answers in shared.items() if a in answers and b in answers]
        if both:
            kappa = cohen_kappa([shared[p][a] for p in both], [shared[p][b] for p in both])
            agreed = sum(shared[p][a] == shared[p][b] for p in both) / len(both)
            pairwise.append({"a": a, "b": b, "items": len(both), "kappa": kappa, "observed": agreed})
    counts = Counter(len(answers) for answers in shared.values())
    raters, _ = max(counts.items(), key=lambda kv: (kv[1], kv[0]))
    categories = sorted({c for answers in shared.values() for c in answers.values()})
    fleiss = None
    if len(annotators) >= 3:
        rows = [[list(answers.values()).count(c) for c in categories] for answers in shared.values()
                if len(answers) == raters]  # fmt: skip
        fleiss = {"value": fleiss_kappa(rows), "items": len(rows), "raters": raters}
    alpha: dict[str, Any] = {
        "value": krippendorff_alpha([list(answers.values()) for answers in shared.values()]),
        "metric": "nominal",
        "items": len(shared),
    }
    if queue.schema.kind == "rating":
        numbers = [[float(v) for v in raw[p].values()] for p in shared]
        alpha["interval"] = krippendorff_alpha(numbers, "interval")
    confusion = _confusion(shared, annotators, categories)
    # Per class: of the answers in class c that were paired, the share paired with c (coincidence o_cc / n_c).
    coincidence = _coincidence(shared, categories)
    per_class = {c: {"agreement": coincidence[i][i] / sum(coincidence[i]) if sum(coincidence[i]) else 0.0,
                     "values": round(sum(coincidence[i]), 6)} for i, c in enumerate(categories)}  # fmt: skip
    cohen: float | None = float(pairwise[0]["kappa"]) if len(annotators) == 2 and pairwise else None
    return AgreementReport(queue.name, queue.schema.kind, annotators, len(shared), pairwise, cohen, fleiss, alpha,
                           categories, confusion, per_class)  # fmt: skip
