"""The semantic cache: paraphrases reuse an answer (real MiniLM embeddings), other questions do not."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import numpy as np
import pytest
from typer.testing import CliRunner

from keel.cli import app
from keel.monitor import list_traces
from keel.serve import DeploymentSettings, Gateway, ServeSettings, create_app, create_deployment
from keel.serve._semantic import SemanticCache, semantic_parts
from keel.store import Store


def _ask(text: str, **extra: Any) -> dict[str, Any]:
    return {"model": "chat", "messages": [{"role": "user", "content": text}], "temperature": 0, **extra}


def test_paraphrase_hits_and_other_questions_miss(store: Store, upstream: str, chat_versions: tuple[str, str]) -> None:
    settings = DeploymentSettings(cache_ttl_s=60, semantic_cache=0.92)
    create_deployment(store, "chat", "chat@v1", route={"upstream": f"{upstream}/v1"}, settings=settings)
    asked = [
        _ask("How much does the Aurora Headlamp cost?"),
        _ask("What does the Aurora Headlamp cost?"),  # a paraphrase: reused
        _ask("Is the Aurora Headlamp waterproof?"),  # same product, another question: not reused
        _ask("What does the Aurora Headlamp cost?", temperature=0.7),  # sampled: never cached
        _ask("What does the Aurora Headlamp cost?", max_tokens=5),  # other parameters: another partition
        {"model": "chat", "temperature": 0, "messages": [
            {"role": "system", "content": "Answer in French."},
            {"role": "user", "content": "What does the Aurora Headlamp cost?"}]},  # another system prompt
    ]  # fmt: skip
    gateway = Gateway(store, ServeSettings(require_keys=False))

    async def run() -> list[str]:
        await gateway.start()
        try:
            transport = httpx.ASGITransport(create_app(gateway))
            async with httpx.AsyncClient(transport=transport, base_url="http://gw", timeout=120) as client:
                return [
                    (await client.post("/v1/chat/completions", json=body)).json()["choices"][0]["message"]["content"]
                    for body in asked
                ]
        finally:
            await gateway.close()

    answers = asyncio.run(run())
    assert answers[1] == answers[0] == "chat: How much does the Aurora Headlamp cost?"
    assert answers[2:] == [
        "chat: Is the Aurora Headlamp waterproof?",
        *["chat: What does the Aurora Headlamp cost?"] * 3,
    ]
    traces = list(reversed(list_traces(store)))
    assert [t.cache_hit for t in traces] == [False, True, False, False, False, False]
    assert traces[1].flags == ["semantic_cache"] and traces[1].cost == 0


def test_partition_key_ignores_only_the_question() -> None:
    a = semantic_parts("m@v1", "chat", _ask("first question"))
    b = semantic_parts("m@v1", "chat", _ask("another one"))
    c = semantic_parts("m@v2", "chat", _ask("first question"))
    assert a is not None and b is not None and c is not None
    assert a[0] == b[0] != c[0] and (a[1], b[1]) == ("first question", "another one")
    assert semantic_parts("m@v1", "chat", {"messages": [{"role": "system", "content": "x"}]}) is None
    assert semantic_parts("m@v1", "completion", {"prompt": "say hi"}) is not None


def test_cache_bound_ttl_and_threshold() -> None:
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((50, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    cache = SemanticCache(8, max_entries=20)
    for i, v in enumerate(vectors):
        cache.put("p", v, {"i": i}, ttl_s=60)
    assert len(cache) <= 20
    hit = cache.get("p", vectors[-1], threshold=0.99)
    assert hit is not None and hit.answer == {"i": 49} and hit.similarity == pytest.approx(1.0, abs=1e-5)
    assert cache.get("p", vectors[0], threshold=0.99) is None  # compacted away, and no other is that close
    assert cache.get("other", vectors[-1], threshold=0.0) is None
    cache.put("q", vectors[0], {"i": "short"}, ttl_s=0.01)
    time.sleep(0.02)
    assert cache.get("q", vectors[0], threshold=0.5) is None


def test_configure_semantic_cache_needs_a_ttl(store: Store, chat_versions: tuple[str, str]) -> None:
    create_deployment(store, "chat", "chat@v1", route={"upstream": "http://127.0.0.1:9/v1"})
    workspace = str(store.settings.workspace)
    refused = CliRunner().invoke(app, ["-w", workspace, "deploy", "configure", "chat", "--semantic-cache", "0.9"])
    assert refused.exit_code == 2 and "expected --cache-ttl above 0 with --semantic-cache" in refused.output
    ok = CliRunner().invoke(
        app, ["-w", workspace, "deploy", "configure", "chat", "--semantic-cache", "0.9", "--cache-ttl", "60", "--json"]
    )
    assert ok.exit_code == 0, ok.output
    assert '"semantic_cache": 0.9' in ok.output
