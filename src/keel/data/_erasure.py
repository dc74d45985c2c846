"""Erasing records from dataset versions: find them by keyed subject hash or id, rewrite what holds them.

Versions share shards, so a record lives in one shard however many versions read it, and a shard
may hold rows a version has already deleted. Erasure therefore works on shards: each shard holding
an erased row is rewritten once without those rows (every other row kept, so the new shard serves
every version that used the old one), and every version referencing an old shard, whether the row
is live in it or not, gets a new version whose manifest points at the new shards with its deletion
vectors renumbered. Shards without erased rows are reused untouched. The old versions' rows, their
shards' rows and the old shard and key blobs are then deleted; their tags move to the new versions.
This module knows datasets only: indexes, traces and models are the caller's.
"""

from __future__ import annotations

import io
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
from sqlalchemy import Connection, delete, select

from keel.core.ids import canonical_json
from keel.data._classification import get_classification, sealing_store
from keel.data._column_stats import column_stats, merge_stats
from keel.data._shards import ShardFiles, read_deletes, read_keys, read_shard, write_deletes, write_shard
from keel.data._versions import ShardEntry, _insert_records, _load_manifest, complement, insert_subjects, subject_rows
from keel.registry._aliases import aliases_of, move_alias
from keel.store import BlobInfo, Store, add_edge, add_node, insert_for
from keel.store.schema import (
    blobs,
    dataset_records,
    dataset_shards,
    dataset_version_shards,
    dataset_versions,
    subject_index,
)

__all__ = ["DatasetHits", "ReplacedVersion", "erase_rows", "find_rows"]


@dataclass
class DatasetHits:
    """Where erased records sit: shard id → rows, with each shard's blobs and the versions reading it."""

    rows: dict[int, set[int]] = field(default_factory=dict)
    shards: dict[int, tuple[str, str, int]] = field(default_factory=dict)  # id -> (data digest, keys digest, rows)
    versions: list[tuple[str, int, str]] = field(default_factory=list)  # (name, version, manifest digest)

    @property
    def empty(self) -> bool:
        """Whether nothing was found."""
        return not self.rows


def find_rows(conn: Connection, subjects: Sequence[str], record_ids: Sequence[str]) -> DatasetHits:
    """The shard rows holding any of the subject keys (via `subject_index`) or record ids (via `dataset_records`).

    Two primary-key look-ups and one indexed join: no shard is read.
    """
    hits = DatasetHits()
    found: dict[int, set[int]] = defaultdict(set)
    for chunk in _chunks(list(subjects)):
        for row in conn.execute(
            select(subject_index.c.shard_id, subject_index.c.row).where(subject_index.c.subject.in_(chunk))
        ):
            found[int(row.shard_id)].add(int(row.row))
    for chunk in _chunks(list(record_ids)):
        for row in conn.execute(
            select(dataset_records.c.shard_id, dataset_records.c.row).where(dataset_records.c.record_id.in_(chunk))
        ):
            found[int(row.shard_id)].add(int(row.row))
    if not found:
        return hits
    hits.rows = dict(found)
    for row in conn.execute(select(dataset_shards).where(dataset_shards.c.id.in_(list(found)))):
        hits.shards[int(row.id)] = (row.digest, row.keys_digest, int(row.num_rows))
    hits.versions = [
        (r.name, int(r.version), r.digest)
        for r in conn.execute(
            select(dataset_versions.c.name, dataset_versions.c.version, dataset_versions.c.digest)
            .where(
                dataset_versions.c.digest.in_(
                    select(dataset_version_shards.c.digest).where(dataset_version_shards.c.shard_id.in_(list(found)))
                )
            )
            .order_by(dataset_versions.c.name, dataset_versions.c.version)
        )
    ]
    return hits


def _chunks(items: list[str], size: int = 500) -> Iterable[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def live_hits(store: Store, hits: DatasetHits) -> dict[str, list[str]]:
    """For each affected version (`NAME@vN`), the ids of the erased records it still reads (live, not deleted)."""
    ids_of: dict[int, pa.Array] = {}
    out: dict[str, list[str]] = {}
    by_digest = {digest: shard_id for shard_id, (digest, _, _) in hits.shards.items()}
    for name, version, digest in hits.versions:
        manifest = _load_manifest(store, digest)
        live: list[str] = []
        for entry in manifest["shards"]:
            shard_id = by_digest.get(entry["digest"])
            if shard_id is None:
                continue
            if shard_id not in ids_of:
                ids_of[shard_id], _ = read_keys(store.blobs, hits.shards[shard_id][1])
            deleted = set(read_deletes(store.blobs, entry["deletes"]).tolist())
            live += [ids_of[shard_id][r].as_py() for r in sorted(hits.rows[shard_id]) if r not in deleted]
        out[f"{name}@v{version}"] = live
    return out


@dataclass(frozen=True)
class ReplacedVersion:
    """An old version and the version written without the erased records."""

    old_ref: str
    old_digest: str
    new_ref: str
    new_digest: str
    rows_before: int
    rows_after: int

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "old": self.old_ref,
            "old_digest": self.old_digest,
            "new": self.new_ref,
            "new_digest": self.new_digest,
            "rows_before": self.rows_before,
            "rows_after": self.rows_after,
        }


@dataclass
class _NewShard:
    files: ShardFiles | None  # None: every row of the old shard was erased
    mapping: np.ndarray  # old row -> new row, -1 where erased
    subjects: list[tuple[str, int]]


def _rewrite_shard(store: Store, digest: str, keys_digest: str, rows: int, erased: set[int]) -> _NewShard:
    table = read_shard(store.blobs, digest)
    _, hashes = read_keys(store.blobs, keys_digest)
    keep = complement(rows, np.fromiter(sorted(erased), dtype=np.int64))
    mapping = np.full(rows, -1, dtype=np.int64)
    mapping[keep] = np.arange(len(keep), dtype=np.int64)
    if not len(keep):
        return _NewShard(None, mapping, [])
    kept = table.take(pa.array(keep))
    return _NewShard(write_shard(store.blobs, kept, hashes[keep]), mapping, subject_rows(kept))


def _new_manifest(
    store: Store,
    old: dict[str, Any],
    old_digest: str,
    new_shards: dict[str, _NewShard],
    producer: dict[str, Any],
    cache: _StatsCache,
) -> tuple[dict[str, Any], list[BlobInfo]]:
    entries: list[ShardEntry] = []
    written: list[BlobInfo] = []
    for raw in old["shards"]:
        entry = ShardEntry(**raw)
        shard = new_shards.get(entry.digest)
        if shard is None:
            entries.append(entry)
            continue
        if shard.files is None:
            continue
        remapped = shard.mapping[read_deletes(store.blobs, entry.deletes)]
        remapped = remapped[remapped >= 0]
        vector = write_deletes(store.blobs, remapped) if len(remapped) else None
        if vector is not None:
            written.append(vector)
        rows = shard.files.rows
        entries.append(
            ShardEntry(
                shard.files.data.digest,
                shard.files.keys.digest,
                rows,
                shard.files.data.size,
                vector.digest if vector else None,
                rows - len(remapped),
            )
        )
    manifest = {
        **old,
        "shards": [e.to_json() for e in entries],
        "num_rows": sum(e.live_rows for e in entries),
        "parents": [old_digest],
        "producer": producer,
        "created_by": store.actor,
    }
    manifest["stats"] = _stats(store, entries, old, cache)
    return manifest, written


_StatsCache = dict[tuple[str, str | None], dict[str, Any]]


def _stats(store: Store, entries: list[ShardEntry], old: dict[str, Any], cache: _StatsCache) -> dict[str, Any]:
    """Column statistics of the new version from its live rows (the old ones described erased rows).

    Each (shard, deletion vector) is decoded once per erasure and its statistics merged: the versions
    rewritten share most shards (measured: 12 shard reads instead of 56 for 10 versions of 300,000 records).
    """
    parts = []
    for entry in entries:
        key = (entry.digest, entry.deletes)
        if key not in cache:
            table = read_shard(store.blobs, entry.digest)
            if entry.deletes is not None:
                table = table.take(pa.array(complement(entry.rows, read_deletes(store.blobs, entry.deletes))))
            cache[key] = column_stats(table)
        parts.append((cache[key], entry.live_rows))
    if not parts:
        return {name: {"type": stats.get("type"), "nulls": 0} for name, stats in old["stats"].items()}
    return merge_stats(parts)


def erase_rows(
    store: Store, conn: Connection, hits: DatasetHits, erasure_id: str
) -> tuple[list[ReplacedVersion], list[str]]:
    """Write new versions without the hit rows and delete the old versions and shards, in `conn`'s transaction.

    Blobs are written before (unreferenced blobs are harmless if the transaction fails); the caller
    deletes the returned old blobs from the blob store once the transaction has committed.

    Returns:
        The replaced versions, and the digests of the old blobs that held erased rows (shards, key
        files, manifests) to delete from the blob store.
    """
    restricted = sorted({n for n, _, _ in hits.versions if get_classification(conn, n) == "restricted"})
    if restricted:  # rewritten shards of a restricted dataset are sealed like its commits
        store = sealing_store(store, restricted[0], conn)
    new_shards = {
        digest: _rewrite_shard(store, digest, keys, rows, hits.rows[shard_id])
        for shard_id, (digest, keys, rows) in hits.shards.items()
    }
    at = store.clock()
    shard_ids: dict[str, int] = {}
    _insert_blobs(conn, [b for s in new_shards.values() if s.files for b in (s.files.data, s.files.keys)], at)
    for shard in new_shards.values():
        if shard.files is None:
            continue
        shard_id, created = _register(conn, shard)
        shard_ids[shard.files.data.digest] = shard_id
        if created:
            record_ids, _ = read_keys(store.blobs, shard.files.keys.digest)
            _insert_records(conn, shard_id, record_ids)
            insert_subjects(conn, shard_id, shard.subjects)
    replaced: list[ReplacedVersion] = []
    doomed: list[str] = []
    stats_cache: _StatsCache = {}
    counted: set[str] = set()
    for name, version, digest in hits.versions:
        old = _load_manifest(store, digest)
        producer = {"command": "erase", "erasure": erasure_id, "replaces": f"{name}@v{version}"}
        manifest, vectors = _new_manifest(store, old, digest, new_shards, producer, stats_cache)
        manifest_blob = store.blobs.put_stream(io.BytesIO(canonical_json(manifest).encode()))
        _insert_blobs(conn, [*vectors, manifest_blob], at)
        # A rewritten shard is new bytes for the first version that uses it only, as in a commit.
        fresh = {d: i for d, i in shard_ids.items() if d not in counted}
        counted.update(e["digest"] for e in manifest["shards"])
        new_version = _insert_version(store, conn, name, manifest, manifest_blob, fresh, at)
        old_node, new_node = f"dataset-version:{name}@v{version}", f"dataset-version:{name}@v{new_version}"
        add_edge(conn, old_node, add_node(conn, new_node, at=at), "erased_into", at=at)
        for tag, points_at in aliases_of(conn, "dataset", name).items():
            if points_at == version:
                move_alias(store, conn, "dataset", name, tag, new_version, reason=f"erasure {erasure_id}")
        conn.execute(delete(dataset_version_shards).where(dataset_version_shards.c.digest == digest))
        conn.execute(delete(dataset_versions).where(dataset_versions.c.digest == digest))
        doomed.append(digest)
        replaced.append(
            ReplacedVersion(
                f"{name}@v{version}",
                digest,
                f"{name}@v{new_version}",
                manifest_blob.digest,
                int(old["num_rows"]),
                int(manifest["num_rows"]),
            )
        )
    for shard_id, (digest, keys, _rows) in hits.shards.items():
        _unregister(conn, shard_id)
        doomed += [digest, keys]
    conn.execute(delete(blobs).where(blobs.c.digest.in_(doomed)))
    return replaced, doomed


def _insert_blobs(conn: Connection, infos: list[BlobInfo], at: Any) -> None:
    if infos:
        rows = [{"digest": b.digest, "size": b.size, "created_at": at} for b in infos]
        conn.execute(insert_for(conn, blobs).values(rows).on_conflict_do_nothing())


def _register(conn: Connection, shard: _NewShard) -> tuple[int, bool]:
    """Record a rewritten shard's row; returns its id and whether it is new (the same rows may be stored)."""
    assert shard.files is not None
    existing = conn.scalar(select(dataset_shards.c.id).where(dataset_shards.c.digest == shard.files.data.digest))
    if existing is not None:
        return int(existing), False
    inserted = conn.execute(
        dataset_shards.insert().values(
            digest=shard.files.data.digest, keys_digest=shard.files.keys.digest, num_rows=shard.files.rows
        )
    ).inserted_primary_key
    assert inserted is not None
    return int(inserted[0]), True


def _insert_version(
    store: Store,
    conn: Connection,
    name: str,
    manifest: dict[str, Any],
    manifest_blob: BlobInfo,
    shard_ids: dict[str, int],
    at: Any,
) -> int:
    latest = conn.scalar(
        select(dataset_versions.c.version)
        .where(dataset_versions.c.name == name)
        .order_by(dataset_versions.c.version.desc())
        .limit(1)
    )
    version = int(latest or 0) + 1
    num_bytes = sum(e["bytes"] for e in manifest["shards"])
    new_bytes = sum(e["bytes"] for e in manifest["shards"] if e["digest"] in shard_ids)
    conn.execute(
        dataset_versions.insert().values(
            name=name,
            version=version,
            digest=manifest_blob.digest,
            num_rows=manifest["num_rows"],
            num_bytes=num_bytes,
            new_bytes=new_bytes,
            message=f"erasure {manifest['producer']['erasure']}: replaces {manifest['producer']['replaces']}",
            created_by=store.actor,
            created_at=at,
        )
    )
    ids = {
        r.digest: int(r.id)
        for r in conn.execute(
            select(dataset_shards.c.digest, dataset_shards.c.id).where(
                dataset_shards.c.digest.in_([e["digest"] for e in manifest["shards"]])
            )
        )
    }
    if manifest["shards"]:
        conn.execute(
            dataset_version_shards.insert(),
            [
                {
                    "digest": manifest_blob.digest,
                    "ordinal": i,
                    "shard_id": ids[e["digest"]],
                    "deletes_digest": e["deletes"],
                    "live_rows": e["live_rows"],
                }
                for i, e in enumerate(manifest["shards"])
            ],
        )
    return version


def _unregister(conn: Connection, shard_id: int) -> None:
    """Delete a rewritten shard's record-index and subject-index rows, then the shard's row.

    One scan each (neither index leads with the shard): measured 6.4 s for 2 shards of 100,000 rows as
    row-value IN look-ups of 5,000 keys, 1.4 s as two scans of 300,000-row indexes (same loaded machine).
    """
    conn.execute(delete(dataset_records).where(dataset_records.c.shard_id == shard_id))
    conn.execute(delete(subject_index).where(subject_index.c.shard_id == shard_id))
    conn.execute(delete(dataset_shards).where(dataset_shards.c.id == shard_id))
