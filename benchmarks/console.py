"""Server time of each console page at 100,000 runs and 1,000,000 traces, on SQLite and PostgreSQL.

Rows are written straight into Keel's tables in bulk (as that many jobs and requests would have left
them): runs with parameters and two metric series, traces over 90 days on two deployments (about 5,500
per deployment per day), content for the newest 20,000. Each page is then requested through the console's
ASGI app (in process, signed in as an admin key), and its server time (wall and CPU) measured; the peer
figure is the same run's time of the bare library call the page renders (what `keel run list`,
`keel trace list` ... cost), so `overhead` is what the console adds. Target: p95 <= 200 ms for every page.

    python benchmarks/console.py [--runs 100000] [--traces 1000000] [--repeats 20] [--backends sqlite,postgresql]

Prints one JSON line per backend. PostgreSQL uses KEEL_BENCH_POSTGRES_URL or KEEL_TEST_POSTGRES_URL.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fastapi.testclient import TestClient  # noqa: E402

from _pg import postgres_schema_url  # noqa: E402
from keel.core.ids import canonical_json  # noqa: E402
from keel.govern import create_key, grant  # noqa: E402
from keel.monitor import get_trace, list_traces, summarize  # noqa: E402
from keel.registry import get_run, list_runs, register_model  # noqa: E402
from keel.serve import create_deployment  # noqa: E402
from keel.store import Store, init_workspace  # noqa: E402
from keel.store.schema import run_latest_metrics, run_metrics, run_params, runs, trace_contents, traces  # noqa: E402
from keel.ui import create_console  # noqa: E402

TARGET_MS = 200.0
BATCH = 10_000
NOW = datetime.now(UTC)


def _ulid_at(at: datetime, rng: random.Random) -> str:
    """A ULID whose time part is `at`, so trace ids sort like their times (as the gateway's do)."""
    alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
    ms = int(at.timestamp() * 1000)
    head = "".join(alphabet[(ms >> (5 * i)) & 31] for i in range(9, -1, -1))
    return head + "".join(rng.choice(alphabet) for _ in range(16))


def load_runs(store: Store, n: int) -> list[str]:
    rng = random.Random(7)
    start = NOW - timedelta(days=365)
    ids: list[str] = []
    with store.db.write() as conn:
        for first in range(0, n, BATCH):
            batch, params, series, latest = [], [], [], []
            for i in range(first, min(n, first + BATCH)):
                run_id = _ulid_at(start + timedelta(seconds=i * 300), rng)
                ids.append(run_id)
                p = {
                    "method": rng.choice(["lora", "full", "dpo"]),
                    "lr": rng.choice([1e-5, 1e-4, 1e-3]),
                    "seed": i % 10,
                }
                batch.append({"id": run_id, "kind": "train", "name": f"run-{i}", "status": "finished",
                              "params": canonical_json(p), "env": "{}", "error": None, "created_by": "bench",
                              "started_at": start + timedelta(seconds=i * 300), "ended_at": None})  # fmt: skip
                params += [{"run_id": run_id, "key": k, "value": canonical_json(v)} for k, v in p.items()]
                for key in ("loss", "accuracy"):
                    values = [rng.random() for _ in range(3)]
                    series += [{"run_id": run_id, "key": key, "step": s, "value": v, "at": start}
                               for s, v in enumerate(values)]  # fmt: skip
                    latest.append({"run_id": run_id, "key": key, "step": 2, "value": values[-1]})
            conn.execute(runs.insert(), batch)
            conn.execute(run_params.insert(), params)
            conn.execute(run_metrics.insert(), series)
            conn.execute(run_latest_metrics.insert(), latest)
    return ids


def load_traces(store: Store, n: int, with_content: int) -> list[str]:
    rng = random.Random(11)
    span = timedelta(days=90).total_seconds()
    ids: list[str] = []
    with store.db.write() as conn:
        for first in range(0, n, BATCH):
            rows, contents = [], []
            for i in range(first, min(n, first + BATCH)):
                at = NOW - timedelta(seconds=span * (1 - i / n))
                trace_id = _ulid_at(at, rng)
                ids.append(trace_id)
                deployment = "chat" if i % 2 else "search"
                rows.append({"id": trace_id, "at": at, "deployment": deployment,
                             "model_version": rng.choice(["chat@v1", "chat@v2"]), "prompt_version": None,
                             "key_id": None, "operation": "chat", "status": 200 if rng.random() > 0.02 else 500,
                             "error": None, "tokens_in": rng.randrange(10, 400), "tokens_out": rng.randrange(5, 300),
                             "ttft_ms": None, "latency_ms": rng.lognormvariate(4, 0.5), "cost": rng.random() / 1000,
                             "cache_hit": 0, "flags": "[]"})  # fmt: skip
                if i >= n - with_content:
                    request = canonical_json({"messages": [{"role": "user", "content": f"q {i}"}]})
                    contents.append({"trace_id": trace_id, "request": request, "response": f"answer {i}"})
            conn.execute(traces.insert(), rows)
            if contents:
                conn.execute(trace_contents.insert(), contents)
    return ids


def build(store: Store, folder: Path, n_runs: int, n_traces: int) -> tuple[str, list[str], list[str]]:
    model = folder / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    register_model(store, "chat", model)
    register_model(store, "chat", model, base_model="another")  # a second version
    for name in ("chat", "search"):
        create_deployment(store, name, "chat@v1", route={"upstream": "http://127.0.0.1:9/v1"})
    key = create_key(store, "bench-admin")
    grant(store, f"key:{key.key.id}", "admin")
    run_ids = load_runs(store, n_runs)
    trace_ids = load_traces(store, n_traces, min(20_000, n_traces))
    if store.db.dialect == "postgresql":
        with store.db.write() as conn:
            conn.exec_driver_sql("ANALYZE")
    return key.secret, run_ids, trace_ids


def _time(call: Callable[[], Any], repeats: int) -> dict[str, float]:
    call()  # warm: templates compiled, caches filled, as on a running server
    wall, cpu = [], []
    for _ in range(repeats):
        w, c = time.perf_counter(), time.process_time()
        call()
        wall.append((time.perf_counter() - w) * 1000)
        cpu.append((time.process_time() - c) * 1000)
    wall.sort()
    cpu.sort()
    at95 = min(len(wall) - 1, round(0.95 * (len(wall) - 1)))
    return {"p50_ms": round(statistics.median(wall), 2), "p95_ms": round(wall[at95], 2),
            "cpu_p50_ms": round(statistics.median(cpu), 2), "cpu_p95_ms": round(cpu[at95], 2)}  # fmt: skip


def measure(store: Store, secret: str, run_ids: list[str], trace_ids: list[str], repeats: int) -> dict[str, Any]:
    client = TestClient(create_console(store, secret_key="bench"), follow_redirects=False)
    token = re.search(r'name="csrf" value="([^"]+)"', client.get("/login").text)
    assert token is not None
    assert client.post("/login", data={"key": secret, "csrf": token.group(1)}).status_code == 303
    deep_run, deep_trace = run_ids[len(run_ids) // 2], trace_ids[len(trace_ids) // 2]
    with store.db.read() as conn:
        sorted_page = list_runs(conn, sort_by="loss", limit=50)
    pages = {
        "overview": "/",
        "runs": "/runs",
        "runs_deep_keyset": f"/runs?after={deep_run}",
        "runs_sorted_by_metric": "/runs?sort=loss",
        "runs_sorted_next_page": f"/runs?sort=loss&after={sorted_page[-1].id}",
        "runs_filtered": "/runs?kind=train&status=finished",
        "run": f"/runs/{run_ids[-1]}",
        "compare": f"/runs/compare?ids={run_ids[-1]},{run_ids[-2]},{run_ids[-3]}",
        "traces": "/traces",
        "traces_deep_keyset": f"/traces?after={deep_trace}",
        "traces_of_deployment": "/traces?deployment=chat",
        "traces_errors": "/traces?errors=true",
        "trace": f"/traces/{trace_ids[-1]}",
        "deployments": "/deployments",
        "deployment_with_24h_charts": "/deployments/chat",
        "review": "/review",
        "audit": "/audit",
        "models": "/models",
    }
    results: dict[str, Any] = {}
    for name, path in pages.items():
        status = client.get(path).status_code
        assert status == 200, (path, status)
        results[name] = _time(lambda p=path: client.get(p), repeats)  # type: ignore[misc]
    day = store.clock() - timedelta(hours=24)
    peers = {  # the library call behind the page, same run
        "runs": lambda: _read(store, lambda c: list_runs(c, limit=50)),
        "runs_sorted_by_metric": lambda: _read(store, lambda c: list_runs(c, sort_by="loss", limit=50)),
        "run": lambda: _read(store, lambda c: get_run(c, run_ids[-1])),
        "traces": lambda: list_traces(store, limit=50),
        "traces_deep_keyset": lambda: list_traces(store, limit=50, after=deep_trace),
        "trace": lambda: get_trace(store, trace_ids[-1]),
        # Before the SQL aggregation the page called summarize (every trace of the window read in Python).
        "deployment_with_24h_charts": lambda: summarize(store, deployment="chat", since=day, by=timedelta(minutes=5)),
    }
    for name, call in peers.items():
        peer = _time(call, repeats)
        results[name]["library_p50_ms"] = peer["p50_ms"]
        results[name]["overhead_ratio"] = round(results[name]["p50_ms"] / max(peer["p50_ms"], 0.01), 2)
    return results


def _read(store: Store, call: Callable[[Any], Any]) -> Any:
    with store.db.read() as conn:
        return call(conn)


def run_backend(name: str, url: str | None, args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        if url:
            os.environ["KEEL_DATABASE_URL"] = url
        store = init_workspace(Path(tmp) / "ws")
        try:
            started = time.perf_counter()
            secret, run_ids, trace_ids = build(store, Path(tmp), args.runs, args.traces)
            load_s = time.perf_counter() - started
            pages = measure(store, secret, run_ids, trace_ids, args.repeats)
        finally:
            store.close()
            os.environ.pop("KEEL_DATABASE_URL", None)
    worst = max(pages.values(), key=lambda r: r["p95_ms"])
    worst_name = next(k for k, v in pages.items() if v is worst)
    worst_cpu = max(pages.values(), key=lambda r: r["cpu_p95_ms"])
    worst_cpu_name = next(k for k, v in pages.items() if v is worst_cpu)
    return {"benchmark": "console", "backend": name, "runs": args.runs, "traces": args.traces,
            "repeats": args.repeats, "load_s": round(load_s, 1), "target_p95_ms": TARGET_MS,
            "worst_page": worst_name, "worst_p95_ms": worst["p95_ms"], "meets_target": worst["p95_ms"] <= TARGET_MS,
            "worst_cpu_page": worst_cpu_name, "worst_cpu_p95_ms": worst_cpu["cpu_p95_ms"],
            "loadavg_1m": round(os.getloadavg()[0], 2), "pages": pages}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--traces", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--backends", default="sqlite,postgresql")
    args = parser.parse_args()
    for backend in args.backends.split(","):
        if backend == "sqlite":
            print(json.dumps(run_backend("sqlite", None, args)), flush=True)
        else:
            with postgres_schema_url("keel_bench_console") as url:
                if url is None:
                    print(json.dumps({"benchmark": "console", "backend": backend, "skipped": "no PostgreSQL URL"}))
                    continue
                print(json.dumps(run_backend(backend, url, args)), flush=True)


if __name__ == "__main__":
    main()
