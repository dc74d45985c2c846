"""CPU seconds of each per-shard step of the full default recipe on real text, in one process.

The engine's report times steps by the wall clock, which on a shared machine says more about the load than
about the step. This applies the recipe's per-shard steps (normalize, language, quality, pii; the two dedup
steps are global and left out, so later steps see a little more text than in the recipe) to shards of
2,000 documents of benchmarks/real_text_corpus.py, one step after another with each step's drops removed,
and times every `apply` with `time.process_time`. Language answers cached in the process are cleared before
each repeat, so every repeat pays fastText's predictions; what a process pays once (ftfy's import, compiling
phonenumbers' patterns, ~0.1-0.3 CPU-s) falls in the first repeat, so the least of two or more leaves it out.

    python benchmarks/curation_step_cpu.py [--corpus corpus.jsonl] [--limit 0] [--repeats 3]

Prints one JSON line: per step, the least CPU seconds over the repeats and MB of its input per CPU-second.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa

from keel.curate import build_steps
from keel.data import records_to_table
from keel.data._records import make_record

SPECS = [
    ("normalize", {}),
    ("language", {"languages": ["en"], "min_score": 0.5}),
    ("quality", {"preset": "documents"}),
    ("pii", {"index_subjects": False}),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", help="a JSONL file with a `text` field (default: build the real-text corpus)")
    parser.add_argument("--limit", type=int, default=0, help="source documents when building the corpus (0: all)")
    parser.add_argument("--repeats", type=int, default=3, help="the least CPU time of this many runs is kept")
    args = parser.parse_args()
    import keel.curate._langid as langid

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from real_text_corpus import corpus_texts  # type: ignore[import-not-found]

    texts = corpus_texts(args.corpus, args.limit)
    now = datetime(2026, 1, 1, tzinfo=UTC)
    shards = [
        records_to_table(make_record(t, f"file:///{i}", i, b"", now) for i, t in enumerate(texts[s : s + 2000], s))
        for s in range(0, len(texts), 2000)
    ]
    best: dict[str, float] = {}
    mb_in: dict[str, float] = {}
    for _ in range(args.repeats):
        langid._ANSWERS.clear()  # each repeat predicts every sample again
        steps = build_steps(SPECS)
        cpu = dict.fromkeys((step.name for step in steps), 0.0)
        size = dict.fromkeys(cpu, 0.0)
        for shard in shards:
            table = shard
            for step in steps:
                size[step.name] += sum(len(t.encode()) for t in table.column("text").to_pylist()) / 1e6
                started = time.process_time()
                result = step.apply(table)
                cpu[step.name] += time.process_time() - started
                reasons = result.drop_reasons
                table = result.table if reasons is None else result.table.filter(pa.array([r is None for r in reasons]))
        for name, seconds in cpu.items():
            best[name] = min(best.get(name, float("inf")), seconds)
        mb_in = size
    print(
        json.dumps(
            {
                "benchmark": "curation_step_cpu",
                "documents": len(texts),
                "repeats": args.repeats,
                "mb": round(sum(len(t.encode()) for t in texts) / 1e6, 2),
                "cpu_s": {name: round(seconds, 3) for name, seconds in best.items()},
                "mb_per_cpu_s": {name: round(mb_in[name] / seconds, 1) for name, seconds in best.items() if seconds},
                "load_average_1m": round(os.getloadavg()[0], 2),
            }
        )
    )


if __name__ == "__main__":
    main()
