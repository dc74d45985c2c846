from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from keel.core.errors import InputError
from keel.index import ChunkSettings, EvalQuery, build_index, evaluate_index, load_queries, retrieval_metrics
from keel.registry import get_run, metric_series
from keel.store import Store, walk


def test_metrics_of_one_ranking() -> None:
    assert retrieval_metrics(["a", "b", "c"], ["a"], k=3) == {"recall": 1.0, "mrr": 1.0, "ndcg": 1.0}
    two = retrieval_metrics(["x", "a", "y", "b"], ["a", "b"], k=3)
    assert two["recall"] == 0.5 and two["mrr"] == 0.5
    assert two["ndcg"] == pytest.approx((1 / 1.584962500721156) / (1 + 1 / 1.584962500721156))
    assert retrieval_metrics(["x", "y"], ["a"], k=2) == {"recall": 0.0, "mrr": 0.0, "ndcg": 0.0}


def test_evaluation_is_stored_as_an_eval_run(store: Store, kb: Any, tmp_path: Path) -> None:
    index = build_index(store, "help", kb.ref, chunking=ChunkSettings(size=120, overlap=20)).index
    queries = tmp_path / "queries.jsonl"
    cases = [
        {"query": "How long until I get my money back?", "relevant": ["refunds"]},
        {"query": "I forgot my password", "relevant": ["password"]},
        {"query": "account security", "relevant": ["password", "two-factor"]},
        {"query": "webhook HMAC", "relevant_ids": ["webhooks"]},
    ]
    queries.write_text("\n".join(json.dumps(c) for c in cases) + "\n\n")
    result = evaluate_index(store, index.ref, queries, k=3)
    assert result.index == "help@v1" and len(result.per_query) == 4
    assert set(result.metrics) == {"recall@3", "mrr", "ndcg@3"}
    assert result.metrics["mrr"] >= 0.75 and result.metrics["recall@3"] >= 0.75
    first = result.per_query[0]
    assert first["retrieved"][0] == "refunds" and len(set(first["retrieved"])) == len(first["retrieved"]) == 3
    with store.db.read() as conn:
        run = get_run(conn, result.run_id)
        series = metric_series(conn, result.run_id)
        upstream = {hit.node: hit.edge_kind for hit in walk(conn, f"run:{result.run_id}", "upstream", depth=1)}
    assert run.kind == "eval" and run.status == "finished" and run.params["subject"] == "help@v1"
    assert run.params["k"] == 3 and run.params["queries"] == 4 and "per_query.jsonl" in run.artifacts
    assert series["mrr"] == [(0, result.metrics["mrr"])]
    assert upstream == {index.node: "evaluated_on"}
    # The same cases passed in memory give the same numbers.
    again = evaluate_index(
        store, "help", [EvalQuery(c["query"], tuple(c.get("relevant", c.get("relevant_ids")))) for c in cases], k=3
    )
    assert again.metrics == result.metrics and again.run_id != result.run_id


def test_bad_query_files(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="queries file .*missing.jsonl: expected a file; nothing is there"):
        load_queries(tmp_path / "missing.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"query": "x", "relevant": []}\n')
    with pytest.raises(InputError, match="line 1: expected"):
        load_queries(bad)
    bad.write_text("not json\n")
    with pytest.raises(InputError, match="line 1: expected"):
        load_queries(bad)
    bad.write_text("\n")
    with pytest.raises(InputError, match="at least one query"):
        load_queries(bad)
