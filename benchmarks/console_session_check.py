"""CPU time of the console's per-request session check, on SQLite and PostgreSQL, by number of API keys.

Every console request re-checks its session before the page runs: is the key live, may its principal still
sign in, and (since sign-out is recorded in the database) was the session signed out. This times that check
(`keel.ui._app._may_stay`) alone, in process, as a signed-in admin, with `--keys` API keys in the workspace
(rows written straight into `api_keys`). Run it with PYTHONPATH on two trees to compare them in the same minutes.

    python benchmarks/console_session_check.py [--keys 20,1000] [--calls 2000] [--backends sqlite,postgresql]

Prints one JSON line per backend and key count: CPU and wall microseconds per check.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _pg import postgres_schema_url  # noqa: E402
from keel.core.ids import new_ulid  # noqa: E402
from keel.govern import grant  # noqa: E402
from keel.store import init_workspace  # noqa: E402
from keel.store.schema import api_keys  # noqa: E402
from keel.ui import _app  # noqa: E402


def measure(url: str | None, folder: Path, n_keys: int, calls: int) -> dict[str, object]:
    if url:
        os.environ["KEEL_DATABASE_URL"] = url
    store = init_workspace(folder)
    now = store.clock()
    ids = [new_ulid() for _ in range(n_keys)]
    rows = [{"id": i, "name": f"k{n}", "hash": "-", "scopes": '["*"]', "rate_per_minute": None, "burst": None,
             "created_by": "bench", "created_at": now, "revoked_at": None} for n, i in enumerate(ids)]  # fmt: skip
    with store.db.write() as conn:
        conn.execute(api_keys.insert(), rows)
    key_id = ids[n_keys // 2]
    grant(store, f"key:{key_id}", "admin")
    console = _app.Console(store)
    new_style = "session" in inspect.signature(_app._may_stay).parameters
    arg: object = {"key_id": key_id, "sid": "s" * 22} if new_style else key_id
    assert _app._may_stay(console, f"key:{key_id}", arg)  # type: ignore[arg-type]
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(calls):
        _app._may_stay(console, f"key:{key_id}", arg)  # type: ignore[arg-type]
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    store.close()
    os.environ.pop("KEEL_DATABASE_URL", None)
    return {"keys": n_keys, "calls": calls, "cpu_us_per_check": round(cpu / calls * 1e6, 1),
            "wall_us_per_check": round(wall / calls * 1e6, 1), "session_ids": new_style}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", default="20,1000")
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--backends", default="sqlite,postgresql")
    args = parser.parse_args()
    for backend in args.backends.split(","):
        for n_keys in (int(k) for k in args.keys.split(",")):
            with tempfile.TemporaryDirectory() as tmp:
                if backend == "postgresql":
                    with postgres_schema_url() as url:
                        if url is None:
                            continue
                        result = measure(url, Path(tmp) / "ws", n_keys, args.calls)
                else:
                    result = measure(None, Path(tmp) / "ws", n_keys, args.calls)
            print(json.dumps({"benchmark": "console_session_check", "backend": backend, **result}), flush=True)


if __name__ == "__main__":
    main()
