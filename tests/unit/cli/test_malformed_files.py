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

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from keel.cli import app
from keel.core.errors import InputError, KeelError

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


# --- property: whatever a file holds, each loader returns or raises a KeelError, nothing else -------------

scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
# Keys each loader knows, so generated documents get past the first check and reach the validation.
KNOWN_KEYS = [
    "name", "base", "method", "data", "train", "subject", "metrics", "cases", "kind", "model", "inputs", "output",
    "steps", "path", "format", "template", "variables", "examples", "description", "schema", "rows", "length",
    "language", "no_pii", "not_null", "unique_ids", "min", "max", "query", "relevant", "case_id", "rating",
]  # fmt: skip
documents = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(KNOWN_KEYS), inner, max_size=4),
    max_leaves=6,
)


def _loaders() -> dict[str, Callable[[Path], object]]:
    from keel.core.settings import read_config_file
    from keel.curate import load_recipe
    from keel.data import load_expectations
    from keel.evals import load_suite, read_ratings
    from keel.index import load_queries
    from keel.registry import load_prompt_file
    from keel.train import load_train_config

    return {
        "train.yaml": load_train_config,
        "suite.yaml": load_suite,
        "recipe.yaml": load_recipe,
        "expect.yaml": load_expectations,
        "prompt.yaml": load_prompt_file,
        "ratings.jsonl": read_ratings,
        "ratings.csv": read_ratings,
        "queries.jsonl": load_queries,
        "vars.json": lambda p: read_config_file(p, "vars file", syntax="json", error=InputError),
    }


def _encode(value: object, name: str, how: int) -> bytes:
    if name.endswith(".jsonl") or name.endswith(".csv"):
        items = value if isinstance(value, list) else [value]
        return "".join(json.dumps(item) + "\n" for item in items).encode()
    if how == 0 or name.endswith(".json"):
        return json.dumps(value).encode()
    return yaml.safe_dump(value, allow_unicode=True).encode()


@settings(max_examples=200, deadline=None)
@given(
    name=st.sampled_from(sorted(_loaders())),
    content=st.one_of(
        st.binary(max_size=64),
        st.tuples(documents, st.integers(0, 1)),
        st.tuples(values, st.integers(0, 1)),
    ),
)
def test_any_content_is_read_or_refused_with_a_keel_error(name: str, content: bytes | tuple[object, int]) -> None:
    import tempfile

    data = content if isinstance(content, bytes) else _encode(content[0], name, content[1])
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_bytes(data)
        try:
            _loaders()[name](path)
        except KeelError as exc:
            assert exc.exit_code == 2
            assert str(path) in str(exc) or path.name in str(exc), str(exc)


def test_files_saved_with_a_byte_order_mark_are_read(workspace: Path, tmp_path: Path) -> None:
    """Excel and Notepad start UTF-8 files with a BOM: a ratings CSV's first column must still be `case_id`."""
    from keel.evals import read_ratings

    sheet = tmp_path / "ratings.csv"
    sheet.write_bytes(b"\xef\xbb\xbfcase_id,rating\nc1,yes\nc2,no\n")
    assert read_ratings(sheet) == {"c1": 1, "c2": 0}
    variables = tmp_path / "vars.json"
    variables.write_bytes(b'\xef\xbb\xbf{"question": "hi"}')
    prompt = tmp_path / "p.yaml"
    prompt.write_bytes(b"\xef\xbb\xbftemplate: 'Q: {{ question }}'\n")
    assert runner.invoke(app, ["-w", str(workspace), "prompt", "create", "p", str(prompt)]).exit_code == 0
    rendered = runner.invoke(app, ["-w", str(workspace), "prompt", "render", "p", "--vars-file", str(variables)])
    assert rendered.exit_code == 0 and "Q: hi" in rendered.output, rendered.output


# Files a recipe names: the blocklist's words_file and decontaminate's eval_files (text or JSON Lines).
RECIPE_FILE_STEPS = {
    "words_file": ("words.txt", "  - blocklist: {{words_file: {path}}}\n"),
    "eval_files": ("eval.jsonl", "  - decontaminate: {{eval_files: [{path}]}}\n"),
}


@pytest.mark.parametrize("kind", ["not-utf8", "syntax-error", "directory", "missing"])
@pytest.mark.parametrize("step", sorted(RECIPE_FILE_STEPS))
def test_a_malformed_file_named_by_a_recipe_is_refused_in_one_line(step: str, kind: str, tmp_path: Path) -> None:
    name, line = RECIPE_FILE_STEPS[step]
    if kind == "syntax-error" and not name.endswith(".jsonl"):
        pytest.skip("a words file is plain lines: any UTF-8 text is valid")
    named = tmp_path / name
    if kind == "directory":
        named.mkdir()
    elif kind != "missing":
        named.write_bytes(JSONL_FILES[kind] or b"")
    (tmp_path / "in.jsonl").write_text('{"id": "a", "text": "some text to keep"}\n')
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("inputs: [{path: in.jsonl}]\noutput: out\nsteps:\n" + line.format(path=named))
    before = _tree(tmp_path)
    result = runner.invoke(app, ["curate", "run", str(recipe)])
    lines = [text for text in result.output.splitlines() if text.strip()]
    assert "Traceback" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and str(named) in lines[0] and "expected" in lines[0], result.output
    assert _tree(tmp_path) == before, "something was written"


def _alias_bomb(levels: int) -> str:
    """A few hundred bytes of YAML whose aliases expand to 9**levels values (a "billion laughs")."""
    lines = ['l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("command", ["train", "curate", "eval", "prompt"])
def test_yaml_aliases_that_expand_past_the_limit_are_refused(command: str, workspace: Path, tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(_alias_bomb(7))  # 9**7 = 4.8 million strings from 500 bytes
    args = {
        "train": ["train", "validate", str(bomb)],
        "curate": ["curate", "validate", str(bomb)],
        "eval": ["-w", str(workspace), "eval", "run", str(bomb)],
        "prompt": ["-w", str(workspace), "prompt", "create", "p", str(bomb)],
    }[command]
    _assert_one_line_refusal(args, bomb, _tree(tmp_path), tmp_path)
    assert "expected at most 1,000,000 values" in runner.invoke(app, args).output


# A key written twice: PyYAML and json keep the last value and drop the first without a word, so a pipeline's
# second `a:` stage replaced its first one and the run ran one stage where the file declared two.
REPEATED_KEYS = {
    "pipeline": ("pipeline.yaml", b"name: p\nstages:\n  a:\n    run: echo first\n  a:\n    run: echo second\n"),
    "train": ("train.yaml", b"base: m@v1\nmethod: lora\nmethod: full\n"),
    "curate": ("recipe.yaml", b"inputs: [{path: in.jsonl}]\noutput: out\noutput: elsewhere\nsteps: []\n"),
    "vars": ("vars.json", b'{"question": "first", "question": "second"}'),
}


@pytest.mark.parametrize("command", sorted(REPEATED_KEYS))
def test_a_key_repeated_in_a_mapping_is_refused(command: str, workspace: Path, tmp_path: Path) -> None:
    name, content = REPEATED_KEYS[command]
    path = tmp_path / name
    path.write_bytes(content)
    args = {
        "pipeline": ["-w", str(workspace), "pipeline", "validate", "-f", str(path)],
        "train": ["train", "validate", str(path)],
        "curate": ["curate", "validate", str(path)],
        "vars": ["-w", str(workspace), "prompt", "render", "support", "--vars-file", str(path)],
    }[command]
    _assert_one_line_refusal(args, path, _tree(tmp_path), tmp_path)
    output = " ".join(runner.invoke(app, args).output.split())
    assert "expected each key once" in output, output
    assert "'a'" in output or "'method'" in output or "'output'" in output or "'question'" in output, output


def test_keys_merged_from_an_anchor_may_be_overridden(tmp_path: Path) -> None:
    from keel.core.settings import read_config_file

    path = tmp_path / "merge.yaml"
    path.write_text("defaults: &d {lr: 0.1, steps: 2}\nrun:\n  <<: *d\n  steps: 5\n")
    assert read_config_file(path, "config")["run"] == {"lr": 0.1, "steps": 5}


def test_a_merged_anchor_that_itself_overrides_a_merge_is_not_refused(tmp_path: Path) -> None:
    # `train` merges `gpu` before `gpu` (nested deeper) is built: PyYAML flattens `gpu` in place first, so its
    # `retries` from `base` sits beside its own; only the mapping's own keys may be compared.
    from keel.core.settings import read_config_file

    path = tmp_path / "merge.yaml"
    path.write_text(
        "base: &base {retries: 1, image: a}\ndefinitions:\n  gpu: &gpu {<<: *base, retries: 3}\ntrain: {<<: *gpu}\n"
    )
    data = read_config_file(path, "config")
    assert data["definitions"]["gpu"] == {"retries": 3, "image": "a"}
    assert data["train"] == {"retries": 3, "image": "a"}


def test_a_repeated_key_in_keel_yaml_is_refused(workspace: Path) -> None:
    config = workspace / "keel.yaml"
    config.write_text(config.read_text() + "blob_url: /tmp/one\nblob_url: /tmp/two\n")
    result = runner.invoke(app, ["-w", str(workspace), "status"])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert "expected each key once" in " ".join(result.output.split()), result.output
