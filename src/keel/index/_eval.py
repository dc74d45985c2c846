"""Retrieval evaluation: recall@k, MRR and nDCG@k of an index version on (query, relevant record ids).

Hits are ranked by record (a record's best chunk counts, later chunks of it are skipped), since
relevance is judged per document. Each evaluation is stored as a Keel run of kind `eval`, with its
metrics logged, the per-query results as an artifact and a lineage edge from the index version.
"""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from keel.core.errors import InputError
from keel.core.ids import canonical_json, sha256_hex
from keel.core.settings import read_text_file
from keel.index._search import Retriever, SearchMode, open_index
from keel.registry import Ref, start_run
from keel.store import Store

__all__ = ["EvalQuery", "RetrievalEval", "evaluate_index", "load_queries", "retrieval_metrics"]


@dataclass(frozen=True)
class EvalQuery:
    """One evaluation case: a query and the ids of the records that answer it."""

    query: str
    relevant: tuple[str, ...]


@dataclass(frozen=True)
class RetrievalEval:
    """The outcome of `evaluate_index`: aggregate metrics, per-query results and the run that holds them."""

    index: str
    run_id: str
    k: int
    mode: str
    metrics: dict[str, float]
    per_query: list[dict[str, Any]]

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {"index": self.index, "run": self.run_id, "k": self.k, "mode": self.mode, "metrics": self.metrics,
                "queries": len(self.per_query)}  # fmt: skip


def retrieval_metrics(ranked: Sequence[str], relevant: Sequence[str], k: int) -> dict[str, float]:
    """Recall@k, reciprocal rank and nDCG@k (binary relevance) of one ranked list of record ids.

    Examples:
        >>> retrieval_metrics(["a", "b", "c"], ["b"], k=3)
        {'recall': 1.0, 'mrr': 0.5, 'ndcg': 0.6309297535714575}
    """
    wanted = set(relevant)
    top = list(ranked)[:k]
    found = [i for i, rid in enumerate(top) if rid in wanted]
    dcg = sum(1.0 / math.log2(i + 2) for i in found)
    ideal = sum(1.0 / math.log2(i + 2) for i in range(min(len(wanted), k)))
    return {
        "recall": len(found) / len(wanted) if wanted else 0.0,
        "mrr": 1.0 / (found[0] + 1) if found else 0.0,
        "ndcg": dcg / ideal if ideal else 0.0,
    }


def load_queries(path: str | Path) -> list[EvalQuery]:
    """Read evaluation cases from JSON Lines: `{"query": "...", "relevant": ["record-id", ...]}` per line.

    Raises:
        InputError: The file is missing, a directory or not UTF-8, a line is not such an object, or it holds
            no cases.
    """
    file = Path(path)
    cases = []
    for number, line in enumerate(read_text_file(file, "queries file", error=InputError).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            query, relevant = item["query"], item.get("relevant", item.get("relevant_ids"))
        except (json.JSONDecodeError, RecursionError, KeyError, TypeError):
            item, query, relevant = None, None, None
        if not isinstance(query, str) or not isinstance(relevant, list) or not relevant:
            expected = '{"query": "...", "relevant": ["record-id", ...]}'
            raise InputError(f"queries file {file} line {number}: expected {expected}; got {line[:80]!r}")
        cases.append(EvalQuery(query, tuple(str(r) for r in relevant)))
    if not cases:
        raise InputError(f"queries file {file}: expected at least one query; the file is empty")
    return cases


def _ranked_records(retriever: Retriever, query: str, k: int, mode: SearchMode) -> list[str]:
    # Ask for more chunks than k: a long record can fill several of the top chunks.
    ranked: list[str] = []
    for hit in retriever.search(query, k * 4, mode=mode):
        if hit.record_id not in ranked:
            ranked.append(hit.record_id)
    return ranked[:k]


def evaluate_index(
    store: Store,
    ref: str | Ref,
    queries: Sequence[EvalQuery] | str | Path,
    *,
    k: int = 10,
    mode: SearchMode = "hybrid",
    name: str | None = None,
) -> RetrievalEval:
    """Measure how well an index version retrieves the relevant records, and store it as an eval run.

    Args:
        store: The workspace store.
        ref: The index version (`NAME`, `NAME@vN`).
        queries: Cases, or a JSON Lines file of them (see `load_queries`).
        k: The cut-off for recall and nDCG (MRR counts a first hit within k).
        mode: `hybrid`, `vector` or `keyword`.
        name: A label for the run.

    Returns:
        Mean recall@k, MRR and nDCG@k, per-query results, and the run id.

    Examples:
        >>> evaluate_index(store, "docs@v2", "queries.jsonl", k=5).metrics  # doctest: +SKIP
        {'recall@5': 0.9, 'mrr': 0.81, 'ndcg@5': 0.84}
    """
    if k < 1:
        raise InputError(f"expected k of at least 1; got {k}")
    cases = load_queries(queries) if isinstance(queries, str | Path) else list(queries)
    if not cases:
        raise InputError("expected at least one (query, relevant record ids) case to evaluate")
    retriever = open_index(store, ref)
    version = retriever.version
    per_query: list[dict[str, Any]] = []
    for case in cases:
        ranked = _ranked_records(retriever, case.query, k, mode)
        scores = retrieval_metrics(ranked, case.relevant, k)
        per_query.append({"query": case.query, "relevant": list(case.relevant), "retrieved": ranked, **scores})
    n = len(per_query)
    metrics = {
        f"recall@{k}": sum(q["recall"] for q in per_query) / n,
        "mrr": sum(q["mrr"] for q in per_query) / n,
        f"ndcg@{k}": sum(q["ndcg"] for q in per_query) / n,
    }
    cases_json = canonical_json([[c.query, list(c.relevant)] for c in cases])
    params = {"subject": version.ref, "suite": "retrieval", "k": k, "mode": mode, "queries": n,
              "queries_sha256": sha256_hex(cases_json)}  # fmt: skip
    with start_run("eval", params, name=name or f"retrieval {version.ref}", store=store) as run:
        run.log_input(version.node, "evaluated_on")
        run.log_metrics(metrics, step=0)
        with tempfile.TemporaryDirectory(prefix="keel-eval-") as tmp:
            path = Path(tmp) / "per_query.jsonl"
            path.write_text("".join(canonical_json(q) + "\n" for q in per_query), encoding="utf-8")
            run.log_artifact(path)
    return RetrievalEval(version.ref, run.id, k, mode, metrics, per_query)
