from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from keel.core.errors import InputError
from keel.data import load_version
from keel.index import ChunkSettings, build_index, open_index, parse_filters, search
from keel.store import Store, path_between

SMALL = ChunkSettings(size=120, overlap=20)


@pytest.fixture
def help_index(store: Store, kb: Any) -> str:
    return build_index(store, "help", kb.ref, chunking=SMALL).index.ref


def test_hybrid_search_finds_the_answering_document(store: Store, help_index: str) -> None:
    retriever = open_index(store, help_index)
    cases = {
        "How long until I get my money back?": "refunds",
        "I forgot my password": "password",
        "too many requests error 429": "api-limits",
        "verify the signature of event notifications": "webhooks",
        "where can I download last month's invoice": "invoices",
    }
    for query, record in cases.items():
        hits = retriever.search(query, k=3)
        assert hits[0].record_id == record, (query, [h.record_id for h in hits])
        assert [h.rank for h in hits] == [1, 2, 3] and hits[0].score >= hits[1].score >= hits[2].score
    # A rare keyword the embedding model blurs: BM25 puts it first, fusion keeps it there.
    keyword = retriever.search("Retry-After", k=3, mode="keyword")
    assert keyword[0].record_id == "api-limits" and keyword[0].keyword_score and keyword[0].vector_score is None
    fused = retriever.search("Retry-After", k=3)
    assert fused[0].record_id == "api-limits" and fused[0].vector_score is not None
    vector = retriever.search("two-step verification with a phone app", k=1, mode="vector")
    assert vector[0].record_id == "two-factor" and vector[0].keyword_score is None


def test_a_hit_traces_back_to_its_source_record(store: Store, kb: Any, help_index: str) -> None:
    hit = search(store, help_index, "express delivery fee", k=1)[0]
    assert hit.record_id == "shipping" and hit.chunk_id == "shipping#1"
    records = load_version(store, kb.ref)
    record = records.filter(pc.equal(records.column("id"), hit.record_id)).to_pylist()[0]
    assert record["text"][hit.start : hit.end] == hit.text
    assert hit.source == record["source"] and hit.source["uri"] == "file:///kb/shipping.md"
    assert hit.meta == {"topic": "delivery"} and hit.fields == {"lang": "en"}
    as_json = hit.to_json()
    assert as_json["source"]["fetched_at"] == "2026-11-20T12:00:00+00:00"
    with store.db.read() as conn:
        path = path_between(conn, f"index-version:{help_index}", kb.node)
    assert path is not None and path.nodes == (f"index-version:{help_index}", kb.node)


def test_filters_on_columns_and_meta_fields(store: Store, help_index: str) -> None:
    retriever = open_index(store, help_index)
    german = retriever.search("shipping to other countries", k=5, filters={"lang": "de"})
    assert [h.record_id for h in german] == ["versand"]
    account = retriever.search("security", k=10, filters=parse_filters(["meta.topic=account", "lang=en"]))
    assert {h.record_id for h in account} == {"password", "two-factor"}
    assert {h.record_id for h in retriever.search("billing", k=10, filters={"topic": "billing"})} == {
        "refunds",
        "invoices",
    }
    assert retriever.search("anything", k=3, filters={"lang": "fr"}) == []
    with pytest.raises(InputError, match="known keys: lang, meta.topic"):
        retriever.search("anything", filters={"colour": "red"})
    with pytest.raises(InputError, match="KEY=VALUE"):
        parse_filters(["lang"])


def test_bad_queries(store: Store, help_index: str) -> None:
    retriever = open_index(store, help_index)
    with pytest.raises(InputError, match="k of at least 1"):
        retriever.search("refund", k=0)
    with pytest.raises(InputError, match="search mode"):
        retriever.search("refund", mode="semantic")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="query with some text"):
        retriever.search("   ")
    # Only stopwords: BM25 has nothing to match, vector search still answers.
    assert len(retriever.search("the and of", k=2)) == 2


def test_an_empty_dataset_gives_an_empty_index(store: Store) -> None:
    empty = pa.table({"id": pa.array([], pa.string()), "text": pa.array([], pa.string())})
    build = build_index(store, "empty", empty)
    assert build.index.num_chunks == 0
    assert open_index(store, "empty").search("anything") == []


def test_an_hnsw_index_answers_like_the_exact_one(store: Store, kb: Any) -> None:
    from keel.index import VectorParams

    hnsw = build_index(store, "help-hnsw", kb.ref, chunking=SMALL, vectors=VectorParams("hnsw", ef_search=24)).index
    assert hnsw.kind == "hnsw" and hnsw.manifest(store)["vectors"] == {
        "kind": "hnsw",
        "m": 16,
        "ef_construction": 64,
        "ef_search": 24,
    }
    retriever = open_index(store, hnsw.ref)
    assert retriever.vectors.hnsw.efSearch == 24  # the search setting survives the round trip through bytes
    exact = build_index(store, "help-flat", kb.ref, chunking=SMALL).index
    query = "what happens when I exceed the request limit"
    approx_ids = [h.chunk_id for h in retriever.search(query, k=5, mode="vector")]
    assert approx_ids == [h.chunk_id for h in search(store, exact.ref, query, k=5, mode="vector")]


def test_index_files_are_memory_mapped_and_answer_as_read_ones(store: Store, kb: Any) -> None:
    import numpy as np

    from keel.index import VectorParams, get_index
    from keel.index._search import Retriever
    from keel.store import read_bytes

    ref = build_index(store, "help", kb.ref, chunking=SMALL, vectors=VectorParams("hnsw", ef_search=48)).index.ref
    mapped = open_index(store, ref)
    assert mapped.mapped == ["embeddings", "vectors"]
    assert isinstance(mapped.embeddings, np.memmap) and not mapped.embeddings.flags.writeable
    assert mapped.vectors.hnsw.efSearch == 48
    version = get_index(store, ref)
    manifest = version.manifest(store)
    blobs = {key: read_bytes(store.blobs, entry["digest"]) for key, entry in manifest["files"].items()}
    read = Retriever(version, manifest, blobs, mapped.embedder)
    assert read.mapped == [] and not isinstance(read.embeddings, np.memmap)
    for query, filters in (("I forgot my password", None), ("express delivery", {"topic": "delivery"})):
        got = [(h.chunk_id, round(h.score, 5)) for h in mapped.search(query, k=3, filters=filters)]
        assert got == [(h.chunk_id, round(h.score, 5)) for h in read.search(query, k=3, filters=filters)]
        assert got


def test_only_verified_plaintext_local_blobs_are_mappable(store: Store, tmp_path: Any) -> None:
    import os

    from keel.core.errors import KeelError
    from keel.store import FsspecBlobStore, mappable_path, put_bytes
    from keel.store._blobs import SealingBlobStore

    plain = put_bytes(store.blobs, b"vectors " * 100).digest
    path = mappable_path(store.blobs, plain)
    assert path is not None and path.read_bytes() == b"vectors " * 100
    sealed = put_bytes(SealingBlobStore(store.blobs, "k" * 26, os.urandom(32)), b"secret vectors").digest
    assert mappable_path(store.blobs, sealed) is None  # encrypted on disk: read it through the unsealer
    remote = FsspecBlobStore(f"memory://{tmp_path.name}/blobs")
    assert mappable_path(remote, put_bytes(remote, b"remote").digest) is None
    path.chmod(0o600)
    path.write_bytes(b"tampered " * 100)
    with pytest.raises(KeelError, match="corrupted"):
        mappable_path(store.blobs, plain)


def test_an_sq8_index_scores_exactly_and_older_fp32_versions_keep_loading(store: Store, kb: Any) -> None:
    import numpy as np

    from keel.index import VectorParams

    # An fp32 HNSW version's manifest is written as before `storage` existed: the same keys, the same digest.
    old = build_index(store, "help", kb.ref, chunking=SMALL, vectors=VectorParams("hnsw", ef_search=24)).index
    assert old.manifest(store)["vectors"] == {"kind": "hnsw", "m": 16, "ef_construction": 64, "ef_search": 24}
    sq8 = VectorParams("hnsw", m=32, ef_construction=128, ef_search=24, storage="sq8")
    built = build_index(store, "help", kb.ref, chunking=SMALL, vectors=sq8)
    assert built.created and built.reused_chunks == built.index.num_chunks  # a new version, nothing re-embedded
    new = built.index
    assert new.manifest(store)["vectors"] == {"kind": "hnsw", "m": 32, "ef_construction": 128, "ef_search": 24,
                                              "storage": "sq8"}  # fmt: skip
    assert not build_index(store, "help", kb.ref, chunking=SMALL, vectors=sq8).created  # built this way already
    exact = build_index(store, "help-flat", kb.ref, chunking=SMALL).index
    flat, before, after = (open_index(store, v.ref) for v in (exact, old, new))
    assert after.mapped == ["embeddings", "vectors"] and after.vectors.hnsw.efSearch == 24  # mapped like fp32
    assert type(before.vectors).__name__ == "IndexHNSWFlat" and type(after.vectors).__name__ == "IndexHNSWSQ"
    queries = ["what happens when I exceed the request limit", "How long until I get my money back?", "invoice pdf"]
    for query in queries:
        want = flat.search(query, k=5, mode="vector")
        for retriever in (before, after):  # the old version still answers, and the 8-bit one as exact search
            got = retriever.search(query, k=5, mode="vector")
            assert [h.chunk_id for h in got] == [h.chunk_id for h in want]
            np.testing.assert_allclose([h.score for h in got], [h.score for h in want], rtol=0, atol=1e-6)
    # Re-ranked scores are the fp32 inner products, not the 8-bit approximations.
    vector = after.embedder.embed([queries[0]])
    scores, ids = after.nearest(vector, 3)
    np.testing.assert_allclose(scores[0], after.embeddings[ids[0]] @ vector[0], rtol=0, atol=1e-6)
    assert list(scores[0]) == sorted(scores[0], reverse=True)


def test_sq8_graph_recalls_real_embeddings_at_least_as_well_as_the_fp32_one(store: Store) -> None:
    """Real MiniLM vectors of real text (Keel's own docs, 200-character chunks), real questions: no mocks.

    The serving choice (benchmarks/hnsw_storage.py, docs/serving.md) moved from M 16 / efConstruction 64 /
    fp32 to M 32 / efConstruction 128 / 8-bit vectors re-ranked on fp32. At the same `ef_search` the new
    graph must find at least what the old one finds; small breadths, where HNSW misses neighbours, tell.
    """
    from datetime import UTC, datetime
    from pathlib import Path

    import numpy as np
    import torch

    from keel.data import commit_version, make_record, records_to_table
    from keel.index import VectorParams

    root = Path(__file__).resolve().parents[3]
    fetched = datetime(2026, 12, 1, tzinfo=UTC)
    # About 500 chunks of real prose: enough for HNSW to miss neighbours, few enough to embed in seconds.
    texts = [p.read_text()[:11_000] for p in sorted((root / "docs").glob("*.md"))[:8]]
    records = [make_record(t, f"file://docs/{i}", 0, t.encode(), fetched, {}, record_id_override=f"doc-{i}")
               for i, t in enumerate(texts)]  # fmt: skip
    version, _ = commit_version(store, "docs", records_to_table(records))
    cut = ChunkSettings(size=200, overlap=25)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # on a busy machine two OpenMP threads spin waiting for each other (docs/serving.md)
    try:
        old = build_index(store, "docs", str(version.ref), chunking=cut, vectors=VectorParams("hnsw")).index
    finally:
        torch.set_num_threads(threads)
    new_params = VectorParams("hnsw", m=32, ef_construction=128, storage="sq8")
    new = build_index(store, "docs", str(version.ref), chunking=cut, vectors=new_params).index
    before, after = open_index(store, old.ref), open_index(store, new.ref)
    assert len(after) >= 400 and new.embedded_chunks == 0  # the second version reused the first's vectors
    lines = (root / "benchmarks" / "data" / "hnsw_queries.txt").read_text().splitlines()
    questions = [line.split("\t", 1)[1] for line in lines if line and not line.startswith("#")]
    vectors = after.embedder.embed(questions)
    exact = np.argsort(-(np.asarray(after.embeddings) @ vectors.T), axis=0, kind="stable")[:10].T

    def recall(retriever: Any, ef_search: int) -> float:
        found = retriever.nearest(vectors, 10, ef_search=ef_search)[1]
        return float(np.mean([len(set(a) & set(e)) / 10 for a, e in zip(found, exact, strict=True)]))

    pairs = [(ef, recall(after, ef), recall(before, ef)) for ef in (4, 8, 16, 32)]
    # FAISS may build a graph on several threads (not bit-for-bit repeatable): 0.01 of slack per breadth.
    assert all(new >= old - 0.01 for _, new, old in pairs), pairs
    assert sum(n for _, n, _ in pairs) >= sum(o for *_, o in pairs), pairs
    assert min(old for *_, old in pairs) < 0.99, pairs  # the comparison is not between two perfect scores
