"""HNSW recall@10 against exact search at the embedding model's dimension (384), by ef_search and query kind.

Vectors: N unit vectors in 384 dimensions (all-MiniLM-L6-v2's), drawn around 1,000 cluster
centres with noise comparable to the spread between centres (as benchmarks/index.py). Queries:

- `in_distribution`: drawn like the data (the case benchmarks/index.py measures);
- `other_clusters`: drawn around 200 centres that hold no data: a query about a topic the
  corpus does not cover, whose nearest neighbours are scattered (out of distribution);
- `random`: uniformly random directions (the hardest case: every vector is nearly equidistant).

For each N and each `ef_search` it prints recall@10 of the HNSW index keel builds (m = 16,
ef_construction = 64) against exact inner-product search, and the queries/s of both, batched
and one at a time; `choice` names the smallest ef_search with recall ≥ 0.95 on every query kind,
or null, and `default_ef_search` the one keel now picks for that size (`ef_search_for`). The
peer is exact search (`IndexFlatIP`) in the same run. One JSON line.

    python benchmarks/hnsw_recall.py [--sizes 20000 100000] [--queries 300]
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

from keel.index import VectorParams, build_vectors, ef_search_for, normalise, vector_search  # noqa: E402

DIM = 384
EFS = (40, 128, 256, 512, 1024, 2048)


def _clustered(n: int, centres: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    points = centres[rng.integers(0, len(centres), n)] + 0.5 * rng.normal(size=(n, centres.shape[1]))
    return normalise(points.astype(np.float32))


def _recall(approx: np.ndarray, exact: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(e)) / len(e) for a, e in zip(approx, exact, strict=True)]))


def _qps(index: object, queries: np.ndarray, single: int = 100) -> tuple[float, float]:
    started = time.perf_counter()
    vector_search(index, queries, 10)
    batched = len(queries) / (time.perf_counter() - started)
    started = time.perf_counter()
    for row in queries[:single]:
        vector_search(index, row[None, :], 10)
    return round(batched, 1), round(single / (time.perf_counter() - started), 1)


def measure(n: int, queries: int, seed: int = 0) -> dict[str, object]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(1_200, DIM))
    data = _clustered(n, centres[:1_000], rng)
    kinds = {
        "in_distribution": _clustered(queries, centres[:1_000], rng),
        "other_clusters": _clustered(queries, centres[1_000:], rng),
        "random": normalise(rng.normal(size=(queries, DIM)).astype(np.float32)),
    }
    flat = build_vectors(data, VectorParams("flat"))
    exact = {kind: vector_search(flat, q, 10)[1] for kind, q in kinds.items()}
    flat_batched, flat_single = _qps(flat, kinds["other_clusters"])
    started = time.perf_counter()
    hnsw = build_vectors(data, VectorParams("hnsw"))
    build_s = time.perf_counter() - started
    rows = []
    for ef in sorted({*EFS, ef_search_for(n)}):
        hnsw.hnsw.efSearch = ef
        recall = {kind: round(_recall(vector_search(hnsw, q, 10)[1], exact[kind]), 4) for kind, q in kinds.items()}
        batched, single = _qps(hnsw, kinds["other_clusters"])
        rows.append({"ef_search": ef, "recall_at_10": recall, "qps_batched": batched, "qps_single": single})
    good = [r["ef_search"] for r in rows if min(r["recall_at_10"].values()) >= 0.95]  # type: ignore[attr-defined]
    return {
        "vectors": n,
        "hnsw_build_s": round(build_s, 1),
        "exact_qps_batched": flat_batched,
        "exact_qps_single": flat_single,
        "by_ef_search": rows,
        "choice": good[0] if good else None,
        "default_ef_search": ef_search_for(n),
        "default_recall_at_10": next(r["recall_at_10"] for r in rows if r["ef_search"] == ef_search_for(n)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[20_000, 100_000])
    parser.add_argument("--queries", type=int, default=300)
    args = parser.parse_args()
    import faiss  # type: ignore[import-untyped,unused-ignore]

    cores = os.cpu_count() or 1
    faiss.omp_set_num_threads(cores)
    results = []
    for n in args.sizes:
        results.append(measure(n, args.queries))
        print(json.dumps({"partial": results[-1]}), file=sys.stderr, flush=True)
    print(json.dumps({"benchmark": "hnsw_recall", "dimension": DIM, "cores": cores, "sizes": results}))


if __name__ == "__main__":
    main()
