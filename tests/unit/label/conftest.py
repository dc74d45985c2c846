"""The ticket-intent task (from the demo corpus) and its MiniLM embeddings, computed once per session."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from keel.pipeline._ticket_intents import ticket_intents


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
