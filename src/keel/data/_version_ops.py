"""What you do with dataset versions: diff, split, export and trace records through them."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import xxhash
from sqlalchemy import select

from keel.core.echo import shown
from keel.core.errors import InputError, NotFoundError
from keel.data._column_stats import stats_changes
from keel.data._shards import read_deletes, read_keys, read_shard_rows
from keel.data._versions import (
    DatasetVersion,
    ShardEntry,
    commit_version,
    complement,
    get_version,
    iter_batches,
    load_version,
)
from keel.govern._access import require_read
from keel.store import LineageHit, Store, walk
from keel.store.schema import dataset_records, dataset_shards, dataset_version_shards, dataset_versions

__all__ = [
    "ExportFormat",
    "IdRepeats",
    "RecordTrace",
    "VersionDiff",
    "diff_versions",
    "export_version",
    "repeated_ids",
    "split_assignments",
    "split_version",
    "to_hf_dataset",
    "trace_record",
]

ExportFormat = Literal["jsonl", "parquet", "hf"]


# --- repeated ids --------------------------------------------------------------------------


@dataclass(frozen=True)
class IdRepeats:
    """Rows of a version whose id an earlier row of it already has, and the first such id with both rows."""

    count: int
    first_id: str | None = None
    first_row: int | None = None  # 1-based, in the version's row order
    repeat_row: int | None = None

    def warning(self, ref: str) -> str | None:
        """What `keel data commit` prints about them, or None when every id is unique."""
        if not self.count:
            return None
        return (
            f"{self.count:,} record(s) of {ref} repeat an id another record of it has (first: id "
            f"{shown(self.first_id)} at rows {self.first_row} and {self.repeat_row}); records are told apart by id, "
            "so `keel data diff` and `keel data trace` see repeats as one: give every record its own id, or have "
            "`keel data validate --expect` refuse them (unique_ids: true)"
        )


def repeated_ids(store: Store, ref: str | DatasetVersion) -> IdRepeats:
    """Count the rows of a version whose id an earlier row has, from the shards' key blobs (no record is read).

    Duplicate ids are allowed in a version (paired by content when committing); this says how many there are.
    """
    version = ref if isinstance(ref, DatasetVersion) else get_version(store, ref)
    parts = []
    for entry in version.shards:
        ids, _ = read_keys(store.blobs, entry.keys)
        live = complement(entry.rows, read_deletes(store.blobs, entry.deletes))
        parts.append(ids.take(pa.array(live)))
    ids = pa.chunked_array(parts, pa.string()) if parts else pa.chunked_array([], pa.string())
    count = len(ids) - pc.count_distinct(ids).as_py()
    if not count:
        return IdRepeats(0)
    first: dict[str, int] = {}
    for row, record_id in enumerate(ids.to_pylist(), start=1):  # only when ids repeat
        seen = first.setdefault(record_id, row)
        if seen != row:
            return IdRepeats(count, record_id, seen, row)
    raise AssertionError("count_distinct found a repeat the walk did not")  # pragma: no cover


# --- diff ----------------------------------------------------------------------------------


@dataclass
class VersionDiff:
    """Records added, removed and changed (same id, other content) from `before` to `after`."""

    before: str
    after: str
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    unchanged: int = 0
    schema_added: list[str] = field(default_factory=list)
    schema_removed: list[str] = field(default_factory=list)
    schema_changed: dict[str, list[str]] = field(default_factory=dict)
    stats: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_json(self, limit: int | None = None) -> dict[str, Any]:
        """The diff as `keel data diff --json` prints it; `limit` caps each id list."""

        def cap(ids: list[str]) -> list[str]:
            return ids if limit is None else ids[:limit]

        return {
            "before": self.before,
            "after": self.after,
            "counts": {
                "added": len(self.added),
                "removed": len(self.removed),
                "changed": len(self.changed),
                "unchanged": self.unchanged,
            },
            "added": cap(self.added),
            "removed": cap(self.removed),
            "changed": cap(self.changed),
            "schema": {"added": self.schema_added, "removed": self.schema_removed, "changed": self.schema_changed},
            "stats": self.stats,
        }


def _rows(store: Store, entry: ShardEntry, rows: np.ndarray) -> list[tuple[str, int]]:
    if not len(rows):
        return []
    ids, hashes = read_keys(store.blobs, entry.keys)
    picked = ids.take(pa.array(rows)).to_pylist()
    return list(zip(picked, hashes[rows].tolist(), strict=True))


def _only_in(store: Store, mine: ShardEntry, theirs: ShardEntry | None) -> list[tuple[str, int]]:
    """(id, hash) of the rows live in `mine` but not in `theirs` (the same shard in the other version)."""
    my_deletes = read_deletes(store.blobs, mine.deletes)
    if theirs is None:
        return _rows(store, mine, complement(mine.rows, my_deletes))
    their_deletes = read_deletes(store.blobs, theirs.deletes)
    return _rows(store, mine, np.setdiff1d(their_deletes, my_deletes))


def diff_versions(store: Store, before_ref: str, after_ref: str) -> VersionDiff:
    """Compare two versions by record id and content hash, reading only the shards they do not share.

    Shards both versions use are compared by their deletion vectors alone, so a diff of two
    million-row versions that differ in 1% of records reads the keys of that 1%, not the data.
    """
    before, after = get_version(store, before_ref), get_version(store, after_ref)
    for name in {before.name, after.name}:  # the diff lists record ids of a `restricted` dataset
        require_read(store, name)
    left = {e.digest: e for e in before.shards}
    right = {e.digest: e for e in after.shards}
    gone = Counter(k for d, e in left.items() for k in _only_in(store, e, right.get(d)))
    new = Counter(k for d, e in right.items() for k in _only_in(store, e, left.get(d)))
    moved = gone & new  # identical rows that only changed shard (compaction)
    gone, new = gone - moved, new - moved
    gone_ids, new_ids = {k[0] for k in gone}, {k[0] for k in new}
    diff = VersionDiff(before.ref, after.ref)
    diff.changed = sorted(gone_ids & new_ids)
    diff.added = sorted(new_ids - gone_ids)
    diff.removed = sorted(gone_ids - new_ids)
    diff.unchanged = after.num_rows - sum(new.values())
    old_fields = {f.name: str(f.type) for f in before.schema}
    new_fields = {f.name: str(f.type) for f in after.schema}
    diff.schema_added = sorted(set(new_fields) - set(old_fields))
    diff.schema_removed = sorted(set(old_fields) - set(new_fields))
    diff.schema_changed = {
        n: [old_fields[n], new_fields[n]]
        for n in sorted(set(old_fields) & set(new_fields))
        if old_fields[n] != new_fields[n]
    }
    diff.stats = stats_changes(before.stats, after.stats)
    return diff


# --- split ---------------------------------------------------------------------------------


def split_assignments(ids: Sequence[str], fractions: Mapping[str, float], seed: int = 0) -> list[str]:
    """The split each id falls in, by a seeded hash of the id: stable as the dataset grows.

    Examples:
        >>> split_assignments(["a", "b", "c"], {"train": 0.5, "test": 0.5})
        ['test', 'train', 'train']
    """
    total = sum(fractions.values())
    if not fractions or any(f < 0 for f in fractions.values()) or abs(total - 1.0) > 1e-6:
        raise InputError(f"expected split fractions >= 0 that sum to 1; got {dict(fractions)} (sum {total:g})")
    names = list(fractions)
    bounds = np.cumsum([fractions[n] for n in names])
    bounds[-1] = 1.0 + 1e-12
    points = np.fromiter((xxhash.xxh3_64_intdigest(i.encode(), seed=seed) / 2.0**64 for i in ids), dtype=np.float64)
    return [names[i] for i in np.searchsorted(bounds, points, side="right").tolist()]


def split_version(
    store: Store, ref: str, fractions: Mapping[str, float], *, seed: int = 0
) -> dict[str, DatasetVersion]:
    """Split a version into child datasets `NAME-<split>` by id hash, each derived from it in lineage."""
    source = get_version(store, ref)
    table = load_version(store, source)
    labels = np.asarray(split_assignments(table.column("id").to_pylist(), fractions, seed))
    out: dict[str, DatasetVersion] = {}
    for split in fractions:
        part = table.filter(pa.array(labels == split))
        version, _ = commit_version(
            store,
            f"{source.name}-{split}",
            part,
            message=f"{split} split of {source.ref} ({fractions[split]:g}, seed {seed})",
            parents=[source.ref],
            producer={
                "command": "split",
                "source": source.ref,
                "split": split,
                "fractions": dict(fractions),
                "seed": seed,
            },
        )
        out[split] = version
    return out


# --- export --------------------------------------------------------------------------------


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def to_hf_dataset(store: Store, ref: str | DatasetVersion) -> Any:
    """Load a version as a Hugging Face `datasets.Dataset` (needs the `datasets` package)."""
    try:
        import datasets
    except ImportError:
        raise InputError("loading a Hugging Face dataset needs the `datasets` package: pip install datasets") from None
    return datasets.Dataset(datasets.table.InMemoryTable(load_version(store, ref)))


def export_version(
    store: Store, ref: str, dest: str | os.PathLike[str], fmt: ExportFormat = "jsonl", *, force: bool = False
) -> Path:
    """Write a version to `dest` as JSON lines, one Parquet file, or a Hugging Face dataset folder.

    An existing `dest` (a file, or a non-empty folder for `hf`) is replaced only with `force`. The
    export is written beside `dest` under a temporary name and renamed into place only once every
    blob has been read and verified, so a failed or interrupted export leaves `dest` as it was.

    Raises:
        InputError: `dest` exists and `force` is not set, or cannot hold the export (a directory for
            a file format, a file for `hf`, or a place this user may not write).
        BlobCorruptedError: A blob of the version is damaged (nothing is written).
    """
    if fmt not in ("jsonl", "parquet", "hf"):
        raise InputError(f"expected an export format of jsonl, parquet or hf; got {shown(fmt)}")
    version = get_version(store, ref)
    path = Path(dest)
    if fmt == "hf" and path.exists() and not path.is_dir():
        raise InputError(f"expected a directory (or a new path) to export {version.ref} to as hf; {path} is a file")
    if fmt != "hf" and path.is_dir():
        raise InputError(
            f"expected a file path to export {version.ref} to as {fmt}; {path} is a directory",
            hint=f"name a file inside it, e.g. {path / (version.name + '.' + fmt)}",
        )
    if not force and _occupied(path):
        raise InputError(
            f"expected a new path to export {version.ref} to; {path} exists",
            hint="pass --force to replace it, or choose another path",
        )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part"))
    except OSError as exc:
        raise InputError(
            f"cannot write the export to {path}: {exc.strerror}", hint="choose a place you may write"
        ) from None
    try:
        staged = tmp / "export"
        _write_export(store, version, staged, fmt)
        _replace(staged, path)
    except OSError as exc:
        raise InputError(
            f"cannot write the export to {path}: {exc.strerror}", hint="choose a place you may write"
        ) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def _occupied(path: Path) -> bool:
    """Whether writing to `path` would replace something: a file, a link, or a folder with anything in it."""
    if path.is_dir() and not path.is_symlink():
        return any(path.iterdir())
    return os.path.lexists(path)


def _write_export(store: Store, version: DatasetVersion, path: Path, fmt: ExportFormat) -> None:
    if fmt == "jsonl":
        with open(path, "w", encoding="utf-8") as out:
            for table in iter_batches(store, version):
                for row in table.to_pylist():
                    out.write(json.dumps(row, ensure_ascii=False, default=_json_default) + "\n")
    elif fmt == "parquet":
        with pq.ParquetWriter(path, version.schema, compression="zstd") as writer:
            for table in iter_batches(store, version):
                writer.write_table(table)
    else:
        to_hf_dataset(store, version).save_to_disk(str(path))


def _replace(staged: Path, path: Path) -> None:
    """Move the finished export to `path`: one rename for a file; a folder replaces the old one."""
    if not staged.is_dir() or not path.exists():
        os.replace(staged, path)
        return
    old = staged.with_name("previous")
    os.replace(path, old)  # a directory cannot be renamed over a non-empty one: move it aside first
    os.replace(staged, path)


# --- trace ---------------------------------------------------------------------------------


@dataclass
class RecordTrace:
    """Where a record came from, which versions hold it, and what was made from them."""

    record_id: str
    source: dict[str, Any] | None
    text_preview: str | None
    versions: list[str]
    downstream: list[LineageHit]

    def to_json(self) -> dict[str, Any]:
        """The trace as `keel data trace --json` prints it."""
        return {
            "record_id": self.record_id,
            "source": self.source,
            "text_preview": self.text_preview,
            "versions": self.versions,
            "downstream": [
                {"node": h.node, "depth": h.depth, "via": h.via, "edge": h.edge_kind} for h in self.downstream
            ],
        }


def trace_record(store: Store, record_id: str, *, depth: int = 10) -> RecordTrace:
    """Find a record by id through the record index (no shard scan) and follow it downstream.

    Raises:
        NotFoundError: No committed version holds a record with this id.
        PermissionDeniedError: A `restricted` dataset holds it and the principal lacks `dataset.read` on it.
    """
    with store.db.read() as conn:
        places = conn.execute(
            select(dataset_records.c.shard_id, dataset_records.c.row, dataset_shards.c.digest)
            .join(dataset_shards, dataset_shards.c.id == dataset_records.c.shard_id)
            .where(dataset_records.c.record_id == record_id)
        ).all()
        if not places:
            raise NotFoundError(f"no committed dataset version holds a record with id {record_id!r}")
        rows_by_shard = {p.shard_id: p.row for p in places}
        holders = conn.execute(
            select(
                dataset_version_shards.c.shard_id,
                dataset_version_shards.c.deletes_digest,
                dataset_versions.c.name,
                dataset_versions.c.version,
            )
            .join(dataset_versions, dataset_versions.c.digest == dataset_version_shards.c.digest)
            .where(dataset_version_shards.c.shard_id.in_(list(rows_by_shard)))
            .order_by(dataset_versions.c.name, dataset_versions.c.version)
        ).all()
        versions = [
            f"{h.name}@v{h.version}"
            for h in holders
            if h.deletes_digest is None
            or rows_by_shard[h.shard_id] not in set(read_deletes(store.blobs, h.deletes_digest).tolist())
        ]
        downstream: dict[str, LineageHit] = {}
        for ref in versions:
            for hit in walk(conn, f"dataset-version:{ref}", "downstream", depth=depth):
                if hit.node not in downstream or hit.depth < downstream[hit.node].depth:
                    downstream[hit.node] = hit
    for name in sorted({h.name for h in holders}):  # the source and text below are a record of each of them
        require_read(store, name)
    first = places[0]
    source, preview = _source_of(store, first.digest, int(first.row))
    ordered = sorted(downstream.values(), key=lambda h: (h.depth, h.node))
    return RecordTrace(record_id, source, preview, sorted(set(versions)), ordered)


def _source_of(store: Store, digest: str, row: int) -> tuple[dict[str, Any] | None, str | None]:
    found = read_shard_rows(store.blobs, digest, [row], ["source", "text"])
    values = found.to_pylist()[0] if found.num_columns else {}  # a dataset may have neither column
    text = values.get("text")
    source = values.get("source")
    return (source if isinstance(source, dict) else None), (text[:200] if isinstance(text, str) else None)
