"""The files behind a dataset version: Parquet shards, their key files, deletion vectors.

A shard is an immutable Parquet blob of records. Beside it, a small key blob (Arrow IPC: the
record `id` and the 64-bit content hash of each row) lets a new commit or a diff match records
without reading the shard's data. A deletion vector (sorted uint32 row numbers, zstd) says which
rows of a shard a version leaves out; versions share shards and differ by their vectors and new
shards, the way Delta Lake and Iceberg share data files and add delete files.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import zstandard

from keel.store import BlobInfo, BlobStore, read_bytes

__all__ = [
    "SHARD_PARQUET",
    "ShardFiles",
    "adopt_shard",
    "in_shard_format",
    "read_deletes",
    "read_keys",
    "read_shard",
    "read_shard_rows",
    "write_deletes",
    "write_shard",
]

ROW_GROUP_ROWS = 4_096  # small row groups: `trace` reads one row's group, not the shard
SHARD_PARQUET: dict[str, Any] = {"compression": "zstd", "row_group_size": ROW_GROUP_ROWS, "write_statistics": ["id"]}
"""The `pq.write_table` options of every shard; a writer using them (the curation engine) makes adoptable files."""


@dataclass(frozen=True, slots=True)
class ShardFiles:
    """A shard written to the blob store: the Parquet blob and its key blob."""

    data: BlobInfo
    keys: BlobInfo
    rows: int


def _put(blobs: BlobStore, data: bytes) -> BlobInfo:
    return blobs.put_stream(io.BytesIO(data))


def _uint64_array(values: np.ndarray) -> pa.Array:
    """`pa.array(values, pa.uint64())` without its first-call import of numpy.ma (~0.01 CPU-s of each commit)."""
    values = np.ascontiguousarray(values, dtype=np.uint64)
    return pa.Array.from_buffers(pa.uint64(), len(values), [None, pa.py_buffer(values)])


def _put_keys(blobs: BlobStore, table: pa.Table, hashes: np.ndarray) -> BlobInfo:
    keys = pa.table({"id": table.column("id"), "hash": _uint64_array(hashes)})
    key_sink = io.BytesIO()
    with pa.ipc.new_stream(key_sink, keys.schema, options=pa.ipc.IpcWriteOptions(compression="zstd")) as writer:
        writer.write_table(keys)
    return _put(blobs, key_sink.getvalue())


def write_shard(blobs: BlobStore, table: pa.Table, hashes: np.ndarray) -> ShardFiles:
    """Write `table` as one Parquet shard and its key file; deterministic bytes for the same rows."""
    sink = io.BytesIO()
    pq.write_table(table, sink, **SHARD_PARQUET)
    return ShardFiles(_put(blobs, sink.getvalue()), _put_keys(blobs, table, hashes), table.num_rows)


def in_shard_format(metadata: pq.FileMetaData) -> bool:
    """Whether a Parquet file's layout is the one `write_shard` gives: zstd, `ROW_GROUP_ROWS`-row groups, id stats.

    Such a file can be stored as a shard as it is (`adopt_shard`): a commit then skips decoding and
    re-encoding rows it has just read. Only the layout is checked here; the caller checks the rows.
    """
    groups = [metadata.row_group(i) for i in range(metadata.num_row_groups)]
    if not groups or any(g.num_rows != ROW_GROUP_ROWS for g in groups[:-1]) or groups[-1].num_rows > ROW_GROUP_ROWS:
        return False
    for group in groups:
        for i in range(group.num_columns):
            column = group.column(i)
            if column.compression != "ZSTD" or column.is_stats_set != (column.path_in_schema == "id"):
                return False
    return True


def adopt_shard(blobs: BlobStore, data: bytes, table: pa.Table, hashes: np.ndarray) -> ShardFiles:
    """Store `data`, a Parquet file in the shard format (`in_shard_format`) whose rows are `table`, as a shard.

    The same blobs as `write_shard(blobs, table, hashes)` when `data` is what `write_shard` would write for
    `table`; otherwise a shard with the same rows and layout, without encoding them again (~0.05 CPU-s per
    12 MB of zstd text). The caller must have read `table` from `data` itself, so the two cannot differ.
    """
    return ShardFiles(_put(blobs, data), _put_keys(blobs, table, hashes), table.num_rows)


def read_keys(blobs: BlobStore, digest: str) -> tuple[pa.Array, np.ndarray]:
    """The ids and content hashes of a shard's rows, in row order (verified)."""
    table = pa.ipc.open_stream(read_bytes(blobs, digest)).read_all()
    ids = table.column("id").combine_chunks()
    return ids, np.asarray(table.column("hash").to_numpy(), dtype=np.uint64)


def write_deletes(blobs: BlobStore, rows: np.ndarray) -> BlobInfo:
    """Store a deletion vector: the sorted row numbers a version leaves out of a shard."""
    data = np.unique(rows).astype("<u4").tobytes()
    return _put(blobs, zstandard.ZstdCompressor(level=3).compress(data))


def read_deletes(blobs: BlobStore, digest: str | None) -> np.ndarray:
    """A deletion vector's row numbers (empty for None), verified."""
    if digest is None:
        return np.zeros(0, dtype=np.int64)
    raw = zstandard.ZstdDecompressor().decompress(read_bytes(blobs, digest))
    return np.frombuffer(raw, dtype="<u4").astype(np.int64)


def read_shard(blobs: BlobStore, digest: str, columns: Sequence[str] | None = None) -> pa.Table:
    """Read a whole shard, verifying its sha256 first."""
    data = read_bytes(blobs, digest)
    return pq.read_table(pa.BufferReader(data), columns=list(columns) if columns else None)


def read_shard_rows(blobs: BlobStore, digest: str, rows: Sequence[int], columns: Sequence[str]) -> pa.Table:
    """Read a few rows of a shard through its row groups, after verifying the whole blob's sha256.

    For look-ups such as `keel data trace`: only the rows' row groups are decoded.
    """
    parquet = pq.ParquetFile(pa.BufferReader(read_bytes(blobs, digest)))
    present = set(parquet.schema_arrow.names)
    columns = [c for c in columns if c in present]
    starts = np.cumsum([0] + [parquet.metadata.row_group(i).num_rows for i in range(parquet.num_row_groups)])
    parts = []
    for row in rows:
        group = int(np.searchsorted(starts, row, side="right") - 1)
        part = parquet.read_row_group(group, columns=columns)
        parts.append(part.slice(row - int(starts[group]), 1))
    return pa.concat_tables(parts) if parts else pa.table({c: [] for c in columns})
