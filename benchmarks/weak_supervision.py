"""Weak supervision and active learning on the ticket-intent task built from the demo corpus.

1. A classifier (logistic regression over MiniLM embeddings) trained on 50 gold labels + the label model's weak
   labels on the rest of the pool, vs the same classifier on the 50 gold labels alone (the peer), on a held-out
   test split; plus the label model's and majority vote's own accuracy on the pool (gold used only to score).
2. Labels needed to reach `--target` test accuracy: `uncertainty` and `diversity` order vs `random` order (the
   peer), the same held-out split and initial labels per seed.
3. With `--parts snorkel`: Keel's Dawid–Skene label model vs Snorkel 0.10's `LabelModel` (the peer) on the same
   label matrices: accuracy against gold and CPU seconds to fit. Snorkel is not a Keel dependency; install it
   apart, e.g. `pip install --no-deps --target /tmp/snorkel snorkel==0.10.0 munkres` and add that folder to
   PYTHONPATH (it imports with Keel's numpy, scipy and torch).

Every figure is a mean over `--seeds` seeds (per-seed values included). The labelling functions are the ones
the tests use (`tests/unit/label/ticket_lfs.yaml`, keyword and regex rules). CPU seconds include children.

    OMP_NUM_THREADS=1 python benchmarks/weak_supervision.py [--rows 3000] [--seeds 5] [--labels 50] [--target 0.95]
        [--parts weak,active,snorkel]

Prints JSON lines (one per comparison).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

# This folder holds a `datasets.py`, which would shadow Hugging Face `datasets` (sentence-transformers imports it).
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import numpy as np  # noqa: E402

from keel.label.active import embed, labels_needed, rank, simulate  # noqa: E402
from keel.label.weak import apply_lfs, combine, load_lfs  # noqa: E402
from keel.pipeline._ticket_intents import ticket_intents  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
LFS = ROOT / "tests" / "unit" / "label" / "ticket_lfs.yaml"


def _cpu() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _fit_score(x: np.ndarray, y: list[str], w: np.ndarray | None, x_test: np.ndarray, y_test: list[str]) -> float:
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=10.0, max_iter=2000, random_state=0).fit(x, y, sample_weight=w)
    return float(np.mean(model.predict(x_test) == np.asarray(y_test)))


def _weak_vs_gold(texts: list[str], gold: list[str], x: np.ndarray, labels: int, seed: int) -> dict[str, float]:
    order = np.random.default_rng(seed).permutation(len(texts))
    n_test = len(texts) // 3
    test, pool = order[:n_test], order[n_test:]
    labelled, rest = pool[:labels], pool[labels:]
    loaded = load_lfs(LFS)
    matrix = apply_lfs(loaded.lfs, [{"text": texts[i]} for i in rest], loaded.classes)
    weak = combine(matrix)
    scores = weak.accuracy([gold[i] for i in rest])
    covered = [k for k, lab in enumerate(weak.labels) if lab is not None]
    prob = weak.probs.max(axis=1)
    x_test, y_test = x[test], [gold[i] for i in test]
    gold_only = _fit_score(x[labelled], [gold[i] for i in labelled], None, x_test, y_test)
    mixed_x = np.concatenate([x[labelled], x[rest[covered]]])
    mixed_y = [gold[i] for i in labelled] + [str(weak.labels[k]) for k in covered]
    weights = np.concatenate([np.ones(len(labelled)), prob[covered]])  # a weak row counts by its probability
    with_weak = _fit_score(mixed_x, mixed_y, weights, x_test, y_test)
    return {"gold_only": gold_only, "gold_plus_weak": with_weak, "label_model": scores["label_model"],
            "majority_vote": scores["majority_vote"], "coverage": len(covered) / len(rest)}  # fmt: skip


def _vs_snorkel(rows: int, seeds: int) -> dict[str, Any]:
    import warnings

    import torch
    from snorkel.labeling.model import LabelModel

    loaded = load_lfs(LFS)
    runs = []
    for seed in range(seeds):
        examples = ticket_intents(rows, seed=seed)
        matrix = apply_lfs(loaded.lfs, [{"text": e.text} for e in examples], loaded.classes)
        gold = np.array([matrix.classes.index(e.intent) for e in examples])
        cpu = time.process_time()
        weak = combine(matrix)
        keel_cpu = time.process_time() - cpu
        keel = np.array([matrix.classes.index(lab) if lab else -1 for lab in weak.labels])
        torch.manual_seed(seed)
        cpu = time.process_time()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = LabelModel(cardinality=len(matrix.classes), verbose=False)
            model.fit(matrix.votes.astype(np.int64), n_epochs=500, seed=seed, progress_bar=False)
        snorkel_cpu = time.process_time() - cpu
        snorkel = model.predict(matrix.votes.astype(np.int64), tie_break_policy="abstain")
        runs.append({"keel": float(np.mean(keel == gold)), "snorkel": float(np.mean(snorkel == gold)),
                     "majority_vote": weak.accuracy([e.intent for e in examples])["majority_vote"],
                     "keel_fit_cpu_s": round(keel_cpu, 3), "snorkel_fit_cpu_s": round(snorkel_cpu, 3)})  # fmt: skip
    return {"accuracy_keel_dawid_skene": _mean(runs, "keel"), "peer": "snorkel 0.10 LabelModel",
            "accuracy_snorkel": _mean(runs, "snorkel"), "accuracy_majority_vote": _mean(runs, "majority_vote"),
            "fit_cpu_s_keel": _mean(runs, "keel_fit_cpu_s"), "fit_cpu_s_snorkel": _mean(runs, "snorkel_fit_cpu_s"),
            "per_seed": runs}  # fmt: skip


def _mean(rows: list[dict[str, float]], key: str) -> float:
    return round(float(np.mean([r[key] for r in rows])), 4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=3000)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--labels", type=int, default=50)
    parser.add_argument("--target", type=float, default=0.95)
    parser.add_argument("--budget", type=int, default=400, help="Most labels a simulation may spend.")
    parser.add_argument("--parts", default="weak,active", help="Comma-separated: weak, active, snorkel.")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    import torch

    torch.set_num_threads(1)
    if "snorkel" in parts:
        cpu, wall = _cpu(), time.perf_counter()
        line = _vs_snorkel(args.rows, args.seeds)
        print(json.dumps({"benchmark": "label_model", "task": "ticket_intents", "rows": args.rows, "seeds": args.seeds,
                          **line, "cpu_s": round(_cpu() - cpu, 2), "wall_s": round(time.perf_counter() - wall, 2),
                          "load_1m": round(os.getloadavg()[0], 2)}))  # fmt: skip
    if not parts & {"weak", "active"}:
        return
    examples = ticket_intents(args.rows, seed=0)
    texts, gold = [e.text for e in examples], [e.intent for e in examples]
    cpu, wall = _cpu(), time.perf_counter()
    x = embed(texts)
    embed_cpu, embed_wall = _cpu() - cpu, time.perf_counter() - wall
    common: dict[str, Any] = {"task": "ticket_intents", "rows": args.rows, "seeds": args.seeds,
                              "embed_cpu_s": round(embed_cpu, 2), "embed_wall_s": round(embed_wall, 2)}  # fmt: skip

    if "weak" in parts:
        _print_weak(texts, gold, x, args, common)
    if "active" in parts:
        _print_active(texts, gold, x, args, common)


def _print_weak(texts: list[str], gold: list[str], x: np.ndarray, args: Any, common: dict[str, Any]) -> None:
    cpu, wall = _cpu(), time.perf_counter()
    runs = [_weak_vs_gold(texts, gold, x, args.labels, seed) for seed in range(args.seeds)]
    print(json.dumps({
        "benchmark": "weak_supervision", **common, "gold_labels": args.labels,
        "accuracy_gold_plus_weak": _mean(runs, "gold_plus_weak"), "peer": f"{args.labels} gold labels alone",
        "accuracy_gold_only": _mean(runs, "gold_only"),
        "ratio": round(_mean(runs, "gold_plus_weak") / _mean(runs, "gold_only"), 3),
        "label_model_accuracy": _mean(runs, "label_model"), "majority_vote_accuracy": _mean(runs, "majority_vote"),
        "weak_coverage": _mean(runs, "coverage"), "per_seed": runs,
        "cpu_s": round(_cpu() - cpu, 2), "wall_s": round(time.perf_counter() - wall, 2),
        "load_1m": round(os.getloadavg()[0], 2),
    }))  # fmt: skip


def _print_active(texts: list[str], gold: list[str], x: np.ndarray, args: Any, common: dict[str, Any]) -> None:
    cpu, wall = _cpu(), time.perf_counter()
    results = {
        strategy: [
            simulate(
                texts, gold, strategy=strategy, target=args.target, seed=seed, embeddings=x, max_labels=args.budget
            )
            for seed in range(args.seeds)
        ]  # fmt: skip
        for strategy in ("random", "uncertainty", "diversity")
    }
    needed = labels_needed(results, args.budget)
    intents = len(set(gold))

    def to_cover(order: list[int]) -> int:  # picks until every intent has been seen once (cold start)
        seen: set[str] = set()
        for n, i in enumerate(order, 1):
            seen.add(gold[i])
            if len(seen) == intents:
                return n
        return len(order)

    cover = {s: [to_cover(rank(texts, strategy=s, embeddings=x, seed=seed)) for seed in range(args.seeds)]
             for s in ("random", "diversity")}  # fmt: skip
    print(json.dumps({
        "benchmark": "active_learning", **common, "target_accuracy": args.target, "budget": args.budget,
        "labels_to_target": needed, "peer": "random",
        "ratio_random_over_uncertainty": round(needed["random"] / needed["uncertainty"], 3),
        "ratio_random_over_diversity": round(needed["random"] / needed["diversity"], 3),
        "per_seed": {s: [r.labels_to_target for r in rs] for s, rs in results.items()},
        "picks_to_see_every_intent": cover,
        "cpu_s": round(_cpu() - cpu, 2), "wall_s": round(time.perf_counter() - wall, 2),
        "load_1m": round(os.getloadavg()[0], 2),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
