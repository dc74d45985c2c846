"""Hostile input files: every bad item is quarantined with a short detail, and a run never stops with a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from keel.curate import LocalEngine, load_recipe


def _run(root: Path, inputs: str) -> tuple[list[str], list[dict[str, object]]]:
    (root / "r.yaml").write_text(f"inputs:\n{inputs}output: out\nsteps:\n  - normalize: {{}}\n")
    LocalEngine().run(load_recipe(root / "r.yaml"))
    texts = pa.concat_tables(pq.read_table(p) for p in sorted((root / "out" / "data").glob("*.parquet")))
    lines = (root / "out" / "quarantine.jsonl").read_text(encoding="utf-8").splitlines()
    return texts.column("text").to_pylist(), [json.loads(line) for line in lines]


def test_a_csv_field_past_the_csv_modules_limit_is_read(tmp_path: Path) -> None:
    """The csv module refuses fields over 128 KiB with `_csv.Error`, which stopped the whole run."""
    (tmp_path / "a.csv").write_text("id,text\n1,hello\n2," + "x" * 300_000 + "\n3,bye\n", encoding="utf-8")
    texts, quarantined = _run(tmp_path, '  - path: "a.csv"\n')
    assert [len(t) for t in texts] == [5, 300_000, 3] and quarantined == []


def test_a_csv_row_wider_than_its_header_is_quarantined(tmp_path: Path) -> None:
    """DictReader puts extra fields under the key None, which json.dumps(sort_keys=True) could not sort."""
    (tmp_path / "a.csv").write_text("id,text\n1,hello,extra,more\n2,kept\n", encoding="utf-8")
    texts, quarantined = _run(tmp_path, '  - path: "a.csv"\n')
    assert texts == ["kept"]
    assert [(q["line"], q["reason"], q["detail"]) for q in quarantined] == [
        (2, "too_many_fields", "4 fields; the header names 2")
    ]


def test_problem_details_stay_short_for_megabyte_lines(tmp_path: Path) -> None:
    huge = "\x1b[2J" + "y" * 1_000_000
    lines = [
        '{"text": "' + huge + '"}',  # a raw control character: invalid JSON
        "[" * 100_000,
        '{"text": ' + json.dumps(huge) + ', "n": ' + "9" * 5000 + "}",  # an integer past Python's digit limit
        '{"text": "kept"}',
    ]
    (tmp_path / "a.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    texts, quarantined = _run(tmp_path, '  - path: "a.jsonl"\n')
    assert texts == ["kept"]
    assert [q["line"] for q in quarantined] == [1, 2, 3]
    for entry in quarantined:
        assert len(str(entry["detail"])) < 400 and "\x1b" not in str(entry["detail"]), entry
