"""Drift detection: power and false-alarm rate on planted shifts, and the time to test 100,000 traces.

Reference traffic is the demo's product questions (keel.pipeline._sample_corpus, 180 distinct);
off-topic traffic is sentences from the Python documentation (python3-doc's HTML). Each trial draws
a reference window and a current window of n queries (with replacement) where a fraction of the
current one is off-topic, and runs Keel's whole drift report on them (`compare_observations`:
prompt length, PII, language, MMD on MiniLM embeddings; Bonferroni at alpha 0.01). Embeddings and
languages are computed once per distinct text and looked up during trials (the report embeds
each distinct text once too). The domain-classifier alternative (logistic regression on the same
embeddings, cross-fitted AUC tested with Mann-Whitney) runs on the same windows for comparison.

    python benchmarks/drift.py [--trials 200] [--null-trials 1000] [--sizes 100,500,2000] [--shifts 0,0.1,0.25,0.5]
                               [--traces 100000]

Prints one JSON line per (size, shift) and one for the timing; the machine was shared while measured,
so CPU seconds are the figure to compare, wall seconds are shown too.
"""

from __future__ import annotations

import argparse
import glob
import html
import json
import random
import re
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[0] = str(ROOT / "src")  # not benchmarks/: its datasets.py would shadow the datasets package

from keel.monitor import DriftOptions, Observation, compare_observations  # noqa: E402
from keel.pipeline._sample_corpus import _EVAL_QUESTIONS, _TRAIN_QUESTIONS, PRODUCTS  # noqa: E402

ALPHA = 0.01


def product_questions() -> list[str]:
    templates = [q for pair in _TRAIN_QUESTIONS.values() for q in pair] + list(_EVAL_QUESTIONS.values())
    return [t.format(name=p.name) for p in PRODUCTS for t in templates]


def off_topic(limit: int = 1500) -> list[str]:
    sentences: list[str] = []
    for path in sorted(glob.glob("/usr/share/doc/python3*/html/tutorial/*.html")) + sorted(
        glob.glob("/usr/share/doc/python3*/html/howto/*.html")
    ):
        text = html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", Path(path).read_text(encoding="utf-8"))))
        sentences += [s.strip() for s in re.split(r"(?<=[.?!])\s+", text) if 6 <= len(s.split()) <= 25]
    if not sentences:
        sys.exit("python3-doc is not installed: apt-get install python3-doc")
    return sorted(set(sentences))[:limit]


def classifier_p(x: np.ndarray, y: np.ndarray, seed: int) -> float:
    """Domain classifier: out-of-fold probabilities of 'current', tested current > reference (Mann-Whitney)."""
    from scipy import stats
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_predict

    data = np.vstack([x, y])
    labels = np.concatenate([np.zeros(len(x)), np.ones(len(y))])
    scores = cross_val_predict(LogisticRegression(max_iter=200), data, labels, cv=5, method="predict_proba")[:, 1]
    return float(stats.mannwhitneyu(scores[labels == 1], scores[labels == 0], alternative="greater").pvalue)


def power(args: argparse.Namespace, reference: list[str], other: list[str]) -> None:
    from keel.curate import LanguageDetector
    from keel.index import SentenceTransformerEmbedder

    texts = sorted(set(reference) | set(other))
    started = time.process_time()
    vectors = SentenceTransformerEmbedder().embed(texts)
    languages = LanguageDetector().detect_many(texts)[0]
    row = {t: i for i, t in enumerate(texts)}
    lang = dict(zip(texts, languages, strict=True))
    prep_cpu = time.process_time() - started
    options = DriftOptions(
        alpha=ALPHA,
        embed=lambda batch: vectors[[row[t] for t in batch]],
        language=lambda batch: [lang[t] for t in batch],
    )
    for n in args.sizes:
        for shift in args.shifts:
            rng = random.Random(f"{n}-{shift}")
            alarms = embedding_alarms = classifier_alarms = 0
            by_feature: dict[str, int] = {}
            trials = args.null_trials if shift == 0 and args.null_trials else args.trials
            cpu = time.process_time()
            for trial in range(trials):
                ref = [rng.choice(reference) for _ in range(n)]
                cur = [rng.choice(other) if rng.random() < shift else rng.choice(reference) for _ in range(n)]
                options.seed = trial
                features, _ = compare_observations([Observation(prompt=t) for t in ref],
                                                   [Observation(prompt=t) for t in cur], options)  # fmt: skip
                alarms += any(f.drifted for f in features)
                for f in features:
                    by_feature[f.feature] = by_feature.get(f.feature, 0) + f.drifted
                embedding_alarms += next(f for f in features if f.feature == "query_embedding").p_value < ALPHA
                if n <= 500 and trial < args.classifier_trials:
                    x, y = vectors[[row[t] for t in ref]], vectors[[row[t] for t in cur]]
                    classifier_alarms += classifier_p(x, y, trial) < ALPHA
            line = {
                "benchmark": "drift_power", "window": n, "off_topic_share": shift, "trials": trials,
                "alpha": ALPHA, "report_alarm_rate": alarms / trials, "mmd_alarm_rate": embedding_alarms / trials,
                "alarms_by_feature": by_feature,
                "cpu_s_per_report": (time.process_time() - cpu) / trials, "prep_cpu_s": round(prep_cpu, 1),
            }  # fmt: skip
            if n <= 500 and args.classifier_trials:
                judged = min(trials, args.classifier_trials)
                line["classifier_alarm_rate"] = classifier_alarms / judged
                line["classifier_trials"] = judged
            print(json.dumps(line), flush=True)


def timing(count: int, reference: list[str], other: list[str]) -> None:
    import torch

    from keel.core.ids import new_ulid
    from keel.monitor import Trace, TraceWriter, detect_drift
    from keel.store import init_workspace
    from keel.store.schema import trace_contents

    torch.set_num_threads(1)  # the machine is shared; one thread is what CPU seconds measure fairly
    rng = random.Random(0)
    with tempfile.TemporaryDirectory() as folder:
        store = init_workspace(Path(folder) / "ws")
        now = store.clock()
        writer = TraceWriter(store)
        for side, hours in (("baseline", 36), ("window", 12)):
            batch, contents = [], []
            for i in range(count):
                text = rng.choice(other) if side == "window" and i % 4 == 0 else rng.choice(reference)
                trace = Trace(id=new_ulid(), at=now - timedelta(hours=hours) + timedelta(milliseconds=100 * i),
                              deployment="chat", operation="chat", status=200, latency_ms=10.0,
                              tokens_in=len(text.split()), tokens_out=12)  # fmt: skip
                batch.append(trace)
                request = json.dumps({"messages": [{"role": "user", "content": text}]})
                contents.append({"trace_id": trace.id, "request": request, "response": "It ships in two days."})
                if len(batch) == 5000:
                    writer.write(batch)
                    with store.db.write() as conn:
                        conn.execute(trace_contents.insert(), contents)
                    batch, contents = [], []
            if batch:
                writer.write(batch)
                with store.db.write() as conn:
                    conn.execute(trace_contents.insert(), contents)
        runs = []
        for label in ("cold", "warm"):  # cold: loads the embedder and language model in this process
            wall, cpu = time.perf_counter(), time.process_time()
            report = detect_drift(store, "chat", window=timedelta(days=1), baseline_window=timedelta(days=1))
            runs.append({"run": label, "wall_s": round(time.perf_counter() - wall, 2),
                         "cpu_s": round(time.process_time() - cpu, 2)})  # fmt: skip
        store.close()
    print(json.dumps({
        "benchmark": "drift_time", "traces_in_window": count, "traces_in_baseline": count, "runs": runs,
        "target_s": 10, "drifted": sorted(f.feature for f in report.features if f.drifted),
        "features": len(report.features), "note": "machine shared by other jobs: compare cpu_s",
    }))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument(
        "--null-trials",
        type=int,
        default=1000,
        help="trials of unshifted windows (false alarms need more than power: 0 means --trials)",
    )
    parser.add_argument("--classifier-trials", type=int, default=200)
    parser.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")], default=[100, 500, 2000])
    parser.add_argument("--shifts", type=lambda s: [float(x) for x in s.split(",")], default=[0.0, 0.1, 0.25, 0.5])
    parser.add_argument("--traces", type=int, default=100_000, help="traces per side for the timing (0: skip)")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    reference, other = product_questions(), off_topic()
    if args.traces:
        timing(args.traces, reference, other)
    if args.trials:
        power(args, reference, other)


if __name__ == "__main__":
    main()
