from __future__ import annotations

import datetime as dt
import hashlib
import json
import multiprocessing as mp
import textwrap
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlalchemy import func, select

from keel.core.errors import BlobCorruptedError, ConfigError, InputError, NotFoundError
from keel.core.settings import load_settings
from keel.data import (
    commit_version,
    diff_versions,
    export_version,
    get_version,
    list_versions,
    load_expectations,
    load_version,
    split_version,
    tag_version,
    to_hf_dataset,
    trace_record,
    validate_version,
)
from keel.data._inputs import read_parquet_file
from keel.store import Store, add_edge, events, open_store, read_bytes, verify, walk
from keel.store.schema import dataset_records, dataset_versions


def _records(n: int, *, start: int = 0, changed: frozenset[int] = frozenset()) -> pa.Table:
    ids = [f"doc-{i:05d}" for i in range(start, start + n)]
    return pa.table(
        {
            "id": ids,
            "text": [f"record {i} {'edited' if i in changed else 'original'} text" for i in range(start, start + n)],
            "source": [
                {
                    "uri": f"file:///corpus/{i}.txt",
                    "sha256": f"{i:064x}",
                    "fetched_at": dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
                }
                for i in range(start, start + n)
            ],
            "meta": [json.dumps({"n": i}) for i in range(start, start + n)],
        }
    )


def _sorted(table: pa.Table) -> list[dict[str, object]]:
    return sorted(table.to_pylist(), key=lambda r: str(r["id"]))


def test_commit_and_load_round_trip_with_content_addressed_manifest(store: Store) -> None:
    table = _records(250)
    version, created = commit_version(store, "docs", table, message="first", shard_rows=100)
    assert created and version.ref == "docs@v1" and version.num_rows == 250
    assert [s.rows for s in version.shards] == [100, 100, 50]
    # identity: the sha256 of the manifest blob, which reads back verified
    assert hashlib.sha256(read_bytes(store.blobs, version.digest)).hexdigest() == version.digest
    assert _sorted(load_version(store, "docs@latest")) == _sorted(table)
    assert version.stats["text"]["min_length"] > 0 and version.stats["id"]["nulls"] == 0
    again, created = commit_version(store, "docs", table)
    assert not created and again.ref == "docs@v1"
    assert get_version(store, f"sha256:{version.digest[:10]}").ref == "docs@v1"
    with store.db.read() as conn:
        assert conn.scalar(select(func.count()).select_from(dataset_records)) == 250
    with store.db.read() as conn:
        assert verify(conn).ok
        assert [e.action for e in events(conn, object_id=version.node)] == ["dataset.commit"]


def test_second_version_stores_only_changes_and_diff_names_them(store: Store) -> None:
    first, _ = commit_version(store, "docs", _records(1000), shard_rows=250)
    # drop 0..9, change 100..104, add 1000..1009
    table = pa.concat_tables([_records(990, start=10, changed=frozenset(range(100, 105))), _records(10, start=1000)])
    second, created = commit_version(store, "docs", table, message="edits", shard_rows=250)
    assert created and second.ref == "docs@v2" and second.parents == [first.digest]
    assert second.new_bytes < 0.2 * first.new_bytes  # 4 shards shared, one small shard new
    new_shards = {s.digest for s in second.shards} - {s.digest for s in first.shards}
    assert second.new_bytes == sum(s.bytes for s in second.shards if s.digest in new_shards)
    assert first.new_bytes == first.num_bytes  # everything new; keys files and the manifest are not counted
    assert {s.digest for s in first.shards} <= {s.digest for s in second.shards}
    assert _sorted(load_version(store, "docs@v2")) == _sorted(table)
    assert _sorted(load_version(store, "docs@v1")) == _sorted(_records(1000))  # v1 untouched
    diff = diff_versions(store, "docs@v1", "docs@v2")
    assert diff.added == [f"doc-{i:05d}" for i in range(1000, 1010)]
    assert diff.removed == [f"doc-{i:05d}" for i in range(10)]
    assert diff.changed == [f"doc-{i:05d}" for i in range(100, 105)]
    assert diff.unchanged == 1000 - 10 - 5
    assert diff.schema_added == [] and diff.stats  # mean text length moved
    with store.db.read() as conn:
        assert walk(conn, second.node, "upstream")[0].node == first.node


def test_schema_change_is_reported_and_written_in_full(store: Store) -> None:
    commit_version(store, "docs", _records(50))
    wider = _records(50).append_column("lang", pa.array(["en"] * 50))
    second, _ = commit_version(store, "docs", wider)
    diff = diff_versions(store, "docs@v1", "docs@v2")
    assert diff.schema_added == ["lang"] and diff.changed == [f"doc-{i:05d}" for i in range(50)]
    assert second.schema.field("lang").type == pa.string()


def test_split_is_deterministic_disjoint_and_in_lineage(store: Store) -> None:
    commit_version(store, "docs", _records(2000), shard_rows=500)
    parts = split_version(store, "docs@v1", {"train": 0.8, "val": 0.1, "test": 0.1}, seed=7)
    ids = {k: set(load_version(store, v.ref, columns=["id"]).column("id").to_pylist()) for k, v in parts.items()}
    assert set.union(*ids.values()) == {f"doc-{i:05d}" for i in range(2000)}
    assert sum(len(s) for s in ids.values()) == 2000
    assert 1500 < len(ids["train"]) < 1700 and 120 < len(ids["val"]) < 280
    again = split_version(store, "docs@v1", {"train": 0.8, "val": 0.1, "test": 0.1}, seed=7)
    assert {k: v.ref for k, v in again.items()} == {
        "train": "docs-train@v1",
        "val": "docs-val@v1",
        "test": "docs-test@v1",
    }
    with store.db.read() as conn:
        assert [h.node for h in walk(conn, "dataset-version:docs-val@v1", "upstream")] == ["dataset-version:docs@v1"]
    # the train split reuses the parent's shards with deletion vectors; the sparse splits are rewritten
    train = get_version(store, "docs-train@v1")
    assert train.new_bytes < 0.1 * get_version(store, "docs@v1").new_bytes


def test_export_jsonl_parquet_hf_and_reimport(store: Store, tmp_path: Path) -> None:
    table = _records(120)
    commit_version(store, "docs", table)
    jsonl = export_version(store, "docs@v1", tmp_path / "out.jsonl", "jsonl")
    assert len(jsonl.read_text().splitlines()) == 120
    parquet = export_version(store, "docs@v1", tmp_path / "out.parquet", "parquet")
    assert _sorted(pq.read_table(parquet)) == _sorted(table)
    export_version(store, "docs@v1", tmp_path / "hf", "hf")
    hf = to_hf_dataset(store, "docs")
    assert hf.num_rows == 120 and set(hf.column_names) == set(table.column_names)
    # committing the exported Parquet again changes nothing
    _, created = commit_version(store, "docs", [parquet])
    assert not created


def test_commit_reads_files_and_reports_bad_lines(store: Store, tmp_path: Path) -> None:
    good = tmp_path / "a.jsonl"
    good.write_text('{"prompt": "hi", "completion": "hello"}\n{"prompt": "bye", "completion": "ciao"}\n')
    version, _ = commit_version(store, "sft", [good])
    assert version.num_rows == 2 and version.schema.names[0] == "id"  # ids derived from content
    assert version.producer["files"] == [str(good)]
    bad = tmp_path / "b.jsonl"
    bad.write_text('{"prompt": "hi"}\n{"prompt": \n')
    with pytest.raises(InputError, match=r"b.jsonl:2: expected one JSON object per line"):
        commit_version(store, "sft", [bad])
    with pytest.raises(InputError, match="expected a .parquet, .jsonl"):
        commit_version(store, "sft", [tmp_path / "a.jsonl", Path(__file__)])
    with pytest.raises(NotFoundError, match="no dataset named 'nope'"):
        get_version(store, "nope@v1")
    with pytest.raises(NotFoundError, match=r"versions v1..v1"):
        get_version(store, "sft@v9")


def test_trace_finds_source_versions_and_downstream(store: Store) -> None:
    commit_version(store, "docs", _records(300), shard_rows=100)
    commit_version(store, "docs", _records(300, changed=frozenset({42})), shard_rows=100)
    with store.db.write() as conn:
        add_edge(conn, "dataset-version:docs@v2", "model-version:bot@v1", "trained_on")
    found = trace_record(store, "doc-00007")
    assert found.versions == ["docs@v1", "docs@v2"]
    assert found.source is not None and found.source["uri"] == "file:///corpus/7.txt"
    assert found.text_preview == "record 7 original text"
    assert [h.node for h in found.downstream] == ["dataset-version:docs@v2", "model-version:bot@v1"]
    changed = trace_record(store, "doc-00042")  # two records share the id: one per version
    assert changed.versions == ["docs@v1", "docs@v2"]
    with pytest.raises(NotFoundError, match="no committed dataset version holds"):
        trace_record(store, "doc-99999")


def test_tags_resolve_and_move(store: Store) -> None:
    commit_version(store, "docs", _records(10))
    commit_version(store, "docs", _records(11))
    assert tag_version(store, "docs@v1", "gold", reason="reviewed").tags == ("gold",)
    assert get_version(store, "docs@gold").version == 1
    tag_version(store, "docs@v2", "gold")
    assert get_version(store, "docs@gold").version == 2
    assert [v.tags for v in list_versions(store, "docs")] == [("gold",), ()]


def test_validate_lists_every_failure(store: Store, tmp_path: Path) -> None:
    table = _records(20).append_column("lang", pa.array(["en"] * 15 + ["de"] * 5))
    table = table.set_column(1, "text", pa.array(["ok text"] * 18 + ["mail me: jane.doe@example.com", "x"]))
    commit_version(store, "docs", table)
    expect = tmp_path / "expect.yaml"
    expect.write_text(
        textwrap.dedent(
            """
            schema: {id: string, text: string, label: int64}
            unique_ids: true
            not_null: [text]
            length: {text: {min: 2}}
            rows: {min: 100}
            language: {column: lang, min_share: {en: 0.9}}
            no_pii: [text]
            """
        )
    )
    report = validate_version(store, "docs", load_expectations(expect))
    assert not report.ok
    assert sorted(f["check"] for f in report.failures) == ["language", "length", "no_pii", "rows", "schema"]
    pii = next(f for f in report.failures if f["check"] == "no_pii")
    assert pii["examples"] == [{"id": "doc-00018", "types": ["email"]}]
    expect.write_text("unique_ids: yes\nnot_nul: [text]\nrows: {min: -1}\n")
    with pytest.raises(ConfigError, match=r"rows.min: Input should be greater.*not_nul: Extra inputs"):
        load_expectations(expect)


def test_reading_a_version_verifies_its_blobs(store: Store) -> None:
    version, _ = commit_version(store, "docs", _records(10))
    path = store.blobs.path(version.shards[0].digest)  # type: ignore[attr-defined]
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.chmod(0o644)
    path.write_bytes(bytes(data))
    with pytest.raises(BlobCorruptedError):
        load_version(store, "docs@v1")


def _crash_mid_commit(workspace: str) -> None:
    """In a child process: commit, and die (no cleanup, no rollback) halfway through the record index."""
    import os

    import keel.data._versions as versions

    real = versions._insert_records

    def dying(conn, shard_id, record_ids):  # type: ignore[no-untyped-def]
        real(conn, shard_id, record_ids[: len(record_ids) // 2])
        os._exit(9)

    versions._insert_records = dying
    store = open_store(load_settings(Path(workspace)))
    commit_version(store, "docs", _records(500, changed=frozenset(range(20))), shard_rows=100)


def test_a_crash_mid_commit_leaves_no_half_version(store: Store) -> None:
    commit_version(store, "docs", _records(500), shard_rows=100)
    child = mp.get_context("spawn").Process(target=_crash_mid_commit, args=(str(store.settings.workspace),))
    child.start()
    child.join(60)
    assert child.exitcode == 9
    with store.db.read() as conn:
        assert conn.scalar(select(func.count()).select_from(dataset_versions)) == 1
        assert conn.scalar(select(func.count()).select_from(dataset_records)) == 500
    assert get_version(store, "docs").ref == "docs@v1"
    with store.db.read() as conn:
        assert verify(conn).ok
    second, created = commit_version(store, "docs", _records(500, changed=frozenset(range(20))), shard_rows=100)
    assert created and second.ref == "docs@v2"
    assert diff_versions(store, "docs@v1", "docs@v2").changed == [f"doc-{i:05d}" for i in range(20)]


@pytest.mark.parametrize("row_group_size", [3, 64, 131_072, 131_073])
def test_read_parquet_file_reads_what_read_table_reads_chunk_for_chunk(tmp_path: Path, row_group_size: int) -> None:
    rows = 131_100 if row_group_size > 1000 else 500  # past pyarrow's scanner batch size only where it matters
    numbers = pa.array(np.arange(rows))
    spans = pa.StructArray.from_arrays([numbers, numbers.cast(pa.string())], names=["start", "type"])
    table = pa.table(
        {
            "id": numbers.cast(pa.string()),
            "n": numbers,
            "spans": pa.ListArray.from_arrays(pa.array(np.arange(0, rows + 1, dtype=np.int32)), spans),
        }
    )
    for name, part in (("empty", table.slice(0, 0)), ("small", table.slice(0, 100)), ("all", table)):
        path = tmp_path / f"{name}.parquet"
        pq.write_table(part, path, row_group_size=row_group_size)
        mine, theirs = read_parquet_file(path), pq.read_table(path)
        assert mine.equals(theirs, check_metadata=True)
        assert [[len(c) for c in col.chunks] for col in mine.columns] == [
            [len(c) for c in col.chunks] for col in theirs.columns
        ]
