"""SIGKILL `keel curate run` while it commits its output: no half version, doctor stays clean, gc reclaims.

The commit stores the engine's output files as shards as they are (`keel.data._shards.adopt_shard`). A run
resumed from finished shards goes almost straight to its commit, so kills at random moments of such runs
land mostly in the commit. Each run commits to its own dataset: a version either exists whole (every row of
the output, every blob intact) or not at all.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tests.integration.sigkill import child_env, run_and_kill

from keel.core.settings import load_settings
from keel.data import list_datasets, load_version
from keel.store import LocalBlobStore, init_workspace, open_store, referenced_blobs

KILLS = 12
SEED = 20261207


def _keel(ws: Path, *args: str) -> list[str]:
    return [sys.executable, "-c", "from keel.cli import main; main()", "-w", str(ws), *args]


@pytest.mark.slow
def test_sigkill_during_curate_commits_leaves_whole_versions_or_none(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    init_workspace(ws).close()
    with (tmp_path / "raw.jsonl").open("w") as f:
        for i in range(30_000):
            f.write(json.dumps({"id": f"r{i}", "text": f"record {i % 27_000} says " + "words " * (i % 50)}) + "\n")
    (tmp_path / "r.yaml").write_text(
        f"inputs:\n  - path: {tmp_path / 'raw.jsonl'}\n    id_field: id\noutput: {tmp_path / 'out'}\n"
        "shard_size: 4000\nsteps:\n  - exact_dedup: {}\n"
    )

    def run(dataset: str) -> list[str]:
        return _keel(ws, "curate", "run", str(tmp_path / "r.yaml"), "--dataset", dataset, "--json")

    first = subprocess.run(run("whole"), capture_output=True, text=True, env=child_env(), timeout=300)
    assert first.returncode == 0, first.stderr
    started = time.monotonic()  # a resumed run: start-up, reusing every shard, then the commit
    again = subprocess.run(run("again"), capture_output=True, text=True, env=child_env(), timeout=300)
    full = time.monotonic() - started
    assert again.returncode == 0 and json.loads(again.stdout)["resumed_shards"] > 0, again.stderr
    expected = pa.concat_tables(pq.read_table(p) for p in sorted((tmp_path / "out" / "data").glob("*.parquet")))

    rng = random.Random(SEED)
    codes = []
    for i in range(KILLS):
        codes.append(run_and_kill(run(f"killed{i}"), rng.uniform(0.4 * full, full)))
    assert all(code in (0, -signal.SIGKILL) for code in codes), codes
    assert any(code == -signal.SIGKILL for code in codes), codes  # some runs really died mid-way

    doctor = subprocess.run(_keel(ws, "doctor", "--json"), capture_output=True, text=True, env=child_env())
    assert doctor.returncode == 0 and json.loads(doctor.stdout)["ok"], doctor.stdout
    store = open_store(load_settings(ws))
    assert isinstance(store.blobs, LocalBlobStore)
    names = {v.name for v in list_datasets(store)}
    assert {"whole", "again"} <= names
    for name in names:
        assert load_version(store, f"{name}@v1").equals(expected)
    with store.db.read() as conn:
        referenced, unreadable = referenced_blobs(store, conn)
    assert unreadable == []
    gc = subprocess.run(_keel(ws, "gc", "--grace", "0s", "--json"), capture_output=True, text=True, env=child_env())
    assert gc.returncode == 0, gc.stderr
    assert set(store.blobs.digests()) == set(referenced)
    assert store.blobs.partials() == []
    store.close()
