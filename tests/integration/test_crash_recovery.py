"""SIGKILL `keel data commit` and `keel model register` at random moments; doctor stays clean, gc reclaims.

Each killed process may leave blobs nothing references and partial uploads; none may leave a
half-visible version, a referenced blob that is missing or damaged, or a broken audit chain.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tests.integration.sigkill import child_env, run_and_kill

from keel.core.settings import load_settings
from keel.data import list_versions, load_version
from keel.registry import get_model, pull_model
from keel.store import LocalBlobStore, init_workspace, open_store, referenced_blobs

KILLS = 20
SEED = 20261206


def _keel(*args: str) -> list[str]:
    return [sys.executable, "-c", "from keel.cli import main; main()", *args]


def _data_file(path: Path, i: int) -> Path:
    rows = (json.dumps({"id": f"r{k}", "text": f"attempt {i} record {k} " * 12}) for k in range(20_000))
    path.write_text("\n".join(rows) + "\n")
    return path


def _model_dir(path: Path, i: int) -> Path:
    path.mkdir()
    (path / "config.json").write_text(json.dumps({"attempt": i}))
    for shard in range(3):
        (path / f"model-{shard}.safetensors").write_bytes(random.Random(i * 10 + shard).randbytes(4 << 20))
    return path


def _timed(args: list[str]) -> float:
    started = time.monotonic()
    proc = subprocess.run(args, capture_output=True, text=True, env=child_env(), timeout=300)
    assert proc.returncode == 0, proc.stderr
    return time.monotonic() - started


@pytest.mark.slow
def test_random_sigkills_leave_doctor_clean_and_gc_reclaims_every_orphan(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    init_workspace(ws).close()
    w = ["-w", str(ws)]
    rng = random.Random(SEED)
    jobs = {
        "data": lambda i: _keel(*w, "data", "commit", "docs", str(_data_file(tmp_path / f"d{i}.jsonl", i))),
        "model": lambda i: _keel(*w, "model", "register", "chat", str(_model_dir(tmp_path / f"m{i}", i))),
    }
    outcomes: dict[str, list[int | None]] = {}
    for kind, command in jobs.items():
        full = _timed(command(-1))  # one uninterrupted run: how long a whole one takes, and a version to keep
        outcomes[kind] = [run_and_kill(command(i), rng.uniform(0.0, full)) for i in range(KILLS)]
    killed = {kind: sum(code == -signal.SIGKILL for code in codes) for kind, codes in outcomes.items()}
    assert all(n >= KILLS // 2 for n in killed.values()), outcomes  # most runs really died mid-way
    assert all(code in (0, -signal.SIGKILL) for codes in outcomes.values() for code in codes), outcomes

    doctor = subprocess.run(_keel(*w, "doctor", "--json"), capture_output=True, text=True, env=child_env())
    report = json.loads(doctor.stdout)
    assert doctor.returncode == 0 and report["ok"], report
    store = open_store(load_settings(ws))
    assert isinstance(store.blobs, LocalBlobStore)
    with store.db.read() as conn:
        referenced, unreadable = referenced_blobs(store, conn)
    assert unreadable == []
    orphans = set(store.blobs.digests()) - set(referenced)
    gc = subprocess.run(_keel(*w, "gc", "--grace", "0s", "--json"), capture_output=True, text=True, env=child_env())
    assert gc.returncode == 0, gc.stderr
    collected = json.loads(gc.stdout)
    assert set(collected["digests"]) == orphans
    assert set(store.blobs.digests()) == set(referenced)
    assert store.blobs.partials() == []
    after = subprocess.run(_keel(*w, "doctor", "--json"), capture_output=True, text=True, env=child_env())
    findings = {f["check"]: f["severity"] for f in json.loads(after.stdout)["findings"]}
    assert after.returncode == 0 and findings["orphans"] == "ok" and "partials" not in findings
    for version in list_versions(store, "docs"):
        assert load_version(store, version).num_rows == 20_000
    latest = get_model(store, "chat")
    for n in range(1, latest.version + 1):
        pull_model(store, f"chat@v{n}", tmp_path / "pulled" / str(n))
    store.close()
