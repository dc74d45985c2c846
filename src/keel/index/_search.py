"""Searching an index version: vector (FAISS), keyword (BM25) or both fused by reciprocal rank.

`open_index` loads a version's files once (chunks, embeddings, FAISS and BM25 indexes) into a
`Retriever` that answers many queries. Filters (`lang=en`, `meta.topic=billing`) restrict both
engines to matching chunks; filtered vector search is exact over the matching rows, so a narrow
filter never starves the approximate index of candidates. Every hit carries its record id and
the record's `source`, which is how a retrieved passage traces back to its document.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.parquet as pq

from keel.core.errors import InputError
from keel.index._dataset import RESERVED
from keel.index._embedding import Embedder, load_embedder
from keel.index._engines import (
    VectorParams,
    bm25_from_bytes,
    keyword_search,
    vector_search,
    vectors_from_bytes,
    vectors_from_file,
)
from keel.index._versions import IndexVersion, get_index
from keel.registry import Ref
from keel.store import Store, mappable_path, read_bytes

__all__ = ["Hit", "Retriever", "SearchMode", "open_index", "parse_filters", "search"]

SearchMode = Literal["hybrid", "vector", "keyword"]
# The usual reciprocal-rank-fusion constant (Cormack et al., 2009): damps the weight of top ranks.
RRF_K = 60
# Candidates an 8-bit (sq8) vector index returns per hit wanted, re-scored on the fp32 embeddings.
RERANK_DEPTH = 2
_BOOL_TEXT = {True: "true", False: "false"}


@dataclass(frozen=True)
class Hit:
    """One retrieved chunk: its text and place in the record, scores, and where the record came from."""

    rank: int
    score: float
    chunk_id: str
    record_id: str
    text: str
    start: int
    end: int
    vector_score: float | None = None
    keyword_score: float | None = None
    source: dict[str, Any] | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    fields: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (times as ISO 8601 strings)."""
        source = None if self.source is None else {k: _jsonable(v) for k, v in self.source.items()}
        return {
            "rank": self.rank,
            "score": self.score,
            "chunk_id": self.chunk_id,
            "record_id": self.record_id,
            "text": self.text,
            "start": self.start,
            "end": self.end,
            "vector_score": self.vector_score,
            "keyword_score": self.keyword_score,
            "source": source,
            "meta": self.meta,
            "fields": {k: _jsonable(v) for k, v in self.fields.items()},
        }


def _readable(blob: bytes | Path) -> Any:
    return blob if isinstance(blob, Path) else io.BytesIO(blob)


def _bytes(blob: bytes | Path) -> bytes:
    return blob.read_bytes() if isinstance(blob, Path) else blob


def _jsonable(value: Any) -> Any:
    return value.isoformat() if hasattr(value, "isoformat") else value


def _as_text(value: Any) -> str:
    """How a column or meta value compares with a filter's text value."""
    if isinstance(value, bool):
        return _BOOL_TEXT[value]
    if value is None:
        return "null"
    if isinstance(value, str | int | float):
        return str(value)
    return json.dumps(value, sort_keys=True)


def parse_filters(items: Iterable[str]) -> dict[str, str]:
    """Parse `key=value` filter arguments; repeated keys keep the last value.

    Examples:
        >>> parse_filters(["lang=en", "meta.topic=billing"])
        {'lang': 'en', 'meta.topic': 'billing'}
    """
    filters = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InputError(f"expected a filter KEY=VALUE such as lang=en or meta.topic=billing; got {item!r}")
        filters[key.strip()] = value
    return filters


class Retriever:
    """A loaded index version that answers queries; made by `open_index`.

    Examples:
        >>> retriever = open_index(store, "docs@v2")  # doctest: +SKIP
        >>> [hit.record_id for hit in retriever.search("refund policy", k=3)]  # doctest: +SKIP
    """

    def __init__(
        self,
        version: IndexVersion,
        manifest: dict[str, Any],
        blobs: Mapping[str, bytes | Path],
        embedder: Embedder,
    ) -> None:
        self.version = version
        self.embedder = embedder
        self.chunks: pa.Table = pq.read_table(_readable(blobs["chunks"]))
        # Vectors and embeddings given as files are memory-mapped read-only: processes share their pages.
        embeddings, vectors, params = blobs["embeddings"], blobs["vectors"], VectorParams.from_json(manifest["vectors"])
        self.embeddings: npt.NDArray[np.float32] = (
            np.load(embeddings, mmap_mode="r", allow_pickle=False)
            if isinstance(embeddings, Path)
            else np.load(io.BytesIO(embeddings), allow_pickle=False)
        )
        self.vectors = (
            vectors_from_file(vectors, params) if isinstance(vectors, Path) else vectors_from_bytes(vectors, params)
        )
        self.params = params
        self.mapped = sorted(key for key in ("embeddings", "vectors") if isinstance(blobs[key], Path))
        self.bm25 = bm25_from_bytes(_bytes(blobs["bm25"]))
        self._metas: list[dict[str, Any]] | None = None

    def __len__(self) -> int:
        return int(self.chunks.num_rows)

    def _meta(self) -> list[dict[str, Any]]:
        if self._metas is None:
            raw = self.chunks.column("meta").to_pylist() if "meta" in self.chunks.column_names else []
            self._metas = [json.loads(m) if m else {} for m in raw] or [{} for _ in range(len(self))]
        return self._metas

    def mask(self, filters: Mapping[str, str]) -> npt.NDArray[np.bool_]:
        """Which chunks match every filter: a dataset column (`lang=en`) or a meta field (`meta.topic=x`, `topic=x`).

        Raises:
            InputError: A key is neither a column of the indexed records nor a field of any record's meta.
        """
        keep = np.ones(len(self), dtype=bool)
        for key, wanted in filters.items():
            name = key.removeprefix("meta.")
            if key == name and key in self.chunks.column_names and key not in RESERVED:
                values = self.chunks.column(key).to_pylist()
            elif any(name in m for m in self._meta()):
                values = [m.get(name) for m in self._meta()]
            else:
                known = sorted({c for c in self.chunks.column_names if c not in RESERVED} | {*self._meta_keys()})
                raise InputError(
                    f"expected a filter on a column or meta field of {self.version.ref}'s records; got {key!r}",
                    hint=f"known keys: {', '.join(known) or 'none'}",
                )
            keep &= np.array([v is not None and _as_text(v) == wanted for v in values], dtype=bool)
        return keep

    def _meta_keys(self) -> set[str]:
        return {f"meta.{k}" for m in self._meta() for k in m}

    def _vector_candidates(
        self,
        query: str,
        n: int,
        mask: npt.NDArray[np.bool_] | None,
        vector: npt.NDArray[np.float32] | None = None,
        ef_search: int | None = None,
    ) -> list[tuple[int, float]]:
        q = self.embedder.embed([query]) if vector is None else vector.reshape(1, -1)
        if mask is None:
            scores, ids = self.nearest(q, n, ef_search=ef_search)
            return [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if i >= 0]
        rows = np.flatnonzero(mask)
        if rows.size == 0:
            return []
        # Exact over the matching rows: an approximate index searched then filtered can miss them all.
        sims = self.embeddings[rows] @ q[0]
        top = np.argsort(-sims, kind="stable")[:n]
        return [(int(rows[i]), float(sims[i])) for i in top]

    def nearest(
        self, queries: npt.NDArray[np.float32], n: int, *, ef_search: int | None = None
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
        """Top-`n` (scores, ids) per query vector from the vector index, as a search without filters finds them.

        An index storing 8-bit vectors (`storage` `sq8`) is asked for `RERANK_DEPTH` times `n` candidates,
        which are scored again on the fp32 embeddings: scores are exact inner products and the order is
        theirs (ties by id). Ids are -1 where fewer than `n` chunks exist.
        """
        queries = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.embeddings.shape[1])
        if self.params.storage == "fp32":
            scores, ids = vector_search(self.vectors, queries, n, ef_search=ef_search)
            return scores, ids
        depth = min(max(n * RERANK_DEPTH, n), max(len(self), 1))
        _, found = vector_search(self.vectors, queries, depth, ef_search=ef_search)
        out_scores = np.full((len(queries), n), -np.inf, dtype=np.float32)
        out_ids = np.full((len(queries), n), -1, dtype=np.int64)
        for row, (query, ids) in enumerate(zip(queries, found, strict=True)):
            ids = np.sort(ids[ids >= 0])  # ascending ids: the stable sort below breaks ties by id
            exact = self.embeddings[ids] @ query
            top = np.argsort(-exact, kind="stable")[:n]
            out_scores[row, : len(top)], out_ids[row, : len(top)] = exact[top], ids[top]
        return out_scores, out_ids

    def search(
        self,
        query: str,
        k: int = 5,
        *,
        filters: Mapping[str, str] | None = None,
        mode: SearchMode = "hybrid",
        vector: npt.NDArray[np.float32] | None = None,
        vector_weight: float = 0.5,
        ef_search: int | None = None,
    ) -> list[Hit]:
        """The `k` best chunks for `query`.

        Args:
            query: The question or keywords.
            k: How many hits at most.
            filters: Column or meta values every hit must have (`{"lang": "en"}`).
            mode: `hybrid` (vector and BM25 fused by reciprocal rank), `vector` or `keyword`.
            vector: The query's embedding when the caller made it already (a server times it apart).
            vector_weight: In hybrid mode, the share of the fused score from the vector ranks (0.5: equal).
            ef_search: HNSW search breadth for this query (None: the index version's own); exact indexes
                ignore it.

        Returns:
            Hits best first; in hybrid mode `score` is the fused score, else the engine's own.
        """
        if k < 1:
            raise InputError(f"expected k of at least 1 hit; got {k}")
        if mode not in ("hybrid", "vector", "keyword"):
            raise InputError(f"expected a search mode hybrid, vector or keyword; got {mode!r}")
        if not query.strip():
            raise InputError("expected a query with some text; got an empty one")
        mask = self.mask(filters) if filters else None
        # Fusion needs depth: a chunk ranked 30th by one engine and 2nd by the other may belong in the top k.
        depth = max(k, 50) if mode == "hybrid" else k
        dense = self._vector_candidates(query, depth, mask, vector, ef_search) if mode != "keyword" else []
        sparse = keyword_search(self.bm25, query, depth, len(self), mask) if mode != "vector" else []
        if mask is not None:
            sparse = [(i, s) for i, s in sparse if mask[i]]
        return self._hits(dense, sparse, k, mode, vector_weight)

    def _hits(
        self,
        dense: list[tuple[int, float]],
        sparse: list[tuple[int, float]],
        k: int,
        mode: SearchMode,
        vector_weight: float = 0.5,
    ) -> list[Hit]:
        vec, kw = dict(dense), dict(sparse)
        if mode == "vector":
            ranked = dense[:k]
        elif mode == "keyword":
            ranked = sparse[:k]
        else:
            fused: dict[int, float] = {}
            # Weighted RRF; at the default 0.5 both factors are 1, the plain fusion of Cormack et al.
            for results, weight in ((dense, 2 * vector_weight), (sparse, 2 * (1 - vector_weight))):
                for rank, (row, _) in enumerate(results, start=1):
                    fused[row] = fused.get(row, 0.0) + weight / (RRF_K + rank)
            ranked = sorted(fused.items(), key=lambda item: (-item[1], item[0]))[:k]
        rows = self.chunks.take(pa.array([row for row, _ in ranked], type=pa.int64())).to_pylist()
        extra = [c for c in self.chunks.column_names if c not in RESERVED]
        return [
            Hit(
                rank=rank,
                score=score,
                chunk_id=data["chunk_id"],
                record_id=data["record_id"],
                text=data["text"],
                start=data["start"],
                end=data["end"],
                vector_score=vec.get(row),
                keyword_score=kw.get(row),
                source=data.get("source"),
                meta=json.loads(data["meta"]) if data.get("meta") else {},
                fields={c: data[c] for c in extra},
            )
            for rank, ((row, score), data) in enumerate(zip(ranked, rows, strict=True), start=1)
        ]


def open_index(store: Store, ref: str | Ref, *, embedder: Embedder | None = None) -> Retriever:
    """Load an index version (`NAME`, `NAME@vN`) for searching.

    Args:
        store: The workspace store.
        ref: The index version.
        embedder: Embeds queries; by default the model the index was built with.

    Returns:
        A retriever holding the version's chunks and BM25 index in memory; its FAISS index and embeddings
        are memory-mapped from the blob files when the blob store is local and the blobs are not sealed
        (read into memory otherwise).
    """
    version = get_index(store, ref)
    manifest = version.manifest(store)
    blobs: dict[str, bytes | Path] = {}
    for key, entry in manifest["files"].items():
        path = mappable_path(store.blobs, entry["digest"]) if key in ("vectors", "embeddings") else None
        blobs[key] = path if path is not None else read_bytes(store.blobs, entry["digest"])
    return Retriever(version, manifest, blobs, embedder or load_embedder(version.embedding_model))


def search(
    store: Store,
    ref: str | Ref,
    query: str,
    k: int = 5,
    *,
    filters: Mapping[str, str] | None = None,
    mode: SearchMode = "hybrid",
    ef_search: int | None = None,
) -> list[Hit]:
    """Open an index version and return the `k` best chunks for `query` (see `Retriever.search`).

    Examples:
        >>> hits = search(store, "docs", "how do refunds work?", k=3, filters={"lang": "en"})  # doctest: +SKIP
        >>> hits[0].record_id, hits[0].source["uri"]  # doctest: +SKIP
    """
    return open_index(store, ref).search(query, k, filters=filters, mode=mode, ef_search=ef_search)
