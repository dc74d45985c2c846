from __future__ import annotations

import numpy as np
import pytest

from keel.core.errors import InputError
from keel.evals import bootstrap_ci, cohen_kappa, paired_bootstrap, paired_permutation


def test_bootstrap_ci_is_seeded_and_brackets_the_mean() -> None:
    rng = np.random.default_rng(1)
    values = rng.normal(0.7, 0.1, size=200)
    a = bootstrap_ci(values, seed=7)
    b = bootstrap_ci(values, seed=7)
    assert a == b
    assert a.value == pytest.approx(float(values.mean()))
    assert a.low < a.value < a.high
    # The normal-theory 95% interval, mean ± 1.96·sd/√n, is what the bootstrap should approximate.
    half = 1.96 * values.std(ddof=1) / np.sqrt(values.size)
    assert a.low == pytest.approx(a.value - half, abs=0.004)
    assert a.high == pytest.approx(a.value + half, abs=0.004)
    assert bootstrap_ci(values, seed=8) != a


def test_bootstrap_ci_of_a_constant_is_a_point_and_custom_statistics_work() -> None:
    ci = bootstrap_ci([1.0] * 10)
    assert (ci.value, ci.low, ci.high, ci.n) == (1.0, 1.0, 1.0, 10)
    median = bootstrap_ci([1, 2, 3, 4, 100], statistic=lambda a: float(np.median(a)), resamples=200)
    assert median.value == 3.0
    with pytest.raises(InputError):
        bootstrap_ci([])
    with pytest.raises(InputError, match="finite"):
        bootstrap_ci([1.0, float("nan")])


def test_paired_tests_find_a_real_difference_and_none_between_equals() -> None:
    baseline = [1.0] * 20 + [0.0] * 10
    worse = [1.0] * 8 + [0.0] * 22
    for test in (paired_bootstrap, paired_permutation):
        result = test(baseline, worse, seed=3)
        assert result.delta == pytest.approx(-12 / 30)
        assert result.p_value < 0.01
        assert result.high < 0
        same = test(baseline, baseline, seed=3)
        assert same.delta == 0.0 and same.p_value == 1.0
        assert test(baseline, worse, seed=3) == result  # deterministic
    with pytest.raises(InputError, match="same cases"):
        paired_bootstrap([1, 0], [1, 0, 1])


def test_exact_permutation_p_value_by_enumeration() -> None:
    # Differences (+1, +1, +1): of the 8 sign patterns, 2 have |mean| >= 1 (all + and all -): p = 2/8.
    assert paired_permutation([0, 0, 0], [1, 1, 1]).p_value == pytest.approx(0.25)


def test_cohen_kappa_textbook_example() -> None:
    # Wikipedia's worked example: 50 items, 20 yes/yes, 5 yes/no, 10 no/yes, 15 no/no -> kappa 0.4.
    a = ["yes"] * 25 + ["no"] * 25
    b = ["yes"] * 20 + ["no"] * 5 + ["yes"] * 10 + ["no"] * 15
    assert cohen_kappa(a, b) == pytest.approx(0.4)
    assert cohen_kappa([1, 1, 1], [1, 1, 1]) == 1.0
    assert cohen_kappa([1, 0, 1, 0], [0, 1, 0, 1]) == pytest.approx(-1.0)
    with pytest.raises(InputError):
        cohen_kappa([1], [1, 0])
