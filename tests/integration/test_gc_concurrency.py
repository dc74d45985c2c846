"""`keel gc` with no grace period, run over and over while another process commits and registers."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from keel.core.settings import load_settings
from keel.data import list_versions, load_version
from keel.registry import get_model, pull_model
from keel.store import collect_garbage, doctor, init_workspace, open_store

ROUNDS = 12

WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    import pyarrow as pa
    from keel.core.settings import load_settings
    from keel.data import commit_version
    from keel.registry import register_model
    from keel.store import open_store

    workspace, rounds, scratch = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
    store = open_store(load_settings(workspace))
    for j in range(rounds):
        # half the rows repeat the previous round's: reused shards and re-added blobs, not only new ones
        ids = [f"r{i}" for i in range(j * 50, j * 50 + 100)]
        table = pa.table({"id": ids, "text": [f"text {i} " * 20 for i in range(j * 50, j * 50 + 100)]})
        commit_version(store, "docs", table, shard_rows=25)
        model = scratch / f"model-{j}"
        model.mkdir()
        (model / "config.json").write_text("{}")
        (model / "weights.bin").write_bytes(bytes([j]) * 65536)
        register_model(store, "chat", model)
        print(j, flush=True)
    store.close()
    """
)


@pytest.mark.slow
def test_gc_running_throughout_concurrent_writes_removes_nothing_they_reference(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KEEL_DATABASE_URL", database_url)
    workspace = tmp_path / "ws"
    init_workspace(workspace).close()
    store = open_store(load_settings(workspace))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(workspace), str(ROUNDS), str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    collections, removed = 0, 0
    while writer.poll() is None:
        removed += len(collect_garbage(store, grace_seconds=0).removed)
        collections += 1
    out, err = writer.communicate()
    assert writer.returncode == 0, err
    assert out.split() == [str(j) for j in range(ROUNDS)]
    assert collections > ROUNDS  # gc really ran throughout the writes
    assert [v.version for v in list_versions(store, "docs")] == list(range(ROUNDS, 0, -1))
    for version in range(1, ROUNDS + 1):
        assert load_version(store, f"docs@v{version}").num_rows == 100
        pull_model(store, f"chat@v{version}", tmp_path / "pulled" / str(version))
        assert (tmp_path / "pulled" / str(version) / "weights.bin").read_bytes() == bytes([version - 1]) * 65536
    assert get_model(store, "chat").version == ROUNDS
    report = doctor(store)
    assert report.ok, report.to_json()
    store.close()
