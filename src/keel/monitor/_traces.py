"""Traces: one row per served request, made storable before they are written, and read back.

Every string of a trace may come from a request (a deployment name, a header), so `storable`
escapes what no database can hold (lone surrogates, NUL) and cuts each to its column's length.
Writing happens in `keel.monitor._writer`; this module only knows the row and the queries.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, or_, select

from keel.core.clock import format_time
from keel.core.errors import NotFoundError
from keel.core.ids import canonical_json
from keel.store import Store
from keel.store.schema import lineage_edges, lineage_nodes, trace_contents, trace_retrievals, trace_subjects, traces

__all__ = [
    "CONTENT_LIMIT",
    "Trace",
    "TraceContent",
    "TraceRetrieval",
    "delete_traces",
    "expired_traces",
    "get_trace",
    "get_trace_contents",
    "list_traces",
    "storable",
    "trace_ids_of",
    "traces_citing",
]

# Column lengths of `traces` (store/schema.py): PostgreSQL refuses longer values.
_LIMITS = {"deployment": 128, "model_version": 160, "prompt_version": 160, "key_id": 26, "operation": 32, "error": 64}
_MAX_FLAGS, _FLAG_LENGTH = 32, 64
CONTENT_LIMIT = 32_768  # characters kept of each text of a recorded request or answer


def _bounded(value: Any) -> Any:
    """`value` with every string made storable and cut to `CONTENT_LIMIT` characters."""
    if isinstance(value, str):
        return storable(value, CONTENT_LIMIT)
    if isinstance(value, list):
        return [_bounded(v) for v in value]
    if isinstance(value, dict):
        return {storable(str(k), 64): _bounded(v) for k, v in value.items()}
    return value


def storable_changes(item: Any, limits: dict[str, int]) -> dict[str, Any]:
    """The string fields of `item` named in `limits` (with their column lengths) that `storable` changes.

    Traces and feedback use it to copy themselves only when a field needs it (a `dataclasses.replace` per item
    would cost the writers' hot path).
    """
    changes: dict[str, Any] = {}
    for name, limit in limits.items():
        value = getattr(item, name)
        if isinstance(value, str):
            fixed = storable(value, limit)
            if fixed is not value:
                changes[name] = fixed
    return changes


def storable(text: str, limit: int = 256) -> str:
    r"""`text` as any database, JSON encoder and Prometheus label can hold it, at most `limit` characters.

    Lone surrogates (which UTF-8 cannot encode) and other undecodable code points become their
    backslash escapes, NUL becomes `\x00` (PostgreSQL text refuses it), and a longer text is cut
    and ends with `…`.

    Examples:
        >>> storable("\ud800 ok")
        '\\ud800 ok'
        >>> storable("x" * 10, limit=4)
        'xxx…'
    """
    if not text.isascii():
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    if "\x00" in text:
        text = text.replace("\x00", "\\x00")
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text


@dataclass(slots=True)
class TraceRetrieval:
    """What a RAG route retrieved for one request: versions, chunks with scores, and the time of each step.

    `chunks` hold `chunk_id`, `record_id`, `source` (URI), `score` and `rank`, best first;
    `generation_ms` is the backend's time, apart from retrieval's. `failed` marks a retrieval that
    failed (the request was answered 503).
    """

    index_version: str | None
    prompt_version: str | None
    chunks: list[dict[str, Any]]
    embed_ms: float
    search_ms: float
    render_ms: float
    generation_ms: float | None = None
    failed: bool = False

    @property
    def retrieval_ms(self) -> float:
        """Embedding, search and rendering together."""
        return self.embed_ms + self.search_ms + self.render_ms

    def to_row(self, trace_id: str) -> dict[str, Any]:
        """The `trace_retrievals` row."""
        return {**asdict(self), "trace_id": trace_id, "chunks": canonical_json(self.chunks), "failed": int(self.failed)}


@dataclass(slots=True)
class Trace:
    """One served request; `retrieval` is set for requests to a RAG route."""

    id: str
    at: datetime
    deployment: str
    operation: str
    status: int
    latency_ms: float
    model_version: str | None = None
    prompt_version: str | None = None
    key_id: str | None = None
    error: str | None = None
    tokens_in: int = 0
    tokens_out: int = 0
    ttft_ms: float | None = None
    cost: float = 0.0
    cache_hit: bool = False
    flags: list[str] = field(default_factory=list)
    retrieval: TraceRetrieval | None = None
    # What was asked ({"messages": [...]} or {"prompt": ...}) and answered, when the deployment records
    # content; stored in `trace_contents`, not in the `traces` row.
    request: dict[str, Any] | None = None
    response: str | None = None
    # Keyed hashes of the personal values the request carried (never the values): `trace_subjects`, for erasure.
    subjects: list[str] = field(default_factory=list)

    @property
    def node(self) -> str:
        """The trace's lineage node id."""
        return f"trace:{self.id}"

    def storable(self) -> Trace:
        """This trace with every string made storable (see `storable`) and cut to its column's length."""
        changes = storable_changes(self, _LIMITS)
        flags = [storable(str(f), _FLAG_LENGTH) for f in self.flags[:_MAX_FLAGS]]
        if flags != self.flags:
            changes["flags"] = flags
        return replace(self, **changes) if changes else self

    def to_row(self) -> dict[str, Any]:
        """The `traces` row."""
        row = asdict(self)
        del row["retrieval"], row["request"], row["response"], row["subjects"]  # their own tables
        row["cache_hit"] = int(self.cache_hit)
        row["flags"] = canonical_json(self.flags)
        return row

    def content_row(self) -> dict[str, Any] | None:
        """The `trace_contents` row (each text made storable and cut to `CONTENT_LIMIT`), or None without content."""
        if self.request is None:
            return None
        response = None if self.response is None else storable(self.response, CONTENT_LIMIT)
        return {"trace_id": self.id, "request": canonical_json(_bounded(self.request)), "response": response}

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {**asdict(self), "at": format_time(self.at)}


def trace_from_json(data: dict[str, Any]) -> Trace:
    """The trace `Trace.to_json` made (as spill files hold them)."""
    retrieval = data.get("retrieval")
    return Trace(
        **{
            **data,
            "at": datetime.fromisoformat(data["at"].replace("Z", "+00:00")),
            "retrieval": TraceRetrieval(**retrieval) if isinstance(retrieval, dict) else None,
        }
    )


def _from_row(row: Any) -> Trace:
    values = dict(row._mapping)
    values["cache_hit"] = bool(values["cache_hit"])
    values["flags"] = json.loads(values["flags"])
    return Trace(**values)


def trace_ids_of(conn: Connection, subjects: Sequence[str]) -> list[str]:
    """The ids of the traces that carried any of these subject keys."""
    found: set[str] = set()
    for start in range(0, len(subjects), 500):
        part = list(subjects[start : start + 500])
        found.update(conn.scalars(select(trace_subjects.c.trace_id).where(trace_subjects.c.subject.in_(part))))
    return sorted(found)


def delete_traces(conn: Connection, ids: Sequence[str]) -> int:
    """Delete traces with their subject, content and retrieval rows and lineage edges, in the caller's transaction."""
    deleted = 0
    for start in range(0, len(ids), 500):
        part = list(ids[start : start + 500])
        conn.execute(delete(trace_subjects).where(trace_subjects.c.trace_id.in_(part)))
        # What was asked and answered, and what was retrieved (with the cited record ids), go with the trace.
        conn.execute(delete(trace_contents).where(trace_contents.c.trace_id.in_(part)))
        conn.execute(delete(trace_retrievals).where(trace_retrievals.c.trace_id.in_(part)))
        nodes = [f"trace:{i}" for i in part]
        conn.execute(delete(lineage_edges).where(lineage_edges.c.downstream.in_(nodes)))
        conn.execute(delete(lineage_edges).where(lineage_edges.c.upstream.in_(nodes)))
        conn.execute(delete(lineage_nodes).where(lineage_nodes.c.id.in_(nodes)))
        deleted += conn.execute(delete(traces).where(traces.c.id.in_(part))).rowcount
    return deleted


def expired_traces(conn: Connection, deployment: str, before: datetime) -> list[str]:
    """The ids of a deployment's traces older than `before`."""
    return list(conn.scalars(select(traces.c.id).where(traces.c.deployment == deployment, traces.c.at < before)))


def list_traces(
    store: Store, *, deployment: str | None = None, errors_only: bool = False, limit: int = 50, after: str | None = None
) -> list[Trace]:
    """The newest traces first, optionally of one deployment or only failed ones.

    `after` is the last trace id of the previous page: the next page starts below it (keyset paging, so a page
    deep in a million traces costs what the first does).
    """
    query = select(traces).order_by(traces.c.at.desc(), traces.c.id.desc()).limit(limit)
    if after is not None:
        at = select(traces.c.at).where(traces.c.id == after).scalar_subquery()
        # `at <= cursor` first: a range the (at) index answers; the OR only breaks ties within it.
        query = query.where(traces.c.at <= at, or_(traces.c.at < at, traces.c.id < after))
    if deployment is not None:
        query = query.where(traces.c.deployment == deployment)
    if errors_only:
        query = query.where(traces.c.status >= 400)
    with store.db.read() as conn:
        return [_from_row(row) for row in conn.execute(query)]


def get_trace(store: Store, trace_id: str) -> Trace:
    """One trace by id.

    Raises:
        NotFoundError: No trace has this id.
    """
    with store.db.read() as conn:
        row = conn.execute(select(traces).where(traces.c.id == trace_id)).first()
        found = conn.execute(select(trace_retrievals).where(trace_retrievals.c.trace_id == trace_id)).first()
    if row is None:
        raise NotFoundError(f"no trace with id {trace_id!r}", hint="see `keel trace list`")
    trace = _from_row(row)
    if found is not None:
        values = dict(found._mapping)
        del values["trace_id"]
        trace.retrieval = TraceRetrieval(
            **{**values, "chunks": json.loads(values["chunks"]), "failed": bool(values["failed"])}
        )
    return trace


def traces_citing(store: Store, record_id: str, *, limit: int = 50) -> list[Trace]:
    """The newest traces whose answer cited a chunk of record `record_id` (edges `record:<id>` → `trace:<id>`)."""
    with store.db.read() as conn:
        nodes = conn.scalars(
            select(lineage_edges.c.downstream).where(
                lineage_edges.c.upstream == f"record:{record_id}", lineage_edges.c.kind == "cited"
            )
        ).all()
        ids = [n.removeprefix("trace:") for n in nodes]
        query = select(traces).where(traces.c.id.in_(ids)).order_by(traces.c.at.desc(), traces.c.id.desc()).limit(limit)
        return [_from_row(row) for row in conn.execute(query)] if ids else []


@dataclass(frozen=True, slots=True)
class TraceContent:
    """What one served request asked (`messages` for chat, else `prompt`) and the text it was answered."""

    trace_id: str
    messages: list[dict[str, Any]] | None
    prompt: str | None
    response: str | None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


def _content(row: Any) -> TraceContent:
    request = json.loads(row.request)
    messages = request.get("messages") if isinstance(request.get("messages"), list) else None
    prompt = request.get("prompt") if isinstance(request.get("prompt"), str) else None
    return TraceContent(row.trace_id, messages, prompt, row.response)


def get_trace_contents(store: Store, trace_ids: list[str]) -> dict[str, TraceContent]:
    """The recorded content of each trace that has one, by trace id (deployments may record none)."""
    found: dict[str, TraceContent] = {}
    with store.db.read() as conn:
        for start in range(0, len(trace_ids), 500):  # bounded IN lists
            query = select(trace_contents).where(trace_contents.c.trace_id.in_(trace_ids[start : start + 500]))
            found.update((row.trace_id, _content(row)) for row in conn.execute(query))
    return found
