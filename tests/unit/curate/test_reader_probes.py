"""Adversarial inputs to the curation readers: every bad item becomes a quarantine entry with its place and
reason, never an exception, and every record they yield can be stored and exported unchanged."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from keel.cli import app
from keel.core.errors import ConfigError, InputError
from keel.curate import read_file
from keel.curate._problems import Problem, ProblemReason
from keel.curate._readers import _parse, _parse_checked, _Refusal
from keel.curate._recipe import parse_recipe
from keel.data import MAX_JSON_DEPTH

runner = CliRunner()


def _strict_json(text: str) -> Any:
    def refuse(literal: str) -> None:
        raise AssertionError(f"{literal} is not JSON")

    return json.loads(text, parse_constant=refuse)


def _items(path: Path, fmt: str = "jsonl", **options: Any) -> tuple[list[dict[str, Any]], list[Problem]]:
    items = list(read_file(path, fmt, **options))  # type: ignore[arg-type]
    return [i for i in items if not isinstance(i, Problem)], [i for i in items if isinstance(i, Problem)]


def _assert_storable(record: dict[str, Any]) -> None:
    """Text, id and meta are valid Unicode, and meta is strict JSON no deeper than the limit."""
    for key in ("id", "text", "meta"):
        record[key].encode("utf-8")
    _strict_json(record["meta"])


BAD_LINES = [
    (b'{"text": "caf\xe9"}', ProblemReason.UNDECODABLE, "0xe9"),
    (b'{"text": "x", "n": NaN}', ProblemReason.NON_FINITE_NUMBER, "NaN"),
    (b'{"text": "x", "n": 1e400}', ProblemReason.NON_FINITE_NUMBER, "overflows"),
    (b'{"text": "\\ud800"}', ProblemReason.INVALID_UNICODE, "pair"),
    (b'{"text": "x", "n": ' + b"[" * 40_000 + b"]" * 40_000 + b"}", ProblemReason.TOO_DEEP, "40001 levels"),
    (b'{"text": "x", "n": ' + b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH + b"}", ProblemReason.TOO_DEEP, "33"),
    (b'{"text": "x", "n": ' + b"9" * 5000 + b"}", ProblemReason.INVALID_JSON, "digits"),
]


def test_each_bad_line_is_quarantined_with_its_place_and_reason(tmp_path: Path) -> None:
    path = tmp_path / "mixed.jsonl"
    good = b'{"text": "kept", "big": 123456789012345678901234567890, "when": "2024-01-01"}'
    path.write_bytes(b"\n".join([good, *(line for line, _, _ in BAD_LINES)]) + b"\n")
    records, problems = _items(path)
    assert [r["text"] for r in records] == ["kept"]
    # Curation keeps other fields as JSON text in `meta`: integers past int64 stay exact there.
    assert _strict_json(records[0]["meta"]) == {"big": 123456789012345678901234567890, "when": "2024-01-01"}
    assert [(p.line, p.reason) for p in problems] == [(n, r) for n, (_, r, _) in enumerate(BAD_LINES, start=2)]
    for problem, (_, _, detail) in zip(problems, BAD_LINES, strict=True):
        assert detail in problem.detail and problem.file == path.resolve().as_uri()


def test_a_declared_encoding_decodes_jsonl_csv_and_text(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_bytes(b'{"text": "caf\xe9"}\n')
    (tmp_path / "b.jsonl").write_bytes('{"text": "café"}\n{"text": "thé"}\n'.encode("utf-16"))
    (tmp_path / "c.csv").write_bytes(b"text\ncaf\xe9\n")
    (tmp_path / "d.txt").write_bytes(b"caf\xe9")
    assert [r["text"] for r in _items(tmp_path / "a.jsonl", encoding="latin-1")[0]] == ["café"]
    assert [r["text"] for r in _items(tmp_path / "b.jsonl", encoding="utf-16")[0]] == ["café", "thé"]
    assert [r["text"] for r in _items(tmp_path / "c.csv", "csv", encoding="cp1252")[0]] == ["café"]
    assert [r["text"] for r in _items(tmp_path / "d.txt", "text", encoding="latin-1")[0]] == ["café"]
    (tmp_path / "e.jsonl").write_bytes(b'{"text": "not utf-16 at all"}\n')
    _, problems = _items(tmp_path / "e.jsonl", encoding="utf-16")
    assert [(p.line, p.reason) for p in problems] == [(1, ProblemReason.UNDECODABLE)]
    _, problems = _items(tmp_path / "c.csv", "csv")
    assert problems[0].reason == ProblemReason.UNDECODABLE and "encoding:" in problems[0].detail
    with pytest.raises(InputError, match="expected a text encoding Python knows"):
        _items(tmp_path / "a.jsonl", encoding="klingon")


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("a.jsonl.zst", b"this is not zstd"),
        ("a.jsonl.gz", b'{"text": "plain"}\n'),
        ("a.parquet", b"PAR1 junk"),
    ],
)
def test_damaged_files_are_one_quarantine_entry(tmp_path: Path, name: str, data: bytes) -> None:
    (tmp_path / name).write_bytes(data)
    records, problems = _items(tmp_path / name, "parquet" if name.endswith(".parquet") else "jsonl")
    assert records == [] and [p.reason for p in problems] == [ProblemReason.UNREADABLE_FILE]


def test_a_zstd_file_cut_between_frames_keeps_the_first_and_quarantines_the_cut(tmp_path: Path) -> None:
    zstd = zstandard.ZstdCompressor()
    whole = zstd.compress(b'{"text": "a"}\n{"text": "b"}\n')
    (tmp_path / "cut.jsonl.zst").write_bytes(whole + zstd.compress(b'{"text": "c"}\n' * 100)[:12])
    records, problems = _items(tmp_path / "cut.jsonl.zst")
    assert [r["text"] for r in records] == ["a", "b"]
    assert [p.reason for p in problems] == [ProblemReason.UNREADABLE_FILE] and "truncated" in problems[0].detail


def test_parquet_rows_with_nan_are_quarantined(tmp_path: Path) -> None:
    pq.write_table(pa.table({"text": ["a", "b"], "score": [0.5, float("nan")]}), tmp_path / "t.parquet")
    records, problems = _items(tmp_path / "t.parquet", "parquet")
    assert [r["text"] for r in records] == ["a"]
    assert [(p.line, p.reason) for p in problems] == [(2, ProblemReason.NON_FINITE_NUMBER)]


def test_recipes_declare_and_check_encodings(tmp_path: Path) -> None:
    recipe = parse_recipe({"inputs": [{"path": "*.jsonl", "encoding": "Latin-1"}], "output": "out"}, tmp_path, "r")
    (tmp_path / "a.jsonl").write_bytes(b'{"text": "caf\xe9"}\n')
    assert [i.encoding for i in recipe.resolve_inputs()] == ["iso8859-1"]
    with pytest.raises(ConfigError, match=r"inputs\.0\.encoding: .*expected a text encoding"):
        parse_recipe({"inputs": [{"path": "x", "encoding": "klingon"}], "output": "out"}, tmp_path, "r")


def test_a_curation_run_quarantines_bad_lines_and_its_version_exports(workspace: Path) -> None:
    raw = workspace / "raw"
    raw.mkdir()
    (raw / "a.jsonl").write_bytes(
        b'{"text": "first good document"}\n{"text": "caf\xe9"}\n{"text": "x", "n": NaN}\n'
        b'{"text": "second good document", "n": 98765432109876543210}\n'
    )
    (raw / "b.jsonl").write_bytes(b'{"text": "caf\xe9 latin"}\n')
    recipe = workspace / "r.yaml"
    recipe.write_text(
        "inputs:\n  - path: raw/a.jsonl\n  - path: raw/b.jsonl\n    encoding: latin-1\noutput: out\nsteps: []\n"
    )
    ws = ["-w", str(workspace)]
    run = runner.invoke(app, [*ws, "curate", "run", str(recipe)])
    assert run.exit_code == 0, run.output
    quarantined = [json.loads(line) for line in (workspace / "out" / "quarantine.jsonl").read_text().splitlines()]
    assert [(q["line"], q["reason"]) for q in quarantined] == [(2, "undecodable"), (3, "non_finite_number")]
    exported = workspace / "export.jsonl"
    result = runner.invoke(app, [*ws, "data", "export", "r", str(exported)])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in exported.read_text(encoding="utf-8").splitlines()]
    assert sorted(r["text"] for r in rows) == ["café latin", "first good document", "second good document"]
    assert {"n": 98765432109876543210} in [_strict_json(r["meta"]) for r in rows]


json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()  # NaN and infinities included: json.dumps writes them as literals JSON does not have
    | st.text(max_size=10)
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=4), children, max_size=3),
    max_leaves=20,
)
lines = st.one_of(
    st.builds(lambda text, meta: json.dumps({"text": text, "m": meta}), st.text(min_size=1), json_values).map(
        str.encode
    ),
    json_values.map(lambda v: json.dumps({"text": "t", "v": v}).encode()),
    st.integers(1, 200).map(lambda d: b'{"text": "deep", "v": ' + b"[" * d + b"]" * d + b"}"),
    st.binary(max_size=40).filter(lambda b: b"\n" not in b),
    st.text(max_size=20).map(lambda t: json.dumps({"text": t}, ensure_ascii=False).encode("utf-8", "surrogatepass")),
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(lines, min_size=1, max_size=8), st.sampled_from(["utf-8", "latin-1", "cp1252", "utf-16"]))
def test_readers_never_raise_and_yield_only_storable_records(tmp_path: Path, data: list[bytes], encoding: str) -> None:
    path = tmp_path / "h.jsonl"
    path.write_bytes(b"\n".join(data) + b"\n")
    records, problems = _items(path, encoding=encoding)
    for record in records:
        _assert_storable(record)
    assert all(p.line is not None and 1 <= p.line <= len(data) for p in problems)
    assert len(records) + len(problems) <= len(data)


def _outcome(value: Any) -> Any:
    """A parse result comparable with ==: refusals as (reason, detail), values as their JSON (NaN-safe)."""
    if isinstance(value, _Refusal):
        return ("refused", value.reason, value.detail)
    return ("value", json.dumps(value, sort_keys=True))


TRICKY_LINES = [
    b'{"text": "x", "a": NaN, "a": 1}',  # a repeated key hides a NaN from the parsed value
    b'{"text": "x", "a": ' + b"[" * 40 + b"]" * 40 + b', "a": 1}',  # ... and nesting
    b'{"text": "x", "a": {"b": 1, "b": 2}}',
    b'\xef\xbb\xbf{"text": "a byte-order mark"}',
    b'{\x00"text": "x"}',  # a NUL second byte: json.loads(bytes) reads it as UTF-16
    b'\x00{"text": "x"}',
    b' {"text": "leading space"}',
    b"{}",
    b"1",
    b'{"text": "\\ud83d\\ude00 paired", "t": "\\\\ud800 escaped backslash"}',
    b'{"text": "lone \\udc00"}',
    b'{"text": "NaN, Infinity, e100, [[[[ in prose"}',
    b'{"text": "x", "n": -Infinity}',
    b'{"text": "x", "n": 1.5e308, "m": 1e309}',
    b'{"text": "x", "n": 123456789012345678901234567890}',
    b'{"text": "x", "n": ' + b"9" * 5000 + b"}",
    b'{"text": "x", "n": ' + b"[" * 5000 + b"]" * 5000 + b"}",  # too deep for the parser's recursion limit
    b'{"text": "x"} trailing',
    b"NaN",
    b"[1, 2, {}]",
    b'"just a string"',
]


@pytest.mark.parametrize("line", TRICKY_LINES)
def test_parsing_first_gives_the_answers_of_checking_the_bytes_first(line: bytes) -> None:
    text = line.decode("utf-8")
    assert _outcome(_parse(line, text)) == _outcome(_parse_checked(line))


@settings(max_examples=300, deadline=None)
@given(lines)
def test_parsing_first_agrees_with_the_byte_checks_on_generated_lines(line: bytes) -> None:
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        return  # refused before parsing either way
    assert _outcome(_parse(line, text)) == _outcome(_parse_checked(line))
