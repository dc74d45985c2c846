from __future__ import annotations

import gzip
import hashlib
import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
import zstandard

from keel.core.errors import ConfigError, InputError
from keel.curate import LocalEngine, load_recipe, parse_recipe, read_file
from keel.curate._problems import Problem


def _corpus(root: Path) -> Path:
    raw = root / "raw"
    raw.mkdir(parents=True)
    docs = [f"Document {i} explains the refund policy for anvils in detail." for i in range(30)]
    docs.append("Document 4 explains the   refund policy for anvils in detail.")  # exact dup after normalising
    with (raw / "a.jsonl").open("w") as f:
        for text in docs[:20]:
            f.write(json.dumps({"text": text, "lang": "en"}) + "\n")
        f.write("{broken\n")
        f.write(json.dumps({"body": "no text field"}) + "\n")
    with gzip.open(raw / "b.jsonl.gz", "wt") as f:
        for text in docs[20:]:
            f.write(json.dumps({"text": text}) + "\n")
    return raw


def _recipe(root: Path, steps: str, shard_size: int = 6, extra: str = "") -> Path:
    path = root / "recipe.yaml"
    path.write_text(f"inputs:\n  - path: raw/*\noutput: out\nshard_size: {shard_size}\n{extra}steps:\n{steps}")
    return path


STEPS = (
    "  - normalize: {collapse_whitespace: true}\n  - length: {min_chars: 20}\n  - exact_dedup: {}\n"
    "  - blocklist: {words: [forbidden]}\n"
)


def _digests(out: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted((out / "data").glob("*.parquet"))}


def test_a_recipe_reads_filters_dedups_and_reports(tmp_path: Path) -> None:
    _corpus(tmp_path)
    report = LocalEngine().run(load_recipe(_recipe(tmp_path, STEPS, extra="keep_dropped: true\n")))
    assert report.records_read == 31 and report.records_out == 30
    assert dict(report.quarantined) == {"invalid_json": 1, "missing_text": 1}
    assert dict(report.steps["exact_dedup"].dropped) == {"exact_duplicate": 1}
    assert report.steps["normalize"].counters["changed"] == 1
    table = pa.concat_tables(pq.read_table(tmp_path / "out" / "data" / s) for s in report.shards)
    assert table.num_rows == 30 and "Document 4 explains the refund" in table.column("text").to_pylist()[4]
    assert table.schema.names[:4] == ["id", "text", "source", "meta"]
    assert json.loads(table.column("meta")[0].as_py()) == {"lang": "en"}
    aside = pq.read_table(next((tmp_path / "out" / "dropped" / "exact_dedup").glob("*.parquet")))
    assert aside.column("drop_reason").to_pylist() == ["exact_duplicate"]
    saved = json.loads((tmp_path / "out" / "report.json").read_text())
    assert saved["records_out"] == 30 and saved["global"]["exact_dedup"] == {"duplicates": 1}
    lines = (tmp_path / "out" / "quarantine.jsonl").read_text().splitlines()
    assert [json.loads(line)["line"] for line in lines] == [21, 22]


def test_parallel_runs_write_the_same_bytes_as_serial_ones(tmp_path: Path) -> None:
    _corpus(tmp_path)
    recipe = load_recipe(_recipe(tmp_path, STEPS))
    one = LocalEngine(workers=1).run(recipe)
    serial = _digests(tmp_path / "out")
    shutil.rmtree(tmp_path / "out")
    two = LocalEngine(workers=2).run(recipe)
    assert two.resumed_shards == 0
    assert one.shards == two.shards and _digests(tmp_path / "out") == serial


def test_slicing_shards_for_per_record_steps_changes_no_result(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Per-record steps run over slices of ~2 MB of text. Here: 1,500 documents (~3.5 MB) in one shard, cut into
    # 64 KB slices, with records that per-record steps drop (too short, blocklisted) spread over every slice and
    # exact duplicates across slices: the output and dropped-record bytes and the counters must not change.
    from keel.curate import _engine

    raw = tmp_path / "raw"
    raw.mkdir()
    with (raw / "a.jsonl").open("w") as f:
        for i in range(1500):
            n = i % 1400  # documents 1400.. repeat 0..99 exactly: duplicates across slices
            words = " ".join(f"w{(n * 7 + k) % 997}" for k in range(400))
            text = "tiny" if n % 97 == 0 else f"forbidden {words}" if n % 89 == 0 else f"doc {n} {words}"
            f.write(json.dumps({"text": text}) + "\n")

    def run() -> tuple[dict[str, str], dict[str, object], dict[str, str]]:
        shutil.rmtree(tmp_path / "out", ignore_errors=True)  # its work folder too: nothing is resumed
        recipe = _recipe(tmp_path, STEPS, shard_size=5000, extra="keep_dropped: true\n")
        report = LocalEngine().run(load_recipe(recipe))
        dropped = {
            str(p.relative_to(tmp_path)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in (tmp_path / "out" / "dropped").rglob("*.parquet")
        }
        return _digests(tmp_path / "out"), {k: v.to_json() | {"seconds": 0} for k, v in report.steps.items()}, dropped

    whole = run()
    assert {"length", "blocklist", "exact_dedup"} <= {p.split("/")[2] for p in whole[2]}
    shard = pq.read_table(next((tmp_path / "out" / ".keel-work").rglob("read/*.parquet")))
    assert shard.num_rows == 1500
    monkeypatch.setattr(_engine, "_SLICE_TEXT_BYTES", 64 << 10)
    assert len(_engine._slices(shard)) > 10
    assert run() == whole


def test_a_crashed_run_resumes_from_finished_shards(tmp_path: Path) -> None:
    _corpus(tmp_path)
    recipe = load_recipe(_recipe(tmp_path, STEPS))
    first = LocalEngine().run(recipe)
    expected = _digests(tmp_path / "out")
    # Simulate a crash midway through the second stage: some shards finished, the rest not.
    work = next((tmp_path / "out" / ".keel-work").iterdir())
    unfinished = sorted((work / "stage1").glob("*.done.json"))[2:]
    for marker in unfinished:
        marker.unlink()
    shutil.rmtree(tmp_path / "out" / "data")
    again = LocalEngine().run(recipe)
    assert again.resumed_shards == 6 + 6 + 2  # shards read + stage 1 (all 6) + the 2 of stage 2 that finished
    assert _digests(tmp_path / "out") == expected and again.records_out == first.records_out


def test_a_recipe_starting_with_a_dedup_step_passes_its_shards_on_unchanged(tmp_path: Path) -> None:
    """Its first stage runs no step on the rows, so its shards are the read shards (linked, not re-encoded)."""
    _corpus(tmp_path)
    dedup = "  - exact_dedup: {}\n  - near_dedup: {threshold: 0.7}\n"
    first = LocalEngine().run(load_recipe(_recipe(tmp_path, dedup)))
    work = next((tmp_path / "out" / ".keel-work").iterdir())
    read = sorted((work / "read").glob("*.parquet"))
    assert [p.read_bytes() for p in sorted((work / "stage0").glob("*.parquet"))] == [p.read_bytes() for p in read]
    passed_on = _digests(tmp_path / "out")
    # A crash after the first stage resumes from its passed-on shards, whose markers vouch for them.
    for marker in (work / "stage1").glob("*.done.json"):
        marker.unlink()
    shutil.rmtree(tmp_path / "out" / "data")
    again = LocalEngine().run(load_recipe(_recipe(tmp_path, dedup)))
    assert again.resumed_shards == 3 * len(read) and again.recomputed_shards == 0  # read, stage 0, stage 2
    assert _digests(tmp_path / "out") == passed_on
    # The same rows through a step that keeps them all: stage 0 re-encodes its shards, and the output is the same.
    shutil.rmtree(tmp_path / "out")
    kept = LocalEngine().run(load_recipe(_recipe(tmp_path, "  - length: {min_chars: 1}\n" + dedup)))
    assert kept.steps["length"].records_out == kept.records_read
    assert _digests(tmp_path / "out") == passed_on and kept.records_out == first.records_out < first.records_read


def test_strict_mode_names_the_first_bad_item(tmp_path: Path) -> None:
    _corpus(tmp_path)
    with pytest.raises(InputError, match=r"bad input \(--strict\): .*a.jsonl line 21: invalid_json"):
        LocalEngine().run(load_recipe(_recipe(tmp_path, STEPS)), strict=True)


def test_every_recipe_problem_is_reported_at_once(tmp_path: Path) -> None:
    data = {
        "inputs": [{"path": "raw/*", "format": "xml"}],
        "output": "out",
        "shard_size": 0,
        "steps": [{"normalize": {"form": "NFX"}}, {"dedupe": {}}, {"length": {"min_chars": -1}}, {"a": {}, "b": {}}],
    }
    with pytest.raises(ConfigError) as caught:
        parse_recipe(data, tmp_path, "recipe.yaml")
    message = str(caught.value)
    for fragment in ("inputs.0.format", "shard_size", "steps"):
        assert fragment in message
    data.update(shard_size=10, inputs=[{"path": "raw/*"}])
    data["steps"] = [{"normalize": {"form": "NFX"}}, {"dedupe": {}}, {"length": {"min_chars": -1}}]
    with pytest.raises(ConfigError) as caught:
        parse_recipe(data, tmp_path, "recipe.yaml")
    message = str(caught.value)
    assert "3 problem(s)" in message
    assert "steps[0].normalize.form" in message and "unknown step 'dedupe'" in message
    assert "steps[2].length.min_chars" in message


def test_inputs_that_match_nothing(tmp_path: Path) -> None:
    recipe = parse_recipe({"inputs": [{"path": "nope/*.jsonl"}], "output": "out"}, tmp_path, "r.yaml")
    with pytest.raises(InputError, match="matches no files"):
        LocalEngine().run(recipe)


def test_readers_for_each_format(tmp_path: Path) -> None:
    rows = [{"text": "alpha doc", "id": "a1", "n": 1}, {"text": "", "id": "a2", "n": 2}, {"text": "gamma", "id": "a3"}]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "t.parquet")
    pacsv.write_csv(pa.Table.from_pylist(rows), tmp_path / "t.csv")
    with (tmp_path / "t.jsonl.zst").open("wb") as f, zstandard.ZstdCompressor().stream_writer(f) as z:
        z.write(b"".join(json.dumps(r).encode() + b"\n" for r in rows))
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("# Title\n\nBody.")
    (tmp_path / "docs" / "bad.txt").write_bytes(b"\xff\xfe\xfa not utf-8")
    for name, fmt in (("t.parquet", "parquet"), ("t.csv", "csv"), ("t.jsonl.zst", "jsonl")):
        items = list(read_file(tmp_path / name, fmt, id_field="id"))  # type: ignore[arg-type]
        records = [i for i in items if not isinstance(i, Problem)]
        problems = [i for i in items if isinstance(i, Problem)]
        assert [r["id"] for r in records] == ["a1", "a3"], name
        assert [str(p.reason) for p in problems] == ["empty_document"], name
        assert records[0]["source"]["uri"].endswith(name) and len(records[0]["source"]["sha256"]) == 64
    good = list(read_file(tmp_path / "docs" / "a.md", "text"))
    assert good[0]["text"] == "# Title\n\nBody." and json.loads(good[0]["meta"]) == {"filename": "a.md"}
    bad = list(read_file(tmp_path / "docs" / "bad.txt", "text"))
    assert isinstance(bad[0], Problem) and bad[0].reason == "undecodable"


def test_ids_are_stable_across_reads(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_text(json.dumps({"text": "same"}) + "\n" + json.dumps({"text": "same"}) + "\n")
    first = [r["id"] for r in read_file(tmp_path / "a.jsonl", "jsonl")]  # type: ignore[index]
    second = [r["id"] for r in read_file(tmp_path / "a.jsonl", "jsonl")]  # type: ignore[index]
    assert first == second and first[0] != first[1]  # same text on different lines: different records


def test_a_truncated_gzip_keeps_what_was_read_and_quarantines_the_rest(tmp_path: Path) -> None:
    with gzip.open(tmp_path / "c.jsonl.gz", "wt") as f:
        for i in range(2000):
            f.write(json.dumps({"text": f"record {i} " * 20}) + "\n")
    data = (tmp_path / "c.jsonl.gz").read_bytes()
    (tmp_path / "c.jsonl.gz").write_bytes(data[: len(data) // 2])
    items = list(read_file(tmp_path / "c.jsonl.gz", "jsonl"))
    assert isinstance(items[-1], Problem) and items[-1].reason == "unreadable_file"
    assert 0 < len(items) - 1 < 2000


def test_web_pages_run_through_a_recipe(tmp_path: Path) -> None:
    pages = Path(__file__).resolve().parents[3] / "benchmarks" / "data" / "html"
    (tmp_path / "raw").mkdir()
    for page in sorted(pages.glob("*.html"))[:3]:
        shutil.copy(page, tmp_path / "raw" / page.name)
    (tmp_path / "raw" / "empty.html").write_text("<html><body><nav>Home</nav></body></html>")
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        "inputs:\n  - path: raw/*.html\n    extractor: resiliparse\noutput: out\nsteps:\n  - normalize: {}\n"
    )
    report = LocalEngine().run(load_recipe(recipe))
    assert report.records_out == 3 and sum(report.quarantined.values()) == 1
    table = pq.read_table(tmp_path / "out" / "data" / report.shards[0])
    assert all(json.loads(m)["extractor"] == "resiliparse" for m in table.column("meta").to_pylist())
