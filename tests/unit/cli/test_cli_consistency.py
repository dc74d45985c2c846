"""The CLI cannot drift from what the docs, the README and Keel's own hints tell users to type.

Every `keel ...` line in a fenced block of README.md and docs/*.md, and every `keel ...` that an error or
hint in src/ names, must resolve to a real command whose options exist. Groups are singular nouns; the old
plural names keep working, hidden.
"""

from __future__ import annotations

import ast
import functools
import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
import typer.testing
from typer.testing import CliRunner

from keel.cli import app

ROOT = Path(__file__).resolve().parents[3]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.M | re.S)


@functools.cache
def _root() -> Any:
    """The whole command tree, built once: building it takes ~0.2 CPU-s, and the checks below ask ~700 times."""
    command = typer.main.get_command(app)
    command.load_all()  # the root imports its commands lazily
    assert _is_group(command)
    return command


def _is_group(command: Any) -> bool:
    return isinstance(getattr(command, "commands", None), dict)


def _resolve(words: list[str]) -> tuple[Any, list[str], list[str]]:
    """Walk the command tree along `words`: the command reached, the path taken, and the words left."""
    command: Any = _root()
    path: list[str] = []
    rest = list(words)
    while _is_group(command) and rest and not rest[0].startswith("-"):
        sub = command.commands.get(rest[0])
        if sub is None:
            break
        command, path, rest = sub, [*path, rest[0]], rest[1:]
    return command, path, rest


def _options(command: Any) -> set[str]:
    names = {"--help"}
    for param in command.params:
        names.update(param.opts)
        names.update(param.secondary_opts)
    return names


def _problems(words: list[str]) -> list[str]:
    """What is wrong with one `keel ...` invocation, as the docs or a hint show it."""
    root_options = _options(_root())
    if words and all(word in root_options for word in words):  # `keel --help`, `keel --version`
        return []
    while words and words[0] in root_options:  # `keel -w DIR data list`
        words = words[2:] if words[0] in ("-w", "--workspace") else words[1:]
    command, path, rest = _resolve(words)
    shown = " ".join(["keel", *words])
    if _is_group(command) and rest and not rest[0].startswith("-"):
        return [f"`{shown}`: `keel {' '.join(path)}` has no command {rest[0]!r}"]
    if not path:
        return [f"`{shown}`: no such command"]
    known = _options(command)
    options = [option for word in rest if word.startswith("--") for option in word.split("=")[0].split("/")]
    return [f"`{shown}`: `keel {' '.join(path)}` has no option {option}" for option in options if option not in known]


def _doc_invocations() -> Iterator[tuple[str, list[str]]]:
    for doc in DOCS:
        if doc.name == "cli.md":  # generated from the tree itself
            continue
        for block in FENCE.findall(doc.read_text()):
            for line in block.splitlines():
                line = line.strip().removeprefix("$ ")
                for part in re.split(r"&&|\|\||;|\|", line):
                    part = part.split(" #")[0].strip()
                    if not part.startswith("keel "):
                        continue
                    try:
                        words = shlex.split(part)[1:]
                    except ValueError:  # an unbalanced quote in an elided example
                        words = part.split()[1:]
                    yield f"{doc.relative_to(ROOT)}: {part}", words


def _source_invocations() -> Iterator[tuple[str, list[str]]]:
    """`keel ...` inside backticks in any string of src/ (errors, hints, help texts), placeholders dropped."""
    for path in sorted((ROOT / "src" / "keel").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                for span in re.findall(r"`(keel [^`]+)`", node.value):
                    words = [w for w in span.split()[1:] if not re.search(r"[{}<>]", w) and w not in ("…", "...")]
                    yield f"{path.relative_to(ROOT)}:{node.lineno}: {span}", words


def test_every_command_the_docs_show_exists() -> None:
    seen = list(_doc_invocations())
    assert len(seen) > 40, "the fenced-block parser found too few `keel` lines: is it still reading the docs?"
    problems = [f"{where}: {problem}" for where, words in seen for problem in _problems(words)]
    assert not problems, "\n".join(problems)


def test_every_command_an_error_or_hint_names_exists() -> None:
    seen = list(_source_invocations())
    assert len(seen) > 20
    problems = [f"{where}: {problem}" for where, words in seen for problem in _problems(words)]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("words", [["dataset", "list"], ["data", "lst"], ["data", "list", "--jsn"]])
def test_the_checker_itself_catches_a_wrong_command(words: list[str]) -> None:
    assert _problems(words)


def _all_commands(command: Any, path: list[str]) -> Iterator[tuple[list[str], Any]]:
    yield path, command
    if _is_group(command):
        for name, sub in command.commands.items():
            if not sub.hidden:
                yield from _all_commands(sub, [*path, name])


def test_groups_are_singular_nouns_and_old_plurals_still_work(tmp_path: Path) -> None:
    groups = [path[-1] for path, command in _all_commands(_root(), []) if path and _is_group(command)]
    singular_in_s = {"access"}  # a mass noun: there is no "accesses" group to prefer
    assert not [name for name in groups if name.endswith("s") and name not in singular_in_s], groups
    runner = CliRunner()
    assert runner.invoke(app, ["init", str(tmp_path)]).exit_code == 0
    for plural, singular in (("runs", "run"), ("keys", "key"), ("traces", "trace")):
        old = runner.invoke(app, ["-w", str(tmp_path), plural, "list", "--json"])
        new = runner.invoke(app, ["-w", str(tmp_path), singular, "list", "--json"])
        assert old.exit_code == new.exit_code == 0, (old.output, new.output)
        assert old.stdout == new.stdout


def test_help_shows_no_value_placeholder_for_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    # Each invocation would build the tree again (~half of this test's CPU time): the runner gets the built one.
    monkeypatch.setattr(typer.testing, "_get_command", lambda _: _root())
    runner = CliRunner()
    for path, command in _all_commands(_root(), []):
        result = runner.invoke(app, [*path, "--help"], terminal_width=200)
        assert result.exit_code == 0, path
        assert "<bool>" not in result.stdout, f"`keel {' '.join(path)} --help` shows a flag as taking a value"
        for param in command.params:
            if param.param_type_name == "option" and not getattr(param, "hidden", False):
                assert (param.help or "").strip(), f"`keel {' '.join(path)}` option {param.opts} has no help"


def test_every_command_takes_json() -> None:
    missing = [
        " ".join(path)
        for path, command in _all_commands(_root(), [])
        if path and not _is_group(command) and "--json" not in _options(command)
    ]
    assert not missing, f"commands without --json: {missing}"
