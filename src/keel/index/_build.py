"""Building an index version: chunk the records, embed what is new, index vectors and keywords, store.

Incremental by default: when the index already has a version built with the same model and
chunking, records whose (id, text) are unchanged take their chunks' embeddings from it and only
new or edited records are embedded. Files go to the blob store first (no database lock held while
uploading), then the version row, lineage and audit event are written in one transaction.
"""

from __future__ import annotations

import dataclasses
import io
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.parquet as pq

from keel.core.errors import InputError
from keel.core.ids import canonical_json, sha256_hex
from keel.govern import require
from keel.index._chunking import ChunkSettings, chunk_text
from keel.index._dataset import DatasetInput, extra_columns, resolve_dataset
from keel.index._embedding import DEFAULT_MODEL, Embedder, SentenceTransformerEmbedder
from keel.index._engines import (
    VectorParams,
    bm25_to_bytes,
    build_bm25,
    build_vectors,
    ef_search_for,
    vectors_to_bytes,
)
from keel.index._versions import (
    MANIFEST_SCHEMA,
    IndexVersion,
    insert_version,
    latest_version,
    lock_index,
    parse_index_ref,
)
from keel.store import Store, add_edge, add_node, read_bytes

__all__ = ["BuildProgress", "IndexBuild", "build_index"]

# Called with (stage, done, total): stage is "chunk", "embed" or "index".
BuildProgress = Callable[[str, int, int], None]
Vectors = npt.NDArray[np.float32]


@dataclass(frozen=True)
class IndexBuild:
    """What `build_index` did: the version, whether it is new, and how much was embedded anew."""

    index: IndexVersion
    created: bool
    embedded_chunks: int
    reused_chunks: int
    reused_from: str | None
    seconds: float

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict: the version's fields, then what this build did (embedded and reused here)."""
        return {
            **self.index.to_json(),
            "created": self.created,
            "embedded_chunks": self.embedded_chunks,
            "reused_chunks": self.reused_chunks,
            "reused_from": self.reused_from,
            "seconds": round(self.seconds, 3),
        }


def chunk_records(table: pa.Table, settings: ChunkSettings, embedder: Embedder) -> pa.Table:
    """One row per chunk: ids, text, offsets, the record's text hash, and its source, meta and scalar columns."""
    offsets = embedder.token_offsets if settings.by == "tokens" else None
    take: list[int] = []
    columns: dict[str, list[Any]] = {k: [] for k in ("chunk_id", "record_id", "ordinal", "text", "start", "end")}
    hashes: list[str] = []
    for row, (rid, text) in enumerate(
        zip(table.column("id").to_pylist(), table.column("text").to_pylist(), strict=True)
    ):
        digest = sha256_hex(text or "")
        for ordinal, span in enumerate(chunk_text(text or "", settings, offsets)):
            take.append(row)
            for key, value in zip(
                columns, (f"{rid}#{ordinal}", rid, ordinal, span.text, span.start, span.end), strict=True
            ):
                columns[key].append(value)
            hashes.append(digest)
    types = {"ordinal": pa.int32(), "start": pa.int64(), "end": pa.int64()}
    arrays = {k: pa.array(v, type=types.get(k, pa.string())) for k, v in columns.items()}
    arrays["record_sha256"] = pa.array(hashes, type=pa.string())
    carried = pa.array(take, type=pa.int64())
    for name in ("source", "meta", *extra_columns(table)):
        if name in table.column_names:
            arrays[name] = table.column(name).take(carried)
    return pa.table(arrays)


def _reusable(store: Store, previous: IndexVersion | None, model_id: str, settings: ChunkSettings) -> Any:
    """The previous version's chunk keys and embeddings, if it used the same model and chunking."""
    if previous is None or previous.embedding_model != model_id or previous.chunking != settings:
        return None
    files = previous.manifest(store)["files"]
    keys = pq.read_table(
        io.BytesIO(read_bytes(store.blobs, files["chunks"]["digest"])), columns=["record_id", "record_sha256"]
    )
    vectors = np.load(io.BytesIO(read_bytes(store.blobs, files["embeddings"]["digest"])), allow_pickle=False)
    return keys, vectors


def _embed(chunks: pa.Table, embedder: Embedder, reuse: Any, progress: BuildProgress | None) -> tuple[Vectors, int]:
    """Embeddings for every chunk, reusing unchanged records' rows; returns (vectors, how many were embedded)."""
    n = chunks.num_rows
    todo = np.ones(n, dtype=bool)
    vectors: Vectors | None = None
    if reuse is not None and n:
        keys, old = reuse
        spans: dict[tuple[str, str], list[int]] = {}
        for i, key in enumerate(
            zip(keys.column("record_id").to_pylist(), keys.column("record_sha256").to_pylist(), strict=True)
        ):
            spans.setdefault(key, []).append(i)
        vectors = np.zeros((n, old.shape[1]), dtype=np.float32)
        new_keys = zip(chunks.column("record_id").to_pylist(), chunks.column("record_sha256").to_pylist(), strict=True)
        for i, (key, ordinal) in enumerate(zip(new_keys, chunks.column("ordinal").to_pylist(), strict=True)):
            rows = spans.get(key)
            if rows is not None and ordinal < len(rows):
                vectors[i] = old[rows[ordinal]]
                todo[i] = False
    texts = [t for t, fresh in zip(chunks.column("text").to_pylist(), todo, strict=True) if fresh]
    if texts:
        fresh_vectors = embedder.embed(texts, progress=(lambda d, t: progress("embed", d, t)) if progress else None)
        if vectors is None:
            vectors = np.zeros((n, fresh_vectors.shape[1]), dtype=np.float32)
        vectors[todo] = fresh_vectors
    if vectors is None:
        vectors = np.zeros((0, embedder.dimension), dtype=np.float32)
    return vectors, len(texts)


def _to_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue()


def _npy(vectors: Vectors) -> bytes:
    sink = io.BytesIO()
    np.save(sink, vectors, allow_pickle=False)
    return sink.getvalue()


def _store_files(store: Store, chunks: pa.Table, vectors: Vectors, params: VectorParams) -> dict[str, Any]:
    """Build the engines and put every file in the blob store (each in its own short transaction)."""
    payloads = {
        "chunks": _to_bytes(chunks),
        "embeddings": _npy(vectors),
        "vectors": vectors_to_bytes(build_vectors(vectors, params)),
        "bm25": bm25_to_bytes(build_bm25(chunks.column("text").to_pylist())),
    }
    files = {}
    for key, data in payloads.items():
        info = store.put_blob(io.BytesIO(data))
        files[key] = {"digest": info.digest, "size": info.size}
    return files


def _same_vectors(store: Store, previous: IndexVersion, vectors: VectorParams | None) -> bool:
    """Whether `previous` was built as `vectors` asks (graph and storage; the search breadth is checked apart)."""
    if vectors is None or previous.kind != vectors.kind:
        return vectors is None
    if vectors.kind == "flat":
        return True
    built = VectorParams.from_json(previous.manifest(store)["vectors"])
    return (built.m, built.ef_construction, built.storage) == (vectors.m, vectors.ef_construction, vectors.storage)


def _same_build(
    store: Store,
    previous: IndexVersion | None,
    source: DatasetInput,
    model_id: str,
    settings: ChunkSettings,
    vectors: VectorParams | None,
) -> bool:
    return (
        previous is not None
        and source.digest is not None
        and previous.dataset_digest == source.digest
        and previous.embedding_model == model_id
        and previous.chunking == settings
        and _same_vectors(store, previous, vectors)
    )


def build_index(
    store: Store,
    name: str,
    dataset: str | pa.Table,
    *,
    chunking: ChunkSettings | None = None,
    model: str | Embedder = DEFAULT_MODEL,
    vectors: VectorParams | None = None,
    incremental: bool = True,
    progress: BuildProgress | None = None,
    ef_search: int | None = None,
) -> IndexBuild:
    """Build the next version of index `name` from a dataset version (or an Arrow table of records).

    Args:
        store: The workspace store.
        name: The index's name.
        dataset: A dataset reference (`docs`, `docs@v3`) or a table with `id` and `text` columns.
        chunking: How to cut records into chunks (default: 800 characters, 100 overlap).
        model: A sentence-transformers id or path, or an `Embedder` (default: the offline MiniLM).
        vectors: Vector index settings; by default exact below `HNSW_THRESHOLD` chunks, HNSW above.
        incremental: Reuse embeddings of unchanged records from the latest version of `name`.
        progress: Called with (stage, done, total) as work advances.
        ef_search: The HNSW search breadth stored with the version (when it is HNSW), instead of the
            one chosen by size; routes may still set their own.

    Returns:
        The build: version, whether it is new (False when the latest version already indexes
        this dataset version the same way), and how many chunks were embedded and reused.

    Examples:
        >>> build_index(store, "docs", "docs@v2", chunking=ChunkSettings(size=400, overlap=40))  # doctest: +SKIP
    """
    started = time.perf_counter()
    if "@" in name:
        raise InputError(f"expected an index NAME without a version; got {name!r}")
    parse_index_ref(name)
    require(store, "index.build", f"index:{name}")
    settings = chunking or ChunkSettings()
    embedder = SentenceTransformerEmbedder(model) if isinstance(model, str) else model
    source = resolve_dataset(store, dataset)
    with store.db.read() as conn:
        previous = latest_version(conn, name)
    if _same_build(store, previous, source, embedder.model_id, settings, vectors) and (
        ef_search is None
        or previous is None
        or previous.kind != "hnsw"  # an exact index has no search breadth to differ in
        or previous.manifest(store)["vectors"].get("ef_search") == ef_search
    ):
        assert previous is not None
        # Nothing embedded: every chunk of the existing version is reused as it is.
        return IndexBuild(previous, False, 0, previous.num_chunks, previous.ref, time.perf_counter() - started)
    chunks = chunk_records(source.table, settings, embedder)
    if progress:
        progress("chunk", source.table.num_rows, source.table.num_rows)
    reuse = _reusable(store, previous, embedder.model_id, settings) if incremental else None
    embedded_vectors, embedded = _embed(chunks, embedder, reuse, progress)
    params = vectors or VectorParams.for_size(chunks.num_rows)
    if params.kind == "hnsw" and ef_search:
        params = dataclasses.replace(params, ef_search=ef_search)
    if params.kind == "hnsw" and not params.ef_search:  # "by size": fixed now, so the manifest says what is used
        params = dataclasses.replace(params, ef_search=ef_search_for(chunks.num_rows))
    if progress:
        progress("index", 0, 1)
    files = _store_files(store, chunks, embedded_vectors, params)
    if progress:
        progress("index", 1, 1)
    reused_from = previous.ref if reuse is not None and previous is not None else None
    manifest = {
        "schema": MANIFEST_SCHEMA,
        "dataset": {"ref": source.ref, "digest": source.digest},
        "embedding": {"model": embedder.model_id, "dimension": int(embedded_vectors.shape[1]), "metric": "cosine"},
        "chunking": settings.to_json(),
        "vectors": params.to_json(),
        "files": files,
        "num_records": source.table.num_rows,
        "num_chunks": chunks.num_rows,
        "reused_from": reused_from,
    }
    manifest_info = store.put_blob(io.BytesIO(canonical_json(manifest).encode()))
    with store.db.write() as conn:
        lock_index(conn, name, store.clock())
        latest = latest_version(conn, name)
        version = insert_version(
            conn,
            {
                "name": name,
                "version": (latest.version if latest else 0) + 1,
                "manifest_digest": manifest_info.digest,
                "dataset_ref": source.ref,
                "dataset_digest": source.digest,
                "embedding_model": embedder.model_id,
                "chunking": canonical_json(settings.to_json()),
                "kind": params.kind,
                "num_records": source.table.num_rows,
                "num_chunks": chunks.num_rows,
                "embedded_chunks": embedded,
                "created_by": store.actor,
                "created_at": store.clock(),
            },
        )
        node = add_node(conn, version.node, at=store.clock())
        if source.node is not None:
            add_edge(conn, source.node, node, "indexed_as", at=store.clock())
        if reused_from is not None:
            add_edge(conn, f"index-version:{reused_from}", node, "derived_from", at=store.clock())
        details = {"manifest": manifest_info.digest, "dataset": source.ref, "model": embedder.model_id}
        store.audit(conn, "index.build", node, {**details, "chunks": chunks.num_rows, "embedded": embedded})
    return IndexBuild(version, True, embedded, chunks.num_rows - embedded, reused_from, time.perf_counter() - started)
