"""`keel data commit` keeps records that repeat an id (paired by content, as documented) but never silently."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
from typer.testing import CliRunner

from keel.cli import app
from keel.core.settings import load_settings
from keel.data import commit_version, repeated_ids
from keel.store import open_store

runner = CliRunner()


def _jsonl(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_a_commit_with_repeated_ids_warns_and_counts_them(workspace: Path, tmp_path: Path) -> None:
    rows = [{"id": "a", "text": "one"}, {"id": "b", "text": "two"}, {"id": "a", "text": "one, changed"}]
    data = _jsonl(tmp_path / "d.jsonl", [*rows, {"id": "a", "text": "one"}])
    result = runner.invoke(app, ["-w", str(workspace), "data", "commit", "faq", str(data)])
    assert result.exit_code == 0, result.output
    assert "Committed faq@v1" in result.stdout and "4 records" in result.stdout
    assert result.stderr.startswith("warning: 2 record(s) of faq@v1 repeat an id another record of it has")
    assert "(first: id 'a' at rows 1 and 3)" in result.stderr and "unique_ids: true" in result.stderr
    made = runner.invoke(app, ["-w", str(workspace), "data", "commit", "other", str(data), "--json"])
    assert made.exit_code == 0 and json.loads(made.stdout)["duplicate_ids"] == 2 and made.stderr == ""


def test_a_commit_of_unique_ids_says_nothing_more(workspace: Path, tmp_path: Path) -> None:
    data = _jsonl(tmp_path / "d.jsonl", [{"id": f"q{i}", "text": f"question {i}"} for i in range(20)])
    result = runner.invoke(app, ["-w", str(workspace), "data", "commit", "faq", str(data)])
    assert result.exit_code == 0 and result.stderr == ""
    made = runner.invoke(app, ["-w", str(workspace), "data", "commit", "faq2", str(data), "--json"])
    assert json.loads(made.stdout)["duplicate_ids"] == 0


def test_repeated_ids_counts_only_the_rows_a_version_keeps(workspace: Path) -> None:
    store = open_store(load_settings(workspace))
    ids = [f"r{i}" for i in range(100)]
    v1, _ = commit_version(store, "faq", pa.table({"id": ids, "text": [f"text {i}" for i in range(100)]}))
    assert repeated_ids(store, v1).count == 0
    # v2 reuses v1's shard with a deletion vector (r5's old text gone) and adds two rows, one repeating r7
    texts = [f"text {i}" if i != 5 else "text five" for i in range(100)]
    v2, _ = commit_version(store, "faq", pa.table({"id": [*ids, "r7"], "text": [*texts, "seven again"]}))
    repeats = repeated_ids(store, v2)
    assert (repeats.count, repeats.first_id) == (1, "r7")
    assert repeats.first_row is not None and repeats.repeat_row is not None and repeats.first_row < repeats.repeat_row
    v3, _ = commit_version(store, "faq", pa.table({"id": ids, "text": texts}))
    assert repeated_ids(store, v3).count == 0 and repeated_ids(store, v3).warning(v3.ref) is None
