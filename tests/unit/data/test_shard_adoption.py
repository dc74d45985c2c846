"""A commit stores curation outputs as shards as they are, and the version holds exactly the rows it held before.

Before, a commit decoded the engine's output files and wrote their rows again as shards of up to 100,000 rows.
Now each output file (written in the shard format) is one shard: the same rows in the same order, the same
schema, statistics and record keys as when the rows were written anew; only the shard boundaries differ.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from keel.curate import curate, load_recipe
from keel.data import commit_version, get_version, load_version
from keel.data._hashing import row_hashes
from keel.data._shards import SHARD_PARQUET, read_keys, write_shard
from keel.data._versions import _runs
from keel.store import LocalBlobStore, Store, read_bytes

RECIPE = """inputs:
  - path: raw.jsonl
    id_field: id
output: out
shard_size: {shard_size}
steps:
  - exact_dedup: {{}}
  - near_dedup: {{threshold: 0.8}}
"""


def _raw(root: Path, n: int = 300, offset: int = 0) -> None:
    words = [f"w{k}" for k in range(400)]
    rng = np.random.default_rng(7 + offset)
    with (root / "raw.jsonl").open("w", encoding="utf-8") as f:
        for i in range(n):
            text = " ".join(rng.choice(words, 40)) + (" ü" if i % 3 else "")
            f.write(json.dumps({"id": f"r{i + offset}", "text": text}, ensure_ascii=False) + "\n")
            if i % 10 == 0:  # an exact copy the dedup drops
                f.write(json.dumps({"id": f"c{i + offset}", "text": text}, ensure_ascii=False) + "\n")


def _run(store: Store, root: Path, shard_size: int = 70) -> tuple[Path, object]:
    (root / "recipe.yaml").write_text(RECIPE.format(shard_size=shard_size))
    result = curate(store, load_recipe(root / "recipe.yaml"), dataset="docs")
    return root / "out" / "data", result


def _version_keys(store: Store, ref: str) -> tuple[pa.Array, np.ndarray]:
    keys = [read_keys(store.blobs, entry.keys) for entry in get_version(store, ref).shards]
    return pa.concat_arrays([k[0] for k in keys]), np.concatenate([k[1] for k in keys])


def test_each_output_file_is_one_shard_with_the_rows_a_rewriting_commit_stores(store: Store, tmp_path: Path) -> None:
    root = tmp_path / "run"
    root.mkdir()
    _raw(root)
    data, result = _run(store, root)
    files = sorted(data.glob("*.parquet"))
    version = get_version(store, "docs@v1")
    assert len(files) >= 4 and len(version.shards) == len(files)
    for entry, path in zip(version.shards, files, strict=True):
        stored = read_bytes(store.blobs, entry.digest)
        assert stored == path.read_bytes()  # the file itself, not a re-encoding
        table = pq.read_table(path)
        # ... and the very bytes `write_shard` gives for those rows: the shard format, not just the same rows
        assert write_shard(LocalBlobStore(tmp_path / "scratch"), table, row_hashes(table)).data.digest == entry.digest
        assert entry.rows == entry.live_rows == table.num_rows and entry.deletes is None

    # The same rows committed as a table are written anew (one shard): content, schema, stats and keys agree.
    rows = pa.concat_tables(pq.read_table(p) for p in files)
    rewritten, _ = commit_version(store, "rewritten", rows)
    assert len(rewritten.shards) == 1
    assert load_version(store, version).equals(load_version(store, rewritten), check_metadata=True)
    assert version.schema.equals(rewritten.schema, check_metadata=True)
    assert version.manifest["arrow_schema"] == rewritten.manifest["arrow_schema"]
    assert version.stats == rewritten.stats and version.num_rows == rewritten.num_rows
    ids, hashes = _version_keys(store, "docs@v1")
    other_ids, other_hashes = _version_keys(store, "rewritten@v1")
    assert ids.equals(other_ids) and np.array_equal(hashes, other_hashes)


def test_a_second_run_reuses_the_rows_it_shares_and_adopts_only_whole_new_files(store: Store, tmp_path: Path) -> None:
    root = tmp_path / "run"
    root.mkdir()
    _raw(root, n=300)
    _run(store, root)
    mtime = (root / "raw.jsonl").stat().st_mtime_ns
    _raw(root, n=340, offset=0)  # the same 300 records and 40 more: the last file holds old and new rows
    os.utime(root / "raw.jsonl", ns=(mtime, mtime))  # records carry the file's mtime: the old ones are unchanged
    data, result = _run(store, root)
    v2 = get_version(store, "docs@v2")
    expected = pa.concat_tables(pq.read_table(p) for p in sorted(data.glob("*.parquet")))
    got = load_version(store, v2)
    # rows kept from v1 come first in v1's order, then new rows in input order: the order commits always gave
    assert sorted(got.column("id").to_pylist()) == sorted(expected.column("id").to_pylist())
    v1_ids = load_version(store, "docs@v1").column("id").to_pylist()
    assert got.column("id").to_pylist()[: len(v1_ids)] == v1_ids
    new_shards = [e for e in v2.shards if e.digest not in {s.digest for s in get_version(store, "docs@v1").shards}]
    assert sum(e.rows for e in new_shards) == got.num_rows - len(v1_ids)
    ids, hashes = _version_keys(store, "docs@v2")
    live = load_version(store, v2)
    assert set(ids.to_pylist()) >= set(live.column("id").to_pylist())


def test_files_in_another_layout_are_written_anew(store: Store, tmp_path: Path) -> None:
    n = 6000  # rows per file: more than one shard-format row group
    table = pa.table({"id": [f"r{i}" for i in range(4 * n)], "text": [f"text {i}" for i in range(4 * n)]})
    layouts = [{"compression": "snappy"}, {"row_group_size": 1000}, {"write_statistics": True}]
    paths = []
    for i, options in enumerate(layouts):
        paths.append(tmp_path / f"{i}.parquet")
        pq.write_table(table.slice(i * n, n), paths[-1], **{**SHARD_PARQUET, **options})
    version, _ = commit_version(store, "plain", paths)
    assert len(version.shards) == 1 and version.num_rows == 3 * n
    assert {hashlib.sha256(p.read_bytes()).hexdigest() for p in paths} & {e.digest for e in version.shards} == set()
    assert load_version(store, version).equals(table.slice(0, 3 * n))
    # In the shard format, but without an `id` (the commit adds one), or with rows the commit changes: written anew
    pq.write_table(table.slice(3 * n, n).drop_columns(["id"]), tmp_path / "no-id.parquet", **SHARD_PARQUET)
    derived, _ = commit_version(store, "derived", [tmp_path / "no-id.parquet"])
    assert derived.schema.names == ["id", "text"]
    assert read_bytes(store.blobs, derived.shards[0].digest) != (tmp_path / "no-id.parquet").read_bytes()
    ints = pa.table({"id": pa.array(range(n), pa.int64()), "text": table.column("text").slice(0, n)})
    pq.write_table(ints, tmp_path / "int-ids.parquet", **SHARD_PARQUET)
    cast, _ = commit_version(store, "cast", [tmp_path / "int-ids.parquet"])
    assert cast.schema.field("id").type == pa.string()
    assert read_bytes(store.blobs, cast.shards[0].digest) != (tmp_path / "int-ids.parquet").read_bytes()


@pytest.mark.parametrize("shard_rows", [1, 3, 100_000])
def test_cutting_rows_without_adoptable_files_gives_the_runs_of_shard_rows(shard_rows: int) -> None:
    rows = np.array([0, 1, 2, 5, 6, 9, 10, 11, 12, 40], dtype=np.int64)
    expected = [(s, min(s + shard_rows, len(rows))) for s in range(0, len(rows), shard_rows)]
    assert list(_runs(rows, shard_rows, {})) == expected


def test_cutting_rows_adopts_whole_files_only_and_keeps_the_order() -> None:
    rows = np.array([0, 1, 2, 3, 4, 5, 7, 8, 9, 10, 11], dtype=np.int64)
    # file [0, 3) is all new; file [6, 9) lost row 6 (reused from the base); file [9, 12) is all new
    adoptable = {0: (3, b"a"), 6: (9, b"b"), 9: (12, b"c")}
    assert list(_runs(rows, 100, adoptable)) == [(0, 3), (3, 8), (8, 11)]
    assert list(_runs(rows, 2, adoptable)) == [(0, 3), (3, 5), (5, 7), (7, 8), (8, 11)]


def test_files_adopted_into_a_restricted_dataset_are_sealed(store: Store, tmp_path: Path) -> None:
    from tests.unit.govern.blobscan import raw_blob_files

    from keel.data._classification import classify_dataset

    table = pa.table({"id": pa.array([f"r{i}" for i in range(9000)], pa.string()), "text": ["secret words"] * 9000})
    paths = [tmp_path / "a.parquet", tmp_path / "b.parquet"]
    for i, path in enumerate(paths):
        pq.write_table(table.slice(i * 4500, 4500), path, **SHARD_PARQUET)
    before = {name for name, _ in raw_blob_files(store)}
    classify_dataset(store, "vault", "restricted")
    version, _ = commit_version(store, "vault", paths)
    assert len(version.shards) == 2  # adopted: one shard per file
    new = [data for name, data in raw_blob_files(store) if name not in before]
    assert new and all(data.startswith(b"\x00KEEL-AESGCM1") for data in new)
    assert not [data for data in new if b"secret words" in data or data in {p.read_bytes() for p in paths}]
    assert load_version(store, version).equals(table)
