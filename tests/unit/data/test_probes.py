"""Adversarial inputs through the real CLI: one line and exit 2 for a user's mistake, nothing half-written,
and every version that is committed exports to the values it was given.

"Value-identical" here means: each exported JSON line, parsed, equals the committed line parsed, where a
key a line lacks is exported as null (a version has one schema) and integers equal to floats compare
exactly (Python compares 2**53 + 1 and 2.0**53 as different). Key order and spacing are not kept.
"""

from __future__ import annotations

import gzip
import io
import itertools
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner, Result

from keel.cli import app
from keel.core.errors import InputError
from keel.core.settings import load_settings
from keel.data import commit_version
from keel.data._inputs import read_jsonl_table, values_match
from keel.store import open_store

runner = CliRunner()
_names = itertools.count()


def _run(workspace: Path, *args: str) -> Result:
    return runner.invoke(app, ["-w", str(workspace), *args])


def _stored_files(workspace: Path) -> list[str]:
    return sorted(str(p.relative_to(workspace)) for p in (workspace / ".keel" / "blobs").rglob("*") if p.is_file())


def _assert_refused(result: Result, *expected: str) -> None:
    """Exit 2, one line naming the problem, no traceback."""
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert "Traceback" not in result.output and result.exception is None or isinstance(result.exception, SystemExit)
    for text in expected:
        assert text in lines[0], lines[0]


def _deep(depth: int) -> bytes:
    return b'{"id": "d", "n": ' + b"[" * depth + b"]" * depth + b"}\n"


def _truncated_gzip() -> bytes:
    data = gzip.compress(b"".join(b'{"id": "%d", "text": "hello"}\n' % i for i in range(2000)))
    return data[: len(data) // 2]


def _cut_zstd() -> bytes:
    zstd = zstandard.ZstdCompressor()
    return zstd.compress(b'{"id": "a"}\n{"id": "b"}\n') + zstd.compress(b'{"id": "c"}\n' * 100)[:12]


BAD_INPUTS: dict[str, tuple[str, bytes, list[str], list[str]]] = {
    # name: (file name, bytes, extra commit options, texts the one line must hold)
    "latin-1 bytes": ("a.jsonl", b'{"id": "a", "text": "caf\xe9"}\n', [], ["a.jsonl:1", "expected utf-8", "0xe9"]),
    "integer past int64": (
        "a.jsonl",
        b'{"id": "a", "n": 123456789012345678901234567890}\n',
        [],
        ["a.jsonl:1", "does not fit in 64 bits"],
    ),
    "NaN": ("a.jsonl", b'{"id": "a", "x": 1}\n{"id": "b", "x": NaN}\n', [], ["a.jsonl:2", "NaN is not a JSON number"]),
    "Infinity": ("a.jsonl", b'{"id": "a", "x": -Infinity}\n', [], ["-Infinity"]),
    "float overflow": ("a.jsonl", b'{"id": "a", "x": 1e400}\n', [], ["overflows a 64-bit float"]),
    "lone surrogate": ("a.jsonl", b'{"id": "a", "text": "\\udc00"}\n', [], ["invalid_unicode"]),
    "depth 33": ("a.jsonl", _deep(32), [], ["nest 33 levels", "at most 32"]),
    "depth 800": ("a.jsonl", _deep(799), [], ["nest 800 levels"]),
    "depth 40,000": ("a.jsonl", _deep(39_999), [], ["nest 40000 levels"]),
    "big integer rounded in a float column": (
        "a.jsonl",
        b'{"id": "a", "n": 9007199254740993}\n{"id": "b", "n": 0.5}\n',
        [],
        ["a.jsonl:1", "beyond 2**53"],
    ),
    "a field changing type": (
        "a.jsonl",
        b'{"id": "a", "n": 1}\n\n{"id": "b", "n": "x"}\n',
        [],
        ["line 3", "changed from number to string"],
    ),
    "only empty objects in a field": (
        "a.jsonl",
        b'{"id": "a", "m": {"x": {}}}\n{"id": "b", "m": null}\n',
        [],
        ["'m.x' holds only empty objects"],
    ),
    "a line that is not an object": ("a.jsonl", b'{"id": "a"}\n[1, 2]\n', [], ["a.jsonl:2", "found '[1, 2]'"]),
    "a first line of null (pyarrow 26 segfaults)": ("a.jsonl", b"null\n", [], ["a.jsonl:1", "found 'null'"]),
    "a later line of null": ("a.jsonl", b'{"id": "a"}\n  null\n', [], ["a.jsonl:2", "found 'null'"]),
    "an empty file": ("a.jsonl", b"\n \n", [], ["the file is empty"]),
    "a byte-order mark mid-file": ("a.jsonl", b'{"id": "a"}\n\xef\xbb\xbf{"id": "b"}\n', [], ["a.jsonl:2"]),
    "corrupt zstd": ("a.jsonl.zst", b"this is not zstd", [], ["a.jsonl.zst", "zstd"]),
    # zstandard's stream_reader returned the whole first frame's lines and no error for this file.
    "zstd cut inside its second frame": ("a.jsonl.zst", _cut_zstd(), [], ["a.jsonl.zst", "truncated"]),
    "plain file named .gz": ("a.jsonl.gz", b'{"id": "a"}\n', [], ["a.jsonl.gz", "not gzip"]),
    "truncated gzip": ("a.jsonl.gz", _truncated_gzip(), [], ["a.jsonl.gz", "truncated"]),
    "junk named .parquet": ("a.parquet", b"PAR1 but not really", [], ["a.parquet", "expected a Parquet file"]),
    "unknown encoding": ("a.jsonl", b'{"id": "a"}\n', ["--encoding", "klingon"], ["'klingon'"]),
}


@pytest.mark.parametrize("probe", list(BAD_INPUTS), ids=list(BAD_INPUTS))
def test_bad_inputs_are_refused_in_one_line_and_nothing_is_stored(workspace: Path, tmp_path: Path, probe: str) -> None:
    name, data, options, expected = BAD_INPUTS[probe]
    path = tmp_path / name
    path.write_bytes(data)
    before = _stored_files(workspace)
    _assert_refused(_run(workspace, "data", "commit", "probe", str(path), *options), *expected)
    assert _stored_files(workspace) == before
    assert json.loads(_run(workspace, "data", "list", "--json").output) == []


def _export(workspace: Path, ref: str, dest: Path) -> list[dict[str, object]]:
    result = _run(workspace, "data", "export", ref, str(dest))
    assert result.exit_code == 0, result.output
    # split("\n"), not splitlines(): strings may hold U+2028 and other characters splitlines() cuts at.
    return [json.loads(line) for line in dest.read_text(encoding="utf-8").split("\n") if line]


def _lines(data: bytes) -> list[dict[str, object]]:
    return [json.loads(line) for line in data.splitlines() if line.strip()]


GOOD_INPUTS: dict[str, tuple[str, bytes, list[str]]] = {
    "int64 bounds": ("a.jsonl", b'{"id": "a", "n": 9223372036854775807}\n{"id": "b", "n": -9223372036854775808}\n', []),
    "big integers in an integer column": ("a.jsonl", b'{"id": "a", "n": 9007199254740993}\n{"id": "b", "n": 1}\n', []),
    "date-like strings stay strings": (
        "a.jsonl",
        b'{"id": "a", "t": "2024-01-01", "u": {"v": "2024-01-01T00:00:00Z"}}\n{"id": "b", "t": "x", "u": null}\n',
        [],
    ),
    "depth 32": ("a.jsonl", _deep(31), []),
    "NaN and 1e400 inside strings": ("a.jsonl", b'{"id": "a", "text": "NaN [[[ 1e400 \\ud83d\\ude00"}\n', []),
    "latin-1 declared": ("a.jsonl", b'{"id": "a", "text": "caf\xe9"}\n', ["--encoding", "latin-1"]),
    "utf-16 declared": ("a.jsonl", '{"id": "a", "text": "café"}\n'.encode("utf-16"), ["--encoding", "utf-16"]),
    "utf-8 with a byte-order mark": ("a.jsonl", b'\xef\xbb\xbf{"id": "a", "text": "caf\xc3\xa9"}\n', []),
    "a list starting with null": (  # pyarrow 26's JSON reader alone reads [null, true] as [true, false]
        "a.jsonl",
        b'{"id": "a", "v": [null, true]}\n{"id": "b"}\n{"id": "c", "v": null, "w": {"x": [null, [1]]}}\n',
        [],
    ),
    "zstd": ("a.jsonl.zst", zstandard.ZstdCompressor().compress(b'{"id": "a", "text": "z"}\n'), []),
    "zstd of two frames": (
        "a.jsonl.zst",
        zstandard.ZstdCompressor().compress(b'{"id": "a"}\n') + zstandard.ZstdCompressor().compress(b'{"id": "b"}\n'),
        [],
    ),
}


@pytest.mark.parametrize("probe", list(GOOD_INPUTS), ids=list(GOOD_INPUTS))
def test_good_inputs_export_value_identically(workspace: Path, tmp_path: Path, probe: str) -> None:
    name, data, options = GOOD_INPUTS[probe]
    path = tmp_path / name
    path.write_bytes(data)
    result = _run(workspace, "data", "commit", "good", str(path), *options)
    assert result.exit_code == 0, result.output
    exported = _export(workspace, "good", tmp_path / "out.jsonl")
    if name.endswith(".zst"):
        data = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data), read_across_frames=True).read()
    text = data.decode(options[1] if options else "utf-8-sig").encode()
    source = _lines(text)
    assert len(exported) == len(source)
    assert all(values_match(s, e) for s, e in zip(source, exported, strict=True)), (source, exported)


def test_a_record_over_16_mib_among_small_ones_commits(workspace: Path, tmp_path: Path) -> None:
    """Arrow reads JSON in blocks; a record longer than two 16 MiB blocks used to be refused."""
    small = b"".join(b'{"id": "s%d", "text": "small"}\n' % i for i in range(500))
    big = b'{"id": "big", "text": "' + b"y" * (40 << 20) + b'"}\n'
    path = tmp_path / "big.jsonl"
    path.write_bytes(small + big + b'{"id": "last", "text": "small"}\n')
    result = _run(workspace, "data", "commit", "big", str(path), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["num_rows"] == 502
    exported = (tmp_path / "out.jsonl").as_posix()
    assert _run(workspace, "data", "export", "big", exported).exit_code == 0
    with open(exported, "rb") as out:
        lines = out.read().splitlines()
    assert json.loads(lines[500]) == {"id": "big", "text": "y" * (40 << 20)}


def test_parquet_with_nan_and_infinities_commits_and_round_trips(workspace: Path, tmp_path: Path) -> None:
    """Parquet may hold NaN (pandas' missing value): the manifest's statistics once failed on it."""
    table = pa.table({"id": ["a", "b", "c"], "x": [0.5, float("nan"), float("inf")]})
    pq.write_table(table, tmp_path / "in.parquet")
    assert _run(workspace, "data", "commit", "floats", str(tmp_path / "in.parquet")).exit_code == 0
    shown = json.loads(_run(workspace, "data", "show", "floats", "--json").output)
    assert shown["stats"]["x"]["max"] == "inf"
    out = tmp_path / "out.parquet"
    assert _run(workspace, "data", "export", "floats", str(out), "--format", "parquet").exit_code == 0
    assert repr(pq.read_table(out).to_pylist()) == repr(table.to_pylist())  # NaN != NaN: compare the text


def test_the_python_api_refuses_tables_no_parquet_reader_could_open(workspace: Path) -> None:
    deep = pa.array([1])
    for _ in range(40):
        deep = pa.ListArray.from_arrays(pa.array([0, 1], type=pa.int32()), deep)
    store = open_store(load_settings(workspace))
    try:
        with pytest.raises(InputError, match="'deep' nests 41 levels deep; at most 32"):
            commit_version(store, "api", pa.table({"deep": deep}))
        empty = pa.table({"m": pa.array([{}], type=pa.struct([]))})
        with pytest.raises(InputError, match="'m' holds only empty objects"):
            commit_version(store, "api", empty)
        assert _stored_files(workspace) == []
    finally:
        store.close()


def test_files_with_different_columns_merge_and_big_integers_are_not_rounded(workspace: Path, tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_text('{"id": "a", "n": 1}\n')
    (tmp_path / "b.jsonl").write_text('{"id": "b", "m": "x", "n": 0.5}\n')
    both = [str(tmp_path / "a.jsonl"), str(tmp_path / "b.jsonl")]
    assert _run(workspace, "data", "commit", "merged", *both).exit_code == 0
    rows = _export(workspace, "merged", tmp_path / "out.jsonl")
    assert rows == [{"id": "a", "n": 1.0, "m": None}, {"id": "b", "n": 0.5, "m": "x"}]
    (tmp_path / "c.jsonl").write_text('{"id": "c", "n": 9007199254740993}\n')
    result = _run(workspace, "data", "commit", "rounded", str(tmp_path / "b.jsonl"), str(tmp_path / "c.jsonl"))
    _assert_refused(result, "incompatible columns", "9007199254740993 not in range")


def test_a_curation_output_folder_commits_its_records_only(workspace: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "data").mkdir(parents=True)
    (out / "report.json").write_text("{}")
    (out / "quarantine.jsonl").write_text('{"file": "x", "line": 1, "reason": "invalid_json", "detail": ""}\n')
    pq.write_table(pa.table({"id": ["a"], "text": ["kept"]}), out / "data" / "part-00000.parquet")
    (out / "dropped" / "length").mkdir(parents=True)
    pq.write_table(pa.table({"id": ["b"], "text": ["dropped"]}), out / "dropped" / "length" / "part-00000.parquet")
    assert _run(workspace, "data", "commit", "curated", str(out)).exit_code == 0
    assert _export(workspace, "curated", tmp_path / "o.jsonl") == [{"id": "a", "text": "kept"}]


def test_trace_of_a_record_with_neither_text_nor_source(workspace: Path, tmp_path: Path) -> None:
    path = tmp_path / "q.jsonl"
    path.write_text('{"id": "q1", "question": "hi"}\n')
    assert _run(workspace, "data", "commit", "questions", str(path)).exit_code == 0
    traced = _run(workspace, "data", "trace", "q1", "--json")
    assert traced.exit_code == 0, traced.output
    found = json.loads(traced.output)
    assert found["source"] is None and found["text_preview"] is None and found["versions"] == ["questions@v1"]
    assert "q1" in _run(workspace, "data", "trace", "q1").output


NOT_UTF8 = b"# caf\xe9\n"


def test_non_utf8_yaml_files_are_one_line_errors(workspace: Path, tmp_path: Path) -> None:
    data = tmp_path / "a.jsonl"
    data.write_text('{"id": "a", "text": "x"}\n')
    assert _run(workspace, "data", "commit", "d", str(data)).exit_code == 0
    expect = tmp_path / "expect.yaml"
    expect.write_bytes(b"rows: {min: 1}\n" + NOT_UTF8)
    _assert_refused(_run(workspace, "data", "validate", "d", "--expect", str(expect)), "expect.yaml", "line 2")
    recipe = tmp_path / "recipe.yaml"
    recipe.write_bytes(b"inputs: [{path: a.jsonl}]\noutput: out\n" + NOT_UTF8)
    _assert_refused(_run(workspace, "curate", "run", str(recipe)), "recipe.yaml", "expected UTF-8 text", "0xe9")
    assert not (tmp_path / "out").exists()
    config = workspace / "keel.yaml"
    config.write_bytes(config.read_bytes() + NOT_UTF8)
    _assert_refused(_run(workspace, "status"), "keel.yaml", "expected UTF-8 text")


# --- property: whatever JSON lines a user commits, the version exports the same values ----------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**64), max_value=2**64)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
    | st.sampled_from(["2024-01-01", "NaN", "[[{", "\\ud800", "9999999999999999999999"])
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=4), children, max_size=3),
    max_leaves=12,
)
arbitrary_rows = st.lists(st.dictionaries(st.sampled_from(["a", "b", "text"]), json_values, max_size=3), min_size=1)

# Rows that share one shape (what a real export looks like), so most examples commit and are compared.
LEAVES = {
    "int": st.integers(min_value=-(2**63), max_value=2**63 - 1),
    "number": st.integers(min_value=-(2**60), max_value=2**60) | st.floats(allow_nan=False, allow_infinity=False),
    "str": st.text(max_size=12) | st.sampled_from(["2024-01-01", "2024-01-01T00:00:00Z", "NaN", "[{", "\\ud800"]),
    "bool": st.booleans(),
}
shapes = st.recursive(
    st.sampled_from(sorted(LEAVES)),
    lambda inner: (
        st.tuples(st.just("list"), inner)
        | st.tuples(st.just("object"), st.dictionaries(st.text(min_size=1, max_size=4), inner, min_size=1, max_size=3))
    ),
    max_leaves=6,
)


def _values(shape: object) -> st.SearchStrategy[object]:
    if isinstance(shape, str):
        kind = LEAVES[shape]
    elif shape[0] == "list":  # type: ignore[index]
        kind = st.lists(_values(shape[1]), max_size=3)  # type: ignore[index]
    else:
        kind = st.fixed_dictionaries({k: _values(v) for k, v in shape[1].items()})  # type: ignore[index]
    return st.none() | kind


shaped_rows = shapes.flatmap(
    lambda shape: st.lists(st.fixed_dictionaries({}, optional={"v": _values(shape), "w": st.text()}), min_size=1)
)
records = shaped_rows | arbitrary_rows


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(rows=records, raw_nan=st.booleans(), ascii_only=st.booleans())
def test_any_committed_jsonl_exports_the_values_it_was_given(
    workspace: Path, tmp_path: Path, rows: list[dict[str, object]], raw_nan: bool, ascii_only: bool
) -> None:
    name = f"p{next(_names)}"
    lines = [json.dumps({"id": f"r{i}", **row}, ensure_ascii=ascii_only) for i, row in enumerate(rows)]
    if raw_nan:
        lines.append('{"id": "nan", "a": NaN}')
    path = tmp_path / f"{name}.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    before = _stored_files(workspace)
    result = _run(workspace, "data", "commit", name, str(path))
    if result.exit_code != 0:
        _assert_refused(result, f"{name}.jsonl")
        assert _stored_files(workspace) == before
        return
    assert not raw_nan
    exported = _export(workspace, name, tmp_path / f"{name}.out.jsonl")
    source = [json.loads(line) for line in lines]
    assert len(exported) == len(source)
    assert all(values_match(s, e) for s, e in zip(source, exported, strict=True)), (source, exported)


# --- the reader alone, fuzzed faster than through the CLI: any bytes give a table or an InputError -----

fuzz_lines = st.one_of(
    json_values.map(lambda v: json.dumps(v).encode()),  # any top-level value, not only objects
    st.dictionaries(st.sampled_from(["a", "b"]), json_values, max_size=2).map(lambda d: json.dumps(d).encode()),
    st.sampled_from([b"null", b"", b"  ", b"{}", b"{", b'{"a": NaN}', b'{"a": [null, 1]}', b"\xef\xbb\xbf{}"]),
    st.binary(max_size=24).filter(lambda b: b"\n" not in b),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(fuzz_lines, min_size=1, max_size=6))
def test_the_reader_gives_a_faithful_table_or_an_input_error(tmp_path: Path, lines: list[bytes]) -> None:
    path = tmp_path / "fuzz.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    try:
        table = read_jsonl_table(path)
    except InputError as exc:
        assert "\n" not in str(exc)
        return
    table.validate(full=True)
    source = [json.loads(line) for line in lines if line.strip()]
    assert table.num_rows == len(source)
    assert all(values_match(s, r) for s, r in zip(source, table.to_pylist(), strict=True))
