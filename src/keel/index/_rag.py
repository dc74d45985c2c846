"""Retrieval-augmented answering as one unit: an index version, a prompt version and retrieval settings.

`RagApp` takes a chat conversation, picks the query, embeds it with the index version's model,
searches the version, and renders the prompt version with the chunks and the conversation into
the messages a model answers. `RetrieverPool` loads each index version (and each embedding
model) once per process, so every route or eval subject using it shares one copy. This module
knows no HTTP and no model backend: the gateway and the eval subjects call it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field

from keel.core.errors import InputError, KeelError
from keel.index._embedding import Embedder, load_embedder
from keel.index._search import Hit, Retriever, SearchMode, open_index
from keel.index._versions import IndexVersion, get_index
from keel.registry import PromptVersion, get_prompt
from keel.store import Store

__all__ = [
    "FILLABLE",
    "RagApp",
    "RagAnswer",
    "RetrievalSettings",
    "RetrieverPool",
    "check_app",
    "query_of",
]

FILLABLE = frozenset({"question", "chunks", "history"})
"""The prompt variables an app fills: the query, the retrieved chunks, the conversation before it."""

# Context budgets are counted in estimated tokens (~4 characters each for English): exact counts
# would need the answering model's tokenizer, which the gateway does not have for a remote model.
CHARS_PER_TOKEN = 4

_DEFAULT_SYSTEM = "Answer from the numbered context passages below and cite them by number.\n\n"


class RetrievalSettings(BaseModel):
    """How an app retrieves.

    Attributes:
        k: Most chunks given to the prompt.
        min_score: Chunks scoring below this are left out (the mode's own score: cosine for
            `vector`, BM25 for `keyword`, the fused reciprocal-rank score for `hybrid`).
        mode: `hybrid`, `vector` or `keyword`.
        vector_weight: In hybrid mode, the vector ranks' share of the fused score.
        max_context_tokens: Chunks are added best first while their estimated tokens fit.
        query: Which message is the query: the last user message, the first, or all user messages joined.
        ef_search: HNSW search breadth for this app's queries (None: the index version's own, chosen
            by its size when built). Lower is faster and may miss neighbours: measure recall at the
            model's dimension (benchmarks/hnsw_recall_real.py). Exact (small) indexes ignore it.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    k: int = Field(default=4, ge=1, le=100)
    min_score: float | None = None
    mode: SearchMode = "hybrid"
    vector_weight: float = Field(default=0.5, ge=0.0, le=1.0)
    max_context_tokens: int = Field(default=2000, gt=0)
    query: Literal["last-user", "first-user", "all-user"] = "last-user"
    ef_search: int | None = Field(default=None, ge=1, le=65_536)


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # OpenAI content parts: only the text parts are read
        return "\n".join(
            str(p.get("text") or "") for p in content if isinstance(p, Mapping) and p.get("type") == "text"
        )
    return ""


def query_of(messages: Sequence[Mapping[str, Any]], which: str = "last-user") -> str:
    """The query of a conversation: its last (or first, or every) user message's text.

    Examples:
        >>> query_of([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
        ...           {"role": "user", "content": "c"}])
        'c'
    """
    users = [_text(m.get("content")) for m in messages if m.get("role") == "user"]
    if not users:
        return ""
    if which == "first-user":
        return users[0]
    if which == "all-user":
        return "\n".join(users)
    return users[-1]


@dataclass(slots=True)
class RagAnswer:
    """What retrieval gave one request: the chunks kept, the messages to send, and the time of each step."""

    hits: list[Hit]
    messages: list[dict[str, Any]]
    embed_ms: float = 0.0
    search_ms: float = 0.0
    render_ms: float = 0.0
    index: str | None = None

    @property
    def retrieval_ms(self) -> float:
        """Embedding, search and rendering together."""
        return self.embed_ms + self.search_ms + self.render_ms

    def citations(self) -> list[dict[str, Any]]:
        """One entry per chunk given to the model: chunk id, record id, source URI, score, rank, index version.

        The index version is named in each citation: during an index canary, a client (or an eval of a
        deployment) can tell which version a chunk came from.
        """
        return [
            {
                "index": self.index,
                "chunk_id": h.chunk_id,
                "record_id": h.record_id,
                "source": (h.source or {}).get("uri"),
                "score": h.score,
                "rank": h.rank,
            }
            for h in self.hits
        ]


class RetrieverPool:
    """Index versions loaded once per process and shared, each with its embedder (shared by model id).

    Thread-safe: two routes asking for the same version at once load it once.

    Examples:
        >>> pool = RetrieverPool(store)  # doctest: +SKIP
        >>> pool.retriever("kb@v2") is pool.retriever("kb@v2")  # doctest: +SKIP
        True
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self._retrievers: dict[str, Retriever] = {}
        self._embedders: dict[str, Embedder] = {}
        self._lock = threading.Lock()

    def embedder(self, model_id: str) -> Embedder:
        """The embedder of `model_id`, loaded (model weights included) on first use."""
        with self._lock:
            found = self._embedders.get(model_id)
            if found is None:
                found = load_embedder(model_id)
                found.dimension  # noqa: B018 - loads the weights now, not during the first request
                self._embedders[model_id] = found
            return found

    def retriever(self, ref: str) -> Retriever:
        """The loaded index version `ref` (`NAME@vN`)."""
        with self._lock:
            found = self._retrievers.get(ref)
        if found is not None:
            return found
        version = get_index(self.store, ref)
        embedder = self.embedder(version.embedding_model)
        with self._lock:
            found = self._retrievers.get(version.ref)
            if found is None:
                found = self._retrievers[version.ref] = open_index(self.store, version.ref, embedder=embedder)
            return found

    def app(self, prompt: str | None, index: str | None, settings: RetrievalSettings | None = None) -> RagApp:
        """An app of pinned versions; its retriever is shared with every other app of the same index version."""
        retriever = self.retriever(index) if index else None
        return RagApp(get_prompt(self.store, prompt) if prompt else None, retriever, settings or RetrievalSettings())


@dataclass
class RagApp:
    """A prompt version over an index version: conversation in, augmented messages out.

    Args:
        prompt: The prompt version whose text becomes the first system message (None: a plain
            numbered-context message).
        retriever: The loaded index version (None: no retrieval, the prompt alone).
        settings: How to retrieve.
    """

    prompt: PromptVersion | None
    retriever: Retriever | None
    settings: RetrievalSettings = field(default_factory=RetrievalSettings)

    @property
    def index_ref(self) -> str | None:
        """`NAME@vN` of the index version, or None."""
        return self.retriever.version.ref if self.retriever is not None else None

    @property
    def prompt_ref(self) -> str | None:
        """`NAME@vN` of the prompt version, or None."""
        return self.prompt.ref if self.prompt is not None else None

    def query(self, messages: Sequence[Mapping[str, Any]]) -> str:
        """The query this app retrieves for.

        Raises:
            InputError: The conversation has no user text to retrieve for.
        """
        text = query_of(messages, self.settings.query)
        if not text.strip():
            raise InputError("expected a user message with text to retrieve for; got none")
        return text

    def embed(self, query: str) -> npt.NDArray[np.float32]:
        """The query's vector (the index version's model)."""
        assert self.retriever is not None
        vectors: npt.NDArray[np.float32] = self.retriever.embedder.embed([query])
        return np.ascontiguousarray(vectors[0], dtype=np.float32)

    def search(self, query: str, vector: npt.NDArray[np.float32] | None) -> list[Hit]:
        """The chunks to give the prompt: the best `k`, above `min_score`, within the token budget."""
        assert self.retriever is not None
        s = self.settings
        hits = self.retriever.search(
            query, s.k, mode=s.mode, vector=vector, vector_weight=s.vector_weight, ef_search=s.ef_search
        )
        kept, budget = [], s.max_context_tokens * CHARS_PER_TOKEN
        for hit in hits:
            if s.min_score is not None and hit.score < s.min_score:
                continue
            if len(hit.text) > budget:
                break
            budget -= len(hit.text)
            kept.append(hit)
        return kept

    def render(self, messages: Sequence[Mapping[str, Any]], query: str, hits: list[Hit]) -> list[dict[str, Any]]:
        """The messages to send: the prompt's system message first, then the conversation as it came.

        A request's own system message is kept, after the prompt's.
        """
        chunks = [
            {"n": i, "id": h.chunk_id, "record_id": h.record_id, "source": (h.source or {}).get("uri"),
             "score": h.score, "text": h.text}
            for i, h in enumerate(hits, start=1)
        ]  # fmt: skip
        if self.prompt is None:
            text = _DEFAULT_SYSTEM + "\n\n".join(f"[{c['n']}] {c['text']}" for c in chunks)
        else:
            last = max((i for i, m in enumerate(messages) if m.get("role") == "user"), default=len(messages))
            history = [{"role": m.get("role"), "content": _text(m.get("content"))} for m in messages[:last]]
            values = {"question": query, "chunks": chunks, "history": history}
            text = self.prompt.render({k: v for k, v in values.items() if k in self.prompt.variables})
        return [{"role": "system", "content": text}, *(dict(m) for m in messages)]

    def answer(self, messages: Sequence[Mapping[str, Any]]) -> RagAnswer:
        """Retrieve and render in one call, timing each step (the in-process form, for eval subjects)."""
        query = self.query(messages)
        started = time.perf_counter()
        vector = self.embed(query) if self.retriever is not None and self.settings.mode != "keyword" else None
        embedded = time.perf_counter()
        hits = self.search(query, vector) if self.retriever is not None else []
        searched = time.perf_counter()
        rendered = self.render(messages, query, hits)
        done = time.perf_counter()
        ms = 1e3
        return RagAnswer(
            hits,
            rendered,
            (embedded - started) * ms,
            (searched - embedded) * ms,
            (done - searched) * ms,
            self.index_ref,
        )


def check_app(store: Store, prompt: str | None, index: str | None) -> tuple[str | None, str | None]:
    """Resolve an app's prompt and index references to pinned `NAME@vN`, refusing what could not serve.

    Args:
        store: The workspace store.
        prompt: `NAME`, `NAME@vN` or `NAME@alias` of a prompt, or None.
        index: `NAME`, `NAME@vN` or `NAME@latest` of an index, or None.

    Returns:
        The pinned prompt and index references.

    Raises:
        NotFoundError: No such prompt or index version.
        InputError: The prompt requires a variable an app cannot fill, or the index's embedding
            model cannot be loaded here.
    """
    prompt_ref = index_ref = None
    if prompt is not None:
        version = get_prompt(store, prompt)
        unfillable = sorted(n for n, spec in version.variables.items() if spec.get("required") and n not in FILLABLE)
        if unfillable:
            raise InputError(
                f"prompt {version.ref} requires {', '.join(unfillable)}, which a route cannot fill "
                f"(it fills {', '.join(sorted(FILLABLE))})",
                hint="give those variables defaults in a new prompt version, or pick another version",
            )
        prompt_ref = version.ref
    if index is not None:
        found: IndexVersion = get_index(store, index)
        try:
            model = found.embedding_model
            if model.startswith((".", "/", "~")) and not Path(model).expanduser().exists():
                # Checked apart: a model this process loaded earlier is cached by its path, folder or not.
                raise FileNotFoundError(f"no folder {model}")
            load_embedder(model).dimension  # noqa: B018 - loads the model: fails here, not per request
        except (KeelError, OSError, ValueError) as exc:
            reason = exc.message if isinstance(exc, KeelError) else f"{type(exc).__name__}: {exc}"
            raise InputError(
                f"index {found.ref}'s embedding model {found.embedding_model!r} cannot be loaded here: {reason}",
                hint="install the model where the gateway runs, or rebuild the index with one that is",
            ) from None
        index_ref = found.ref
    return prompt_ref, index_ref
