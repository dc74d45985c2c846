"""Lineage walk latency on a 1,000,000-edge graph shaped like real lineage, on SQLite and PostgreSQL.

The graph: source documents feed chains of dataset versions; training runs read dataset versions
and produce model versions, some distilled from others; evaluation runs read models; deployed
model versions serve traces (most edges, as in production). Then it times depth-10 upstream
walks from traces and model versions, and depth-10 downstream walks from dataset versions and
sources, through `keel.store.walk` (the function `keel lineage show` calls).

    python benchmarks/lineage.py [--edges 1000000] [--queries 50] [--backends sqlite,postgresql]

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
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import text

from _pg import postgres_schema_url
from keel.store import Database, Edge, add_edges, walk

TARGET_MS = 50.0
BATCH = 20_000


def lineage_graph(total_edges: int, seed: int = 7) -> tuple[list[Edge], dict[str, list[str]]]:
    """Build the edge list and, per node role, the ids to query from."""
    rng = random.Random(seed)
    scale = total_edges / 1_000_000
    n_datasets, versions_per = max(10, int(2_000 * scale)), 10
    n_sources = max(10, int(5_000 * scale))
    edges: list[Edge] = []
    sources = [f"source:{i:07d}" for i in range(n_sources)]
    versions: list[str] = []
    for d in range(n_datasets):
        chain = [f"dataset-version:{d:05d}v{v}" for v in range(versions_per)]
        for src in rng.sample(sources, 5):
            edges.append(Edge(src, chain[0], "ingested_into"))
        edges.extend(Edge(a, b, "derived_from") for a, b in zip(chain, chain[1:], strict=False))
        versions.extend(chain)
    models: list[str] = []
    for r in range(int(20_000 * scale) or 10):
        run, model = f"run:train{r:06d}", f"model-version:m{r:06d}"
        edges.extend(Edge(ds, run, "trained_on") for ds in rng.sample(versions, 2))
        if models and rng.random() < 0.3:  # distillation / continued training: deep model chains
            edges.append(Edge(rng.choice(models[-50:]), run, "base_model_of"))
        edges.append(Edge(run, model, "produced"))
        edges.append(Edge(model, f"run:eval{r:06d}", "evaluated_in"))
        models.append(model)
    deployed = rng.sample(models, max(1, len(models) // 10))
    traces: list[str] = []
    t = 0
    while len(edges) < total_edges:
        trace = f"trace:{t:08d}"
        edges.append(Edge(rng.choice(deployed), trace, "served"))
        traces.append(trace)
        t += 1
    roles = {
        role: rng.sample(ids, min(len(ids), 1000))
        for role, ids in (("trace", traces), ("model", models), ("dataset_version", versions), ("source", sources))
    }
    return edges[:total_edges], roles


def _batches(edges: list[Edge]) -> Iterator[list[Edge]]:
    for start in range(0, len(edges), BATCH):
        yield edges[start : start + BATCH]


def load(db: Database, edges: list[Edge]) -> float:
    started = time.perf_counter()
    for batch in _batches(edges):
        with db.write() as conn:
            add_edges(conn, batch)
    if db.dialect == "postgresql":
        with db.engine.connect() as conn:
            conn.execute(text("ANALYZE"))
            conn.commit()
    else:
        with db.write() as conn:
            conn.exec_driver_sql("ANALYZE")
    return time.perf_counter() - started


def time_walks(db: Database, nodes: list[str], direction: str, depth: int) -> dict[str, float]:
    timings, sizes = [], []
    with db.read() as conn:
        walk(conn, nodes[0], direction, depth=depth)  # type: ignore[arg-type]  # warm the cache and plan
        for node in nodes:
            started = time.perf_counter()
            hits = walk(conn, node, direction, depth=depth, limit=None)  # type: ignore[arg-type]
            timings.append((time.perf_counter() - started) * 1000)
            sizes.append(len(hits))
    timings.sort()
    return {
        "p50_ms": round(statistics.median(timings), 2),
        "p95_ms": round(timings[int(0.95 * (len(timings) - 1))], 2),
        "max_ms": round(timings[-1], 2),
        "median_nodes": statistics.median(sizes),
        "max_nodes": max(sizes),
    }


def run_backend(name: str, url: str, edges: list[Edge], roles: dict[str, list[str]], queries: int) -> dict:
    db = Database(url)
    db.upgrade()
    load_s = load(db, edges)
    rng = random.Random(11)
    pick = {role: rng.sample(ids, min(queries, len(ids))) for role, ids in roles.items()}
    upstream = {role: time_walks(db, pick[role], "upstream", 10) for role in ("trace", "model")}
    downstream = {role: time_walks(db, pick[role], "downstream", 10) for role in ("dataset_version", "model")}
    db.dispose()
    worst_p50 = max(r["p50_ms"] for r in (*upstream.values(), *downstream.values()))
    return {
        "benchmark": "lineage",
        "backend": name,
        "edges": len(edges),
        "depth": 10,
        "queries_per_role": queries,
        "load_seconds": round(load_s, 1),
        "upstream": upstream,
        "downstream": downstream,
        "upstream_p50_ms": max(r["p50_ms"] for r in upstream.values()),
        "downstream_p50_ms": max(r["p50_ms"] for r in downstream.values()),
        "target_ms": TARGET_MS,
        "meets_target": worst_p50 < TARGET_MS,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edges", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--backends", default="sqlite,postgresql")
    args = parser.parse_args()
    edges, roles = lineage_graph(args.edges)
    for backend in args.backends.split(","):
        if backend == "sqlite":
            with tempfile.TemporaryDirectory() as tmp:
                result = run_backend("sqlite", f"sqlite:///{Path(tmp) / 'lineage.db'}", edges, roles, args.queries)
        elif backend == "postgresql":
            with postgres_schema_url() as url:
                if url is None:
                    print("skipping postgresql: set KEEL_BENCH_POSTGRES_URL", file=sys.stderr)
                    continue
                result = run_backend("postgresql", url, edges, roles, args.queries)
        else:
            parser.error(f"unknown backend {backend!r}; expected sqlite or postgresql")
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
