"""The CLI's errors repeat hostile input short and without raw control characters (ANSI escapes) for the terminal."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from keel.cli import app
from keel.store import init_workspace

HOSTILE = "\x1b[2J\x1b]0;pwned\x07\x9b31m\u202e" + "é" * 1_000_000
runner = CliRunner()


def _assert_short_and_clean(output: str) -> None:
    assert len(output) < 3_000, len(output)
    for raw in ("\x1b", "\x07", "\x9b", "\u202e"):
        assert raw not in output, repr(output[:300])
    assert "Traceback" not in output


def test_a_usage_error_shows_a_megabyte_option_value_short() -> None:
    result = runner.invoke(app, ["curate", "run", "recipe.yaml", "--workers", HOSTILE])
    assert result.exit_code == 2
    _assert_short_and_clean(result.output)
    assert "characters)" in result.output and "\\x1b[2J" in " ".join(result.output.split())


def test_a_keel_error_shows_a_megabyte_argument_short(tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text("inputs: []\noutput: out\nsteps: []\n")
    result = runner.invoke(app, ["curate", "run", str(tmp_path / "r.yaml"), "--engine", HOSTILE])
    assert result.exit_code == 2
    _assert_short_and_clean(result.output)
    assert result.output.startswith("InputError: expected --engine local or ray; got '\\x1b[2J")


def test_a_recipe_value_of_a_megabyte_is_shown_short(tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text(
        f'inputs:\n  - path: "*.jsonl"\noutput: out\nshard_size: "{HOSTILE.encode("unicode_escape").decode()}"\n'
        "steps:\n  - normalize: {}\n",
        encoding="utf-8",
    )
    result = runner.invoke(app, ["curate", "run", str(tmp_path / "r.yaml"), "--no-commit"])
    assert result.exit_code == 2
    _assert_short_and_clean(result.output)
    assert "shard_size" in result.output and f"({len(HOSTILE):,} characters)" in result.output


def test_a_dataset_reference_of_a_megabyte_is_shown_short(tmp_path: Path) -> None:
    init_workspace(tmp_path / "ws").close()
    result = runner.invoke(app, ["-w", str(tmp_path / "ws"), "data", "show", "name@" + HOSTILE])
    assert result.exit_code == 2
    _assert_short_and_clean(result.output)


def test_a_workspace_path_too_long_for_the_os_is_not_found_not_a_traceback(tmp_path: Path) -> None:
    """The OS refuses a name of thousands of characters (ENAMETOOLONG): that is no workspace, not a bug."""
    proc = subprocess.run(
        [sys.executable, "-m", "keel", "-w", str(tmp_path / ("x" * 5000)), "data", "list"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr[-500:]
    assert proc.stderr.startswith("WorkspaceNotFoundError: expected a Keel workspace at ")
    _assert_short_and_clean(proc.stderr)


# "\udcff" reaches the process as the byte 0xff (not UTF-8), which Python decodes to a lone surrogate again.
@pytest.mark.parametrize("value", ["\x1b[31mred", "\udcff", "a\x7fb"])
def test_stderr_of_a_real_process_carries_no_raw_escape(tmp_path: Path, value: str) -> None:
    (tmp_path / "r.yaml").write_text("inputs: []\noutput: out\nsteps: []\n")
    proc = subprocess.run(
        [sys.executable, "-m", "keel", "curate", "run", str(tmp_path / "r.yaml"), "--engine", value],
        capture_output=True,
        timeout=120,
    )
    assert proc.returncode == 2
    err = proc.stderr.decode("utf-8")
    _assert_short_and_clean(err)
    assert err.startswith("InputError: expected --engine local or ray; got ")
