"""What verifying costs: re-adding a stored blob, tracing a record, `keel doctor` and `keel gc`.

- re-adding a 256 MiB file whose blob is already stored now re-hashes the stored copy (size
  first, then sha256); compared with hashing the same bytes once with hashlib (the peer);
- `trace` now verifies the shard it reads a row from: median latency on a 100,000-record
  version, compared with the same `trace` reading the row group unverified (the old path, the peer);
- `doctor` (full hash check) and `gc` on that workspace.

    python benchmarks/store_integrity.py [--mib 256] [--records 100000]

Prints one JSON line.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

import keel.data._version_ops as version_ops
from keel.data import commit_version, trace_record
from keel.store import LocalBlobStore, collect_garbage, doctor, init_workspace


def _seconds(fn: object) -> float:
    assert callable(fn)
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=256)
    parser.add_argument("--records", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        big = root / "weights.bin"
        with big.open("wb") as out:
            for _ in range(args.mib):
                out.write(os.urandom(1 << 20))
        store = init_workspace(root / "ws")
        assert isinstance(store.blobs, LocalBlobStore)
        first = _seconds(lambda: store.blobs.put_file(big))
        again = _seconds(lambda: store.blobs.put_file(big))
        peer_hash = _seconds(lambda: hashlib.file_digest(big.open("rb"), "sha256"))

        table = pa.table(
            {
                "id": [f"r{i}" for i in range(args.records)],
                "text": [f"record {i} " + "lorem ipsum dolor sit amet " * 8 for i in range(args.records)],
            }
        )
        version, _ = commit_version(store, "docs", table)
        shard = store.blobs.path(version.shards[0].digest)
        ids = [f"r{i}" for i in range(0, args.records, max(1, args.records // 50))]
        traced = [_seconds(lambda i=i: trace_record(store, i)) for i in ids]

        def unverified(blobs: object, digest: str, rows: list[int], columns: list[str]) -> pa.Table:
            # the old path: the rows' row groups straight from the file, nothing verified
            parquet = pq.ParquetFile(shard)
            columns = [c for c in columns if c in parquet.schema_arrow.names]
            return pa.concat_tables(
                [parquet.read_row_group(r // 4096, columns=columns).slice(r % 4096, 1) for r in rows]
            )

        verified = version_ops.read_shard_rows
        version_ops.read_shard_rows = unverified  # type: ignore[assignment]
        peer_trace = [_seconds(lambda i=i: trace_record(store, i)) for i in ids]
        version_ops.read_shard_rows = verified
        doctor_s = _seconds(lambda: doctor(store))
        gc_s = _seconds(lambda: collect_garbage(store, grace_seconds=0))
        shard_mib = shard.stat().st_size / 2**20
        store.close()
    print(
        json.dumps(
            {
                "blob_mib": args.mib,
                "put_new_s": round(first, 3),
                "put_again_s": round(again, 3),
                "hashlib_sha256_s": round(peer_hash, 3),
                "put_again_vs_hashlib": round(again / peer_hash, 2),
                "records": args.records,
                "shard_mib": round(shard_mib, 2),
                "trace_median_ms": round(statistics.median(traced) * 1000, 2),
                "trace_unverified_median_ms": round(statistics.median(peer_trace) * 1000, 2),
                "doctor_s": round(doctor_s, 3),
                "gc_s": round(gc_s, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
