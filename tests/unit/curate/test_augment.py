"""Augmentation steps: paraphrase and back_translate against the stub OpenAI server on 127.0.0.1, eda and synonym
with the shipped WordNet lexicon, dedup_against_parent, lineage columns, reruns and config errors."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from keel.cli import app
from keel.core.errors import ConfigError, InputError
from keel.curate import LocalEngine, build_steps, load_recipe
from keel.curate._workfiles import decode, encode
from keel.data import records_to_table
from keel.data._records import make_record
from keel.serve import serve_in_thread, stub_upstream_app

TEXTS = [
    "The gateway routes each request to the deployment that serves the model and records a trace of it.",
    "A dataset version is immutable: a curation run commits a new version whose lineage names its source.",
    "Evaluation suites compare a candidate model with the production model on the same cases before promotion.",
]


@pytest.fixture(scope="module")
def stub() -> Iterator[tuple[str, object]]:
    """The stub OpenAI-compatible server (answers `"<model>: <prompt>"`), its base URL and app."""
    upstream = stub_upstream_app()
    with serve_in_thread(upstream) as url:
        yield url, upstream


def _table(texts: list[str]) -> pa.Table:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    return records_to_table(make_record(t, f"file:///d/{i}.txt", i, t.encode(), now) for i, t in enumerate(texts))


def _step(name: str, **params):  # type: ignore[no-untyped-def]
    (step,) = build_steps([(name, params)])
    return step


def _recipe(folder: Path, steps: str, output: str = "out") -> Path:
    if not (folder / "raw.jsonl").exists():  # rewritten, its mtime (the records' fetched_at) would change
        (folder / "raw.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in TEXTS))
    path = folder / f"{output}.yaml"
    path.write_text(f"inputs:\n  - path: raw.jsonl\noutput: {output}\nsteps:\n{steps}")
    return path


def _output(folder: Path) -> pa.Table:
    return pa.concat_tables(pq.read_table(p) for p in sorted((folder / "data").glob("part-*.parquet")))


def test_a_paraphrase_recipe_adds_rows_naming_their_parents_and_reruns_byte_identical(
    tmp_path: Path, stub: tuple[str, object]
) -> None:
    url, upstream = stub
    steps = (
        f"  - paraphrase:\n      base_url: {url}/v1\n      model: para\n      copies: 2\n      concurrency: 4\n"
        f"      cache_dir: {tmp_path / 'cache'}\n"
    )
    before = upstream.state.requests  # type: ignore[attr-defined]
    report = LocalEngine().run(load_recipe(_recipe(tmp_path, steps, "first")))
    assert upstream.state.requests - before == 6  # type: ignore[attr-defined]
    table = _output(tmp_path / "first")
    rows = table.to_pylist()
    originals = {r["id"]: r["text"] for r in rows if r["parent_id"] is None}
    children = [r for r in rows if r["parent_id"] is not None]
    assert sorted(originals.values()) == sorted(TEXTS) and len(children) == 6
    for child in children:
        assert child["augment_op"] == "paraphrase"
        assert child["text"].startswith("para: Paraphrase the text below")  # the stub echoes the prompt it got
        assert child["text"].endswith(originals[child["parent_id"]])
        assert json.loads(child["augment_detail"])["model"] == "para"
    assert len({c["id"] for c in children}) == 6 and report.steps["paraphrase"].records_out == 9

    # A rerun into another folder is answered from the cache: no request, the same bytes.
    LocalEngine().run(load_recipe(_recipe(tmp_path, steps, "second")))
    assert upstream.state.requests - before == 6  # type: ignore[attr-defined]
    first = [p.read_bytes() for p in sorted((tmp_path / "first" / "data").glob("*.parquet"))]
    second = [p.read_bytes() for p in sorted((tmp_path / "second" / "data").glob("*.parquet"))]
    assert first == second


def test_paraphrase_in_a_workspace_caches_there_and_commits_a_version_with_lineage_columns(
    workspace: Path, stub: tuple[str, object], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, _ = stub
    monkeypatch.chdir(workspace)  # steps find the workspace as every command does (KEEL_WORKSPACE or the cwd)
    recipe = _recipe(workspace, f"  - paraphrase:\n      base_url: {url}/v1\n      model: para\n")
    result = CliRunner().invoke(app, ["-w", str(workspace), "curate", "run", str(recipe), "--json"])
    assert result.exit_code == 0, result.output
    assert len(list((workspace / ".keel" / "cache" / "augment").glob("*/*.json"))) == 3
    exported = workspace / "export.jsonl"
    result = CliRunner().invoke(app, ["-w", str(workspace), "data", "export", "out", str(exported)])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in exported.read_text().splitlines()]
    ids = {r["id"] for r in rows}
    assert sum(1 for r in rows if r.get("parent_id") in ids and r.get("augment_op") == "paraphrase") == 3


def test_back_translate_goes_through_the_pivot_and_keeps_it_in_the_detail(
    tmp_path: Path, stub: tuple[str, object]
) -> None:
    url, _ = stub
    step = _step("back_translate", base_url=f"{url}/v1", model="mt", pivot="German", cache_dir=str(tmp_path))
    table = step.apply(_table(TEXTS[:2])).table
    child = table.to_pylist()[2]
    detail = json.loads(child["augment_detail"])
    assert child["augment_op"] == "back_translate" and child["parent_id"] == table.column("id")[0].as_py()
    assert detail["pivot"] == "German" and detail["pivot_text"].startswith("mt: Translate the text below into German")
    assert child["text"].startswith("mt: Translate the text below into English") and TEXTS[0] in child["text"]


def test_an_unreachable_endpoint_is_one_error_naming_it(tmp_path: Path) -> None:
    step = _step("paraphrase", base_url="http://127.0.0.1:9/v1", model="m", cache_dir=str(tmp_path), timeout=2)
    with pytest.raises(InputError) as caught:
        step.apply(_table(TEXTS[:1]))
    assert "http://127.0.0.1:9/v1" in str(caught.value) and "\n" not in caught.value.message


def test_eda_is_deterministic_given_a_seed_and_names_each_operation() -> None:
    table = _table(TEXTS)
    first = _step("eda", seed=7).apply(table).table
    again = _step("eda", seed=7).apply(table).table
    other = _step("eda", seed=8).apply(table).table
    assert first.equals(again) and not first.equals(other)
    children = first.to_pylist()[3:]
    assert len(children) == 12  # 4 operations x 3 rows, each changed the text
    ops = [json.loads(c["augment_detail"])["op"] for c in children]
    assert ops == ["synonym", "insert", "swap", "delete"] * 3
    assert all(c["augment_op"] == "eda" and c["text"] not in TEXTS for c in children)
    # The edits of a row do not depend on the rows batched with it.
    alone = _step("eda", seed=7).apply(table.slice(1, 1)).table.to_pylist()[1:]
    assert [c["text"] for c in alone] == [c["text"] for c in children[4:8]]


def test_synonym_uses_the_lexicon_and_keeps_case_and_punctuation(tmp_path: Path) -> None:
    lexicon = tmp_path / "lexicon.json"
    lexicon.write_text(json.dumps({"gateway": ["portal"], "trace": ["record"]}))
    table = _step("synonym", lexicon_file=str(lexicon), share=1.0).apply(_table(["Gateway keeps a trace."])).table
    assert table.column("text").to_pylist() == ["Gateway keeps a trace.", "Portal keeps a record."]
    shipped = _step("synonym", share=0.2).apply(_table(["The answer was quick."])).table
    assert shipped.num_rows == 2 and shipped.column("text")[1].as_py() != "The answer was quick."


def test_dedup_against_parent_drops_children_that_copy_their_parent_even_in_another_shard(tmp_path: Path) -> None:
    lexicon = tmp_path / "lexicon.json"
    lexicon.write_text(json.dumps({"immutable": ["unchangeable"]}))
    long_text = TEXTS[1] + " " + TEXTS[0]  # 33 words: one replaced word leaves most 5-grams intact
    near_copies = _step("synonym", lexicon_file=str(lexicon)).apply(_table([long_text])).table
    rewritten = _step("eda", operations=["swap"], copies=1, share=0.5, seed=1).apply(_table([long_text])).table
    step = _step("dedup_against_parent", threshold=0.6)
    parents = near_copies.slice(0, 1)
    shards = [parents, near_copies.slice(1), rewritten.slice(1)]
    decisions = step.decide([decode(encode(step.observe(shard))) for shard in shards])  # as the engine stores them
    reasons = [step.apply_decision(shard, d).drop_reasons for shard, d in zip(shards, decisions, strict=True)]
    assert reasons == [[None], ["copies_parent"], [None]]
    assert step.report(decisions) == {"copies": 1, "parent_not_found": 0}


def test_dedup_against_parent_in_a_recipe_drops_the_stub_echo_but_not_the_originals(
    tmp_path: Path, stub: tuple[str, object]
) -> None:
    url, _ = stub
    steps = (
        f"  - paraphrase:\n      base_url: {url}/v1\n      model: m\n      cache_dir: {tmp_path / 'c'}\n"
        "      prompt: '{text}'\n  - dedup_against_parent: {threshold: 0.8}\n"
    )
    report = LocalEngine().run(load_recipe(_recipe(tmp_path, steps)))
    assert report.steps["dedup_against_parent"].dropped == {"copies_parent": 3}
    assert _output(tmp_path / "out").column("parent_id").null_count == 3


def test_bad_augmentation_config_is_one_line_per_problem(tmp_path: Path) -> None:
    steps = (
        "  - paraphrase: {base_url: localhost:8000, prompt: 'no placeholder'}\n"
        "  - eda: {operations: [shuffle], copies: 0}\n"
        "  - dedup_against_parent: {threshold: 2}\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_recipe(_recipe(tmp_path, steps))
    lines = str(caught.value.message).splitlines()
    assert lines[0].endswith("has 6 problem(s):")
    problems = "\n".join(lines[1:])
    expected = ["paraphrase.base_url", "paraphrase.model", "paraphrase.prompt", "eda.operations.0", "eda.copies"]
    for where in [*(f"steps[{0 if w.startswith('p') else 1}].{w}" for w in expected), "steps[2].dedup_against_parent"]:
        assert where in problems
    result = CliRunner().invoke(app, ["curate", "validate", str(tmp_path / "out.yaml")])
    assert result.exit_code == 2 and "Traceback" not in result.output


def test_a_later_augmentation_step_leaves_earlier_children_alone_unless_asked() -> None:
    made = _step("synonym", seed=3).apply(_table(TEXTS[:1])).table
    assert made.num_rows == 2
    again = _step("eda", operations=["swap"], copies=1).apply(made).table.to_pylist()
    assert [r["parent_id"] for r in again[2:]] == [made.column("id")[0].as_py()]  # only the original grew
    chained = _step("eda", operations=["swap"], copies=1, augment_children=True).apply(made).table.to_pylist()
    assert [r["parent_id"] for r in chained[2:]] == made.column("id").to_pylist()  # a child names its own parent
    assert [r["augment_op"] for r in chained] == [None, "synonym", "eda", "eda"]


def test_the_ray_engine_refuses_steps_that_add_rows_before_ray_starts(tmp_path: Path) -> None:
    pytest.importorskip("ray")
    from keel.curate import RayEngine

    recipe = load_recipe(_recipe(tmp_path, "  - eda: {copies: 1}\n"))
    with pytest.raises(ConfigError, match="does not run steps that add rows; found 'eda'"):
        RayEngine(num_cpus=1).run(recipe)
    assert not (tmp_path / "out").exists()
