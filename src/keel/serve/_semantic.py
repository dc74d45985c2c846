"""The semantic response cache: an answer reused for a new question whose embedding is close enough.

Entries are grouped in partitions, one per everything-but-the-question (route model, operation,
parameters, earlier turns, system prompt, retrieved context): a question can only reuse an answer
given with exactly the same rest of its request. Inside a partition, FAISS HNSW finds the nearest
cached question by inner product of unit vectors (cosine). It lives in one process: replicas each
keep their own. Knows nothing of HTTP, embedders or deployments: callers pass vectors and keys.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from keel.core.ids import canonical_json

__all__ = ["SemanticCache", "SemanticHit", "semantic_parts"]

# HNSW: 32 links a node, 64 candidates a search; at 100,000 questions a lookup costs well under a
# millisecond where exact search costs several (benchmarks/semantic_cache.py measures both).
_LINKS = 32
_EF_SEARCH = 64


def semantic_parts(route_model: str, operation: str, body: dict[str, Any]) -> tuple[str, str] | None:
    """The partition key (everything but the last user question) and the question, or None without one.

    Examples:
        >>> key, question = semantic_parts("chat@v1", "chat", {"messages": [{"role": "user", "content": "hi"}]})
        >>> question
        'hi'
    """
    rest = {k: v for k, v in body.items() if k not in ("model", "stream", "user", "stream_options")}
    messages = rest.get("messages")
    if isinstance(messages, list):
        for i in range(len(messages) - 1, -1, -1):
            message = messages[i]
            if isinstance(message, dict) and message.get("role") == "user" and isinstance(message.get("content"), str):
                question = message["content"]
                rest["messages"] = [*messages[:i], {**message, "content": None}, *messages[i + 1 :]]
                break
        else:
            return None
    elif isinstance(rest.get("prompt"), str):
        question, rest["prompt"] = rest["prompt"], None
    else:
        return None
    if not question.strip():
        return None
    key = hashlib.sha256(canonical_json([route_model, operation, rest]).encode()).hexdigest()
    return key, question


@dataclass(frozen=True, slots=True)
class SemanticHit:
    """A reused answer and how close its question was (cosine similarity)."""

    answer: dict[str, Any]
    similarity: float


@dataclass(slots=True)
class _Partition:
    index: Any  # faiss.IndexHNSWFlat over inner product
    entries: list[tuple[float, dict[str, Any]]] = field(default_factory=list)  # (expiry, answer) by faiss id


class SemanticCache:
    """Answers by nearest question, per partition, each expiring after its TTL; at most `max_entries` in all.

    Args:
        dimension: Length of the question vectors.
        max_entries: Size bound over all partitions: the least recently used partition is dropped first,
            and a partition alone past the bound keeps its newest half.

    Examples:
        >>> cache = SemanticCache(3)
        >>> v = np.array([[1.0, 0.0, 0.0]], dtype=np.float32)
        >>> cache.put("k", v[0], {"answer": 1}, ttl_s=60)
        >>> cache.get("k", v[0], threshold=0.9).answer
        {'answer': 1}
    """

    def __init__(self, dimension: int, max_entries: int = 10_000) -> None:
        self.dimension = dimension
        self.max_entries = max_entries
        self._partitions: OrderedDict[str, _Partition] = OrderedDict()
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def get(self, key: str, vector: npt.NDArray[np.float32], threshold: float) -> SemanticHit | None:
        """The fresh answer whose question is nearest `vector` in partition `key`, if at least `threshold` close."""
        partition = self._partitions.get(key)
        if partition is None or not partition.entries:
            return None
        self._partitions.move_to_end(key)
        scores, ids = partition.index.search(vector.reshape(1, -1).astype(np.float32, copy=False), 1)
        found, score = int(ids[0, 0]), float(scores[0, 0])
        if found < 0 or score < threshold:
            return None
        expiry, answer = partition.entries[found]
        if expiry < time.monotonic():
            return None  # stale: a fresh answer to this question will be added beside it
        return SemanticHit(answer, score)

    def put(self, key: str, vector: npt.NDArray[np.float32], answer: dict[str, Any], ttl_s: float) -> None:
        """Remember `answer` to the question embedded as `vector`, in partition `key`."""
        partition = self._partitions.get(key)
        if partition is None:
            partition = self._partitions[key] = _Partition(self._new_index())
        self._partitions.move_to_end(key)
        partition.index.add(vector.reshape(1, -1).astype(np.float32, copy=False))
        partition.entries.append((time.monotonic() + ttl_s, answer))
        self._size += 1
        while self._size > self.max_entries:
            oldest = next(iter(self._partitions))
            if oldest != key:
                self._size -= len(self._partitions.pop(oldest).entries)
            else:
                self._compact(key, partition)

    def _new_index(self) -> Any:
        import faiss

        index = faiss.IndexHNSWFlat(self.dimension, _LINKS, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efSearch = _EF_SEARCH
        return index

    def _compact(self, key: str, partition: _Partition) -> None:
        """Rebuild `partition` from its newest fresh half (HNSW cannot delete)."""
        now = time.monotonic()
        keep = [i for i, (expiry, _) in enumerate(partition.entries) if expiry >= now][-max(1, self.max_entries // 2) :]
        rebuilt = _Partition(self._new_index(), [partition.entries[i] for i in keep])
        if keep:
            rebuilt.index.add(np.vstack([partition.index.reconstruct(i) for i in keep]))
        self._size += len(keep) - len(partition.entries)
        self._partitions[key] = rebuilt
