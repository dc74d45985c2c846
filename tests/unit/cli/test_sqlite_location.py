"""A configured SQLite URL whose folder is missing is refused, not made: a typo must not give an empty workspace."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from keel.cli import app

runner = CliRunner()


def test_a_typo_in_the_folder_of_the_database_url_is_one_line_and_creates_nothing(
    workspace: Path, tmp_path: Path
) -> None:
    typo = tmp_path / "typo" / "dir"
    proc = subprocess.run(
        [sys.executable, "-m", "keel", "-w", str(workspace), "data", "list"],
        capture_output=True,
        text=True,
        env={**os.environ, "KEEL_DATABASE_URL": f"sqlite:///{typo / 'k.db'}"},
        timeout=120,
    )
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == (
        f"ConfigError: KEEL_DATABASE_URL names the SQLite database {typo / 'k.db'}: expected its folder {typo} "
        f"to exist; found no such folder; fix the URL, or create the folder (mkdir -p {typo})\n"
    )
    assert not (tmp_path / "typo").exists()


def test_an_existing_folder_without_the_file_is_a_first_use(workspace: Path, tmp_path: Path) -> None:
    (tmp_path / "meta").mkdir()
    database = tmp_path / "meta" / "k.db"
    result = runner.invoke(
        app, ["-w", str(workspace), "data", "list"], env={"KEEL_DATABASE_URL": f"sqlite:///{database}"}
    )
    assert result.exit_code == 0, result.output
    assert "No datasets yet" in result.output and database.is_file()


def test_a_relative_url_in_keel_yaml_is_checked_against_the_workspace(workspace: Path) -> None:
    config = workspace / "keel.yaml"
    config.write_text("version: 1\ndatabase_url: sqlite:///meta/k.db\n")
    refused = runner.invoke(app, ["-w", str(workspace), "data", "list"])
    assert refused.exit_code == 2
    assert refused.output == (
        f"ConfigError: `database_url` in {config} names the SQLite database {workspace / 'meta' / 'k.db'}: "
        f"expected its folder {workspace / 'meta'} to exist; found no such folder; fix the URL, or create the "
        f"folder (mkdir -p {workspace / 'meta'})\n"
    )
    (workspace / "meta").mkdir()
    assert runner.invoke(app, ["-w", str(workspace), "data", "list"]).exit_code == 0
    assert (workspace / "meta" / "k.db").is_file()


def test_a_file_where_the_folder_should_be_is_refused_without_a_mkdir_hint(workspace: Path, tmp_path: Path) -> None:
    (tmp_path / "notes").write_text("not a folder")
    url = f"sqlite:///{tmp_path / 'notes' / 'k.db'}"
    result = runner.invoke(app, ["-w", str(workspace), "status"], env={"KEEL_DATABASE_URL": url})
    assert result.exit_code == 2
    assert result.output.endswith(f"expected its folder {tmp_path / 'notes'} to exist; found a file; fix the URL\n")
    assert (tmp_path / "notes").read_text() == "not a folder"


def test_a_clone_without_its_keel_folder_still_opens_on_the_default_or_an_explicit_keel_database(
    workspace: Path,
) -> None:
    shutil.rmtree(workspace / ".keel")  # git-ignored: a fresh clone of the workspace has keel.yaml only
    listed = runner.invoke(app, ["-w", str(workspace), "data", "list"])
    assert listed.exit_code == 0 and "No datasets yet" in listed.output, listed.output
    assert (workspace / ".keel" / "keel.db").is_file()
    shutil.rmtree(workspace / ".keel")
    (workspace / "keel.yaml").write_text("version: 1\ndatabase_url: sqlite:///.keel/meta.db\n")
    listed = runner.invoke(app, ["-w", str(workspace), "data", "list"])
    assert listed.exit_code == 0 and "No datasets yet" in listed.output, listed.output
    assert (workspace / ".keel" / "meta.db").is_file()
