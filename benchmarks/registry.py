"""Run search at scale: a page of 50 runs, filtered by a parameter and sorted by a metric.

Loads 100,000 runs with 5 parameters and 10 metrics each (rows written straight into Keel's
tables in bulk, as 100,000 real jobs would have left them), then times `keel.registry.list_runs`
(what `keel run list --param K=V --sort METRIC` calls) for a common filter (a third of the runs
match), a selective one (1 in 100) and two filters at once, on SQLite and PostgreSQL.

    python benchmarks/registry.py [--runs 100000] [--backends sqlite,postgresql]

Prints one JSON line per backend. PostgreSQL uses KEEL_BENCH_POSTGRES_URL or KEEL_TEST_POSTGRES_URL.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from _pg import postgres_schema_url
from keel.core.ids import canonical_json, new_ulid
from keel.registry import list_runs
from keel.store import Database
from keel.store.schema import run_latest_metrics, run_metrics, run_params, runs

TARGET_MS = 100.0
METRICS = ["loss", "eval_loss", "accuracy", "f1", "bleu", "rouge_l", "perplexity", "latency_ms", "tokens_s", "cost"]
BATCH = 5_000


def _rows(n_runs: int, seed: int = 5) -> list[tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]]:
    rng = random.Random(seed)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    out = []
    for i in range(n_runs):
        run_id = new_ulid()
        params = {
            "method": rng.choice(["lora", "full", "dpo"]),
            "lr": rng.choice([1e-5, 3e-5, 1e-4, 3e-4, 1e-3]),
            "batch_size": rng.choice([8, 16, 32, 64]),
            "dataset": f"support@v{rng.randrange(100)}",
            "seed": i % 10,
        }
        at = start + timedelta(seconds=i)
        run = {
            "id": run_id,
            "kind": "train",
            "name": None,
            "status": "finished",
            "params": canonical_json(params),
            "env": "{}",
            "error": None,
            "created_by": "bench",
            "started_at": at,
            "ended_at": at + timedelta(minutes=5),
        }
        param_rows = [{"run_id": run_id, "key": k, "value": canonical_json(v)} for k, v in params.items()]
        metrics = [{"run_id": run_id, "key": k, "step": 100, "value": rng.random(), "at": at} for k in METRICS]
        out.append((run, param_rows, metrics))
    return out


def load(db: Database, data: list[tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]]) -> float:
    started = time.perf_counter()
    for offset in range(0, len(data), BATCH):
        chunk = data[offset : offset + BATCH]
        with db.write() as conn:
            conn.execute(runs.insert(), [run for run, _, _ in chunk])
            conn.execute(run_params.insert(), [p for _, params, _ in chunk for p in params])
            metric_rows = [m for _, _, metrics in chunk for m in metrics]
            conn.execute(run_metrics.insert(), metric_rows)
            conn.execute(
                run_latest_metrics.insert(),
                [{k: m[k] for k in ("run_id", "key", "step", "value")} for m in metric_rows],
            )
    # What autovacuum would do after a bulk load: fresh statistics and a visibility map, so
    # PostgreSQL's index-only scans need not visit the heap.
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        for table in ("runs", "run_params", "run_latest_metrics", "run_metrics"):
            conn.exec_driver_sql(f"VACUUM ANALYZE {table}" if db.dialect == "postgresql" else f"ANALYZE {table}")
    if db.dialect == "sqlite":  # fold the bulk load's write-ahead log into the database file
        with db.engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)").all()
    return time.perf_counter() - started


QUERIES: dict[str, dict[str, Any]] = {
    "common_filter": {"params": {"method": "lora"}, "sort_by": "eval_loss", "descending": False},
    "selective_filter": {"params": {"dataset": "support@v42"}, "sort_by": "accuracy", "descending": True},
    "two_filters": {"params": {"method": "dpo", "batch_size": 32}, "sort_by": "f1", "descending": True},
    "no_filter": {"params": {}, "sort_by": "loss", "descending": False},
}


def time_queries(db: Database, repeats: int) -> dict[str, dict[str, float]]:
    results = {}
    with db.read() as conn:
        for name, query in QUERIES.items():
            list_runs(conn, limit=50, **query)  # warm caches and plans
            timings = []
            for page in range(repeats):
                started = time.perf_counter()
                found = list_runs(conn, limit=50, offset=50 * (page % 3), **query)
                timings.append((time.perf_counter() - started) * 1000)
                assert len(found) == 50, f"{name} returned {len(found)} runs"
            timings.sort()
            results[name] = {
                "p50_ms": round(statistics.median(timings), 2),
                "p95_ms": round(timings[int(0.95 * (len(timings) - 1))], 2),
            }
    return results


def run_backend(name: str, url: str, data: list, repeats: int) -> dict[str, Any]:  # type: ignore[type-arg]
    db = Database(url)
    db.upgrade()
    load_s = load(db, data)
    timings = time_queries(db, repeats)
    db.dispose()
    worst = max(t["p50_ms"] for t in timings.values())
    return {
        "benchmark": "registry_run_search",
        "backend": name,
        "runs": len(data),
        "metrics_per_run": len(METRICS),
        "page": 50,
        "load_seconds": round(load_s, 1),
        "queries": timings,
        "worst_p50_ms": worst,
        "target_ms": TARGET_MS,
        "meets_target": worst < TARGET_MS,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--backends", default="sqlite,postgresql")
    args = parser.parse_args()
    data = _rows(args.runs)
    for backend in args.backends.split(","):
        if backend == "sqlite":
            with tempfile.TemporaryDirectory() as tmp:
                result = run_backend("sqlite", f"sqlite:///{Path(tmp) / 'registry.db'}", data, args.repeats)
        elif backend == "postgresql":
            with postgres_schema_url() as url:
                if url is None:
                    print("skipping postgresql: set KEEL_BENCH_POSTGRES_URL", file=sys.stderr)
                    continue
                result = run_backend("postgresql", url, data, args.repeats)
        else:
            parser.error(f"unknown backend {backend!r}; expected sqlite or postgresql")
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
