"""Language id of a real-text corpus: the batch path against fastText's own predict, one text at a time.

`LanguageDetector.detect_many` hands fastText lid.176's samples to keel.curate._fasttext_batch (numpy, a batch
at a time); the peer is fastText's binding called per sample, as the detector did before (the plain path of
`_top`). Both read the same first 300 characters of each document of benchmarks/real_text_corpus.py, in
batches of 2,000 as the language step sees them; the process's answer cache is cleared before each run, so
each run predicts every distinct sample. Every answer is compared: `identical` must equal `documents`.

    python benchmarks/langid_batch.py [--corpus corpus.jsonl] [--limit 0] [--repeats 3]

Prints one JSON line: CPU seconds of each path (least over the repeats, alternating), the ratio, MB of text read
per CPU-second (of the documents' whole text, as the step's throughput is counted), and the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import keel.curate._langid as langid
from keel.curate._langid import LanguageDetector


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", help="a JSONL file with a `text` field (default: build the real-text corpus)")
    parser.add_argument("--limit", type=int, default=0, help="source documents when building the corpus (0: all)")
    parser.add_argument("--repeats", type=int, default=3, help="the least CPU time of this many runs is kept")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from real_text_corpus import corpus_texts  # type: ignore[import-not-found]

    texts = corpus_texts(args.corpus, args.limit)
    detector = LanguageDetector()
    model = detector._loaded()
    batches = [texts[at : at + 2000] for at in range(0, len(texts), 2000)]

    def batch_path() -> list[tuple[str, float]]:
        answers = []
        for batch in batches:
            codes, scores = detector.detect_many(batch)
            answers.extend(zip(codes, scores, strict=True))
        return answers

    def per_text_path() -> list[tuple[str, float]]:
        answers = []
        seen: dict[str, tuple[str, float]] = {}  # as the detector's answer cache, across batches
        for batch in batches:
            for text in batch:
                sample = text[: detector.max_chars]
                if sample not in seen:
                    seen[sample] = langid._top(model, sample) if langid._LETTER.search(sample) else ("und", 0.0)
                answers.append(seen[sample])
        return answers

    best = {"batch": float("inf"), "per_text": float("inf")}
    results = {}
    for _ in range(args.repeats):
        for name, run in (("batch", batch_path), ("per_text", per_text_path)):
            langid._ANSWERS.clear()
            started = time.process_time()
            results[name] = run()
            best[name] = min(best[name], time.process_time() - started)
    mb = sum(len(t.encode()) for t in texts) / 1e6
    identical = sum(a == b for a, b in zip(results["batch"], results["per_text"], strict=True))
    print(
        json.dumps(
            {
                "benchmark": "langid_batch",
                "documents": len(texts),
                "mb": round(mb, 2),
                "repeats": args.repeats,
                "cpu_s": {name: round(seconds, 3) for name, seconds in best.items()},
                "per_text_over_batch": round(best["per_text"] / best["batch"], 2),
                "mb_per_cpu_s": {name: round(mb / seconds, 1) for name, seconds in best.items()},
                "us_per_document": {name: round(seconds / len(texts) * 1e6, 1) for name, seconds in best.items()},
                "identical": identical,
                "load_average_1m": round(os.getloadavg()[0], 2),
            }
        )
    )


if __name__ == "__main__":
    main()
