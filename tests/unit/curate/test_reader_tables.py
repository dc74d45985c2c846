"""The Arrow JSON-lines path (`read_records`) gives exactly the records and problems of the line-by-line reader
(`read_file`), in the same order, on hostile input, and the engine cuts the same shards from either."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from keel.curate import _readers
from keel.curate._duplicate_ids import first_ids_only
from keel.curate._engine import _file_shards, _shard_table
from keel.curate._problems import Problem
from keel.curate._readers import read_file, read_records
from keel.curate._recipe import ResolvedInput

GOOD = [
    b'{"text": "plain text", "id": "a1"}',
    b'{"id": "a2", "text": "caf\xc3\xa9 \xe2\x80\xa2 \xe6\xbc\xa2\xe5\xad\x97 \xf0\x9f\x98\x80"}',
    b'{"text": "escapes \\n\\t\\"\\\\ \\/ \\u00e9 \\u0000 \\ud83d\\ude00", "id": "a3"}',
    b'{"text": "a literal backslash-u: \\\\uDBFF\\\\uDFFF", "id": "a4"}',
    b'   {"text": " starts with a space", "id": "a5"}   ',
    b'{"text": "\\u3000 ideographic space first, then words", "id": "a6"}',
    b'{"te\\u0078t": "an escaped key", "id": "a7"}',
    b'{"text": "crlf ending", "id": "a8"}\r',
    b'{"text": "empty id is replaced", "id": ""}',
]
# Each line here is refused, set aside or read otherwise by one of the two readers unless handled alike.
HOSTILE = [
    b"",
    b"   ",
    b"\t\x0b\x0c\r",
    b'\xef\xbb\xbf{"text": "byte-order mark", "id": "h1"}',
    b'{"text": "caf\xe9", "id": "h2"}',  # not UTF-8
    b'{"text": "\xed\xa0\x80", "id": "h3"}',  # a UTF-8-encoded surrogate
    b'{"text": "x", "id": "h4", "n": NaN}',
    b'{"text": "x", "id": "h5", "n": 1e400}',
    b'{"text": "dup", "text": "last wins", "id": "h6"}',
    b'{"text": "x", "id": "h7", "id": "h7b"}',
    b'["text", "an array"]',
    b'"just a string"',
    b"42",
    b"{not json}",
    b'{"text": "two objects", "id": "h8"} {"text": "on one line", "id": "h9"}',
    b'{"text": "trailing", "id": "h10"} x',
    b'{"text": "lone \\ud800 surrogate", "id": "h11"}',
    b'{"text": "lone low \\udc00", "id": "h12"}',
    b'{"text": "reversed \\ude00\\ud83d", "id": "h13"}',
    b'{"text": null, "id": "h14"}',
    b'{"id": "h15"}',
    b'{"text": "", "id": "h16"}',
    b'{"text": " \\u3000\\u2003\\n\\u001c", "id": "h17"}',
    b'{"text": 12, "id": "h18"}',
    b'{"text": "number id", "id": 7}',
    b'{"text": "null id", "id": null}',
    b'{"text": "no id"}',
    b'{"text": {"nested": "object"}, "id": "h19"}',
    b'{"text": "meta kept", "id": "h20", "lang": "en", "score": 0.5, "tags": ["a"]}',
    b'{"text": "raw\x01control", "id": "h21"}',
    b'{"text": "raw\ttab", "id": "h22"}',
    b'{"text": "nul\x00byte", "id": "h23"}',
    b'{"text": "x", "id": "h24", "deep": ' + b"[" * 40 + b"]" * 40 + b"}",
    b'{"text": "' + b"long " * 40_000 + b'", "id": "h25"}',
    b'{"text": "old mac\\r", "id": "h26"}\r{"text": "line end", "id": "h27"}',
    b"\x1c",
]


def _split(items: list[Any]) -> tuple[pa.Table | None, list[Problem]]:
    tables, records, problems = [], [], []
    for item in items:
        if isinstance(item, Problem):
            problems.append(item)
        elif isinstance(item, dict):
            records.append(item)
        else:
            assert item.num_rows  # a table holds at least one record
            if records:
                tables.append(_shard_table(records))
                records = []
            tables.append(item)
    if records:
        tables.append(_shard_table(records))
    return (pa.concat_tables(tables).combine_chunks() if tables else None), problems


def _assert_alike(path: Path, **options: Any) -> tuple[pa.Table | None, list[Problem]]:
    expected = _split(list(read_file(path, "jsonl", **options)))
    found = _split(list(read_records(path, "jsonl", **options)))
    assert found[1] == expected[1]
    if expected[0] is None:
        assert found[0] is None
    else:
        assert found[0] is not None and found[0].equals(expected[0])
        assert found[0].schema.equals(expected[0].schema, check_metadata=True)
    return found


@pytest.mark.parametrize("id_field", ["id", None])
def test_each_hostile_line_gives_the_same_records_and_problems(tmp_path: Path, id_field: str | None) -> None:
    for n, line in enumerate(HOSTILE):
        path = tmp_path / f"h{n}.jsonl"
        path.write_bytes(b"\n".join([*GOOD[:3], line, *GOOD[3:]]) + b"\n")
        _assert_alike(path, id_field=id_field)


@pytest.mark.parametrize("chunk", [64, 300, 4096, 1 << 24])
def test_files_mixing_good_and_hostile_lines_across_pieces_read_alike(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int
) -> None:
    """Pieces of `chunk` bytes: some parsed by Arrow, some line by line, line numbers carried across them."""
    monkeypatch.setattr(_readers, "_CHUNK_BYTES", chunk)
    rng = random.Random(chunk)
    for trial in range(6):
        lines = [rng.choice(GOOD) if rng.random() < 0.85 else rng.choice(HOSTILE) for _ in range(300)]
        ending = rng.choice([b"\n", b"", b"\r\n", b"\n\n"])
        path = tmp_path / f"mixed{trial}.jsonl"
        path.write_bytes(b"\n".join(lines) + ending)
        for id_field in ("id", None):
            _assert_alike(path, id_field=id_field)
        if chunk == 300:  # pieces of a few lines: some clean ones were parsed by Arrow
            assert any(isinstance(item, pa.Table) for item in read_records(path, "jsonl", id_field="id"))


def test_a_clean_file_is_read_as_tables_and_its_records_are_those_of_read_file(tmp_path: Path) -> None:
    rows = [{"id": f"d{i}", "text": f"document {i} \u2022 caf\u00e9 " * (i % 7 + 1)} for i in range(500)]
    path = tmp_path / "clean.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=i % 2 == 0) + "\n" for i, r in enumerate(rows)), "utf-8")
    items = list(read_records(path, "jsonl", id_field="id"))
    assert all(isinstance(i, pa.Table) for i in items)
    table, problems = _assert_alike(path, id_field="id")
    assert problems == [] and table is not None and table.column("id").to_pylist() == [r["id"] for r in rows]
    _assert_alike(path, text_field="id", id_field="text")  # other field names
    _assert_alike(path, text_field="text", id_field="text")  # the same field twice: line by line


def test_empty_and_blank_files_read_alike(tmp_path: Path) -> None:
    for data in (b"", b"\n", b"\n\n  \n", b" "):
        path = tmp_path / "blank.jsonl"
        path.write_bytes(data)
        table, problems = _assert_alike(path, id_field="id")
        assert table is None and problems == []


@pytest.mark.parametrize("shard_size", [1, 7, 100, 1000])
def test_the_engine_cuts_the_same_shards_from_tables_and_from_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shard_size: int
) -> None:
    monkeypatch.setattr(_readers, "_CHUNK_BYTES", 2000)
    rng = random.Random(shard_size)
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"\n".join(rng.choice(GOOD) if rng.random() < 0.9 else rng.choice(HOSTILE) for _ in range(400)))
    source = ResolvedInput(path=path, format="jsonl", text_field="text", id_field="id")
    problems: list[dict[str, Any]] = []
    shards = list(_file_shards(source, shard_size, False, problems))
    # The lines repeat ids (GOOD holds a few): line by line, the first of each is kept and the rest quarantined.
    items = list(first_ids_only(read_file(path, "jsonl", id_field="id"), source))
    records = [r for r in items if not isinstance(r, Problem)]
    expected = [_shard_table(records[i : i + shard_size]) for i in range(0, len(records), shard_size)]
    assert len(shards) == len(expected)
    for shard, want in zip(shards, expected, strict=True):
        assert shard.equals(want) and all(column.num_chunks == 1 for column in shard.columns)
    assert problems == [p.to_json() for p in items if isinstance(p, Problem)]
    assert any(p["reason"] == "duplicate_id" for p in problems)


def test_lines_with_other_fields_are_read_as_tables_cut_around_problems(tmp_path: Path) -> None:
    """Arrow refuses lines with fields besides text and id; they are still read into record tables, with `meta`."""
    rows = [
        {"id": f"m{i}", "text": f"document {i} caf\u00e9", "meta": {"page": f"p{i}.html", "part": i, "of": None}}
        for i in range(200)
    ]
    lines = [json.dumps(r, ensure_ascii=i % 2 == 0).encode() for i, r in enumerate(rows)]
    lines[50] = b'{"text": "", "id": "empty"}'  # a problem between two runs of records
    lines[120] = b"{not json}"
    path = tmp_path / "meta.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    items = list(read_records(path, "jsonl", id_field="id"))
    assert [type(i).__name__ for i in items] == ["Table", "Problem", "Table", "Problem", "Table"]
    assert [p.line for p in items if isinstance(p, Problem)] == [51, 121]
    table, problems = _assert_alike(path, id_field="id")
    assert table is not None and table.num_rows == 198
    assert json.loads(table.column("meta")[0].as_py()) == {"meta": {"page": "p0.html", "part": 0, "of": None}}
    _assert_alike(path, id_field=None)
