"""HNSW recall@10 on real MiniLM embeddings of real text, by ef_search and query kind.

Corpus: Python's HTML documentation as Debian's python3-doc installs it, read by Keel's HTML reader
(resiliparse main text) and cut by Keel's chunker (`chunk_text`) at the default 800 characters with 100
of overlap, and again at 300/37 (an eighth of overlap, as at the default; more, shorter chunks: a larger
index from the same pages). Every chunk is embedded with the offline all-MiniLM-L6-v2
(`SentenceTransformerEmbedder`); the vectors are cached under `--cache` keyed by the chunks' hash, since
embedding is the slow part (about 40 ms of CPU per 250-character chunk with one torch thread).

Queries (benchmarks/data/hnsw_queries.txt, hand-written): `python` questions in a user's words (not
documentation prose), `offtopic` questions the corpus does not cover (their nearest chunks are
scattered: the hard case for HNSW), and, as a worst case, `random` unit directions. For each ef_search
it prints recall@10 of the HNSW index Keel builds (m = 16, ef_construction = 64) against exact search
(`IndexFlatIP`, the peer, same run) and queries/s one at a time; `choice` is the smallest ef_search
with recall >= 0.95 on both question kinds, `default_ef_search` the one Keel picks for that size.

`--chunk-sizes 200+300` joins two cuts (100,000+ distinct chunks from the same pages). Chunks are
embedded in a seeded random order in cached blocks of 1,024, so `--max-minutes M` stops embedding
after M minutes and measures the uniform sample embedded so far (a later run resumes), `--nested N`
also measures its first half, quarter, ... (how the ef_search needed grows with size), and
`--reverse` embeds the last blocks first, for a second process beside a first one.

    python benchmarks/hnsw_recall_real.py [--cache ~/.cache/keel-bench] [--chunk-sizes 800 300] [--max-chunks N]
        [--max-minutes M] [--nested N] [--reverse]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

# This folder holds a `datasets.py`, which would shadow Hugging Face `datasets`.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import numpy as np  # noqa: E402

from keel.curate._web_readers import read_web_file  # noqa: E402
from keel.index import VectorParams, build_vectors, ef_search_for, normalise, vector_search  # noqa: E402
from keel.index._chunking import ChunkSettings, chunk_text  # noqa: E402
from keel.index._embedding import SentenceTransformerEmbedder  # noqa: E402

QUERIES = Path(__file__).resolve().parent / "data" / "hnsw_queries.txt"
EFS = (16, 32, 40, 64, 96, 128, 256, 512, 1024, 2048, 4096)
HTML_ROOTS = ("/usr/share/doc/python3/html", "/usr/share/doc/python3.11/html", "/usr/share/doc/python3-doc/html")


def html_root() -> Path:
    """The folder of python3-doc's HTML pages."""
    for candidate in HTML_ROOTS:
        if (Path(candidate) / "library" / "index.html").is_file():
            return Path(candidate).resolve()
    sys.exit("python3-doc is not installed: apt-get install python3-doc")


def page_texts(root: Path, cache: Path | None = None) -> list[str]:
    """The main text of every page, as `keel data ingest` reads HTML (kept in `cache`: reading takes minutes)."""
    paths = sorted(root.rglob("*.html"))
    key = hashlib.sha256("\x00".join(f"{p}:{p.stat().st_mtime_ns}" for p in paths).encode()).hexdigest()[:16]
    saved = cache / f"pages-{key}.json" if cache is not None else None
    if saved is not None and saved.exists():
        return list(json.loads(saved.read_text()))
    texts = []
    for path in paths:
        texts += [r["text"] for r in read_web_file(path, "html") if isinstance(r, dict)]
    if saved is not None:
        saved.parent.mkdir(parents=True, exist_ok=True)
        saved.write_text(json.dumps(texts))
    return texts


def chunks(texts: list[str], size: int | str) -> list[str]:
    """Keel's chunks of `texts` at `size` characters, overlap an eighth (the default 800/100).

    `size` may join sizes with `+` (`200+300`): the distinct chunks of each cut, in order, as an index
    of the same pages chunked two ways holds them (a larger index of real text than one cut gives).
    """
    seen: dict[str, None] = {}
    for one in str(size).split("+"):
        settings = ChunkSettings(size=int(one), overlap=int(one) // 8)
        seen.update((span.text, None) for text in texts for span in chunk_text(text, settings))
    return list(seen)


def spread(items: list[str], count: int | None) -> list[str]:
    """At most `count` of `items`, evenly spaced (all of them when `count` is None or not smaller)."""
    if not count or len(items) <= count:
        return items
    return [items[i * len(items) // count] for i in range(count)]


BLOCK = 1024


def embedded(
    texts: list[str],
    cache: Path,
    embedder: SentenceTransformerEmbedder,
    minutes: float | None = None,
    reverse: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """MiniLM vectors of `texts` (or of a uniform sample of them, when `minutes` run out): (rows, vectors).

    Texts are embedded in a seeded random order, in blocks of `BLOCK` each cached under `--cache` as soon as
    it is done, keyed by the texts' hash: a run that stops (or is stopped) early keeps what it embedded, a
    later run resumes, and whatever blocks exist are a uniform sample of the corpus. `texts[rows[i]]` has
    vector `vectors[i]`. With `reverse`, blocks are embedded last first: a second process then embeds
    beside a first one without both doing the same blocks.
    """
    digest = hashlib.sha256("\x00".join([embedder.model_id, *texts]).encode()).hexdigest()[:16]
    folder = cache / f"minilm-{digest}"
    folder.mkdir(parents=True, exist_ok=True)
    order = np.random.default_rng(0).permutation(len(texts))
    started = time.perf_counter()
    blocks = list(enumerate(range(0, len(texts), BLOCK)))
    for block, at in reversed(blocks) if reverse else blocks:
        path = folder / f"block-{block:04d}.npy"
        if path.exists():
            continue
        if minutes is not None and time.perf_counter() - started > minutes * 60:
            break
        vectors = embedder.embed([texts[i] for i in order[at : at + BLOCK]])
        np.save(folder / f"{path.name}.part.npy", vectors)
        (folder / f"{path.name}.part.npy").rename(path)  # whole blocks only, for a process reading beside
        print(json.dumps({"block": block, "of": len(blocks), "s": round(time.perf_counter() - started)}),
              file=sys.stderr, flush=True)  # fmt: skip
    done = [(at, np.load(folder / f"block-{block:04d}.npy")) for block, at in blocks
            if (folder / f"block-{block:04d}.npy").exists()]  # fmt: skip
    if not done:
        return np.zeros(0, np.int64), np.zeros((0, embedder.dimension), np.float32)
    rows = np.concatenate([order[at : at + len(v)] for at, v in done])
    return rows, np.concatenate([v for _, v in done])


def cached_chunks(
    count: int, cache: Path, embedder: SentenceTransformerEmbedder, cut: str = "200+300", *, required: bool = True
) -> tuple[list[str], np.ndarray]:
    """python3-doc's chunks at `cut` (at most `count`, evenly spaced) whose vectors a run of this script cached.

    Embeds nothing: only the cached blocks are read (a uniform sample when not every block is cached).
    Returns `(texts, vectors)`, row i of `vectors` the embedding of `texts[i]`. The benchmarks measuring
    on real vectors (hnsw_storage.py, query_encoders.py, rag_serving.py) share it. With `required` and
    nothing cached, exits with the command that embeds them; without, returns no rows.
    """
    wanted = spread(chunks(page_texts(html_root(), cache), cut), count)
    rows, vectors = embedded(wanted, cache, embedder, minutes=0)
    if required and not len(rows):
        sys.exit(f"no cached vectors: run benchmarks/hnsw_recall_real.py --chunk-sizes {cut} --max-chunks {count}")
    return [wanted[i] for i in rows], vectors


def _recall(approx: np.ndarray, exact: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(e)) / len(e) for a, e in zip(approx, exact, strict=True)]))


def _single_qps(index: object, queries: np.ndarray) -> float:
    started = time.perf_counter()
    for row in queries:
        vector_search(index, row[None, :], 10)
    return round(len(queries) / (time.perf_counter() - started), 1)


def measure(data: np.ndarray, kinds: dict[str, np.ndarray]) -> dict[str, object]:
    """Recall@10 and single-query speed of HNSW by ef_search against exact search on `data`."""
    flat = build_vectors(data, VectorParams("flat"))
    exact = {kind: vector_search(flat, q, 10)[1] for kind, q in kinds.items()}
    questions = np.concatenate([kinds["python"], kinds["offtopic"]])
    started = time.perf_counter()
    hnsw = build_vectors(data, VectorParams("hnsw"))
    build_s = time.perf_counter() - started
    rows = []
    for ef in sorted({*EFS, ef_search_for(len(data))}):
        hnsw.hnsw.efSearch = ef
        recall = {kind: round(_recall(vector_search(hnsw, q, 10)[1], exact[kind]), 4) for kind, q in kinds.items()}
        rows.append({"ef_search": ef, "recall_at_10": recall, "qps_single": _single_qps(hnsw, questions)})
    good = [r["ef_search"] for r in rows if min(r["recall_at_10"]["python"], r["recall_at_10"]["offtopic"]) >= 0.95]  # type: ignore[index]
    default = ef_search_for(len(data))
    return {
        "vectors": len(data),
        "hnsw_build_s": round(build_s, 1),
        "exact_qps_single": _single_qps(flat, questions),
        "by_ef_search": rows,
        "choice": good[0] if good else None,
        "default_ef_search": default,
        "default_recall_at_10": next(r["recall_at_10"] for r in rows if r["ef_search"] == default),
    }


def main() -> None:
    """Embed (or load) the corpus at each chunk size, then measure; one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "keel-bench")
    parser.add_argument("--chunk-sizes", nargs="+", default=["800", "300"], help="sizes; 200+300 joins two cuts")
    parser.add_argument("--max-chunks", type=int, help="keep at most this many chunks, evenly spaced (a quick run)")
    parser.add_argument("--max-minutes", type=float, help="embed for at most this long; measure the sample embedded")
    parser.add_argument("--nested", type=int, default=1, help="also measure the first 1/2, 1/4 ... of the sample")
    parser.add_argument("--reverse", action="store_true", help="embed the last blocks first (a second process)")
    args = parser.parse_args()
    import faiss  # type: ignore[import-untyped,unused-ignore]
    import torch

    # One thread: on a shared, loaded machine torch's two OpenMP threads spin waiting for each other
    # (MiniLM measured 4-25x the CPU per text with two), and a second process can use the other core.
    torch.set_num_threads(1)
    faiss.omp_set_num_threads(1)  # one query at a time, as a server answers them
    embedder = SentenceTransformerEmbedder()
    lines = [line.split("\t", 1) for line in QUERIES.read_text().splitlines() if line and not line.startswith("#")]
    rng = np.random.default_rng(0)
    kinds = {kind: embedder.embed([q for k, q in lines if k == kind]) for kind in ("python", "offtopic")} | {
        "random": normalise(rng.normal(size=(100, embedder.dimension)).astype(np.float32))
    }
    texts = page_texts(html_root(), args.cache)
    results = []
    for size in args.chunk_sizes:
        cut = spread(chunks(texts, size), args.max_chunks)
        _, data = embedded(cut, args.cache, embedder, args.max_minutes, args.reverse)
        for part in range(args.nested - 1, -1, -1):  # smallest first: how the needed ef_search grows with size
            results.append({"chunk_size": size, "chunks": len(cut), **measure(data[: len(data) >> part], kinds)})
            print(json.dumps({"partial": results[-1]}), file=sys.stderr, flush=True)
    print(
        json.dumps(
            {
                "benchmark": "hnsw_recall_real",
                "pages": len(texts),
                "queries": {k: len(v) for k, v in kinds.items()},
                "sizes": results,
            }
        )
    )


if __name__ == "__main__":
    main()
