"""Find and erase one data subject in a workspace of 1,000,000 records over 10 versions and 100,000 traces.

The workspace (SQLite, local blob store): dataset `people` whose version k holds the first k x 100,000
records (each version adds one 100,000-row shard and shares the others), every record carrying one
synthetic e-mail and its keyed hash in `pii_subjects` (as the `pii` step writes it); 100,000 traces,
each with one subject key. The subject appears in 3 records (shards 2 and 5, so versions 2-10 hold it)
and 20 traces. Timed: the impact report (`erasure_impact`) and the full erasure (`erase_subjects`:
9 versions rewritten, 2 shards destroyed, traces deleted, certificate signed), in wall and CPU seconds.
The peer is a full scan: the e-mail searched in the text of every stored shard (each read once).

    python benchmarks/erasure.py [--records 1000000] [--versions 10] [--traces 100000]

Prints one JSON line. Targets: impact report < 2 s, full erasure < 60 s.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from keel.core.keyring import load_keyring, parse_subject
from keel.data import commit_version, get_version
from keel.data._shards import read_shard
from keel.monitor import Trace, TraceWriter
from keel.pipeline._erase import erase_subjects, erasure_impact
from keel.store import Store, init_workspace

SUBJECT = "email:subject.of.erasure@example.com"
IMPACT_TARGET_S, ERASE_TARGET_S = 2.0, 60.0


def _records(store: Store, n: int, hot: list[int]) -> pa.Table:
    ring = load_keyring(store.settings)
    emails = [f"user{i}@example.com" for i in range(n)]
    for i in hot:
        emails[i] = SUBJECT.split(":", 1)[1]
    keys = {e: ring.subject_key(parse_subject(f"email:{e}")) for e in set(emails)}
    texts = [f"Record {i}: order {i * 7 % 9973} shipped; contact {e} for the invoice." for i, e in enumerate(emails)]
    return pa.table(
        {
            "id": [f"rec-{i:08d}" for i in range(n)],
            "text": texts,
            "pii_subjects": pa.array([[keys[e]] for e in emails], pa.list_(pa.string())),
        }
    )


def _seed(store: Store, records: int, versions: int, traces: int) -> None:
    per = records // versions
    hot = [per + 17, per + 4242, 4 * per + 99]  # shards 2 and 5 (0-based 1 and 4)
    table = _records(store, records, hot)
    for k in range(1, versions + 1):
        commit_version(store, "people", table.slice(0, k * per), message=f"{k * per} records")
    ring = load_keyring(store.settings)
    subject_key = ring.subject_key(parse_subject(SUBJECT))
    writer = TraceWriter(store)
    start = datetime.now(UTC) - timedelta(days=1)
    batch = []
    for i in range(traces):
        key = subject_key if i % (traces // 20) == 0 else ring.subject_key(f"email:user{i}@example.com")
        batch.append(Trace(id=f"01J{i:023d}", at=start + timedelta(milliseconds=i), deployment="chat",
                           operation="chat", status=200, latency_ms=12.0, subjects=[key]))  # fmt: skip
        if len(batch) == 10_000:
            writer.write(batch)
            batch = []
    writer.write(batch)


def _full_scan(store: Store) -> tuple[int, float]:
    """The peer: read every stored shard once and search its text for the e-mail."""
    started = time.perf_counter()
    needle = SUBJECT.split(":", 1)[1]
    digests = {e.digest for e in get_version(store, "people").shards}
    found = 0
    for digest in digests:
        text = read_shard(store.blobs, digest, ["text"]).column("text")
        found += int(pc.sum(pc.match_substring(text, needle)).as_py() or 0)
    return found, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--versions", type=int, default=10)
    parser.add_argument("--traces", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="keel-bench-erasure-") as tmp:
        os.chdir(tmp)
        store = init_workspace(Path(tmp) / "ws")
        t0 = time.perf_counter()
        _seed(store, args.records, args.versions, args.traces)
        seed_s = time.perf_counter() - t0
        scan_found, scan_s = _full_scan(store)

        wall, cpu = time.perf_counter(), time.process_time()
        impact = erasure_impact(store, [SUBJECT])
        impact_s, impact_cpu = time.perf_counter() - wall, time.process_time() - cpu
        found = impact.to_json()

        wall, cpu = time.perf_counter(), time.process_time()
        _, certificate = erase_subjects(store, [SUBJECT])
        erase_s, erase_cpu = time.perf_counter() - wall, time.process_time() - cpu
        assert certificate is not None
        again = erasure_impact(store, [SUBJECT])
        result = {
            "benchmark": "erasure",
            "records": args.records,
            "versions": args.versions,
            "traces": args.traces,
            "seed_s": round(seed_s, 1),
            "found": {
                "records_live": found["records"],
                "stored_rows": found["shard_rows"],
                "versions": len(found["dataset_versions"]),
                "traces": found["traces"],
            },  # fmt: skip
            "impact_s": round(impact_s, 3),
            "impact_cpu_s": round(impact_cpu, 3),
            "erase_s": round(erase_s, 2),
            "erase_cpu_s": round(erase_cpu, 2),
            "versions_rewritten": len(certificate.document["done"]["dataset_versions"]),
            "blobs_deleted": len(certificate.document["done"]["blobs_deleted"]),
            "rerun_finds_nothing": again.empty,
            "full_scan_s": round(scan_s, 3),
            "full_scan_found_rows": scan_found,
            "impact_vs_full_scan": round(scan_s / impact_s, 1) if impact_s else None,
            "targets": {"impact_s": IMPACT_TARGET_S, "erase_s": ERASE_TARGET_S},
            "met": impact_s < IMPACT_TARGET_S and erase_s < ERASE_TARGET_S,
        }
        store.close()
    print(json.dumps(result), flush=True)
    sys.exit(0)


if __name__ == "__main__":
    main()
