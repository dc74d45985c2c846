"""Fixtures for the labelling tests: a small ticket dataset with a label schema and served traces; the ticket-intent
task (from the demo corpus) with its MiniLM embeddings, computed once per session."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pytest

from keel.core.ids import new_ulid
from keel.data import DatasetVersion, commit_version
from keel.label import LabelSchema, set_schema
from keel.monitor import Trace, TraceWriter
from keel.pipeline._ticket_intents import ticket_intents
from keel.store import Store

TICKETS = [
    "My invoice charged me twice for March",
    "The app crashes when I open settings",
    "Refund the duplicate payment please",
    "Login button does nothing on Android",
    "How do I change my billing address?",
    "Export to CSV fails with error 500",
    "Can I pay by bank transfer?",
    "Dark mode text is unreadable",
]


def commit_tickets(store: Store, name: str = "tickets") -> DatasetVersion:
    """Eight support tickets (ids t0..t7) with a `source_lang` column that must survive a label commit."""
    rows = [{"id": f"t{i}", "text": t, "source_lang": "en"} for i, t in enumerate(TICKETS)]
    version, _ = commit_version(store, name, pa.Table.from_pylist(rows))
    return version


@pytest.fixture
def tickets(store: Store) -> DatasetVersion:
    """`tickets@v1` with the schema billing/bug/other."""
    version = commit_tickets(store)
    set_schema(store, "tickets", LabelSchema("classes", ("billing", "bug", "other")))
    return version


def served(store: Store, question: str, answer: str, deployment: str = "chat") -> str:
    """A trace with content, as the gateway writes it."""
    request = {"messages": [{"role": "user", "content": question}]}
    trace = Trace(id=new_ulid(), at=store.clock(), deployment=deployment, operation="chat", status=200,
                  latency_ms=10.0, model_version="chat@v1", request=request, response=answer)  # fmt: skip
    TraceWriter(store).write([trace.storable()])
    return trace.id


@dataclass(frozen=True)
class Task:
    texts: list[str]
    gold: list[str]
    embeddings: np.ndarray


@pytest.fixture(scope="session")
def ticket_task() -> Task:
    """900 tickets with their intents and unit-length MiniLM embeddings (~20 CPU-s once; one torch thread)."""
    import torch

    from keel.label.active import embed

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # two spinning threads are 3-10x slower on the shared 2-core machines
    try:
        examples = ticket_intents(900, seed=11)
        texts = [e.text for e in examples]
        return Task(texts, [e.intent for e in examples], embed(texts))
    finally:
        torch.set_num_threads(threads)
