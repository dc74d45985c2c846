from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
from typer.testing import CliRunner

from keel.cli import app
from keel.core.settings import load_settings
from keel.store import open_store

runner = CliRunner()


def _ok(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_build_query_list_show_eval(
    workspace: Path, tmp_path: Path, make_corpus: Callable[..., pa.Table], commit_dataset: Callable[..., Any]
) -> None:
    store = open_store(load_settings(workspace))
    commit_dataset(store, "kb", make_corpus())
    store.close()
    ws = ["-w", str(workspace)]
    built = json.loads(
        _ok(*ws, "index", "build", "help", "--dataset", "kb", "--chunk-size", "120", "--overlap", "20", "--json")
    )
    assert built["ref"] == "help@v1" and built["created"] and built["dataset"] == "kb@v1"
    assert built["chunking"] == {"size": 120, "overlap": 20, "by": "chars"}
    plain = _ok(*ws, "index", "build", "help", "--dataset", "kb@v1", "--chunk-size", "120", "--overlap", "20")
    assert "help@v1 already indexes kb@v1 this way; nothing new built." in plain
    noop = json.loads(
        _ok(*ws, "index", "build", "help", "--dataset", "kb", "--chunk-size", "120", "--overlap", "20", "--json")
    )
    assert not noop["created"] and noop["embedded_chunks"] == 0 and noop["reused_chunks"] == built["num_chunks"]
    same = _ok(*ws, "index", "build", "help", "--dataset", "kb", "--chunk-size", "120", "--overlap", "20",
               "--ef-search", "64", "--json")  # fmt: skip
    assert not json.loads(same)["created"]  # nor builds anything new: an exact index has no breadth to store
    tokens = _ok(
        *ws, "index", "build", "help", "--dataset", "kb", "--by", "tokens", "--chunk-size", "32", "--overlap", "4"
    )
    assert "Built help@v2 from kb@v1: 8 records" in tokens and "embedded" in tokens

    hits = json.loads(_ok(*ws, "index", "query", "help@v1", "how do I get a refund", "-k", "2", "--json"))
    assert len(hits) == 2 and hits[0]["record_id"] == "refunds"
    assert hits[0]["source"]["uri"] == "file:///kb/refunds.md"
    # An exact index has no search breadth: --ef-search changes nothing found.
    assert json.loads(_ok(*ws, "index", "query", "help@v1", "how do I get a refund", "-k", "2", "--ef-search", "1",
                          "--json")) == hits  # fmt: skip
    german = json.loads(_ok(*ws, "index", "query", "help", "Versand", "--filter", "lang=de", "--json"))
    assert [h["record_id"] for h in german] == ["versand"]
    shown = _ok(*ws, "index", "query", "help@v1", "webhook signature", "-k", "1")
    assert "1." in shown and "webhooks" in shown and "file:///kb/webhooks.md" in shown

    listed = json.loads(_ok(*ws, "index", "list", "--json"))
    assert [(v["ref"], v["kind"]) for v in listed] == [("help@v2", "flat")]
    assert "help" in _ok(*ws, "index", "list") and "kb@v1" in _ok(*ws, "index", "list")
    detail = json.loads(_ok(*ws, "index", "show", "help@v1", "--json"))
    assert set(detail["manifest_content"]["files"]) == {"chunks", "embeddings", "vectors", "bm25"}
    assert "chunks of 120 chars, overlap 20" in _ok(*ws, "index", "show", "help@v1")

    queries = tmp_path / "q.jsonl"
    queries.write_text(json.dumps({"query": "reset my password", "relevant": ["password"]}) + "\n")
    evaluated = json.loads(_ok(*ws, "index", "eval", "help@v1", "--queries", str(queries), "-k", "3", "--json"))
    assert evaluated["metrics"] == {"recall@3": 1.0, "mrr": 1.0, "ndcg@3": 1.0} and evaluated["run"]
    assert "help@v1 on 1 queries: recall@3=1.0000" in _ok(
        *ws, "index", "eval", "help@v1", "--queries", str(queries), "-k", "3"
    )


def test_user_mistakes_exit_2_with_a_message(workspace: Path) -> None:
    ws = ["-w", str(workspace)]
    for args, message in [
        (["index", "query", "nope", "text"], "NotFoundError: no index named 'nope'"),
        (["index", "show", "bad name"], "InputError: expected a index name"),
        (["index", "build", "help", "--dataset", "kb", "--chunk-size", "10", "--overlap", "10"], "overlap from 0"),
        (["index", "eval", "nope", "--queries", "missing.jsonl"], "missing.jsonl: expected a file; nothing is there"),
    ]:
        result = runner.invoke(app, [*ws, *args])
        assert result.exit_code == 2 and message in result.output, result.output
    assert "No indexes yet" in _ok(*ws, "index", "list")


def test_build_with_vector_storage_and_graph_options(
    workspace: Path, make_corpus: Callable[..., pa.Table], commit_dataset: Callable[..., Any]
) -> None:
    """--storage, --hnsw-m and --ef-construction build the HNSW index asked for; another choice is a new version."""
    store = open_store(load_settings(workspace))
    commit_dataset(store, "kb", make_corpus())
    store.close()
    build = ["-w", str(workspace), "index", "build", "help", "--dataset", "kb", "--chunk-size", "120", "--json"]

    def built(*options: str) -> dict[str, Any]:
        return dict(json.loads(_ok(*build, *options)))

    sq8 = built("--storage", "sq8")
    assert (sq8["ref"], sq8["created"], sq8["kind"]) == ("help@v1", True, "hnsw")
    assert sq8["vectors"] == {"kind": "hnsw", "m": 16, "ef_construction": 64, "ef_search": 64, "storage": "sq8"}
    assert not built("--storage", "sq8")["created"]  # the same data, the same way: nothing new
    fp32 = built("--storage", "fp32")
    assert (fp32["ref"], fp32["created"], fp32["vectors"]["storage"]) == ("help@v2", True, "fp32")
    graph = built("--hnsw-m", "32", "--ef-construction", "128")
    assert graph["ref"] == "help@v3" and graph["created"] and graph["reused_chunks"] == graph["num_chunks"]
    assert graph["vectors"] == {"kind": "hnsw", "m": 32, "ef_construction": 128, "ef_search": 64, "storage": "fp32"}
    assert not built("--kind", "hnsw", "--hnsw-m", "32", "--ef-construction", "128", "--storage", "fp32")["created"]
    both = built("--hnsw-m", "32", "--ef-construction", "128", "--storage", "sq8", "--ef-search", "40")
    assert both["ref"] == "help@v4" and both["vectors"]["storage"] == "sq8" and both["vectors"]["ef_search"] == 40
    flat = built("--kind", "flat")
    assert (flat["ref"], flat["kind"], flat["vectors"]) == ("help@v5", "flat", {"kind": "flat"})

    ws = ["-w", str(workspace)]
    shown = _ok(*ws, "index", "show", "help@v4")
    assert "vectors hnsw (M 32, efConstruction 128, efSearch 40, storage sq8)" in shown
    detail = json.loads(_ok(*ws, "index", "show", "help@v4", "--json"))
    assert detail["vectors"] == {"kind": "hnsw", "m": 32, "ef_construction": 128, "ef_search": 40, "storage": "sq8"}
    assert detail["manifest_content"]["vectors"]["storage"] == "sq8"
    assert json.loads(_ok(*ws, "index", "show", "help@v2", "--json"))["vectors"]["storage"] == "fp32"
    assert "vectors exact (flat)" in _ok(*ws, "index", "show", "help@v5")
    # The sq8 version answers like the others: its candidates are re-scored on the fp32 embeddings.
    for ref in ("help@v1", "help@v4"):
        hits = json.loads(_ok(*ws, "index", "query", ref, "how do I get a refund", "-k", "2", "--mode", "vector",
                              "--json"))  # fmt: skip
        assert hits[0]["record_id"] == "refunds"
    text = _ok(*ws, "index", "build", "help", "--dataset", "kb", "--chunk-size", "120", "--storage", "sq8")
    assert "Built help@v6 from kb@v1" in text
    assert "chunks, vectors hnsw (M 16, efConstruction 64, efSearch 64, storage sq8); embedded" in text


def test_vector_options_that_do_not_fit_are_refused_before_building(workspace: Path) -> None:
    ws = ["-w", str(workspace), "index", "build", "help", "--dataset", "kb"]
    for options, message in [
        (["--kind", "flat", "--storage", "sq8"], "InputError: expected HNSW options only with an HNSW index; "
                                                 "got --kind flat with --storage sq8. Drop them"),
        (["--kind", "flat", "--hnsw-m", "8"], "got --kind flat with --hnsw-m 8"),
        (["--hnsw-m", "1"], "InputError: expected vector index settings with m an integer from 2 to 512, got 1"),
        (["--hnsw-m", "100000", "--ef-construction", "0"], "m an integer from 2 to 512, got 100000; "
                                                           "ef_construction an integer from 1 to 65,536, got 0"),
        (["--ef-construction", "-5"], "ef_construction an integer from 1 to 65,536, got -5"),
        (["--storage", "sq4"], "Invalid value for '--storage'"),
        (["--kind", "ivf"], "Invalid value for '--kind'"),
        (["--hnsw-m", "many"], "Invalid value for '--hnsw-m'"),
    ]:  # fmt: skip
        result = runner.invoke(app, [*ws, *options])
        assert result.exit_code == 2 and message in " ".join(result.output.split()), result.output
        assert "Traceback" not in result.output
    assert "No indexes yet" in _ok("-w", str(workspace), "index", "list")
