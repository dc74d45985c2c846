"""Query encoders for RAG routes: the same MiniLM in torch and in ONNX Runtime (fp32, int8), same run.

Runtimes: `torch`, `onnx` (fp32), `onnx-int8` (block-wise 8-bit MatMulNBits, as `load_query_encoder`
makes it) and, as the peer it replaced, `onnx-int8-per-tensor` (onnxruntime's `quantize_dynamic` with
per-tensor int8 weights, the former `onnx-int8`). For each, measured alternately round by round on one
thread (process CPU time): CPU per lone query (and its ratio to fp32 ONNX's in the same rounds), and of
an ONNX lone query the part outside the session (`session.run` alone on ready inputs, and the model's
tokenisation into the session's inputs alone), and per query in a batch of 16 (the same question 16 times, as
benchmarks/rag_serving.py sends, and 16 different ones, padded). Against torch fp32 (what embedded
the index's chunks): the largest difference of any vector component and the smallest cosine over the
159 hand-written questions of benchmarks/data/hnsw_queries.txt, and what that does to retrieval over
real chunks whose vectors torch made: python3-doc cut at 200+300 characters, the sample
hnsw_recall_real.py cached (run `python benchmarks/hnsw_recall_real.py --chunk-sizes 200+300
--max-chunks 100000 --max-minutes M` first): top-10 overlap of exact search with torch's exact top 10,
recall@10 of HNSW at `--ef-search` against torch's exact top 10 (python and off-topic questions
together), and against the runtime's own exact top 10 (what the index loses, apart from what the
encoder moved).

    python benchmarks/query_encoders.py [--rounds 3] [--ef-search 512] [--cache ~/.cache/keel-bench]

Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# This folder holds a `datasets.py`, which would shadow Hugging Face `datasets`.
HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]

import numpy as np  # noqa: E402

from keel.index import (  # noqa: E402
    OnnxQueryEncoder,
    SentenceTransformerEmbedder,
    VectorParams,
    build_vectors,
    load_query_encoder,
)
from keel.index import vector_search as search  # noqa: E402
from keel.index._onnx import _session  # noqa: E402

QUERIES = HERE / "data" / "hnsw_queries.txt"
QUESTION = "How long do refunds take?"  # benchmarks/rag_serving.py's question


def _cpu_ms(fn: Callable[[], Any], n: int) -> float:
    fn()
    started = time.process_time()
    for _ in range(n):
        fn()
    return (time.process_time() - started) / n * 1e3


def _corpus(cache: Path, max_chunks: int, embedder: SentenceTransformerEmbedder) -> np.ndarray:
    import importlib.util

    spec = importlib.util.spec_from_file_location("hnsw_recall_real", HERE / "hnsw_recall_real.py")
    assert spec is not None and spec.loader is not None
    real = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(real)
    return np.asarray(real.cached_chunks(max_chunks, cache, embedder, required=False)[1])  # only what is cached


def _overlap(a: np.ndarray, b: np.ndarray) -> float:
    return round(float(np.mean([len(set(x) & set(y)) / len(y) for x, y in zip(a, b, strict=True)])), 4)


def _per_tensor(embedder: SentenceTransformerEmbedder, fp32: Path) -> OnnxQueryEncoder:
    """The former onnx-int8, the peer: `quantize_dynamic` of the fp32 graph, int8 weights per tensor."""
    from onnxruntime.quantization import QuantType, quantize_dynamic  # type: ignore[import-untyped]

    path = fp32.parent / "model-int8-per-tensor.onnx"
    quantize_dynamic(fp32, path, weight_type=QuantType.QInt8)
    return OnnxQueryEncoder(embedder, _session(path, 1), "onnx-int8", path)


def main() -> None:
    """Measure every runtime; one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--lone", type=int, default=100, help="lone queries per runtime and round")
    parser.add_argument("--ef-search", type=int, default=512)
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "keel-bench")
    parser.add_argument("--max-chunks", type=int, default=100_000, help="as hnsw_recall_real.py was run")
    args = parser.parse_args()
    import faiss  # type: ignore[import-untyped,unused-ignore]
    import torch

    torch.set_num_threads(1)
    faiss.omp_set_num_threads(1)
    embedder = SentenceTransformerEmbedder()
    questions = [line.split("\t", 1)[1] for line in QUERIES.read_text().splitlines() if line and line[0] != "#"]
    load_at_start = [round(x, 2) for x in os.getloadavg()]
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        encoders: dict[str, Callable[[list[str]], np.ndarray]] = {"torch": embedder.embed_queries}
        onnx: dict[str, OnnxQueryEncoder] = {}
        export_s = {}
        for runtime in ("onnx", "onnx-int8"):
            onnx[runtime] = load_query_encoder(embedder, runtime, Path(tmp))  # type: ignore[arg-type]
            export_s[runtime] = round(time.perf_counter() - started, 1)
            started = time.perf_counter()
        onnx["onnx-int8-per-tensor"] = _per_tensor(embedder, onnx["onnx"].path)
        encoders |= {name: encoder.embed_queries for name, encoder in onnx.items()}
        cpu: dict[str, dict[str, list[float]]] = {name: {"lone": [], "same16": [], "mixed16": []} for name in encoders}
        for name in onnx:
            cpu[name] |= {"session_run": [], "tokenise": []}
        for _ in range(args.rounds):
            for name, encode in encoders.items():
                cpu[name]["lone"].append(_cpu_ms(lambda e=encode: e([QUESTION]), args.lone))  # type: ignore[misc]
                cpu[name]["same16"].append(_cpu_ms(lambda e=encode: e([QUESTION] * 16), 10) / 16)  # type: ignore[misc]
                cpu[name]["mixed16"].append(_cpu_ms(lambda e=encode: e(questions[:16]), 10) / 16)  # type: ignore[misc]
                if name in onnx:
                    run, tokenise = onnx[name].session.run, onnx[name]._feeds
                    feeds = tokenise([QUESTION])
                    cpu[name]["session_run"].append(_cpu_ms(lambda r=run, f=feeds: r(None, f), args.lone))  # type: ignore[misc]
                    cpu[name]["tokenise"].append(_cpu_ms(lambda t=tokenise: t([QUESTION]), args.lone))  # type: ignore[misc]
        vectors = {name: np.concatenate([encode([q]) for q in questions]) for name, encode in encoders.items()}
        corpus = _corpus(args.cache, args.max_chunks, embedder)
    result: dict[str, Any] = {
        "benchmark": "query_encoders",
        "load_avg_start_end": [load_at_start, [round(x, 2) for x in os.getloadavg()]],
        "questions": len(questions),
        "corpus_chunks": len(corpus),
        "ef_search": args.ef_search,
        "export_and_check_s": export_s,
    }
    if len(corpus):
        flat, hnsw = build_vectors(corpus, VectorParams("flat")), build_vectors(corpus, VectorParams("hnsw"))
        exact = search(flat, vectors["torch"], 10)[1]
    for name, found in vectors.items():
        row: dict[str, Any] = {k: round(float(np.median(v)), 3) for k, v in cpu[name].items()}
        row = {f"cpu_ms_{k}": v for k, v in row.items()}
        ratios = [a / b for a, b in zip(cpu[name]["lone"], cpu["onnx"]["lone"], strict=True)]
        row["cpu_lone_ratio_to_onnx_fp32"] = round(float(np.median(ratios)), 3)  # same rounds
        row["max_abs_diff"] = float(np.abs(found - vectors["torch"]).max())
        row["min_cosine"] = round(float((found * vectors["torch"]).sum(1).min()), 6)
        if len(corpus):
            own = search(flat, found, 10)[1]
            row["top10_overlap_exact"] = _overlap(own, exact)
            approximate = search(hnsw, found, 10, ef_search=args.ef_search)[1]
            row["recall_at_10_hnsw"] = _overlap(approximate, exact)
            row["recall_at_10_hnsw_own"] = _overlap(approximate, own)
        result[name] = row
    print(json.dumps(result))


if __name__ == "__main__":
    main()
