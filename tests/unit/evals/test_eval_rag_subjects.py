"""Eval subjects that are RAG apps or deployments: judges score the chunks retrieved, gates compare index versions."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from keel.cli import app
from keel.data import commit_version, make_record, records_to_table
from keel.evals import gate
from keel.evals._results import run_suite
from keel.evals._suite import parse_suite
from keel.govern import create_key
from keel.index import build_index, open_index
from keel.registry import create_prompt, register_model
from keel.serve import Gateway, ServeSettings, create_app, create_deployment, serve_in_thread, stub_upstream_app
from keel.store import Store

FETCHED = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
DOCS = {
    "refunds": "Refunds are issued to the original payment method within 14 days of the purchase date.",
    "returns": "Items can be returned within 30 days; print the prepaid return label from your orders page.",
    "shipping": "Standard shipping takes five to seven business days; express delivery arrives in two.",
    "password": "To reset a forgotten password, open the login page and choose Forgot password.",
    "api-limits": "The public API allows 600 requests per minute per key; above it you receive HTTP 429.",
    "webhooks": "Webhooks deliver events such as order.created to your HTTPS endpoint, signed with an HMAC.",
}
QUESTIONS = [
    "How long does a refund take?",
    "Where does my refund money go?",
    "Can I get my money back for an order?",
    "When will I see the refund on my card?",
    "How do I return an item?",
    "How many days do I have to return a purchase?",
    "Where do I find the return label?",
    "Can I send back something I bought?",
    "What is the refund and return policy?",
    "Do you refund the original payment method?",
]


def _kb(store: Store, drop: tuple[str, ...] = ()) -> None:
    rows = [
        make_record(text, f"https://acme.example/kb/{rid}", 0, text.encode(), FETCHED, {}, record_id_override=rid)
        for rid, text in DOCS.items()
        if rid not in drop
    ]
    version, _ = commit_version(store, "docs", records_to_table(rows))
    build_index(store, "kb", str(version.ref))


@pytest.fixture(scope="module")
def upstream() -> Iterator[str]:
    with serve_in_thread(stub_upstream_app()) as url:
        yield f"{url}/v1"


@pytest.fixture
def kb(store: Store) -> None:
    """`kb@v1` holds every document; `kb@v2` lost the refund and return pages."""
    _kb(store)
    _kb(store, drop=("refunds", "returns"))
    create_prompt(store, "support", "Context:\n{% for c in chunks %}{{ c.text }}\n{% endfor %}", variables=["chunks"])


def _suite(subject: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": "rag-support",
        "cases": [{"input": q} for q in QUESTIONS],
        "subject": subject,
        "metrics": [{"name": "context_relevance"}],
        "resamples": 200,
    }


def test_gate_between_index_versions_refuses_the_one_that_lost_documents(
    store: Store, kb: None, upstream: str, tmp_path: Path
) -> None:
    target = {"kind": "endpoint", "base_url": upstream, "model": "stub"}
    suite = parse_suite(
        _suite({"kind": "app", "target": target, "prompt": "support", "index": "kb", "retrieval": {"k": 2}})
    )
    report = gate(store, suite, "kb@v1", "kb@v2")
    assert not report.passed and any("context_relevance regressed" in r for r in report.reasons)
    assert report.baseline.subject.startswith("app:support@v1+kb@v1->") and "kb@v2" in report.candidate.subject
    # The judges scored what was retrieved: v1's contexts hold the refund page, v2's cannot.
    kb1 = set(open_index(store, "kb@v1").chunks.column("text").to_pylist())
    assert all(set(c.contexts) <= kb1 and c.contexts for c in report.baseline.cases)
    assert any(DOCS["refunds"] in c.contexts for c in report.baseline.cases)
    assert not any(DOCS["refunds"] in c.contexts for c in report.candidate.cases)

    same = gate(store, suite, "kb@v1", "kb@v1")
    assert same.passed

    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(suite.model_dump(mode="json")), encoding="utf-8")
    result = CliRunner().invoke(
        app, ["-w", str(tmp_path / "ws"), "eval", "gate", "--suite", str(path), "--baseline", "kb@v1",
              "--candidate", "kb@v2", "--json"],
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    assert json.loads(result.output)["passed"] is False


def test_app_subject_refuses_what_a_route_would_refuse(store: Store, kb: None, upstream: str) -> None:
    from keel.core.errors import InputError, NotFoundError

    target = {"kind": "endpoint", "base_url": upstream, "model": "stub"}
    with pytest.raises(NotFoundError):
        run_suite(store, parse_suite(_suite({"kind": "app", "target": target, "index": "kb@v7"})))
    create_prompt(store, "toned", "Be {{ tone }}.", variables=["tone"])
    with pytest.raises(InputError, match="requires tone"):
        run_suite(store, parse_suite(_suite({"kind": "app", "target": target, "prompt": "toned"})))


def test_deployment_subject_judges_the_chunks_its_citations_name(
    store: Store, kb: None, upstream: str, tmp_path: Path
) -> None:
    folder = tmp_path / "chat"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    model = register_model(store, "chat", folder)[0].ref
    create_deployment(store, "assistant", model, route={"upstream": upstream, "prompt": "support", "index": "kb@v2"})
    key = create_key(store, "eval").secret
    with serve_in_thread(create_app(Gateway(store, ServeSettings(reload_interval_s=0.1)))) as url:
        subject = {"kind": "deployment", "base_url": f"{url}/v1", "deployment": "assistant", "api_key": key}
        result = run_suite(store, parse_suite(_suite(subject)))
    kb2 = set(open_index(store, "kb@v2").chunks.column("text").to_pylist())
    assert result.subject.startswith("deployment:assistant@")
    assert all(c.contexts and set(c.contexts) <= kb2 for c in result.cases)
    assert 0.0 <= result.aggregates["context_relevance"].mean <= 1.0
