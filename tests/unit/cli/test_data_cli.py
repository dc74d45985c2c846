from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
from typer.testing import CliRunner

from keel.cli import app
from keel.core.settings import load_settings
from keel.registry import list_runs
from keel.store import open_store, walk

runner = CliRunner()


def _ok(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def _jsonl(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_commit_log_show_diff_tag_split_export_validate_trace(workspace: Path, tmp_path: Path) -> None:
    ws = ["-w", str(workspace)]
    first = _jsonl(tmp_path / "v1.jsonl", [{"id": f"q{i}", "text": f"question {i}"} for i in range(40)])
    second = _jsonl(
        tmp_path / "v2.jsonl", [{"id": f"q{i}", "text": f"question {i}{'!' if i == 3 else ''}"} for i in range(1, 41)]
    )
    assert "Committed faq@v1" in _ok(*ws, "data", "commit", "faq", str(first), "-m", "first")
    made = json.loads(_ok(*ws, "data", "commit", "faq", str(second), "--json"))
    assert made["ref"] == "faq@v2" and made["created"] and made["num_rows"] == 40
    assert "already holds exactly these records" in _ok(*ws, "data", "commit", "faq", str(second))
    log = _ok(*ws, "data", "log", "faq")
    assert "v2" in log and "first" in log
    shown = json.loads(_ok(*ws, "data", "show", "faq@v1", "--json"))
    assert shown["schema"] == [{"name": "id", "type": "string"}, {"name": "text", "type": "string"}]
    diff = json.loads(_ok(*ws, "data", "diff", "faq@v1", "faq@v2", "--json"))
    assert diff["counts"] == {"added": 1, "removed": 1, "changed": 1, "unchanged": 38}
    assert (diff["added"], diff["removed"], diff["changed"]) == (["q40"], ["q0"], ["q3"])
    assert "+1 added" in _ok(*ws, "data", "diff", "faq@v1", "faq@v2")
    tagged = json.loads(_ok(*ws, "data", "tag", "faq@v1", "gold", "--reason", "reviewed", "--json"))
    assert tagged == {"dataset": "faq", "tag": "gold", "version": 1}
    assert json.loads(_ok(*ws, "data", "show", "faq@gold", "--json"))["version"] == 1
    split = json.loads(
        _ok(*ws, "data", "split", "faq@v2", "--train", "0.5", "--val", "0.25", "--test", "0.25", "--json")
    )
    assert sum(v["num_rows"] for v in split.values()) == 40 and split["val"]["ref"] == "faq-val@v1"
    out = tmp_path / "faq.jsonl"
    exported = json.loads(_ok(*ws, "data", "export", "faq@v2", str(out), "--format", "jsonl", "--json"))
    assert exported == {"ref": "faq@v2", "path": str(out), "format": "jsonl"}
    assert len(out.read_text().splitlines()) == 40
    expect = tmp_path / "expect.yaml"
    expect.write_text("unique_ids: true\nrows: {min: 50}\nlength: {text: {max: 10}}\n")
    failed = runner.invoke(app, [*ws, "data", "validate", "faq@v2", "--expect", str(expect)])
    assert failed.exit_code == 1 and "2 of 3 expectations fail" in failed.output
    traced = json.loads(_ok(*ws, "data", "trace", "q5", "--json"))
    versions = traced["versions"]
    assert {"faq@v1", "faq@v2"} <= set(versions) and len([v for v in versions if v.startswith("faq-")]) == 1
    assert any(h["node"].startswith("dataset-version:faq-") for h in traced["downstream"])


def test_user_errors_exit_2_without_traceback(workspace: Path, tmp_path: Path) -> None:
    ws = ["-w", str(workspace)]
    missing = runner.invoke(app, [*ws, "data", "show", "nope"])
    assert missing.exit_code == 2 and "NotFoundError: no dataset named 'nope'" in missing.output
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"a": 1}\n{oops\n')
    result = runner.invoke(app, [*ws, "data", "commit", "x", str(bad)])
    assert result.exit_code == 2 and "bad.jsonl:2" in result.output and "Traceback" not in result.output
    fmt = runner.invoke(app, [*ws, "data", "export", "x", str(tmp_path / "o"), "--format", "csv"])
    assert fmt.exit_code == 2 and "expected --format jsonl, parquet or hf" in fmt.output


def test_curate_run_commits_a_version_with_lineage(workspace: Path) -> None:
    (workspace / "raw").mkdir()
    lines = [json.dumps({"text": f"Support ticket {i}: the anvil arrived dented."}) for i in range(12)]
    (workspace / "raw" / "t.jsonl").write_text("\n".join([*lines, lines[0]]) + "\n")
    recipe = workspace / "tickets.yaml"
    recipe.write_text("inputs:\n  - path: raw/*.jsonl\noutput: out\nsteps:\n  - normalize: {}\n  - exact_dedup: {}\n")
    ws = ["-w", str(workspace)]
    assert "Committed tickets@v1 (12 records" in _ok(*ws, "curate", "run", str(recipe))
    assert "already holds exactly these records" in _ok(*ws, "curate", "run", str(recipe))
    shown = _ok(*ws, "data", "show", "tickets@v1")
    # the producer (recipe and curation report) is rendered as indented YAML, not one Python repr
    assert "\n  recipe:\n" in shown and "{'" not in shown and "exact_dedup" in shown
    store = open_store(load_settings(workspace))
    with store.db.read() as conn:
        runs = list_runs(conn, kind="curate")
        assert len(runs) == 2 and runs[0].params["dataset"] == "tickets"
        upstream = {h.node: h.edge_kind for h in walk(conn, "dataset-version:tickets@v1", "upstream")}
    source = f"source:{(workspace / 'raw' / 't.jsonl').resolve().as_uri()}"
    assert upstream[f"run:{runs[1].id}"] == "produced" and upstream[source] == "used_by"
    store.close()


def test_export_refuses_an_existing_destination_unless_forced(workspace: Path, tmp_path: Path) -> None:
    ws = ["-w", str(workspace)]
    source = _jsonl(tmp_path / "faq.jsonl", [{"id": f"q{i}", "text": f"question {i}"} for i in range(5)])
    _ok(*ws, "data", "commit", "faq", str(source))
    before = source.read_bytes()
    refused = runner.invoke(app, [*ws, "data", "export", "faq", str(source)])
    assert refused.exit_code == 2 and "Traceback" not in refused.output
    assert refused.output.strip() == (
        f"InputError: expected a new path to export faq@v1 to; {source} exists; "
        "pass --force to replace it, or choose another path"
    )
    assert source.read_bytes() == before
    out = tmp_path / "out.parquet"
    _ok(*ws, "data", "export", "faq", str(out), "--format", "parquet")
    again = runner.invoke(app, [*ws, "data", "export", "faq", str(out), "--format", "parquet"])
    assert again.exit_code == 2 and "out.parquet exists" in again.output
    assert "Wrote faq to" in _ok(*ws, "data", "export", "faq", str(out), "--format", "parquet", "--force")
    assert pq.read_table(out).column("id").to_pylist() == [f"q{i}" for i in range(5)]
