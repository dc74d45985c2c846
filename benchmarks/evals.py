"""Eval throughput and the offline judge's accuracy, in one JSON line.

Times the lexical metrics (exact match, sentence BLEU and chrF from sacrebleu, ROUGE-1/2/L from
rouge-score) over synthetic answer/reference pairs, the offline RAG groundedness judge over the
labelled set in tests/data/evals/groundedness.jsonl (embedding model already loaded; a fresh judge,
so nothing is cached between cases of different contexts), and a seeded bootstrap CI. The judge's
accuracy on the labelled set (answer counted as grounded iff every claim is supported) is reported
overall and per kind of unsupported answer.

    python benchmarks/evals.py [--pairs 2000] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

# benchmarks/datasets.py would shadow the `datasets` package sentence-transformers imports.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from keel.evals import OfflineJudge, bleu, bootstrap_ci, chrf, exact_match, rouge  # noqa: E402
from keel.evals._metrics import embed  # noqa: E402

LABELLED = Path(__file__).resolve().parents[1] / "tests" / "data" / "evals" / "groundedness.jsonl"


def _pairs(cases: list[dict[str, Any]], n: int, seed: int = 0) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    texts = [c["answer"] for c in cases] + [ctx for c in cases for ctx in c["contexts"]]
    return [(rng.choice(texts), rng.choice(texts)) for _ in range(n)]


def _rate(n: int, seconds: float) -> float:
    return round(n / seconds, 1) if seconds > 0 else float("inf")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    cases = [json.loads(line) for line in LABELLED.read_text().splitlines() if line.strip()]
    pairs = _pairs(cases, args.pairs)
    result: dict[str, Any] = {"benchmark": "evals", "pairs": len(pairs), "torch_threads": args.threads}

    for name, fn in {
        "exact_match": lambda p, r: exact_match(p, r),
        "bleu": lambda p, r: bleu(p, r),
        "chrf": lambda p, r: chrf(p, r),
        "rouge": lambda p, r: rouge(p, r)["rougeL"],
    }.items():
        fn(*pairs[0])  # warm imports and caches
        start = time.perf_counter()
        for p, r in pairs:
            fn(p, r)
        result[f"{name}_cases_per_s"] = _rate(len(pairs), time.perf_counter() - start)

    start = time.perf_counter()
    embed(["warm up the embedding model"])
    result["embedding_model_load_s"] = round(time.perf_counter() - start, 2)

    # Case by case and batched (prefetch), alternated twice on the same cases; fresh judges, no shared cache.
    single_s, batched_s = [], []
    for _ in range(2):
        judge = OfflineJudge()
        start = time.perf_counter()
        verdicts = [judge.groundedness(c["answer"], c["contexts"]).score == 1.0 for c in cases]
        single_s.append(time.perf_counter() - start)
        batched = OfflineJudge()
        start = time.perf_counter()
        batched.prefetch(
            [c["question"] for c in cases],
            [c["answer"] for c in cases],
            [c["contexts"] for c in cases],
            {"groundedness"},
        )
        batched_verdicts = [batched.groundedness(c["answer"], c["contexts"]).score == 1.0 for c in cases]
        batched_s.append(time.perf_counter() - start)
        assert batched_verdicts == verdicts, "batched and case-by-case judging must agree"
    result["offline_groundedness_cases_per_s"] = _rate(len(cases), min(single_s))
    result["offline_groundedness_batched_cases_per_s"] = _rate(len(cases), min(batched_s))
    result["batched_speedup"] = round(min(single_s) / min(batched_s), 2)
    start = time.perf_counter()
    for c in cases:
        judge.answer_relevance(c["question"], c["answer"])
        judge.context_relevance(c["question"], c["contexts"])
    result["offline_relevance_pair_cases_per_s"] = _rate(len(cases), time.perf_counter() - start)

    truth = [c["label"] == "supported" for c in cases]
    correct = [v == t for v, t in zip(verdicts, truth, strict=True)]
    result["judge_labelled_cases"] = len(cases)
    result["judge_accuracy"] = round(sum(correct) / len(cases), 4)
    result["judge_supported_recall"] = round(
        sum(v for v, t in zip(verdicts, truth, strict=True) if t) / max(1, sum(truth)), 4
    )
    result["judge_unsupported_recall"] = round(
        sum(not v for v, t in zip(verdicts, truth, strict=True) if not t) / max(1, len(truth) - sum(truth)), 4
    )
    by_kind: Counter[str] = Counter()
    right_by_kind: Counter[str] = Counter()
    for case, ok in zip(cases, correct, strict=True):
        by_kind[case["kind"]] += 1
        right_by_kind[case["kind"]] += ok
    result["judge_accuracy_by_kind"] = {k: round(right_by_kind[k] / by_kind[k], 3) for k in sorted(by_kind)}

    values = [random.Random(1).random() for _ in range(1000)]
    start = time.perf_counter()
    bootstrap_ci(values, resamples=2000, seed=0)
    result["bootstrap_1000_cases_2000_resamples_ms"] = round((time.perf_counter() - start) * 1000, 1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
