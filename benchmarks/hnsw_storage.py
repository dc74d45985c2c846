"""HNSW graph and storage choices for serving: recall@10 against exact search and CPU per lone query, same vectors.

Compares, on the same vectors and the same 159 hand-written questions of benchmarks/data/hnsw_queries.txt
(embedded by MiniLM): the HNSW index Keel built for RAG serving before (`IndexHNSWFlat`, M 16,
efConstruction 64, fp32) and HNSW graphs with other M / efConstruction, storing vectors as fp32 or 8 bits a
dimension (`IndexHNSWSQ`, QT_8bit) whose candidates are re-ranked on the fp32 vectors as
`Retriever.nearest` does. The peer is exact search (`IndexFlatIP`) in the same run.

Vectors: `--corpus random` (default) is benchmarks/rag_serving.py's index: `--chunks` seeded random unit
vectors (HNSW's worst case); `--corpus real` is the python3-doc 200+300-character chunks whose MiniLM
vectors hnsw_recall_real.py (or rag_serving.py --embed-corpus) cached, a uniform sample of the 100,000.

CPU is `time.process_time()` over every question searched alone, twice, one FAISS thread.

    OMP_NUM_THREADS=1 python benchmarks/hnsw_storage.py [--corpus random|real] [--chunks 100000]
        [--graphs 16,64,fp32 32,128,sq8] [--efs 128 192 256 512]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

# This folder holds a `datasets.py`, which would shadow Hugging Face `datasets`.
HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]

import numpy as np  # noqa: E402

from keel.index import VectorParams, build_vectors, normalise, vector_search  # noqa: E402
from keel.index._embedding import SentenceTransformerEmbedder  # noqa: E402


def _questions(embedder: SentenceTransformerEmbedder) -> Any:
    text = (HERE / "data" / "hnsw_queries.txt").read_text()
    lines = [line.split("\t", 1) for line in text.splitlines() if line and not line.startswith("#")]
    return embedder.embed([q for kind, q in lines if kind in ("python", "offtopic")])


def _real(count: int, cache: Path, embedder: SentenceTransformerEmbedder) -> Any:
    import importlib.util

    spec = importlib.util.spec_from_file_location("hnsw_recall_real", HERE / "hnsw_recall_real.py")
    assert spec is not None and spec.loader is not None
    real = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(real)
    return real.cached_chunks(count, cache, embedder)[1]


def _recall(approx: Any, exact: Any) -> float:
    return float(np.mean([len(set(a) & set(e)) / len(e) for a, e in zip(approx, exact, strict=True)]))


def _searcher(index: Any, data: Any, storage: str, ef: int) -> Any:
    """One question's top 10 ids, as Keel's retriever searches (re-ranked on fp32 for sq8)."""

    def search(query: Any) -> Any:
        if storage == "fp32":
            return vector_search(index, query, 10, ef_search=ef)[1][0]
        found = vector_search(index, query, 20, ef_search=ef)[1][0]
        found = np.sort(found[found >= 0])
        return found[np.argsort(-(data[found] @ query[0]), kind="stable")[:10]]

    return search


def main() -> None:
    """Build each graph, measure each ef_search; one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", choices=["random", "real"], default="random")
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "keel-bench")
    parser.add_argument("--graphs", nargs="+", default=["16,64,fp32", "32,128,sq8"], help="M,efConstruction,storage")
    parser.add_argument("--efs", nargs="+", type=int, default=[128, 192, 224, 256, 512])
    args = parser.parse_args()
    import faiss  # type: ignore[import-untyped,unused-ignore]

    faiss.omp_set_num_threads(1)  # one query at a time, as a server answers them
    embedder = SentenceTransformerEmbedder()
    queries = _questions(embedder)
    if args.corpus == "random":  # exactly rag_serving.py's RandomCorpusEmbedder
        data = normalise(np.random.default_rng(0).standard_normal((args.chunks, 384)).astype(np.float32))
    else:
        data = _real(args.chunks, args.cache, embedder)
    exact = vector_search(build_vectors(data, VectorParams("flat")), queries, 10)[1]
    rows = []
    for graph in args.graphs:
        m, ef_construction, storage = graph.split(",")
        params = VectorParams("hnsw", int(m), int(ef_construction), storage=storage)  # type: ignore[arg-type]
        started = time.process_time()
        index = build_vectors(data, params)
        build_s = time.process_time() - started
        for ef in args.efs:
            search = _searcher(index, data, storage, ef)
            found = [search(q[None, :]) for q in queries]
            started = time.process_time()
            for _ in range(2):
                for q in queries:
                    search(q[None, :])
            cpu_ms = (time.process_time() - started) / (2 * len(queries)) * 1e3
            recall = round(_recall(found, exact), 4)
            rows.append({"graph": graph, "build_cpu_s": round(build_s, 1), "ef_search": ef, "recall_at_10": recall,
                         "cpu_ms_per_query": round(cpu_ms, 3)})  # fmt: skip
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    load = [round(x, 1) for x in os.getloadavg()]
    print(json.dumps({"benchmark": "hnsw_storage", "corpus": args.corpus, "vectors": len(data),
                      "queries": len(queries), "load_avg": load, "rows": rows}))  # fmt: skip


if __name__ == "__main__":
    main()
