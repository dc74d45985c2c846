"""A small demo-like workspace built with library calls (not the demo: it takes minutes), and signed-in keys."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest

from keel.core.ids import new_ulid
from keel.data import commit_version, make_record, records_to_table
from keel.govern import create_key, grant
from keel.monitor import Trace, TraceRetrieval, TraceWriter, record_feedback
from keel.registry import alias_model, create_prompt, register_model, start_run
from keel.serve import create_deployment
from keel.store import Store

FETCHED = datetime(2026, 12, 1, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _cheap_keys(cheap_key_hashing: None) -> None:
    """Keys here are set-up material: hashed cheaply (tests/conftest.py, `cheap_key_hashing`)."""


@dataclass
class Workspace:
    """What the console tests look for: ids, names and the two keys' secrets."""

    store: Store
    admin_key: str
    viewer_key: str
    run_ids: list[str]
    trace_ids: list[str]
    record_id: str


def _table(texts: list[str]) -> pa.Table:
    return records_to_table([_record(i, text) for i, text in enumerate(texts)])


def _record(i: int, text: str) -> dict[str, object]:
    return make_record(text, f"file:///docs/{i}.txt", 0, text.encode(), FETCHED)


def build_workspace(store: Store, tmp_path: Path) -> Workspace:
    """Datasets with two versions, runs with metric curves, two model versions, a prompt, a deployment
    with served traces (content, retrieval, feedback), and an admin and a viewer API key."""
    texts = ["Returns are accepted within 30 days.", "Shipping takes 3 to 5 days.", "Support is open 9 to 5."]
    commit_version(store, "faq", _table(texts), message="first cut")
    commit_version(store, "faq", _table([*texts[:2], "Support is open 8 to 8, every day."]), message="hours fixed")
    run_ids = []
    for lr in (0.001, 0.01, 0.1):
        with start_run("train", {"lr": lr, "epochs": 3}, name=f"sft-lr{lr}", store=store) as run:
            for step in range(1, 6):
                run.log_metrics({"loss": 2.0 / (step * (1 + lr * 10)), "accuracy": 0.5 + step * lr}, step=step)
            run_ids.append(run.id)
    for i in (1, 2):
        folder = tmp_path / f"chat{i}"
        folder.mkdir()
        (folder / "config.json").write_text(f'{{"version": {i}}}')
        register_model(store, "chat", folder)
    alias_model(store, "chat", "production", 1, reason="first release")
    create_prompt(store, "support", "You answer questions about {{ topic }}.", variables=["topic"])
    create_deployment(store, "chat", "chat@v1", route={"upstream": "http://127.0.0.1:9/v1", "price_out": 0.002})
    now = store.clock()
    traces = []
    for i in range(6):
        question = f"How long do returns take? ({i})"
        chunk = {"chunk_id": "c1", "record_id": "r1", "source": "file:///docs/0.txt", "score": 0.9, "rank": 1}
        retrieval = TraceRetrieval("kb@v1", "support@v1", [chunk], embed_ms=1.0, search_ms=2.0, render_ms=0.1)
        traces.append(Trace(id=new_ulid(), at=now - timedelta(minutes=10 * i), deployment="chat", operation="chat",
                            status=200 if i else 500, latency_ms=40.0 + 7 * i, model_version="chat@v1",
                            tokens_in=12, tokens_out=20 + i, cost=0.0001 * i, retrieval=retrieval,
                            request={"messages": [{"role": "user", "content": question}]},
                            response="Returns take 14 days." if i % 2 else "Returns take 30 days."))  # fmt: skip
    TraceWriter(store).write([t.storable() for t in traces])
    record_feedback(store, traces[1].id, score="down", comment="wrong period")
    admin = create_key(store, "console-admin")
    viewer = create_key(store, "console-viewer")
    grant(store, f"key:{admin.key.id}", "admin")
    grant(store, f"key:{viewer.key.id}", "viewer")
    first = str(_record(0, texts[0])["id"])
    return Workspace(store, admin.secret, viewer.secret, run_ids, [t.id for t in traces], first)


@pytest.fixture
def workspace_built(store: Store, tmp_path: Path) -> Workspace:
    """The console's test workspace on each database backend."""
    return build_workspace(store, tmp_path)
