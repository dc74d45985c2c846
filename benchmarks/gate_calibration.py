"""The eval gate's calibration and power on simulated suites, in one JSON line.

Simulates suites of five correlated metrics (0/1 exact match, continuous rougeL and embedding
similarity, a judge score in {0, 0.5, 1}, a lower-is-better 0/1 refusal rate; the simulator is
tests/unit/evals/gate_simulation.py) and reports:

- the false "worse" rate of each paired test on the two continuous metrics with no real
  difference (nominal: alpha for the one-sided test, alpha / 2 for a two-sided p-value read in
  one direction), at n = 20 and 60;
- the family-wise false-failure rate of the gate over the five metrics, with and without Holm;
- the power to catch a rougeL loss of 0.04 and of 0.08 at n = 60, and the minimum detectable
  effect the gate reports for rougeL at that size.

The peer is the paired bootstrap this gate used before (two-sided p < alpha per metric, no
correction), measured in the same run on the same suites.

    python benchmarks/gate_calibration.py [--suites 1000]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "unit" / "evals"))

from gate_simulation import HIGHER_IS_BETTER, simulate  # noqa: E402

from keel.evals import holm_adjust, minimum_detectable_effect, paired_bootstrap, sign_flip_p_values  # noqa: E402

ALPHA = 0.05


def _permutation(base: np.ndarray, cand: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(p_worse one-sided, two-sided p, worse?) per suite and metric, from the sign-flip test."""
    suites, metrics, n = base.shape
    diffs = (cand - base).reshape(suites * metrics, n)
    two, less, greater = sign_flip_p_values(diffs, resamples=2000, seed=1)
    up = np.tile(np.array(HIGHER_IS_BETTER), suites)
    worse = np.where(up, -diffs.mean(axis=1), diffs.mean(axis=1)) > 0
    shape = (suites, metrics)
    return np.where(up, less, greater).reshape(shape), two.reshape(shape), worse.reshape(shape)


def _bootstrap(base: np.ndarray, cand: np.ndarray) -> np.ndarray:
    """Two-sided paired-bootstrap p per suite and metric (the old gate's test)."""
    suites, metrics, _ = base.shape
    return np.array(
        [[paired_bootstrap(base[s, m], cand[s, m], seed=1).p_value for m in range(metrics)] for s in range(suites)]
    )


def _rate(p: np.ndarray, worse: np.ndarray) -> float:
    return round(float(np.mean((p < ALPHA) & worse)), 4)


def _gate_fails(p_worse: np.ndarray, worse: np.ndarray) -> float:
    adjusted = np.array([holm_adjust(list(row)) for row in p_worse])
    return float(np.mean(np.any((adjusted < ALPHA) & worse, axis=1)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suites", type=int, default=1000)
    args = parser.parse_args()
    started = time.perf_counter()
    result: dict[str, object] = {"suites": args.suites, "metrics": 5, "alpha": ALPHA}
    for n in (20, 60):
        base, cand = simulate(args.suites, n, seed=n)
        p_worse, two, worse = _permutation(base, cand)
        boot = _bootstrap(base, cand)
        cont = slice(1, 3)  # rougeL and embedding similarity: continuous, where ties do not make tests conservative
        result[f"n{n}"] = {
            "continuous_false_worse_permutation_one_sided": _rate(p_worse[:, cont], worse[:, cont]),
            "continuous_false_worse_permutation_two_sided": _rate(two[:, cont], worse[:, cont]),
            "continuous_false_worse_bootstrap_two_sided": _rate(boot[:, cont], worse[:, cont]),
            "gate_false_failures_holm": round(_gate_fails(p_worse, worse), 4),
            "gate_false_failures_no_correction": round(float(np.mean(np.any((p_worse < ALPHA) & worse, axis=1))), 4),
            "old_gate_false_failures_bootstrap": round(float(np.mean(np.any((boot < ALPHA) & worse, axis=1))), 4),
        }
    for shift in (0.04, 0.08):
        base, cand = simulate(args.suites, 60, shift=shift, seed=99)
        p_worse, _, worse = _permutation(base, cand)
        result[f"power_rougeL_loss_{shift}_n60"] = round(_gate_fails(p_worse, worse), 4)
    sd = float(np.std(cand[:, 1] - base[:, 1], axis=1, ddof=1).mean())
    result["mde_rougeL_n60"] = round(minimum_detectable_effect(sd, 60, alpha=ALPHA / 5), 4)
    result["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
