"""Retrieval index benchmark: approximate (HNSW) vs exact vector search, and embedding throughput.

Part 1: 100,000 synthetic 384-dim unit vectors in 1,000 clusters (so neighbours are meaningful)
and 1,000 queries from the same distribution: recall@10 of the HNSW index keel builds against
exact search, and queries/s of both (batched, FAISS threads = cores). Targets: recall@10 >= 0.95,
>= 2,000 queries/s on 2 cores.
Part 2: 1,000 real-text chunks cut from this repository's Markdown and Python docstrings, embedded
with the offline MiniLM model (chunks/s), indexed and queried end to end (hybrid queries/s).
Prints one JSON line.

    .venv/bin/python benchmarks/index.py [--vectors 100000] [--real-chunks 1000]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

# This folder holds a `datasets.py`, which would shadow Hugging Face `datasets` (sentence-transformers imports it).
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402

from keel.index import (  # noqa: E402
    ChunkSettings,
    SentenceTransformerEmbedder,
    VectorParams,
    build_vectors,
    chunk_text,
    normalise,
    vector_search,
)

ROOT = Path(__file__).resolve().parents[1]


def clustered(
    n: int, dim: int, clusters: int, rng: np.random.Generator, centres: np.ndarray | None = None
) -> np.ndarray:
    if centres is None:
        centres = rng.normal(size=(clusters, dim))
    # Noise comparable to the spread between centres: clusters overlap, so the search is not trivial.
    points = centres[rng.integers(0, len(centres), n)] + 0.5 * rng.normal(size=(n, dim))
    return normalise(points.astype(np.float32))


def recall_at(approx: np.ndarray, exact: np.ndarray, k: int) -> float:
    return float(np.mean([len(set(a[:k]) & set(e[:k])) / k for a, e in zip(approx, exact, strict=True)]))


def synthetic(n: int, queries: int, dim: int = 384) -> dict[str, object]:
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(1_000, dim))
    data = clustered(n, dim, 1_000, rng, centres)
    probe = clustered(queries, dim, 1_000, rng, centres)
    flat = build_vectors(data, VectorParams("flat"))
    started = time.perf_counter()
    _, exact = vector_search(flat, probe, 10)
    exact_qps = queries / (time.perf_counter() - started)
    started = time.perf_counter()
    params = VectorParams.for_size(n)
    hnsw = build_vectors(data, params)
    build_s = time.perf_counter() - started
    vector_search(hnsw, probe[:50], 10)  # warm up
    started = time.perf_counter()
    _, approx = vector_search(hnsw, probe, 10)
    approx_qps = queries / (time.perf_counter() - started)
    started = time.perf_counter()
    for row in probe[:200]:  # one query at a time, as a server answering single requests does
        vector_search(hnsw, row[None, :], 10)
    single_qps = 200 / (time.perf_counter() - started)
    return {
        "vectors": n,
        "kind": params.kind,
        "ef_search": params.ef_search,
        "recall_at_10": round(recall_at(approx, exact, 10), 4),
        "approx_qps_batched": round(approx_qps, 1),
        "approx_qps_single": round(single_qps, 1),
        "exact_qps_batched": round(exact_qps, 1),
        "speedup_vs_exact": round(approx_qps / exact_qps, 2),
        "hnsw_build_s": round(build_s, 2),
    }


def real_texts(limit: int) -> list[str]:
    """Chunks of ~400 characters from the repository's docs and source, until `limit` are collected."""
    files = sorted([*ROOT.glob("*.md"), *ROOT.glob("docs/*.md"), *ROOT.glob("src/keel/**/*.py")])
    chunks: list[str] = []
    for file in files:
        text = file.read_text(encoding="utf-8", errors="replace")
        chunks.extend(s.text for s in chunk_text(text, ChunkSettings(size=400, overlap=40)) if len(s.text) > 80)
        if len(chunks) >= limit:
            break
    return chunks[:limit]


def real(limit: int) -> dict[str, object]:
    from keel.index import build_index, open_index
    from keel.store import init_workspace

    texts = real_texts(limit)
    embedder = SentenceTransformerEmbedder()
    embedder.embed(texts[:8])  # load the model outside the timing
    started = time.perf_counter()
    vectors = embedder.embed(texts)
    embed_s = time.perf_counter() - started
    exact = build_vectors(vectors, VectorParams("flat"))
    hnsw = build_vectors(vectors, VectorParams("hnsw"))
    probe = vectors[:200]
    recall = recall_at(vector_search(hnsw, probe, 10)[1], vector_search(exact, probe, 10)[1], 10)
    with tempfile.TemporaryDirectory() as tmp:
        store = init_workspace(Path(tmp) / "ws")
        table = pa.table({"id": [f"c{i}" for i in range(len(texts))], "text": texts})
        started = time.perf_counter()
        build = build_index(store, "bench", table, chunking=ChunkSettings(size=1000, overlap=0), model=embedder)
        build_s = time.perf_counter() - started
        retriever = open_index(store, "bench", embedder=embedder)
        queries = [t[:60] for t in texts[::10]]
        started = time.perf_counter()
        for q in queries:
            retriever.search(q, k=10)
        hybrid_qps = len(queries) / (time.perf_counter() - started)
        store.close()
    return {
        "chunks": len(texts),
        "embed_chunks_per_s": round(len(texts) / embed_s, 1),
        "hnsw_recall_at_10": round(recall, 4),
        "index_build_s": round(build_s, 2),
        "indexed_chunks": build.index.num_chunks,
        "hybrid_qps_end_to_end": round(hybrid_qps, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vectors", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=1_000)
    parser.add_argument("--real-chunks", type=int, default=1_000)
    args = parser.parse_args()
    import faiss  # type: ignore[import-untyped,unused-ignore]
    import torch

    cores = os.cpu_count() or 1
    faiss.omp_set_num_threads(cores)
    torch.set_num_threads(cores)
    approx = synthetic(args.vectors, args.queries)
    print(json.dumps({"partial": "synthetic", **approx}), file=sys.stderr, flush=True)  # the slow part is done
    result = {
        "benchmark": "index",
        "cores": cores,
        "synthetic": approx,
        "real_text": real(args.real_chunks),
        "targets": {"recall_at_10": 0.95, "approx_qps": 2000},
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
