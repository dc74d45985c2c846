"""Agreement coefficients against textbook values computed by hand, and Cohen's kappa against scikit-learn."""

from __future__ import annotations

import random

import pytest

from keel.core.errors import InputError
from keel.evals._stats import cohen_kappa
from keel.label import fleiss_kappa, krippendorff_alpha

# Wikipedia's "Fleiss' kappa" worked example: 10 subjects, 14 raters, 5 categories; P̄ = 0.378, P̄e = 0.213, κ = 0.210.
FLEISS_TABLE = [
    [0, 0, 0, 0, 14],
    [0, 2, 6, 4, 2],
    [0, 0, 3, 5, 6],
    [0, 3, 9, 2, 0],
    [2, 2, 8, 1, 1],
    [7, 7, 0, 0, 0],
    [3, 2, 6, 3, 0],
    [2, 5, 3, 2, 2],
    [6, 5, 2, 1, 0],
    [0, 2, 2, 3, 7],
]

# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", example C: 4 observers, 12 units, missing values
# (None). Published: nominal 0.743, ordinal 0.815, interval 0.849.
OBSERVERS = [
    [1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],
    [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
    [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],
    [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None],
]


def units(observers: list[list[int | None]]) -> list[list[int]]:
    return [[o[u] for o in observers if o[u] is not None] for u in range(len(observers[0]))]  # type: ignore[misc]


def test_fleiss_kappa_matches_the_worked_example() -> None:
    assert fleiss_kappa(FLEISS_TABLE) == pytest.approx(0.2099, abs=5e-4)


def test_fleiss_kappa_refuses_unequal_rater_counts() -> None:
    with pytest.raises(InputError, match="same number"):
        fleiss_kappa([[2, 0], [1, 0]])


@pytest.mark.parametrize(("metric", "expected"), [("nominal", 0.743), ("ordinal", 0.815), ("interval", 0.849)])
def test_krippendorff_alpha_matches_krippendorff_2011_example_c(metric: str, expected: float) -> None:
    assert krippendorff_alpha(units(OBSERVERS), metric) == pytest.approx(expected, abs=5e-4)  # type: ignore[arg-type]


def test_krippendorff_alpha_binary_two_observers_example_b() -> None:
    # Krippendorff (2011) example B: two observers, ten units, binary data; alpha = 0.095.
    a = [0, 1, 0, 0, 0, 0, 0, 0, 1, 0]
    b = [1, 1, 1, 0, 0, 1, 0, 0, 0, 0]
    assert krippendorff_alpha([[x, y] for x, y in zip(a, b, strict=True)]) == pytest.approx(0.095, abs=5e-4)


def test_cohen_kappa_matches_the_worked_example_and_scikit_learn() -> None:
    # Wikipedia's "Cohen's kappa" example: 20 yes/yes, 5 yes/no, 10 no/yes, 15 no/no; kappa = 0.4.
    a = ["yes"] * 25 + ["no"] * 25
    b = ["yes"] * 20 + ["no"] * 5 + ["yes"] * 10 + ["no"] * 15
    assert cohen_kappa(a, b) == pytest.approx(0.4)
    metrics = pytest.importorskip("sklearn.metrics")
    rng = random.Random(7)
    for _ in range(20):
        x = [rng.choice("abc") for _ in range(40)]
        y = [v if rng.random() < 0.6 else rng.choice("abc") for v in x]
        assert cohen_kappa(x, y) == pytest.approx(metrics.cohen_kappa_score(x, y))


def test_perfect_and_single_valued_agreement_is_one() -> None:
    assert krippendorff_alpha([["a", "a"], ["b", "b"]]) == 1.0
    assert krippendorff_alpha([["a", "a"], ["a", "a"]]) == 1.0
    with pytest.raises(InputError, match="two or more"):
        krippendorff_alpha([["a"], ["b"]])
