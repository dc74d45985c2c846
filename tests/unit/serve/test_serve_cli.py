from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from keel.cli import app
from keel.core.ids import new_ulid
from keel.core.settings import load_settings
from keel.monitor import Trace, TraceWriter
from keel.registry import register_model
from keel.store import open_store

runner = CliRunner()


def _ok(workspace: Path, *args: str) -> str:
    result = runner.invoke(app, ["-w", str(workspace), *args])
    assert result.exit_code == 0, result.output
    return result.output


def test_deploy_keys_traces_and_monitor_commands(workspace: Path, tmp_path: Path) -> None:
    store = open_store(load_settings(workspace))
    for i in (1, 2):
        (tmp_path / f"m{i}").mkdir()
        (tmp_path / f"m{i}" / "config.json").write_text(str(i))
        register_model(store, "chat", tmp_path / f"m{i}")

    up = "--upstream=http://127.0.0.1:9/v1"
    assert "Created chat: chat@v1 100% (openai)" in _ok(workspace, "deploy", "create", "chat", "--model", "chat@v1", up)
    out = _ok(workspace, "deploy", "canary", "chat", "--model", "chat@v2", "--weight", "20")
    assert "chat@v1 80% (openai), chat@v2 20% (openai)" in out
    assert "chat@v2 100%" in _ok(workspace, "deploy", "promote", "chat")
    assert "chat@v1 80%" in _ok(workspace, "deploy", "rollback", "chat")
    history = json.loads(_ok(workspace, "deploy", "history", "chat", "--json"))
    assert [e["action"] for e in history] == ["create", "canary", "promote", "rollback"]
    configured = json.loads(_ok(workspace, "deploy", "configure", "chat", "--pii", "redact", "--json"))
    assert configured["settings"] == {"pii": "redact"}
    assert json.loads(_ok(workspace, "deploy", "list", "--json"))[0]["name"] == "chat"
    assert "pii" in _ok(workspace, "deploy", "show", "chat")

    missing = runner.invoke(app, ["-w", str(workspace), "deploy", "promote", "nope"])
    assert missing.exit_code == 2 and "NotFoundError: no deployment named 'nope'" in missing.output
    bad = runner.invoke(app, ["-w", str(workspace), "deploy", "canary", "chat", "--model", "chat@v2", "--weight", "0"])
    assert bad.exit_code == 2 and "between 1 and 99" in bad.output

    created = json.loads(_ok(workspace, "key", "create", "app", "--scope", "chat", "--rate", "60", "--json"))
    assert created["secret"].startswith(f"keel_{created['id']}_") and created["scopes"] == ["chat"]
    listed = _ok(workspace, "key", "list", "--json")
    assert created["secret"] not in listed and json.loads(listed)[0]["rate_per_minute"] == 60
    assert "Revoked" in _ok(workspace, "key", "revoke", created["id"])
    assert json.loads(_ok(workspace, "key", "list", "--json")) == []

    trace = Trace(id=new_ulid(), at=store.clock(), deployment="chat", operation="chat", status=200,
                  latency_ms=12.5, model_version="chat@v1", tokens_in=3, tokens_out=4)  # fmt: skip
    TraceWriter(store).write([trace])
    store.close()
    assert trace.id in _ok(workspace, "trace", "list")
    assert json.loads(_ok(workspace, "trace", "show", trace.id, "--json"))["latency_ms"] == 12.5
    (row,) = json.loads(_ok(workspace, "monitor", "summary", "--json"))
    assert (row["deployment"], row["requests"], row["p50_ms"]) == ("chat", 1, 12.5)
    assert "chat@v1" in _ok(workspace, "monitor", "summary", "--hours", "1")


def test_keel_serve_runs_the_gateway(workspace: Path) -> None:
    import socket
    import subprocess
    import sys
    import time

    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "keel", "-w", str(workspace), "serve", "--port", str(port), "--no-auth"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                ready = httpx.get(f"http://127.0.0.1:{port}/readyz")
                break
            except httpx.ConnectError:
                assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.stderr else ""
                time.sleep(0.2)
        assert ready.status_code == 200 and ready.json()["deployments"] == 0
        models = httpx.get(f"http://127.0.0.1:{port}/v1/models")
        assert models.json() == {"object": "list", "data": []}
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    assert f"Keel gateway on http://127.0.0.1:{port}/v1" in out.decode()
