"""The semantic cache on the demo's questions: hit rate, false-hit rate, and lookup cost at 100,000 entries.

Cached: the demo's training questions (two wordings of five facts about each of its 12 products,
120 questions). Asked: hand-written paraphrases of the four questions the demo sends through the
gateway (each must reuse the answer of a cached question about the same product and fact) and
hand-written near-misses (same products and words, other questions; none may reuse an answer),
both in `benchmarks/data/semantic_cache.json`, embedded by the offline MiniLM as the gateway does.

- `by_threshold`: for each cosine threshold, the share of paraphrases answered from the right entry
  (`hit_rate`), answered from a wrong one (`wrong_hit_rate`) and the share of near-misses answered
  at all (`false_hit_rate`); `chosen` is the threshold the docs recommend (picked on this very set:
  an optimistic estimate, there is no held-out set).
- `lookup`: one `SemanticCache.get` in a partition of 100,000 entries (the 120 questions plus
  99,880 synthetic unit vectors around 1,000 centres), CPU and wall ms per lookup, against exact
  search (`faiss.IndexFlatIP`, the peer) on the same vectors in the same run, and whether the
  hits and false hits at the chosen threshold are the same as in the small cache.

    python benchmarks/semantic_cache.py [--entries 100000] [--lookups 2000]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

# This folder holds a `datasets.py`, which would shadow Hugging Face `datasets`.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import numpy as np  # noqa: E402

from keel.index import SentenceTransformerEmbedder  # noqa: E402
from keel.pipeline._sample_corpus import _TRAIN_QUESTIONS, PRODUCTS  # noqa: E402
from keel.serve._semantic import SemanticCache  # noqa: E402

DATA = Path(__file__).parent / "data" / "semantic_cache.json"
THRESHOLDS = (0.85, 0.88, 0.9, 0.91, 0.92, 0.93, 0.94, 0.95)
CHOSEN = 0.92


def _rates(cache: SemanticCache, paraphrases: list[tuple[str, np.ndarray]], misses: np.ndarray, t: float) -> dict:
    right = wrong = 0
    for label, vector in paraphrases:
        hit = cache.get("p", vector, t)
        if hit is not None:
            right += hit.answer["label"] == label
            wrong += hit.answer["label"] != label
    false = sum(cache.get("p", v, t) is not None for v in misses)
    n = len(paraphrases)
    return {"threshold": t, "hit_rate": round(right / n, 3), "wrong_hit_rate": round(wrong / n, 3),
            "false_hit_rate": round(false / len(misses), 3)}  # fmt: skip


def _synthetic(n: int, dim: int, rng: np.random.Generator) -> np.ndarray:
    centres = rng.standard_normal((1000, dim)).astype(np.float32)
    vectors = centres[rng.integers(0, 1000, n)] + 0.6 * rng.standard_normal((n, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--lookups", type=int, default=2000)
    args = parser.parse_args()
    import faiss

    data = json.loads(DATA.read_text())
    embedder = SentenceTransformerEmbedder()
    cached = [(f"{p.slug}/{fact}", q.format(name=p.name)) for p in PRODUCTS for fact, qs in _TRAIN_QUESTIONS.items()
              for q in qs]  # fmt: skip
    asked = [(label, q) for label, qs in data["paraphrases"].items() for q in qs]
    embedder.embed(["warm up"])
    # What a request adds before the cache answers (or misses): one question embedded alone, with torch's
    # default threads and with one (on a loaded machine, idle OpenMP threads spin and burn CPU).
    import torch

    embed: dict[str, dict[str, float]] = {}
    default_threads = torch.get_num_threads()
    for threads in (default_threads, 1):
        torch.set_num_threads(threads)
        started, wall = time.process_time(), time.perf_counter()
        for _, q in asked[:20]:
            embedder.embed([q])
        embed[f"threads_{threads}"] = {"cpu_ms": round((time.process_time() - started) / 20 * 1000, 2),
                                       "wall_ms": round((time.perf_counter() - wall) / 20 * 1000, 2)}  # fmt: skip
    torch.set_num_threads(default_threads)
    cached_v = embedder.embed([q for _, q in cached])
    asked_v = embedder.embed([q for _, q in asked])
    misses_v = embedder.embed(data["near_misses"])
    paraphrases = [(label, v) for (label, _), v in zip(asked, asked_v, strict=True)]

    small = SemanticCache(cached_v.shape[1], max_entries=10 * args.entries)
    for (label, q), v in zip(cached, cached_v, strict=True):
        small.put("p", v, {"label": label, "question": q}, ttl_s=3600)
    by_threshold = [_rates(small, paraphrases, misses_v, t) for t in THRESHOLDS]

    rng = np.random.default_rng(0)
    filler = _synthetic(args.entries - len(cached), cached_v.shape[1], rng)
    big = SemanticCache(cached_v.shape[1], max_entries=10 * args.entries)
    started = time.perf_counter()
    for (label, q), v in zip(cached, cached_v, strict=True):
        big.put("p", v, {"label": label, "question": q}, ttl_s=3600)
    for i, v in enumerate(filler):
        big.put("p", v, {"label": f"synthetic/{i}"}, ttl_s=3600)
    build_s = time.perf_counter() - started
    at_scale = _rates(big, paraphrases, misses_v, CHOSEN)

    # Lookups: the real questions, and noisy copies of stored vectors (a near-duplicate question each).
    stored = np.vstack([cached_v, filler])
    picks = rng.integers(0, len(stored), args.lookups)
    queries = stored[picks] + 0.25 * rng.standard_normal((args.lookups, stored.shape[1])).astype(np.float32) / np.sqrt(
        stored.shape[1]
    )
    queries = np.vstack([asked_v, misses_v, queries / np.linalg.norm(queries, axis=1, keepdims=True)])
    flat = faiss.IndexFlatIP(stored.shape[1])
    flat.add(stored)

    def timed(lookup: object) -> tuple[float, float]:
        cpu, wall = time.process_time(), time.perf_counter()
        for q in queries:
            lookup(q)  # type: ignore[operator]
        n = len(queries)
        return (time.process_time() - cpu) / n * 1000, (time.perf_counter() - wall) / n * 1000

    hnsw_cpu, hnsw_wall = timed(lambda q: big.get("p", q, 0.0))
    flat_cpu, flat_wall = timed(lambda q: flat.search(q.reshape(1, -1), 1))
    index = big._partitions["p"].index  # the partition's HNSW index, to compare its top-1 with exact search
    real = len(asked_v) + len(misses_v)
    same = index.search(queries, 1)[1][:, 0] == flat.search(queries, 1)[1][:, 0]
    chosen = next(r for r in by_threshold if r["threshold"] == CHOSEN)
    print(json.dumps({
        "benchmark": "semantic_cache", "cached_questions": len(cached), "paraphrases": len(asked),
        "near_misses": len(misses_v), "chosen": chosen, "by_threshold": by_threshold,
        "embed_one_question": embed,
        "lookup": {"entries": len(big), "lookups": len(queries), "cpu_ms": round(hnsw_cpu, 4),
                   "wall_ms": round(hnsw_wall, 4), "exact_cpu_ms": round(flat_cpu, 4),
                   "exact_wall_ms": round(flat_wall, 4), "cpu_ratio_exact_over_hnsw": round(flat_cpu / hnsw_cpu, 1),
                   "same_top1_as_exact_real": round(float(same[:real].mean()), 3),
                   "same_top1_as_exact_near_duplicates": round(float(same[real:].mean()), 3),
                   "build_s": round(build_s, 1),
                   "at_scale_chosen": at_scale},
        "threads": os.cpu_count(), "load": os.getloadavg()[0],
    }))  # fmt: skip


if __name__ == "__main__":
    main()
