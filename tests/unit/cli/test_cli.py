from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import update
from typer.testing import CliRunner

from keel.cli import app
from keel.core.settings import load_settings
from keel.store import Edge, add_edges, open_store
from keel.store.schema import audit_events

runner = CliRunner()


def _keel(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the real `keel` entry point in a child process."""
    return subprocess.run(
        [sys.executable, "-m", "keel", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
    )


def test_init_then_status_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    result = runner.invoke(app, ["init", str(tmp_path / "ws")])
    assert result.exit_code == 0, result.output
    assert "Created Keel workspace" in result.output
    assert (tmp_path / "ws" / "keel.yaml").is_file()
    monkeypatch.chdir(tmp_path / "ws")
    result = runner.invoke(app, ["status", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["workspace"] == str((tmp_path / "ws").resolve())
    assert report["database"]["dialect"] == "sqlite"
    assert report["database"]["schema_revision"] == report["database"]["schema_head"]
    from keel.store.schema import metadata

    assert set(report["counts"]) == {table.name for table in metadata.sorted_tables}
    assert set(report["counts"].values()) == {0}


def test_status_is_found_from_a_subdirectory_and_with_the_workspace_option(workspace: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    nested = workspace / "a" / "b"
    nested.mkdir(parents=True)
    monkeypatch.chdir(nested)
    assert json.loads(runner.invoke(app, ["status", "--json"]).output)["workspace"] == str(workspace)
    monkeypatch.chdir("/")
    result = runner.invoke(app, ["-w", str(workspace), "status"])
    assert result.exit_code == 0 and "schema" in result.output


def test_init_is_idempotent_and_refuses_a_file(tmp_path: Path) -> None:
    assert runner.invoke(app, ["init", str(tmp_path / "ws")]).exit_code == 0
    (tmp_path / "ws" / "keel.yaml").write_text("version: 1\nactor: svc:ci\n")
    assert runner.invoke(app, ["init", str(tmp_path / "ws")]).exit_code == 0
    assert "svc:ci" in (tmp_path / "ws" / "keel.yaml").read_text()
    (tmp_path / "file").write_text("x")
    result = runner.invoke(app, ["init", str(tmp_path / "file")])
    assert result.exit_code == 2
    assert "ConfigError: expected a directory" in result.output


def test_outside_a_workspace_says_how_to_create_one() -> None:
    proc = _keel("status")
    assert proc.returncode == 2
    assert proc.stderr.startswith("WorkspaceNotFoundError: expected a Keel workspace (keel.yaml)")
    assert "keel init" in proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""


def test_a_bad_database_url_is_one_line_naming_the_variable(workspace: Path) -> None:
    for url, expected in [
        ("not a url", "ConfigError: KEEL_DATABASE_URL is not a database URL"),
        ("mysql://x@h/d", "ConfigError: KEEL_DATABASE_URL names the 'mysql' database"),
        ("postgresql://keel:pw@127.0.0.1:1/x", "DatabaseUnavailableError: cannot connect"),
    ]:
        proc = _keel("-w", str(workspace), "status", env={"KEEL_DATABASE_URL": url})
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.startswith(expected), proc.stderr
        assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
        assert "KEEL_DATABASE_URL" in proc.stderr and ":pw@" not in proc.stderr


def test_db_current_and_upgrade(workspace: Path) -> None:
    current = json.loads(runner.invoke(app, ["-w", str(workspace), "db", "current", "--json"]).output)
    assert current["revision"] == current["head"]
    upgraded = json.loads(runner.invoke(app, ["-w", str(workspace), "db", "upgrade", "--json"]).output)
    assert upgraded == {"before": current["head"], "after": current["head"], "migrated": False}
    assert "already at the newest revision" in runner.invoke(app, ["-w", str(workspace), "db", "upgrade"]).output


def _seed(workspace: Path) -> None:
    store = open_store(load_settings(workspace))
    with store.db.write() as conn:
        add_edges(
            conn,
            [
                Edge("dataset-version:" + "a" * 64, "run:01TRAIN", "trained_on"),
                Edge("run:01TRAIN", "model-version:chat@v1", "produced"),
                Edge("model-version:chat@v1", "trace:01REQ", "serves"),
            ],
        )
        for i in range(3):
            store.audit(conn, "model.alias", "model:chat", {"alias": "production", "version": i + 1})
    store.close()


def test_lineage_show_and_path(workspace: Path) -> None:
    _seed(workspace)
    ws = ["-w", str(workspace)]
    result = runner.invoke(app, [*ws, "lineage", "show", "run:01TRAIN", "--json"])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    assert [h["node"] for h in shown["upstream"]] == ["dataset-version:" + "a" * 64]
    assert [(h["node"], h["depth"]) for h in shown["downstream"]] == [("model-version:chat@v1", 1), ("trace:01REQ", 2)]
    up_only = json.loads(runner.invoke(app, [*ws, "lineage", "show", "trace:01REQ", "--up", "--json"]).output)
    assert "downstream" not in up_only and len(up_only["upstream"]) == 3
    tree = runner.invoke(app, [*ws, "lineage", "show", "trace:01REQ", "--up", "--depth", "2"]).output
    assert "model-version:chat@v1 (serves)" in tree and "run:01TRAIN (produced)" in tree and "dataset" not in tree
    path = runner.invoke(app, [*ws, "lineage", "path", "trace:01REQ", "dataset-version:" + "a" * 64])
    assert path.exit_code == 0 and "trained_on → dataset-version:" in path.output
    none = runner.invoke(app, [*ws, "lineage", "path", "trace:01REQ", "trace:01REQ", "--json"])
    assert json.loads(none.output)["nodes"] == ["trace:01REQ"]
    missing = runner.invoke(app, [*ws, "lineage", "show", "run:nope"])
    assert missing.exit_code == 2 and "NotFoundError: no lineage node 'run:nope'" in missing.output
    bad = runner.invoke(app, [*ws, "lineage", "show", "not-a-node"])
    assert bad.exit_code == 2 and "InputError: expected a lineage node id" in bad.output


def test_lineage_path_exits_1_when_nodes_are_not_joined(workspace: Path) -> None:
    _seed(workspace)
    store = open_store(load_settings(workspace))
    with store.db.write() as conn:
        add_edges(conn, [Edge("run:lonely", "run:island", "produced")])
    store.close()
    result = runner.invoke(app, ["-w", str(workspace), "lineage", "path", "run:lonely", "trace:01REQ"])
    assert result.exit_code == 1 and "No lineage path joins" in result.output


def test_audit_log_and_verify(workspace: Path) -> None:
    _seed(workspace)
    ws = ["-w", str(workspace)]
    listed = json.loads(runner.invoke(app, [*ws, "audit", "log", "--json", "--limit", "2"]).output)
    assert [e["seq"] for e in listed] == [3, 2]
    assert listed[0]["details"] == {"alias": "production", "version": 3}
    table = runner.invoke(app, [*ws, "audit", "log", "--action", "model.alias"]).output
    assert "model.alias" in table
    ok = runner.invoke(app, [*ws, "audit", "verify"])
    assert ok.exit_code == 0 and "3 events verified" in ok.output

    store = open_store(load_settings(workspace))
    with store.db.write() as conn:
        conn.execute(update(audit_events).where(audit_events.c.seq == 2).values(details='{"alias":"evil"}'))
    store.close()
    broken = runner.invoke(app, [*ws, "audit", "verify"])
    assert broken.exit_code == 1 and "broken at event 2" in broken.output
    as_json = json.loads(runner.invoke(app, [*ws, "audit", "verify", "--json"]).output)
    assert as_json["ok"] is False and as_json["first_bad_seq"] == 2


def test_version_and_help() -> None:
    assert runner.invoke(app, ["--version"]).output.startswith("keel ")
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for noun in ("init", "status", "db", "lineage", "audit"):
        assert noun in result.output
