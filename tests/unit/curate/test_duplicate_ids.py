"""Records that repeat an id: the first in input order is kept, every later one is quarantined, never silently."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from keel.cli import app
from keel.core.errors import InputError
from keel.curate import LocalEngine, load_recipe
from keel.curate import _engine as engine_module

runner = CliRunner()


def _lines(path: Path, rows: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")


def _corpus(root: Path) -> None:
    raw = root / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    _lines(
        raw / "a.jsonl",
        [
            {"id": "x1", "text": "first x1, kept"},
            {"id": "x2", "text": "first x2, kept"},
            {"id": "x1", "text": "x1 again in the same file"},
            {"id": 7, "text": "an integer id, kept"},
        ],
    )
    _lines(
        raw / "b.jsonl",
        [
            {"id": "x3", "text": "x3 only here, kept"},
            {"id": "x2", "text": "x2 again, in another file"},
            {"id": "7", "text": "the string of an integer id seen before"},
            {"id": "x2", "text": "x2 a third time"},
        ],
    )


def _recipe(root: Path, shard_size: int = 2, extra: str = "") -> Path:
    path = root / "recipe.yaml"
    path.write_text(
        f"inputs:\n  - path: raw/*.jsonl\n    id_field: id\n{extra}output: out\nshard_size: {shard_size}\n"
        "steps:\n  - normalize: {}\n"
    )
    return path


def _output(root: Path) -> pa.Table:
    return pa.concat_tables(pq.read_table(p) for p in sorted((root / "out" / "data").glob("*.parquet")))


def _quarantine(root: Path) -> list[dict[str, Any]]:
    text = (root / "out" / "quarantine.jsonl").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines()]


def _digests(root: Path) -> dict[str, str]:
    files = [*sorted((root / "out" / "data").glob("*.parquet")), root / "out" / "quarantine.jsonl"]
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def test_the_first_of_each_id_is_kept_and_every_repeat_is_quarantined_with_where_the_first_is(tmp_path: Path) -> None:
    _corpus(tmp_path)
    report = LocalEngine().run(load_recipe(_recipe(tmp_path)))
    out = _output(tmp_path)
    assert out.column("id").to_pylist() == ["x1", "x2", "7", "x3"]
    assert out.column("text").to_pylist() == [
        "first x1, kept",
        "first x2, kept",
        "an integer id, kept",
        "x3 only here, kept",
    ]
    assert dict(report.quarantined) == {"duplicate_id": 4} and report.records_read == 4
    a, b = (f"{(tmp_path / 'raw' / n).resolve().as_uri()}" for n in ("a.jsonl", "b.jsonl"))
    kept = "; only the first is kept"
    assert [(q["file"], q["line"], q["reason"], q["detail"]) for q in _quarantine(tmp_path)] == [
        (a, 3, "duplicate_id", f"id 'x1' was read first at {a} line 1{kept}"),
        (b, 2, "duplicate_id", f"id 'x2' was read first at {a} line 2{kept}"),
        (b, 3, "duplicate_id", f"id '7' was read first at {a} line 4{kept}"),
        # A repeat within b of an id a had first names a's record, the one kept, not b's own repeat.
        (b, 4, "duplicate_id", f"id 'x2' was read first at {a} line 2{kept}"),
    ]
    saved = json.loads((tmp_path / "out" / "report.json").read_text())
    assert saved["quarantined"] == {"duplicate_id": 4} and saved["records_read"] == 4


def test_two_workers_and_a_resumed_run_treat_repeats_the_same(tmp_path: Path) -> None:
    _corpus(tmp_path)
    LocalEngine().run(load_recipe(_recipe(tmp_path)))
    serial = _digests(tmp_path)
    again = LocalEngine().run(load_recipe(_recipe(tmp_path)))  # every shard resumed: nothing quarantined twice
    assert again.resumed_shards > 0 and again.recomputed_shards == 0
    assert dict(again.quarantined) == {"duplicate_id": 4} and again.records_read == 4
    assert _digests(tmp_path) == serial
    shutil.rmtree(tmp_path / "out")
    parallel = LocalEngine(workers=2).run(load_recipe(_recipe(tmp_path)))
    assert dict(parallel.quarantined) == {"duplicate_id": 4}
    assert _digests(tmp_path) == serial


class _Killed(BaseException):
    """Stands for SIGKILL: nothing after it runs."""


@pytest.mark.parametrize("calls_before_kill", [0, 1])
def test_a_run_killed_while_it_quarantines_repeats_across_files_resumes_to_the_same_result(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, calls_before_kill: int
) -> None:
    """Killed after rewriting a file's read shards, before its marker: the resumed run re-reads that file."""
    _corpus(tmp_path)
    _lines(tmp_path / "raw" / "c.jsonl", [{"id": "x3", "text": "x3 again, in a third file"}])
    LocalEngine().run(load_recipe(_recipe(tmp_path)))
    expected = _digests(tmp_path)
    shutil.rmtree(tmp_path / "out")

    real = engine_module.quarantine_repeats_across_files
    calls = []

    def killed_at_a_marker(*args: Any) -> None:
        def write_marker(data: dict[str, Any], path: Path) -> None:
            calls.append(path)
            if len(calls) > calls_before_kill:
                raise _Killed
            engine_module._write_json(data, path)

        real(*args[:5], write_marker)

    monkeypatch.setattr(engine_module, "quarantine_repeats_across_files", killed_at_a_marker)
    with pytest.raises(_Killed):
        LocalEngine().run(load_recipe(_recipe(tmp_path)))
    monkeypatch.setattr(engine_module, "quarantine_repeats_across_files", real)
    resumed = LocalEngine().run(load_recipe(_recipe(tmp_path)))
    assert resumed.recomputed_shards >= 1  # the file whose shards changed without its marker is read again
    assert dict(resumed.quarantined) == {"duplicate_id": 5}
    assert _digests(tmp_path) == expected


def test_the_same_file_matched_by_two_inputs_is_read_once(tmp_path: Path) -> None:
    """Ids Keel derives (file, line, content) repeat only when one file is read twice: the second read is set aside."""
    raw = tmp_path / "raw"
    raw.mkdir()
    _lines(raw / "a.jsonl", [{"text": "one"}, {"text": "two"}])
    (tmp_path / "recipe.yaml").write_text(
        "inputs:\n  - path: raw/*.jsonl\n  - path: raw/a.jsonl\noutput: out\nsteps:\n  - normalize: {}\n"
    )
    report = LocalEngine().run(load_recipe(tmp_path / "recipe.yaml"))
    assert report.records_read == 2 and dict(report.quarantined) == {"duplicate_id": 2}
    assert _output(tmp_path).column("text").to_pylist() == ["one", "two"]
    quarantined = _quarantine(tmp_path)
    assert [q["line"] for q in quarantined] == [1, 2]
    assert all(q["detail"].endswith(f"a.jsonl line {q['line']}; only the first is kept") for q in quarantined)


def test_parquet_and_csv_ids_repeat_too(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    pq.write_table(pa.table({"id": ["p1", "p2", "p1"], "text": ["a", "b", "c"]}), raw / "a.parquet")
    (raw / "b.csv").write_text("id,text\np2,d\nq1,e\nq1,f\n", encoding="utf-8")
    (tmp_path / "recipe.yaml").write_text(
        "inputs:\n  - path: raw/*\n    id_field: id\noutput: out\nsteps:\n  - normalize: {}\n"
    )
    report = LocalEngine().run(load_recipe(tmp_path / "recipe.yaml"))
    assert _output(tmp_path).column("text").to_pylist() == ["a", "b", "e"]
    assert dict(report.quarantined) == {"duplicate_id": 3}
    assert [(Path(q["file"]).name, q["line"]) for q in _quarantine(tmp_path)] == [
        ("a.parquet", 3),
        ("b.csv", 2),
        ("b.csv", 4),
    ]


def test_strict_stops_at_the_first_repeat_within_or_across_files(tmp_path: Path) -> None:
    _corpus(tmp_path)
    with pytest.raises(
        InputError, match=r"a\.jsonl line 3: duplicate_id \(id 'x1' was read first at .*a\.jsonl line 1"
    ):
        LocalEngine().run(load_recipe(_recipe(tmp_path)), strict=True)
    shutil.rmtree(tmp_path / "out", ignore_errors=True)
    _lines(tmp_path / "raw" / "a.jsonl", [{"id": "x2", "text": "first"}])
    _lines(tmp_path / "raw" / "b.jsonl", [{"id": "x3", "text": "kept"}, {"id": "x2", "text": "a repeat"}])
    with pytest.raises(
        InputError, match=r"b\.jsonl line 2: duplicate_id \(id 'x2' was read first at .*a\.jsonl line 1"
    ):
        LocalEngine(workers=2).run(load_recipe(_recipe(tmp_path)), strict=True)


def test_a_hostile_id_is_shown_short_and_without_control_characters(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    hostile = "\x1b[2J\x9b31m" + "é" * 1_000_000
    _lines(raw / "a.jsonl", [{"id": hostile, "text": "one"}, {"id": hostile, "text": "two"}])
    _recipe(tmp_path)
    LocalEngine().run(load_recipe(tmp_path / "recipe.yaml"))
    (entry,) = _quarantine(tmp_path)
    assert len(entry["detail"]) < 300 and "1,000,008 characters" in entry["detail"]
    assert "\x1b" not in entry["detail"] and "\x9b" not in entry["detail"] and "\\x1b[2J" in entry["detail"]
    assert "éééé" in entry["detail"]  # unicode stays readable


def test_the_cli_summary_and_json_count_the_repeats(tmp_path: Path) -> None:
    _corpus(tmp_path)
    recipe = _recipe(tmp_path)
    result = runner.invoke(app, ["curate", "run", str(recipe), "--no-commit"])
    assert result.exit_code == 0, result.output
    assert "(4 quarantined: duplicate_id 4; see quarantine.jsonl)" in " ".join(result.output.split())
    shutil.rmtree(tmp_path / "out")
    result = runner.invoke(app, ["curate", "run", str(recipe), "--no-commit", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["quarantined"] == {"duplicate_id": 4}


@pytest.mark.parametrize("client", [False, True], ids=["streaming reads", "reads as through Ray Client"])
def test_the_ray_engine_quarantines_the_same_repeats_as_the_local_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest, client: bool
) -> None:
    ray = pytest.importorskip("ray")
    from keel.curate import RayEngine
    from keel.curate.ray import _engine as ray_engine

    if client:  # which has no streaming tasks: files are read by plain tasks
        monkeypatch.setattr(ray_engine, "_ray_client", lambda: True)
        request.getfixturevalue("ray_runtime")  # the module's runtime (tests/unit/curate/conftest.py)
    else:  # the one Ray test that starts a runtime of its own in this process: the engine must stop it
        request.getfixturevalue("no_ray_runtime")
        assert not ray.is_initialized()
    _corpus(tmp_path)
    _lines(tmp_path / "raw" / "c.jsonl", [{"id": "x3", "text": "x3 again, in a third file"}, {"id": "z", "text": "z"}])
    steps = "steps:\n  - normalize: {}\n  - exact_dedup: {}\n"
    for name in ("local", "ray"):
        (tmp_path / f"{name}.yaml").write_text(
            f"inputs:\n  - path: raw/*.jsonl\n    id_field: id\noutput: out-{name}\nshard_size: 2\n{steps}"
        )
    local = LocalEngine().run(load_recipe(tmp_path / "local.yaml"))
    on_ray = RayEngine(num_cpus=2).run(load_recipe(tmp_path / "ray.yaml"))
    # Stopped if the engine started it; the module's runtime, which it did not start, left running.
    assert ray.is_initialized() == client
    assert dict(on_ray.quarantined) == dict(local.quarantined) == {"duplicate_id": 5}
    assert on_ray.records_read == local.records_read == 5
    quarantine = [(tmp_path / out / "quarantine.jsonl").read_text() for out in ("out-ray", "out-local")]
    assert quarantine[0] == quarantine[1]
    read = lambda out: pa.concat_tables(pq.read_table(p) for p in sorted((tmp_path / out / "data").glob("*.parquet")))  # noqa: E731
    assert read("out-ray").equals(read("out-local"))


def test_record_tables_with_new_ids_pass_whole_and_repeats_within_or_across_them_are_cut_out(tmp_path: Path) -> None:
    from keel.curate._duplicate_ids import first_ids_only
    from keel.curate._problems import Problem
    from keel.curate._recipe import ResolvedInput

    lines = [{"id": i, "text": f"text {n}"} for n, i in enumerate(["a", "b", "c", "d", "b", "e", "e"])]
    path = tmp_path / "t.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    source = ResolvedInput(path=path, format="jsonl", text_field="text", id_field="id")

    def table(rows: list[str]) -> pa.Table:
        return pa.table({"id": rows, "text": ["x"] * len(rows)})

    items = list(first_ids_only(iter([table(["a", "b", "c"]), table(["d", "b", "e", "e"])]), source))
    kinds = [item.column("id").to_pylist() if isinstance(item, pa.Table) else item for item in items]
    assert kinds[0] == ["a", "b", "c"] and kinds[1] == ["d"] and kinds[3] == ["e"]
    assert [(p.line, p.reason) for p in kinds if isinstance(p, Problem)] == [(5, "duplicate_id"), (7, "duplicate_id")]
