"""Every command that reads a file the user names, fed a file it cannot use (issue 17, item 12).

Each malformed input (bytes that are not UTF-8, a syntax error, a list where a mapping belongs,
an empty file, a directory, nothing at all) must give exit 2, one line naming the file and what
was expected, no traceback, and nothing written. The file is read and checked before anything
that needs a model, an index or an eval result, so no fixture here trains or builds anything.

Left out, on purpose:
- `keel data commit PATHS` reads data, not a config: bad records are quarantined with their place
  (tests/unit/data), a directory is a valid input (a curation output), and a missing path is
  covered by tests/unit/cli/test_data_cli.py.
- `keel model register PATH` and `keel model import-gguf PATH` take model files, opaque bytes that
  Keel stores or hands to transformers; malformed text does not apply to them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from keel.cli import app

runner = CliRunner()

# The six ways a file can be unusable, for each of the three formats commands read.
YAML_FILES: dict[str, bytes | None] = {
    "not-utf8": b"name: caf\xe9\n",
    "syntax-error": b"name: [unclosed\nother: 1\n",
    "top-level-list": b"- a\n- b\n",
    "empty": b"",
    "directory": None,
    "missing": None,
}
JSON_FILES: dict[str, bytes | None] = {
    "not-utf8": b'{"name": "caf\xe9"}',
    "syntax-error": b'{"name": ',
    "top-level-list": b"[1, 2]",
    "empty": b"",
    "directory": None,
    "missing": None,
}
JSONL_FILES: dict[str, bytes | None] = {
    "not-utf8": b'{"query": "caf\xe9", "relevant": ["r1"], "case_id": "c1", "rating": 1}\n',
    "syntax-error": b'{"query": \n',
    "top-level-list": b"[1, 2]\n",
    "empty": b"",
    "directory": None,
    "missing": None,
}
FORMATS = {"yaml": (YAML_FILES, ".yaml"), "json": (JSON_FILES, ".json"), "jsonl": (JSONL_FILES, ".jsonl")}

# (name, format, the command line given the workspace and the file)
Command = Callable[[Path, Path], list[str]]
COMMANDS: list[tuple[str, str, Command]] = [
    ("train validate", "yaml", lambda ws, f: ["train", "validate", str(f)]),
    ("train run", "yaml", lambda ws, f: ["-w", str(ws), "train", "run", str(f)]),
    ("train sweep", "yaml", lambda ws, f: ["-w", str(ws), "train", "sweep", str(f)]),
    ("eval run", "yaml", lambda ws, f: ["-w", str(ws), "eval", "run", str(f)]),
    (
        "eval gate",
        "yaml",
        lambda ws, f: ["-w", str(ws), "eval", "gate", "--baseline", "m@v1", "--candidate", "m@v2", "--suite", str(f)],
    ),
    (
        "eval agreement",
        "jsonl",
        lambda ws, f: ["-w", str(ws), "eval", "agreement", "01J00000000000000000000000", str(f)],
    ),
    ("index eval", "jsonl", lambda ws, f: ["-w", str(ws), "index", "eval", "docs", "--queries", str(f)]),
    ("prompt create", "yaml", lambda ws, f: ["-w", str(ws), "prompt", "create", "support", str(f)]),
    ("prompt render", "json", lambda ws, f: ["-w", str(ws), "prompt", "render", "support", "--vars-file", str(f)]),
    ("curate validate", "yaml", lambda ws, f: ["curate", "validate", str(f)]),
    ("curate run", "yaml", lambda ws, f: ["-w", str(ws), "curate", "run", str(f)]),
    ("curate explain", "yaml", lambda ws, f: ["curate", "explain", "r1", "--recipe", str(f)]),
    ("data validate", "yaml", lambda ws, f: ["-w", str(ws), "data", "validate", "docs", "--expect", str(f)]),
]
CASES = [
    pytest.param(command, kind, name, id=f"{name}-{kind}")
    for name, fmt, command in COMMANDS
    for kind in FORMATS[fmt][0]
]
FORMAT_OF = {name: fmt for name, fmt, _ in COMMANDS}


def _make(folder: Path, fmt: str, kind: str) -> Path:
    contents, suffix = FORMATS[fmt]
    path = folder / f"input-{kind}{suffix}"
    if kind == "directory":
        path.mkdir()
        (path / "inside.txt").write_text("a file in the folder\n")
    elif kind != "missing":
        data = contents[kind]
        assert data is not None
        path.write_bytes(data)
    return path


def _tree(root: Path) -> dict[str, int]:
    """Every file under root with its size, but the database's own journal files (opening may touch them)."""
    return {
        str(p.relative_to(root)): p.stat().st_size
        for p in root.rglob("*")
        if p.is_file() and not p.name.startswith("keel.db")
    }


def _assert_one_line_refusal(args: list[str], path: Path, before: dict[str, int], root: Path) -> None:
    result = runner.invoke(app, args)
    output = result.output
    lines = [line for line in output.splitlines() if line.strip()]
    assert "Traceback" not in output, output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code == 2, output
    assert len(lines) == 1, output
    assert str(path) in lines[0], output
    assert "expected" in lines[0], output
    assert _tree(root) == before, "something was written"


@pytest.mark.parametrize(("command", "kind", "name"), CASES)
def test_a_malformed_file_is_refused_in_one_line(
    command: Command, kind: str, name: str, workspace: Path, tmp_path: Path
) -> None:
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    path = _make(inputs, FORMAT_OF[name], kind)
    args = command(workspace, path)
    _assert_one_line_refusal(args, path, _tree(tmp_path), tmp_path)


@pytest.mark.parametrize("kind", ["not-utf8", "syntax-error", "top-level-list", "directory"])
def test_a_malformed_keel_yaml_is_refused_in_one_line(kind: str, workspace: Path, tmp_path: Path) -> None:
    config = workspace / "keel.yaml"
    config.unlink()
    if kind == "directory":
        config.mkdir()
    else:
        data = YAML_FILES[kind]
        assert data is not None
        config.write_bytes(data)
    before = _tree(tmp_path)
    result = runner.invoke(app, ["-w", str(workspace), "status"])
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert "Traceback" not in result.output, result.output
    assert result.exit_code == 2, result.output
    assert len(lines) == 1, result.output
    # A keel.yaml that is a folder does not make a workspace: the message names the folder it looked in.
    assert str(workspace if kind == "directory" else config) in lines[0], result.output
    assert "expected" in lines[0], result.output
    assert _tree(tmp_path) == before
