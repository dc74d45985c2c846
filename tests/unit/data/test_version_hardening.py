"""Dataset versions under damage and abuse: repair by re-adding, atomic export, verified trace, id limits."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest

from keel.core.errors import BlobCorruptedError, BlobNotFoundError, InputError
from keel.data import commit_version, export_version, load_version, trace_record
from keel.data._versions import MAX_ID_LENGTH
from keel.store import LocalBlobStore, Store


def _table(n: int = 20, prefix: str = "r") -> pa.Table:
    return pa.table({"id": [f"{prefix}{i}" for i in range(n)], "text": [f"text of record {i}" for i in range(n)]})


def _damage(store: Store, digest: str, *, delete: bool = False) -> None:
    assert isinstance(store.blobs, LocalBlobStore)
    path = store.blobs.path(digest)
    if delete:
        path.unlink()
        return
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size: only the hash can tell
    path.chmod(0o600)
    path.write_bytes(bytes(data))


def test_committing_the_same_rows_again_repairs_a_damaged_shard(store: Store) -> None:
    version, _ = commit_version(store, "docs", _table())
    _damage(store, version.shards[0].digest)
    with pytest.raises(BlobCorruptedError):
        load_version(store, "docs@v1")
    again, created = commit_version(store, "docs", _table())
    assert (again.ref, created) == ("docs@v1", False)
    assert load_version(store, "docs@v1").equals(_table())


def test_committing_the_same_rows_under_another_name_repairs_instead_of_reusing(store: Store) -> None:
    version, _ = commit_version(store, "docs", _table())
    _damage(store, version.shards[0].digest)
    copy, created = commit_version(store, "copy", _table())
    assert created and copy.shards[0].digest == version.shards[0].digest
    assert load_version(store, "copy").equals(_table())
    assert load_version(store, "docs@v1").equals(_table())


def test_a_damaged_shard_of_the_base_is_rewritten_not_reused(store: Store) -> None:
    first, _ = commit_version(store, "docs", _table(30), shard_rows=10)
    _damage(store, first.shards[1].digest)
    grown = pa.concat_tables([_table(30), _table(5, prefix="new")])
    second, created = commit_version(store, "docs", grown, shard_rows=10)
    loaded = load_version(store, second)
    assert created and sorted(loaded.to_pylist(), key=str) == sorted(grown.to_pylist(), key=str)
    assert second.shards[0].digest == first.shards[0].digest  # intact shards are still shared


@pytest.mark.parametrize("bad_id", ["x" * (MAX_ID_LENGTH + 1), "with\x00nul"], ids=["too-long", "nul"])
def test_both_backends_refuse_the_same_ids_when_reading(store: Store, bad_id: str) -> None:
    table = pa.table({"id": ["fine", bad_id], "text": ["a", "b"]})
    with pytest.raises(InputError, match=r"at most 255 characters without NUL; 1 record\(s\) .* row 2"):
        commit_version(store, "docs", table)
    longest = pa.table({"id": ["y" * MAX_ID_LENGTH], "text": ["c"]})
    version, _ = commit_version(store, "docs", longest)
    assert trace_record(store, "y" * MAX_ID_LENGTH).versions == [version.ref]


def test_a_failed_export_leaves_the_existing_file_as_it_was(store: Store, tmp_path: Path) -> None:
    version, _ = commit_version(store, "docs", _table())
    dest = tmp_path / "docs.jsonl"
    dest.write_text("my earlier export\n")
    _damage(store, version.shards[0].digest)
    with pytest.raises(BlobCorruptedError):
        export_version(store, "docs", dest, force=True)
    assert dest.read_text() == "my earlier export\n"
    assert not list(tmp_path.glob(".docs.jsonl.*"))
    commit_version(store, "docs", _table())  # repairs
    export_version(store, "docs", dest, force=True)
    assert [json.loads(line)["id"] for line in dest.read_text().splitlines()] == [f"r{i}" for i in range(20)]


def test_export_to_a_directory_or_an_unwritable_place_is_one_input_error(store: Store, tmp_path: Path) -> None:
    commit_version(store, "docs", _table())
    with pytest.raises(InputError, match=r"expected a file path .* is a directory"):
        export_version(store, "docs", tmp_path)
    with pytest.raises(InputError, match="cannot write the export to /proc/keel.jsonl"):
        export_version(store, "docs", "/proc/keel.jsonl")
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="is a file"):
        export_version(store, "docs", tmp_path / "file", "hf")
    export_version(store, "docs", tmp_path / "again.parquet", "parquet")
    export_version(store, "docs", tmp_path / "again.parquet", "parquet", force=True)  # over an earlier export
    assert len(list(tmp_path.glob(".*.part"))) == 0


def test_an_existing_destination_is_replaced_only_with_force(store: Store, tmp_path: Path) -> None:
    commit_version(store, "docs", _table())
    mine = tmp_path / "input.jsonl"
    mine.write_text("the user's own input\n")
    with pytest.raises(InputError, match=rf"expected a new path to export docs@v1 to; {mine} exists; pass --force"):
        export_version(store, "docs", mine)
    assert mine.read_text() == "the user's own input\n"
    link = tmp_path / "link.jsonl"
    link.symlink_to(tmp_path / "nowhere.jsonl")  # even a dangling link is something the user put there
    with pytest.raises(InputError, match="link.jsonl exists"):
        export_version(store, "docs", link)
    assert link.is_symlink() and not (tmp_path / "nowhere.jsonl").exists()
    export_version(store, "docs", mine, force=True)
    assert [json.loads(line)["id"] for line in mine.read_text().splitlines()] == [f"r{i}" for i in range(20)]


def test_a_hugging_face_export_may_fill_an_empty_folder_but_replaces_a_full_one_only_with_force(
    store: Store, tmp_path: Path
) -> None:
    commit_version(store, "docs", _table())
    empty = tmp_path / "hf"
    empty.mkdir()
    export_version(store, "docs", empty, "hf")
    saved = sorted(p.name for p in empty.iterdir())
    assert "dataset_info.json" in saved
    (empty / "notes.txt").write_text("kept until --force")
    with pytest.raises(InputError, match="hf exists; pass --force to replace it, or choose another path"):
        export_version(store, "docs", empty, "hf")
    assert (empty / "notes.txt").read_text() == "kept until --force"
    export_version(store, "docs", empty, "hf", force=True)
    assert sorted(p.name for p in empty.iterdir()) == saved
    assert not list(tmp_path.glob(".hf.*"))


def test_trace_verifies_the_shard_it_reads(store: Store) -> None:
    version, _ = commit_version(store, "docs", _table())
    assert trace_record(store, "r3").text_preview == "text of record 3"
    _damage(store, version.shards[0].digest)
    with pytest.raises(BlobCorruptedError):
        trace_record(store, "r3")
    _damage(store, version.shards[0].digest, delete=True)
    with pytest.raises(BlobNotFoundError):
        trace_record(store, "r3")


def test_trace_of_a_record_without_text_or_source(store: Store) -> None:
    commit_version(store, "questions", pa.table({"id": ["q1"], "question": ["hi"]}))
    traced = trace_record(store, "q1")
    assert (traced.source, traced.text_preview, traced.versions) == (None, None, ["questions@v1"])
