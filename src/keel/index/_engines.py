"""The two search engines behind an index: FAISS over embeddings and BM25 (bm25s) over chunk text.

Vectors: exact inner-product search (`IndexFlatIP`) below `HNSW_THRESHOLD` vectors, HNSW above,
with `ef_search` growing with the number of vectors so recall@10 against exact search stays
>= 0.95 for queries unlike the indexed text, not only for queries drawn like it
(benchmarks/hnsw_recall.py, 384 dimensions).
Both engines serialise to bytes for the blob store and load back from them. This module knows
arrays and token lists, not records, chunks or the store.
"""

from __future__ import annotations

import io
import math
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from keel.core.errors import InputError

__all__ = [
    "EF_RANGE",
    "HNSW_THRESHOLD",
    "M_RANGE",
    "VectorIndexKind",
    "VectorParams",
    "VectorStorage",
    "build_bm25",
    "build_vectors",
    "bm25_from_bytes",
    "ef_search_for",
    "bm25_to_bytes",
    "keyword_search",
    "vector_search",
    "vectors_from_bytes",
    "vectors_from_file",
    "vectors_to_bytes",
]

VectorIndexKind = Literal["flat", "hnsw"]
# How an HNSW index stores its vectors: fp32 (`IndexHNSWFlat`) or 8 bits a dimension (`IndexHNSWSQ`, a
# quarter of the bytes each distance reads; searches re-rank their candidates on the fp32 embeddings).
VectorStorage = Literal["fp32", "sq8"]
# What an HNSW graph may be built with: FAISS hangs or crashes with M 1; the upper bounds keep a typo (an
# extra digit) from building a graph that needs hours or gigabytes.
M_RANGE = (2, 512)
EF_RANGE = (1, 65_536)
# Below this many vectors exact search is fast enough (< 5 ms a query at 384 dims) and needs no tuning.
HNSW_THRESHOLD = 20_000


def ef_search_for(count: int) -> int:
    """The HNSW `ef_search` that keeps recall@10 >= 0.95 at `count` vectors, for any query.

    Measured with `m=16, ef_construction=64` on queries from topics the corpus does not cover.
    Synthetic clustered 384-d vectors (benchmarks/hnsw_recall.py) needed 256 at 10k-20k and 1024 at 100k.
    Real all-MiniLM-L6-v2 embeddings of python3-doc (14,567 chunks, benchmarks/hnsw_recall_real.py) are
    harder: off-topic questions reached 0.83 at ef 128, 0.92 at 256 and 0.966 at 512 (questions about
    Python 0.99 from ef 64). Hence the next power of two at or above count / 32, and at least 64.

    Examples:
        >>> ef_search_for(14_567), ef_search_for(20_000), ef_search_for(100_000), ef_search_for(1_000)
        (512, 1024, 4096, 64)
    """
    return max(64, 1 << max(0, math.ceil(math.log2(max(count, 1) / 32))))


@dataclass(frozen=True, slots=True)
class VectorParams:
    """How the vector index is built and searched; stored in the index manifest.

    `ef_search` 0 (the default) means "chosen by size": `ef_search_for(number of vectors)` when the
    index is built or loaded. Set it to trade recall for speed. `storage` `sq8` keeps an HNSW index's
    vectors in 8 bits a dimension (FAISS `IndexHNSWSQ`): each distance reads a quarter of the bytes,
    and a search re-ranks its candidates on the fp32 embeddings, so scores stay exact inner products.
    """

    kind: VectorIndexKind = "flat"
    m: int = 16
    ef_construction: int = 64
    ef_search: int = 0
    storage: VectorStorage = "fp32"

    def __post_init__(self) -> None:
        problems = []
        if self.kind not in ("flat", "hnsw"):
            problems.append(f"kind 'flat' or 'hnsw', got {self.kind!r}")
        if self.storage not in ("fp32", "sq8"):
            problems.append(f"storage 'fp32' or 'sq8', got {self.storage!r}")
        elif self.kind == "flat" and self.storage != "fp32":
            problems.append(f"storage 'fp32' for an exact (flat) index, got {self.storage!r}: only HNSW stores 8 bits")
        for name, value, (low, high) in (
            ("m", self.m, M_RANGE),
            ("ef_construction", self.ef_construction, EF_RANGE),
            ("ef_search", self.ef_search, (0, None)),  # no top: the rule by size passes 65,536 past 2M vectors
        ):
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= (high or value):
                span = f"from {low:,} to {high:,}" if high else f"of at least {low:,}"
                problems.append(f"{name} an integer {span}, got {value!r}")
        if problems:
            raise InputError(f"expected vector index settings with {'; '.join(problems)}; fix them and retry")

    def describe(self) -> str:
        """One line for people: `exact (flat)`, or the HNSW graph, search breadth and storage.

        Examples:
            >>> VectorParams("hnsw", m=32, ef_construction=128, ef_search=512, storage="sq8").describe()
            'hnsw (M 32, efConstruction 128, efSearch 512, storage sq8)'
        """
        if self.kind == "flat":
            return "exact (flat)"
        ef = self.ef_search or "by size"
        return f"hnsw (M {self.m}, efConstruction {self.ef_construction}, efSearch {ef}, storage {self.storage})"

    def shown(self) -> dict[str, Any]:
        """Every setting that applies, `storage` included when fp32 (for `keel index show --json`)."""
        return self.to_json() | ({"storage": self.storage} if self.kind == "hnsw" else {})

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict; only `kind` for exact indexes, `storage` only when not fp32 (as before it existed)."""
        if self.kind == "flat":
            return {"kind": "flat"}
        found = {"kind": "hnsw", "m": self.m, "ef_construction": self.ef_construction, "ef_search": self.ef_search}
        return found | ({"storage": self.storage} if self.storage != "fp32" else {})

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> VectorParams:
        """Read back what `to_json` wrote (manifests written before `storage` existed read as fp32)."""
        return cls(**data)

    @classmethod
    def for_size(cls, count: int, threshold: int = HNSW_THRESHOLD) -> VectorParams:
        """Exact below `threshold` vectors, HNSW at or above it with `ef_search_for(count)`."""
        return cls(kind="hnsw", ef_search=ef_search_for(count)) if count >= threshold else cls(kind="flat")


def _faiss() -> Any:
    import faiss  # type: ignore[import-untyped,unused-ignore]

    return faiss


def build_vectors(vectors: npt.NDArray[np.float32], params: VectorParams) -> Any:
    """A FAISS inner-product index over unit-length `vectors` (row i has id i)."""
    faiss = _faiss()
    dim = int(vectors.shape[1])
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if params.kind == "flat":
        index = faiss.IndexFlatIP(dim)
    elif params.storage == "sq8":
        index = faiss.IndexHNSWSQ(dim, faiss.ScalarQuantizer.QT_8bit, params.m, faiss.METRIC_INNER_PRODUCT)
        if len(vectors):
            index.train(vectors)  # each dimension's range, from the vectors themselves
    else:
        index = faiss.IndexHNSWFlat(dim, params.m, faiss.METRIC_INNER_PRODUCT)
    if params.kind == "hnsw":
        index.hnsw.efConstruction = params.ef_construction
        index.hnsw.efSearch = params.ef_search or ef_search_for(len(vectors))
    if len(vectors):
        index.add(vectors)
    return index


def vectors_to_bytes(index: Any) -> bytes:
    """FAISS's own serialisation of `index`."""
    return bytes(_faiss().serialize_index(index).tobytes())


def vectors_from_bytes(data: bytes, params: VectorParams) -> Any:
    """Load an index written by `vectors_to_bytes`, with the search settings of `params`."""
    faiss = _faiss()
    index = faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))
    if params.kind == "hnsw":
        index.hnsw.efSearch = params.ef_search or ef_search_for(int(index.ntotal))
    return index


def vectors_from_file(path: str | Path, params: VectorParams) -> Any:
    """Map an index file written by `vectors_to_bytes` (or `faiss.write_index`) read-only into memory.

    With `IO_FLAG_MMAP_IFC` FAISS reads the vectors and the HNSW graph in place from the file's pages
    (measured: 0 MB of private memory for an 80 MB HNSW file, against 80 MB deserialised), so every
    process serving the index version shares the page cache's one copy. `IO_FLAG_MMAP` alone maps only
    IVF inverted lists and copies a flat or HNSW index like a plain read.
    """
    faiss = _faiss()
    index = faiss.read_index(str(path), faiss.IO_FLAG_MMAP_IFC | faiss.IO_FLAG_READ_ONLY)
    if params.kind == "hnsw":
        index.hnsw.efSearch = params.ef_search or ef_search_for(int(index.ntotal))
    return index


def vector_search(
    index: Any, queries: npt.NDArray[np.float32], k: int, *, ef_search: int | None = None
) -> tuple[npt.NDArray[Any], npt.NDArray[Any]]:
    """Top-`k` (scores, ids) per query row; ids are -1 where fewer than `k` vectors exist.

    `ef_search` searches an HNSW index with that breadth for this call only (FAISS's per-search
    parameters), leaving the index's own setting to other callers sharing it; exact indexes ignore it.
    """
    k = max(1, min(k, int(index.ntotal)))
    if index.ntotal == 0:
        return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    if ef_search and hasattr(index, "hnsw"):
        params = _faiss().SearchParametersHNSW(efSearch=max(int(ef_search), k))
        scores, ids = index.search(queries, k, params=params)
    else:
        scores, ids = index.search(queries, k)
    return scores, ids


def _tokenize(texts: list[str], *, as_ids: bool = True) -> Any:
    import bm25s  # type: ignore[import-untyped,unused-ignore]

    # Tokens are lower-cased words of 2+ characters without English stopwords; no stemmer ships offline.
    # Queries stay strings: the index maps them onto its own vocabulary and ignores unknown words.
    return bm25s.tokenize(texts, stopwords="en", show_progress=False, return_ids=as_ids)


def build_bm25(texts: list[str]) -> Any:
    """A BM25 index over `texts` (document i is text i)."""
    import bm25s  # type: ignore[import-untyped,unused-ignore]

    retriever = bm25s.BM25()
    if texts:
        retriever.index(_tokenize(texts), show_progress=False)
    return retriever


def bm25_to_bytes(retriever: Any) -> bytes:
    """The bm25s index files, zipped into one deterministic blob (empty for an empty index)."""
    if not hasattr(retriever, "scores"):  # nothing was indexed; bm25s cannot save that
        return b""
    with tempfile.TemporaryDirectory(prefix="keel-bm25-") as tmp:
        retriever.save(tmp, show_progress=False)
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for path in sorted(Path(tmp).iterdir()):
                # A fixed timestamp: the same index always zips to the same bytes (and blob digest).
                info = zipfile.ZipInfo(path.name, date_time=(1980, 1, 1, 0, 0, 0))
                archive.writestr(info, path.read_bytes(), zipfile.ZIP_DEFLATED)
        return buffer.getvalue()


def bm25_from_bytes(data: bytes) -> Any:
    """Load an index written by `bm25_to_bytes`."""
    import bm25s  # type: ignore[import-untyped,unused-ignore]

    if not data:
        return bm25s.BM25()
    with tempfile.TemporaryDirectory(prefix="keel-bm25-") as tmp:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            for name in archive.namelist():
                (Path(tmp) / Path(name).name).write_bytes(archive.read(name))
        return bm25s.BM25.load(tmp)


def keyword_search(
    retriever: Any, query: str, k: int, count: int, mask: npt.NDArray[np.bool_] | None = None
) -> list[tuple[int, float]]:
    """Top-`k` (document, BM25 score) pairs with a positive score, best first, among `mask` if given.

    Args:
        retriever: A bm25s index.
        query: The query text.
        k: How many documents at most.
        count: How many documents the index holds.
        mask: Documents allowed (True); all if None.
    """
    if count == 0 or k < 1:
        return []
    tokens = _tokenize([query], as_ids=False)
    if not tokens[0]:
        return []
    weights = None if mask is None else mask.astype(np.float32)
    docs, scores = retriever.retrieve(
        tokens, k=min(k, count), show_progress=False, n_threads=1, weight_mask=weights, return_as="tuple"
    )
    return [(int(d), float(s)) for d, s in zip(docs[0], scores[0], strict=True) if s > 0]
