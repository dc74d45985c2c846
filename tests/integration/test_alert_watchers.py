"""Two `keel monitor watch` processes evaluating the same rules at once open, fire and resolve each incident once."""

from __future__ import annotations

import json
import multiprocessing as mp
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from sqlalchemy import select

from keel.core.ids import new_ulid
from keel.core.settings import load_settings
from keel.monitor import Trace, TraceWriter, evaluate_alerts, load_alert_config
from keel.store import Store, open_store
from keel.store.schema import alerts

RULES = 12
ROUNDS = 6  # active, inactive, active, ...: each rule fires and resolves ROUNDS / 2 times
PROCESSES = 2


def _config(path: Path, condition: str) -> Path:
    """Rules whose fingerprints stay the same whatever the condition: each round flips them all."""
    rules = [{"name": f"Errors{i}", "metric": "error_rate", "deployment": "chat", "window": "1h",
              "condition": condition, "for": "0s", "labels": {"shard": str(i)}} for i in range(RULES)]  # fmt: skip
    path.write_text(yaml.safe_dump({"rules": rules, "sinks": [{"type": "log"}]}), encoding="utf-8")
    return path


def _watcher(workspace: str, database_url: str, folder: str, worker: int, barrier: mp.synchronize.Barrier) -> None:
    store = open_store(load_settings(workspace, database_url=database_url))
    configs = [load_alert_config(Path(folder) / "active.yaml"), load_alert_config(Path(folder) / "quiet.yaml")]
    seen = []
    for round_ in range(ROUNDS):
        barrier.wait(timeout=120)  # both evaluate the same change at the same moment
        for event in evaluate_alerts(store, configs[round_ % 2]):
            seen.append({"round": round_, "rule": event.rule, "status": event.status, "id": event.id})
    store.close()
    (Path(folder) / f"events-{worker}.json").write_text(json.dumps(seen), encoding="utf-8")


@pytest.mark.timeout(600)
def test_two_watchers_open_fire_and_resolve_each_incident_once(store: Store, database_url: str, tmp_path: Path) -> None:
    start = store.clock() - timedelta(minutes=10)
    TraceWriter(store).write([
        Trace(id=new_ulid(), at=start + timedelta(seconds=i), deployment="chat", operation="chat",
              status=500 if i % 2 else 200, latency_ms=5.0, model_version="chat@v1")
        for i in range(40)
    ])  # fmt: skip
    _config(tmp_path / "active.yaml", "> 5%")  # the error rate is 50%
    _config(tmp_path / "quiet.yaml", "> 99%")
    ctx = mp.get_context("spawn")  # fresh interpreters, as two `keel monitor watch` processes are
    barrier = ctx.Barrier(PROCESSES)
    workers = [
        ctx.Process(target=_watcher, args=(str(store.settings.workspace), database_url, str(tmp_path), w, barrier))
        for w in range(PROCESSES)
    ]
    for proc in workers:
        proc.start()
    for proc in workers:
        proc.join(timeout=540)
    assert [proc.exitcode for proc in workers] == [0] * PROCESSES

    seen = [e for w in range(PROCESSES) for e in json.loads((tmp_path / f"events-{w}.json").read_text())]
    fired = sorted((e["rule"], e["round"]) for e in seen if e["status"] == "firing")
    resolved = sorted((e["rule"], e["round"]) for e in seen if e["status"] == "resolved")
    # Each transition was reported by exactly one of the two processes, so it is sent once.
    assert fired == sorted((f"Errors{i}", r) for i in range(RULES) for r in range(0, ROUNDS, 2))
    assert resolved == sorted((f"Errors{i}", r) for i in range(RULES) for r in range(1, ROUNDS, 2))
    with store.db.read() as conn:
        rows = conn.execute(select(alerts.c.rule, alerts.c.state, alerts.c.fired_at)).all()
    assert len(rows) == RULES * ROUNDS // 2  # one incident per rule per active round, none twice
    assert {r.state for r in rows} == {"resolved"} and all(r.fired_at is not None for r in rows)
