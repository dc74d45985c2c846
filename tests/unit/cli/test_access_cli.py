"""`keel whoami`, `keel access`, `keel approve` and `keel audit checkpoint|verify`, as users run them.

The second principal is an API key passed in `KEEL_API_KEY`, exactly as a CI job would act. One refusal runs as
a real `keel` process (the variable read from a fresh process's environment, the exit code and the one-line
stderr the shell sees); the rest run in this process through Typer's CliRunner with the same environment, since
a `keel` subprocess costs ~1 CPU-s to start and these tests ran ~40 of them.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import delete, select, update
from typer.testing import CliRunner

from keel.cli import app
from keel.core.settings import load_settings
from keel.store import open_store
from keel.store.schema import audit_events, audit_head


@dataclass(frozen=True)
class Done:
    """What a `keel` invocation left: as `subprocess.CompletedProcess` names it."""

    returncode: int
    stdout: str
    stderr: str


def _env(workspace: Path, key: str | None, actor: str | None) -> dict[str, str]:
    env = {"KEEL_WORKSPACE": str(workspace), "COLUMNS": "200"}
    if key:
        env["KEEL_API_KEY"] = key
    if actor:
        env["KEEL_ACTOR"] = actor
    return env


def _keel(workspace: Path, *args: str, key: str | None = None, actor: str | None = None) -> Done:
    """`keel ARGS` in this process, in the workspace folder, with the variables a CI job would set."""
    with contextlib.chdir(workspace):
        result = CliRunner().invoke(app, list(args), env=_env(workspace, key, actor))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception  # a traceback: in a real process it would be on stderr, which the tests refuse
    return Done(result.exit_code, result.stdout, result.stderr)


def _keel_process(
    workspace: Path, *args: str, key: str | None = None, actor: str | None = None
) -> subprocess.CompletedProcess[str]:
    """`keel ARGS` as its own process, as a CI job runs it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEEL_")}
    env.update(PYTHONPATH=os.pathsep.join(sys.path), **_env(workspace, key, actor))
    command = [sys.executable, "-c", "from keel.cli import main; main()", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=180, cwd=workspace)


def _ok(workspace: Path, *args: str, key: str | None = None) -> str:
    done = _keel(workspace, *args, key=key)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture
def team(workspace: Path) -> tuple[Path, str, str]:
    """A workspace with dataset faq@v1 and a key principal (its id and secret)."""
    records = workspace / "faq.jsonl"
    records.write_text('{"id": "a", "text": "How do I reset my password?"}\n')
    _ok(workspace, "data", "commit", "faq", str(records), "-m", "first")
    created = json.loads(_ok(workspace, "key", "create", "ci", "--json"))
    return workspace, f"key:{created['id']}", created["secret"]


def test_a_viewer_is_refused_in_one_line_with_exit_2_and_an_editor_may_commit(team: tuple[Path, str, str]) -> None:
    workspace, principal, secret = team
    me = json.loads(_ok(workspace, "whoami", "--json"))
    assert me["principal"].startswith("local:") and me["enforced"] is False
    _ok(workspace, "access", "grant", principal, "viewer")
    records = workspace / "faq.jsonl"
    records.write_text(records.read_text() + '{"id": "b", "text": "Where is my invoice?"}\n')

    refused = _keel_process(workspace, "data", "commit", "faq", str(records), key=secret)
    assert refused.returncode == 2
    assert refused.stderr.count("\n") == 1 and "Traceback" not in refused.stderr
    assert refused.stderr.startswith(f"PermissionDeniedError: {principal} may not dataset.commit on dataset:faq")
    alias = _keel(workspace, "data", "tag", "faq@v1", "gold", key=secret)
    assert alias.returncode == 2 and alias.stderr.startswith("PermissionDeniedError:")
    assert alias.stderr.count("\n") == 1

    denied = json.loads(_ok(workspace, "audit", "log", "--action", "access.denied", "--json"))
    assert [(e["actor"], e["details"]["action"]) for e in denied] == [
        (principal, "dataset.alias"),
        (principal, "dataset.commit"),
    ]
    check = _keel(workspace, "access", "check", principal, "dataset.commit", "dataset:faq", "--json")
    assert check.returncode == 1 and json.loads(check.stdout)["allowed"] is False

    _ok(workspace, "access", "grant", principal, "editor", "--scope", "dataset:faq*")
    committed = _keel(workspace, "data", "commit", "faq", str(records), key=secret, actor="ci-job-7")
    assert committed.returncode == 0, committed.stderr
    (event,) = json.loads(_ok(workspace, "audit", "log", "--action", "dataset.commit", "--limit", "1", "--json"))
    assert (event["actor"], event["on_behalf_of"]) == (principal, "ci-job-7")
    listed = json.loads(_ok(workspace, "access", "list", "--json"))
    assert {(b["principal"], b["role"], b["scope"]) for b in listed} >= {
        (principal, "viewer", "*"),
        (principal, "editor", "dataset:faq*"),
    }


def test_approve_moves_a_protected_tag_after_another_principal_agrees(team: tuple[Path, str, str]) -> None:
    workspace, principal, secret = team
    _ok(workspace, "access", "grant", principal, "editor")
    _ok(workspace, "access", "protect", "dataset:faq", "alias:production")
    pending = _keel(workspace, "data", "tag", "faq@v1", "production", key=secret)
    assert pending.returncode == 2 and pending.stderr.startswith("ApprovalRequiredError:")
    (request,) = json.loads(_ok(workspace, "access", "requests", "--json"))
    assert request["requested_by"] == principal and request["change"]["to"] == 1
    approved = json.loads(_ok(workspace, "approve", request["id"], "--note", "ok", "--evidence", "review:42", "--json"))
    assert approved["status"] == "approved" and approved["evidence"] == ["review:42"]
    _ok(workspace, "data", "tag", "faq@v1", "production", key=secret)
    assert json.loads(_ok(workspace, "access", "requests", "--all", "--json"))[0]["status"] == "used"


def test_checkpoint_to_a_file_and_a_webhook_then_verify_catches_a_cut_tail(team: tuple[Path, str, str]) -> None:
    workspace = team[0]
    received: list[dict[str, object]] = []

    class Hook(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            return

    server = http.server.HTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        anchor = workspace.parent / "checkpoint.json"
        url = f"http://127.0.0.1:{server.server_port}/anchor"
        _ok(workspace, "audit", "checkpoint", "--output", str(anchor), "--webhook", url)
    finally:
        server.shutdown()
        server.server_close()
    saved = json.loads(anchor.read_text())
    assert received == [saved] and saved["seq"] >= 2
    printed = json.loads(_ok(workspace, "audit", "checkpoint"))  # stdout by default
    assert printed["seq"] == saved["seq"] and printed["signature"]
    assert "checkpoint at event" in _ok(workspace, "audit", "verify", "--checkpoint", str(anchor))

    store = open_store(load_settings(workspace))
    with store.db.write() as conn:
        kept = conn.execute(select(audit_events.c.hash).where(audit_events.c.seq == 1)).scalar_one()
        conn.execute(delete(audit_events).where(audit_events.c.seq > 1))
        conn.execute(update(audit_head).values(seq=1, hash=kept))
    store.close()
    assert _keel(workspace, "audit", "verify").returncode == 0
    broken = _keel(workspace, "audit", "verify", "--checkpoint", str(anchor), "--json")
    assert broken.returncode == 1
    assert "cut off" in json.loads(broken.stdout)["reason"]


def test_bad_checkpoint_files_and_webhooks_are_one_line_errors(team: tuple[Path, str, str]) -> None:
    workspace = team[0]
    bad = workspace.parent / "bad.json"
    bad.write_text('{"seq": "x"}')
    for args in (
        ("audit", "verify", "--checkpoint", str(bad)),
        ("audit", "verify", "--checkpoint", str(workspace.parent / "missing.json")),
        ("audit", "checkpoint", "--webhook", "ftp://example"),
        ("audit", "checkpoint", "--webhook", "http://127.0.0.1:9/closed"),
        ("access", "grant", "bob", "viewer"),
        ("access", "grant", "local:bob", "viewer", "--scope", "datasets:x"),
        ("approve", "01M00000000000000000000000"),
    ):
        done = _keel(workspace, *args)
        assert done.returncode == 2, (args, done.stderr)
        assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
