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
