"""Eight processes committing to one dataset at once: every commit lands, numbered 1..80 without gaps."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from sqlalchemy import select

from keel.core.settings import load_settings
from keel.data import load_version
from keel.store import init_workspace, open_store
from keel.store.schema import dataset_versions

COMMITTERS = 8
COMMITS = 10

COMMITTER = textwrap.dedent(
    """
    import json, sys
    import pyarrow as pa
    from keel.core.settings import load_settings
    from keel.data import commit_version
    from keel.store import open_store

    workspace, who, commits = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    store = open_store(load_settings(workspace))
    for j in range(commits):
        rows = [f"committer {who} commit {j} row {r}" for r in range(5)]
        table = pa.table({"id": [f"{who}-{j}-{r}" for r in range(5)], "text": rows})
        version, created = commit_version(store, "shared", table, message=f"{who}/{j}")
        print(json.dumps({"version": version.version, "created": created, "message": f"{who}/{j}"}), flush=True)
    store.close()
    """
)


@pytest.mark.slow
def test_concurrent_committers_all_land_with_contiguous_versions(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KEEL_DATABASE_URL", database_url)
    workspace = tmp_path / "ws"
    init_workspace(workspace).close()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", COMMITTER, str(workspace), str(who), str(COMMITS)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for who in range(COMMITTERS)
    ]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err
        results += [json.loads(line) for line in out.splitlines()]
    assert len(results) == COMMITTERS * COMMITS and all(r["created"] for r in results)
    store = open_store(load_settings(workspace))
    with store.db.read() as conn:
        rows = conn.execute(
            select(dataset_versions.c.version, dataset_versions.c.message).where(dataset_versions.c.name == "shared")
        ).all()
    assert sorted(r.version for r in rows) == list(range(1, COMMITTERS * COMMITS + 1))
    assert sorted(r.message for r in rows) == sorted(r["message"] for r in results)
    by_message = {r.message: r.version for r in rows}
    for who, j in [(0, 0), (COMMITTERS - 1, COMMITS - 1), (3, 5)]:
        table = load_version(store, f"shared@v{by_message[f'{who}/{j}']}")
        assert table.column("id").to_pylist() == [f"{who}-{j}-{r}" for r in range(5)]
    store.close()
