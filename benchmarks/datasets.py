"""Dataset versions at scale: commit 1M records, commit a 1%-changed second version, diff them, trace a record.

Targets (issue 4): commit under 30 s, diff under 5 s, trace under 50 ms, and the second version
stores under 5% of the first one's bytes.

    python benchmarks/datasets.py [--records 1000000] [--postgres]   # --postgres reads KEEL_TEST_POSTGRES_URL

Prints one JSON line.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

# This file's name would shadow Hugging Face `datasets` for anything imported after it: take its
# folder off the path and load the shared PostgreSQL helper by file.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
_spec = importlib.util.spec_from_file_location("_keel_bench_pg", _HERE / "_pg.py")
assert _spec is not None and _spec.loader is not None
_pg = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_pg)
postgres_schema_url = _pg.postgres_schema_url
from keel.data import commit_version, diff_versions, trace_record  # noqa: E402
from keel.store import init_workspace  # noqa: E402

WORDS = np.array(
    (
        "policy refund customer order shipping invoice account password reset warranty product manual support "
        "ticket escalation priority billing subscription plan upgrade downgrade cancel region server latency "
        "error timeout retry install configure update release version feature request bug report team manager "
        "the a of to and in for on with is are was be this that it from by as at or an not we you they"
    ).split()
)


def corpus(n: int, seed: int, start: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(20, 80, n)
    picks = rng.integers(0, len(WORDS), int(lengths.sum()))
    words = WORDS[picks]
    ends = np.cumsum(lengths)
    texts = [" ".join(words[e - k : e]) for e, k in zip(ends.tolist(), lengths.tolist(), strict=True)]
    ids = [f"rec-{i:08d}" for i in range(start, start + n)]
    fetched = pa.array(np.full(n, 1_767_225_600_000_000, dtype="int64"), type=pa.timestamp("us", tz="UTC"))
    source = pa.StructArray.from_arrays(
        [
            pa.array([f"https://kb.example.com/{i}" for i in ids]),
            pa.array([f"{i:064x}" for i in range(start, start + n)]),
            fetched,
        ],
        names=["uri", "sha256", "fetched_at"],
    )
    return pa.table({"id": ids, "text": texts, "source": source, "meta": pa.array(["{}"] * n)})


def changed_copy(table: pa.Table, share: float, seed: int) -> pa.Table:
    """Modify `share`/2 of the records, remove `share`/4 and add `share`/4 new ones (1% differ in all)."""
    n = table.num_rows
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    k = int(n * share)
    modified, removed = order[: k // 2], order[k // 2 : k // 2 + k // 4]
    texts = table.column("text").to_pylist()
    for i in modified.tolist():
        texts[i] = texts[i] + " (revised)"
    keep = np.ones(n, dtype=bool)
    keep[removed] = False
    edited = table.set_column(1, "text", pa.array(texts)).filter(pa.array(keep))
    return pa.concat_tables([edited, corpus(k - k // 2 - k // 4, seed + 1, start=n)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument(
        "--postgres",
        action="store_true",
        help="use KEEL_TEST_POSTGRES_URL (a fresh schema, dropped after); default SQLite",
    )
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        if args.postgres:
            url = stack.enter_context(postgres_schema_url())
            if url is None:
                raise SystemExit(
                    "--postgres needs KEEL_TEST_POSTGRES_URL, e.g. postgresql://postgres@127.0.0.1:5432/test"
                )
            os.environ["KEEL_DATABASE_URL"] = url
        run(args.records)


def run(records: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="keel-bench-datasets-"))
    store = init_workspace(work / "ws")
    t0 = time.perf_counter()
    first_table = corpus(records, seed=1)
    second_table = changed_copy(first_table, 0.01, seed=2)
    pq.write_table(first_table, work / "v1.parquet")
    pq.write_table(second_table, work / "v2.parquet")
    prepare = time.perf_counter() - t0

    # Wall seconds are the targets; CPU seconds of this process show the cost when the machine is shared.
    t0, c0 = time.perf_counter(), time.process_time()
    first, _ = commit_version(store, "kb", [work / "v1.parquet"])
    commit_first, commit_first_cpu = time.perf_counter() - t0, time.process_time() - c0
    t0, c0 = time.perf_counter(), time.process_time()
    second, _ = commit_version(store, "kb", [work / "v2.parquet"])
    commit_second, commit_second_cpu = time.perf_counter() - t0, time.process_time() - c0

    t0, c0 = time.perf_counter(), time.process_time()
    diff = diff_versions(store, "kb@v1", "kb@v2")
    diff_seconds, diff_cpu = time.perf_counter() - t0, time.process_time() - c0

    rng = np.random.default_rng(3)
    samples, cpu = [], []
    for i in rng.integers(0, records, 21).tolist():
        t0, c0 = time.perf_counter(), time.process_time()
        trace_record(store, f"rec-{i:08d}")
        samples.append((time.perf_counter() - t0) * 1000)
        cpu.append((time.process_time() - c0) * 1000)
    result = {
        "benchmark": "datasets",
        "database": store.db.dialect,
        "records": records,
        "input_bytes_parquet": (work / "v1.parquet").stat().st_size,
        "prepare_s": round(prepare, 2),
        "commit_first_s": round(commit_first, 2),
        "commit_first_cpu_s": round(commit_first_cpu, 2),
        "commit_second_s": round(commit_second, 2),
        "commit_second_cpu_s": round(commit_second_cpu, 2),
        "diff_s": round(diff_seconds, 3),
        "diff_cpu_s": round(diff_cpu, 3),
        "diff_counts": {"added": len(diff.added), "removed": len(diff.removed), "changed": len(diff.changed)},
        "trace_ms_p50": round(statistics.median(samples[1:]), 2),
        "trace_ms_max": round(max(samples[1:]), 2),
        "trace_cpu_ms_p50": round(statistics.median(cpu[1:]), 2),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "first_version_bytes": first.new_bytes,
        "second_version_new_bytes": second.new_bytes,
        "second_over_first": round(second.new_bytes / first.new_bytes, 4),
        "targets": {"commit_s": 30, "diff_s": 5, "trace_ms": 50, "second_over_first": 0.05},
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
