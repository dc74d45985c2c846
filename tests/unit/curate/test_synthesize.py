"""`keel data synthesize` over the demo corpus: extractive questions answerable from their context (span and the
offline groundedness judge), unanswerable ones not, reruns byte-identical, lineage to the source records, the model
generator against a stub OpenAI-compatible server on 127.0.0.1 (including malformed replies), and bad input."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from typer.testing import CliRunner

from keel.cli import app
from keel.core.errors import InputError
from keel.curate import SynthesizeOptions, curate, load_recipe, parse_generation, synthesize
from keel.curate._synthesize import REFUSAL
from keel.data import get_version, load_version
from keel.evals import OfflineJudge
from keel.pipeline._sample_corpus import write_sample_corpus
from keel.registry import create_prompt
from keel.serve import serve_in_thread
from keel.store import Store, init_workspace, walk

RECIPE = """inputs:
  - path: corpus/raw/pages/*.html
  - path: corpus/raw/policies/*.md
output: curated
steps:
  - exact_dedup: {}
"""


@pytest.fixture(scope="module")
def kb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Store, Path]]:
    """A workspace holding the demo corpus's pages and policies as `kb@v1` (the corpus generator, not the demo)."""
    root = tmp_path_factory.mktemp("synth") / "ws"
    store = init_workspace(root)
    write_sample_corpus(root / "corpus")
    (root / "kb.yaml").write_text(RECIPE)
    curate(store, load_recipe(root / "kb.yaml"), dataset="kb")
    yield store, root
    store.close()


@pytest.fixture(scope="module")
def judge() -> Iterator[OfflineJudge]:
    """The offline groundedness judge, asked independently of the filter's own verdicts."""
    with_judge = OfflineJudge()
    yield with_judge
    with_judge.close()


@pytest.fixture(scope="module")
def extractive(kb: tuple[Store, Path]) -> Any:
    """One extractive synthesis of kb@v1 with every question type (seed 3)."""
    store, _ = kb
    return synthesize(store, "kb@v1", "kb-qa", SynthesizeOptions(seed=3))


def _rows(store: Store, ref: str) -> list[dict[str, Any]]:
    return load_version(store, get_version(store, ref)).to_pylist()


def test_extractive_questions_are_answerable_from_their_context_and_unanswerable_ones_are_not(
    kb: tuple[Store, Path], extractive: Any, judge: OfflineJudge
) -> None:
    store, _ = kb
    rows = _rows(store, extractive.version.ref)
    by_type = {t: [r for r in rows if r["labels"] == t] for t in ("factual", "multi_hop", "unanswerable")}
    assert all(len(found) >= 5 for found in by_type.values()), {t: len(f) for t, f in by_type.items()}
    assert extractive.kept == {t: len(f) for t, f in by_type.items()}
    for row in by_type["factual"]:
        meta = json.loads(row["metadata"])
        (context,) = row["contexts"]
        start = meta["answer_start"]
        assert context[start : start + len(row["expected"])] == row["expected"], row
        assert row["answerable"] and row["expected"] not in row["input"]
        assert judge.groundedness(meta["statement"], [context]).score >= 0.5, row
    for row in by_type["multi_hop"]:
        meta = json.loads(row["metadata"])
        assert len(row["contexts"]) == 2 and len(set(row["source_ids"])) == 2
        for part, start, context in zip(meta["parts"], meta["answer_starts"], row["contexts"], strict=True):
            assert context[start : start + len(part)] == part
        assert row["expected"] == "; ".join(meta["parts"])
    for row in by_type["unanswerable"]:
        meta = json.loads(row["metadata"])
        assert row["expected"] == REFUSAL and not row["answerable"]
        assert meta["asked_of"] not in row["source_ids"][:1]  # asked over another document's context
        assert judge.groundedness(meta["withheld_statement"], row["contexts"]).score < 0.5, row
    # Each filter's drops are counted, and generated = kept + dropped per type.
    for qtype, made in extractive.generated.items():
        dropped = sum(n.get(qtype, 0) for n in extractive.dropped.values())
        assert made == extractive.kept[qtype] + dropped


def test_rows_name_their_source_records_and_the_version_derives_from_the_source(
    kb: tuple[Store, Path], extractive: Any
) -> None:
    store, _ = kb
    source = get_version(store, "kb@v1")
    ids = set(load_version(store, source, columns=["id"]).column("id").to_pylist())
    rows = _rows(store, extractive.version.ref)
    assert all(set(r["source_ids"]) <= ids and r["source_version"] == "kb@v1" for r in rows)
    assert {r["generator"] for r in rows} == {"extractive/1"} and {r["prompt"] for r in rows} == {None}
    assert extractive.version.parents == [source.digest]  # its first version: derived from the source alone
    with store.db.read() as conn:
        downstream = {hop.node for hop in walk(conn, source.node, "downstream", depth=1, limit=None)}
    assert extractive.version.node in downstream


def test_a_rerun_is_byte_identical_and_another_seed_is_not(kb: tuple[Store, Path], extractive: Any) -> None:
    store, _ = kb
    again = synthesize(store, "kb@v1", "kb-qa-again", SynthesizeOptions(seed=3))
    assert [s.digest for s in again.version.shards] == [s.digest for s in extractive.version.shards]
    assert _rows(store, again.version.ref) == _rows(store, extractive.version.ref)
    same = synthesize(store, "kb@v1", "kb-qa", SynthesizeOptions(seed=3))
    assert not same.created and same.version.ref == extractive.version.ref
    other = synthesize(store, "kb@v1", "kb-qa-seed4", SynthesizeOptions(seed=4, judge=False))
    assert {r["id"] for r in _rows(store, other.version.ref)} != {r["id"] for r in _rows(store, again.version.ref)}


def test_limit_types_and_length_bounds(kb: tuple[Store, Path]) -> None:
    store, _ = kb
    report = synthesize(store, "kb@v1", "kb-few", SynthesizeOptions(types=("factual",), limit=4, judge=False))
    assert report.kept == {"factual": 4} and report.version is not None and report.version.num_rows == 4
    assert report.generated["factual"] == 4 + sum(n.get("factual", 0) for n in report.dropped.values())
    strict = synthesize(
        store, "kb@v1", "kb-short", SynthesizeOptions(types=("factual",), question_words=(4, 12), judge=False)
    )
    assert strict.dropped["question_too_long"]["factual"] > 0
    assert all(len(r["input"].split()) <= 12 for r in _rows(store, strict.version.ref))  # type: ignore[union-attr]


# --- the model generator against a stub endpoint ------------------------------------------------------------


def _qa_stub() -> Starlette:
    """An OpenAI-compatible chat endpoint writing one question per context; model `broken` answers every other
    request with prose instead of JSON, and `missing` with JSON lacking the answer."""
    seen = {"requests": 0}

    async def chat(request: Request) -> JSONResponse:
        body = await request.json()
        seen["requests"] += 1
        prompt = body["messages"][-1]["content"]
        context = prompt.split("Context:\n", 1)[1]
        sentences = re.split(r"(?<=\.)\s+", context)
        sentence = next((s for s in sentences if re.search(r"\d", s)), sentences[-1])
        number = re.search(r"\d+(?:\.\d+)? \w+", sentence)
        answer = number.group(0) if number else sentence
        reply = json.dumps({"question": f"According to the document, what does it say about {answer.split()[-1]}?",
                            "answer": answer})  # fmt: skip
        if "unanswerable" in prompt:
            reply = json.dumps({"question": "Which colour is the warehouse roof painted?", "answer": REFUSAL})
        if body["model"] == "broken" and seen["requests"] % 2:
            reply = "Sure! Here is a question: what is it? And the answer: it."
        if body["model"] == "missing":
            reply = json.dumps({"question": "What?"})
        choice = {"index": 0, "message": {"role": "assistant", "content": reply}, "finish_reason": "stop"}
        return JSONResponse({"id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
                             "choices": [choice], "usage": {"prompt_tokens": 1, "completion_tokens": 1,
                                                            "total_tokens": 2}})  # fmt: skip

    stub = Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])
    stub.state.seen = seen
    return stub


@pytest.fixture(scope="module")
def qa_stub() -> Iterator[tuple[str, dict[str, int]]]:
    """The stub served by uvicorn on 127.0.0.1: its /v1 URL and its request counter."""
    stub = _qa_stub()
    with serve_in_thread(stub) as url:
        yield f"{url}/v1", stub.state.seen


def test_the_model_generator_parses_json_counts_malformed_replies_and_caches(
    kb: tuple[Store, Path], qa_stub: tuple[str, dict[str, int]]
) -> None:
    store, root = kb
    url, seen = qa_stub
    options = SynthesizeOptions(generator="model", base_url=url, model_name="broken", per_doc=1, seed=1)
    before = seen["requests"]
    report = synthesize(store, "kb@v1", "kb-model", options)
    sent = seen["requests"] - before
    assert sent > 0 and report.requests["requests"] == sent
    prose = sum(1 for n in range(before + 1, before + sent + 1) if n % 2)  # the stub's odd-numbered replies
    assert sum(report.dropped["malformed_json"].values()) == prose
    rows = _rows(store, report.version.ref)  # type: ignore[union-attr]
    assert rows and {r["prompt"] for r in rows} == {"synthesize-qa@v1"}
    assert {r["model"] for r in rows} == {f"endpoint:broken@{url}"} and {r["generator"] for r in rows} == {"model"}
    for row in rows:
        if row["answerable"]:
            assert row["expected"] in "\n\n".join(row["contexts"])
        else:
            assert row["expected"] == REFUSAL
    with store.db.read() as conn:
        upstream = {hop.node for hop in walk(conn, report.version.node, "upstream", depth=1, limit=None)}  # type: ignore[union-attr]
    assert "prompt-version:synthesize-qa@v1" in upstream and "dataset-version:kb@v1" in upstream
    assert list((root / ".keel" / "cache" / "augment").glob("*/*.json"))  # the workspace cache, erasure's reach

    # A rerun is answered from the cache: no request, the same rows.
    again = synthesize(store, "kb@v1", "kb-model-again", options)
    assert seen["requests"] - before == sent and again.requests["cache.hits"] == sent
    assert _rows(store, again.version.ref) == rows  # type: ignore[union-attr]

    missing = SynthesizeOptions(generator="model", base_url=url, model_name="missing", per_doc=1, types=("factual",))
    with pytest.raises(InputError, match="no question survived the filters.*missing_fields"):
        synthesize(store, "kb@v1", "kb-missing", missing)


def test_parse_generation_takes_the_json_object_out_of_prose_and_fences() -> None:
    assert parse_generation('```json\n{"question": "Q?", "answer": "A"}\n```') == ("Q?", "A")
    assert parse_generation('Here you go: {"question": "Q?", "answer": "A"} Hope it helps.') == ("Q?", "A")
    assert parse_generation('{"question": "Q?", "answer": ') == "malformed_json"
    assert parse_generation('["Q?", "A"]') == "malformed_json"
    assert parse_generation('{"question": "Q?", "answer": ""}') == "missing_fields"


def test_a_prompt_version_drives_the_model_and_must_read_the_variables(
    kb: tuple[Store, Path], qa_stub: tuple[str, dict[str, int]]
) -> None:
    store, _ = kb
    url, _ = qa_stub
    good = create_prompt(store, "my-qa", "Ask a {{ question_type }} question as JSON.\n\nContext:\n{{ context }}")
    options = SynthesizeOptions(generator="model", base_url=url, model_name="qa", prompt="my-qa@v1",
                                types=("factual",), per_doc=1, judge=False)  # fmt: skip
    report = synthesize(store, "kb@v1", "kb-mine", options)
    assert report.prompt == good.ref and {r["prompt"] for r in _rows(store, report.version.ref)} == {good.ref}  # type: ignore[union-attr]
    create_prompt(store, "no-context", "Ask a {{ question_type }} question.")
    bad = SynthesizeOptions(generator="model", base_url=url, model_name="qa", prompt="no-context@v1")
    with pytest.raises(InputError, match="lacks the variables synthesis fills: context"):
        synthesize(store, "kb@v1", "kb-bad", bad)


# --- the command line ---------------------------------------------------------------------------------------


def _cli(root: Path, *args: str) -> Any:
    return CliRunner().invoke(app, ["-w", str(root), "data", "synthesize", *args])


def test_cli_synthesizes_with_json_output(kb: tuple[Store, Path]) -> None:
    _, root = kb
    result = _cli(root, "kb@v1", "--to", "kb-cli", "--types", "factual,unanswerable", "--limit", "6", "--no-judge",
                  "--json")  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["version"] == "kb-cli@v1" and report["rows"] == 6
    assert set(report["kept"]) == {"factual", "unanswerable"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nope@v1", "--to", "x"], "nope"),
        (["kb@v1", "--to", "x", "--types", "factual,riddle"], "expected question types among"),
        (["kb@v1", "--to", "x", "--generator", "model"], "expected either --model NAME@vN"),
        (["kb@v1", "--to", "x", "--model", "tiny@v1"], "the extractive generator uses no model"),
        (["kb@v1", "--to", "x", "--generator", "model", "--base-url", "http://127.0.0.1:9/v1", "--model-name", "m"],
         "every request to http://127.0.0.1:9/v1"),
        (["kb@v1", "--to", "x", "--text-column", "body"], "expected kb@v1 to have `id` and `body` columns"),
    ],
)  # fmt: skip
def test_cli_bad_input_is_one_line_and_exit_2(kb: tuple[Store, Path], args: list[str], message: str) -> None:
    _, root = kb
    result = _cli(root, *args)
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) <= 3  # the message and its hint


def test_cli_refuses_a_prompt_without_the_variables(
    kb: tuple[Store, Path], qa_stub: tuple[str, dict[str, int]]
) -> None:
    store, root = kb
    create_prompt(store, "lacking", "Tell me about {{ topic }}.")
    url, _ = qa_stub
    result = _cli(root, "kb@v1", "--to", "x", "--generator", "model", "--base-url", url, "--model-name", "m",
                  "--prompt", "lacking@v1")  # fmt: skip
    assert result.exit_code == 2 and "lacks the variables synthesis fills: context, question_type" in result.output
