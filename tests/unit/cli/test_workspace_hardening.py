"""The workspace as an adversary leaves it: damaged databases, read-only folders, loose permissions."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from keel.cli import app
from keel.store import init_workspace

runner = CliRunner()


def _run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output


def _ok(*args: str) -> str:
    code, out = _run(*args)
    assert code == 0, out
    return out


def _workspace_with_a_version(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    init_workspace(ws).close()
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps({"id": f"r{i}", "text": f"row {i} " * 50}) + "\n" for i in range(300)))
    _ok("-w", str(ws), "data", "commit", "docs", str(data))
    return ws


def _noise_mid_file(db: Path) -> None:
    with db.open("r+b") as f:
        f.seek(db.stat().st_size // 2)
        f.write(os.urandom(8192))


def _bad_header(db: Path) -> None:
    with db.open("r+b") as f:
        f.write(b"not a sqlite header")


def _half(db: Path) -> None:
    os.truncate(db, db.stat().st_size // 2)


def _text(db: Path) -> None:
    db.write_text("this is a text file, not a database\n")


COMMANDS = [
    ["status"],
    ["data", "list"],
    ["data", "export", "docs", "OUT"],
    ["audit", "verify"],
    ["model", "list"],
    ["data", "commit", "more", "IN"],
]


@pytest.mark.parametrize("damage", [_noise_mid_file, _bad_header, _half, _text], ids=lambda f: f.__name__.strip("_"))
def test_a_damaged_database_is_one_line_for_every_command_and_a_problem_for_doctor(
    tmp_path: Path, damage: object
) -> None:
    ws = _workspace_with_a_version(tmp_path)
    db = ws / ".keel" / "keel.db"
    assert callable(damage)
    damage(db)
    for command in COMMANDS:
        args = [a.replace("OUT", str(tmp_path / "out.jsonl")).replace("IN", str(tmp_path / "d.jsonl")) for a in command]
        code, out = _run("-w", str(ws), *args)
        if code == 0:  # noise can miss the pages a command reads; doctor must still see it
            continue
        assert code == 2, (command, out)
        lines = out.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("DatabaseUnavailableError: the metadata database"), out
        assert "is damaged or is not a SQLite database" in lines[0] and "Traceback" not in out
    code, out = _run("-w", str(ws), "doctor")
    assert code == 1 and "problem" in out and "database" in out, out


def _without_root_powers() -> list[str]:
    """A command prefix under which file permissions apply (root ignores them unless it drops the capability)."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: permissions cannot be made to apply")
    caps = "-dac_override,-dac_read_search"
    return [setpriv, f"--inh-caps={caps}", f"--bounding-set={caps}"]


def _keel(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    command = [*_without_root_powers(), sys.executable, "-c", "from keel.cli import main; main()", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)


def _make_read_only(path: Path) -> None:
    for folder, _dirs, files in os.walk(path):
        for name in files:
            os.chmod(Path(folder) / name, 0o400)
        os.chmod(folder, 0o500)


def test_reading_commands_work_on_a_read_only_workspace_and_writing_ones_say_why_not(tmp_path: Path) -> None:
    ws = _workspace_with_a_version(tmp_path)
    _make_read_only(ws)
    try:
        reading = (
            ["status"],
            ["data", "list"],
            ["data", "show", "docs"],
            ["data", "log", "docs"],
            ["data", "trace", "r7"],
            ["model", "list"],
            ["audit", "verify"],
            ["doctor"],
        )
        for command in reading:
            proc = _keel("-w", str(ws), *command)
            assert proc.returncode == 0, (command, proc.stderr)
        exported = _keel("-w", str(ws), "data", "export", "docs", str(tmp_path / "out.jsonl"))
        assert exported.returncode == 0 and len((tmp_path / "out.jsonl").read_text().splitlines()) == 300
        tag = _keel("-w", str(ws), "data", "tag", "docs@v1", "gold")
        assert tag.returncode == 2 and tag.stderr.count("\n") == 1
        assert "which is read-only here" in tag.stderr
        commit = _keel("-w", str(ws), "data", "commit", "more", str(tmp_path / "d.jsonl"))
        assert commit.returncode == 2 and commit.stderr.count("\n") == 1
        # Refused by whichever it would write first (the metadata database or the blob store), saying why.
        assert "read-only here" in commit.stderr or commit.stderr.startswith("StoreError: cannot write to the blob")
    finally:
        for folder, _dirs, _files in os.walk(ws):
            os.chmod(folder, 0o700)


def test_init_in_a_read_only_directory_is_one_line(tmp_path: Path) -> None:
    parent = tmp_path / "locked"
    parent.mkdir()
    parent.chmod(0o500)
    proc = _keel("init", str(parent / "ws"))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith("ConfigError: cannot create a workspace in") and "Permission denied" in proc.stderr
    assert not (parent / "ws").exists()


def test_a_new_workspace_is_private_unless_shared(tmp_path: Path) -> None:
    old = os.umask(0o022)  # the usual umask, under which everything used to be world-readable
    try:
        ws = _workspace_with_a_version(tmp_path)
        shared = tmp_path / "shared"
        shared.mkdir()
        (shared / "keel.yaml").write_text("version: 1\nshared: true\n")
        _ok("init", str(shared))
    finally:
        os.umask(old)

    def mode(path: Path) -> int:
        return stat.S_IMODE(path.stat().st_mode)

    blob = next((ws / ".keel" / "blobs" / "sha256").glob("*/*"))
    assert (mode(ws / ".keel"), mode(ws / ".keel" / "keel.db"), mode(blob)) == (0o700, 0o600, 0o400)
    assert mode(blob.parent) == 0o700
    assert (mode(shared / ".keel"), mode(shared / ".keel" / "keel.db")) == (0o2770, 0o660)
    assert "permissions" not in _ok("-w", str(ws), "doctor")
    (ws / ".keel").chmod(0o755)
    code, out = _run("-w", str(ws), "doctor")
    assert code == 1 and "can be read by other users" in out and "chmod -R go-rwx" in out


def test_doctor_and_gc_commands(tmp_path: Path) -> None:
    ws = _workspace_with_a_version(tmp_path)
    report = json.loads(_ok("-w", str(ws), "doctor", "--json"))
    assert report["ok"] and {f["check"] for f in report["findings"]} >= {"database", "blobs", "audit"}
    assert "No problems found." in _ok("-w", str(ws), "doctor", "--sample", "1")
    orphan = ws / ".keel" / "blobs" / "sha256" / "00" / ("00" * 32)
    orphan.parent.mkdir(mode=0o700, exist_ok=True)
    orphan.write_bytes(b"")  # any name works for gc; doctor would call it damaged only if referenced
    assert "1 blob(s)" in _ok("-w", str(ws), "doctor")
    dry = json.loads(_ok("-w", str(ws), "gc", "--dry-run", "--grace", "0s", "--json"))
    assert dry["removed"] == 1 and orphan.exists()
    assert "Removed 1 unreferenced blob(s)" in _ok("-w", str(ws), "gc", "--grace", "0")
    assert not orphan.exists()
    assert "kept 0" in _ok("-w", str(ws), "gc")
    code, out = _run("-w", str(ws), "gc", "--grace", "soon")
    assert code == 2 and "expected a duration" in out
