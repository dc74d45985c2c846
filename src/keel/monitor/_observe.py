"""What drift compares: one observation per request, read from traces or from a dataset version.

Traces give counts, flags and status; `trace_contents` gives what was asked and answered, for
deployments that record content (the request JSON: drift reads its last user message); feedback
scores come from the `feedback` table (source `judge` apart). Both tables are written by the
feedback side of the monitor; a workspace without them (an older schema) has no text or feedback
features, and drift says so instead of failing. A dataset version
gives prompts only, from its `prompt`, `messages` or `text` column.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, inspect, select, text

from keel.core.errors import InputError
from keel.data import get_version, load_version
from keel.store import Store
from keel.store.schema import UTCDateTime, trace_contents, traces

__all__ = ["Observation", "dataset_observations", "feedback_scores", "trace_observations"]


@dataclass(slots=True)
class Observation:
    """One request as drift sees it; a field is None where its source does not know it."""

    prompt: str | None = None
    answer: str | None = None
    tokens_in: int | None = None
    tokens_out: int | None = None
    status: int | None = None
    latency_ms: float | None = None
    cost: float = 0.0
    cache_hit: bool = False
    model_version: str | None = None
    flags: list[str] = field(default_factory=list)
    feedback: float | None = None
    judge: float | None = None
    retrieval_score: float | None = None
    trace_id: str | None = None


def trace_observations(
    store: Store,
    deployment: str,
    since: datetime,
    until: datetime,
    *,
    model_version: str | None = None,
    limit: int | None = None,
    contents: int | None = None,
) -> list[Observation]:
    """The requests `deployment` served in `[since, until)`, oldest first, with texts and feedback where kept.

    Args:
        store: The workspace store.
        deployment: The deployment's name.
        since: Start of the window (inclusive).
        until: End of the window (exclusive).
        model_version: Only requests this version answered (a canary, say).
        limit: Read at most this many (the newest are dropped).
        contents: Read the recorded request and answer of at most this many traces, a seeded random
            sample (decoding every request's JSON is most of the cost over 100,000 traces); all when None.

    Returns:
        The observations.
    """
    query = (
        select(
            traces.c.id,
            traces.c.status,
            traces.c.latency_ms,
            traces.c.cost,
            traces.c.cache_hit,
            traces.c.tokens_in,
            traces.c.tokens_out,
            traces.c.flags,
            traces.c.model_version,
        )
        .where(traces.c.deployment == deployment, traces.c.at >= since, traces.c.at < until)
        .order_by(traces.c.at, traces.c.id)
    )
    if model_version is not None:
        query = query.where(traces.c.model_version == model_version)
    if limit is not None:
        query = query.limit(limit)
    with store.db.read() as conn:
        rows = conn.execute(query).all()
        ids = [r.id for r in rows]
        if contents is not None and len(ids) > contents:
            ids = random.Random(0).sample(ids, contents)
        texts = _contents(conn, ids)
        scores = feedback_scores(conn, deployment, since, until)
    out = []
    for r in rows:
        human, judge = scores.get(r.id, (None, None))
        prompt, answer = texts.get(r.id, (None, None))
        out.append(
            Observation(
                prompt=prompt,
                answer=answer,
                tokens_in=int(r.tokens_in),
                tokens_out=int(r.tokens_out),
                status=int(r.status),
                latency_ms=float(r.latency_ms),
                cost=float(r.cost),
                cache_hit=bool(r.cache_hit),
                model_version=r.model_version,
                flags=json.loads(r.flags) if r.flags != "[]" else [],
                feedback=human,
                judge=judge,
                trace_id=r.id,
            )
        )
    return out


def _contents(conn: Connection, ids: list[str]) -> dict[str, tuple[Any, Any]]:
    """(last user message, answer) of these traces from `trace_contents`; {} without that table."""
    if not ids or not inspect(conn).has_table("trace_contents"):
        return {}
    table = trace_contents
    rows: list[Any] = []
    for start in range(0, len(ids), 1000):  # bounded IN lists: SQLite and PostgreSQL limit parameters
        chunk = ids[start : start + 1000]
        rows += conn.execute(
            select(table.c.trace_id, table.c.request, table.c.response).where(table.c.trace_id.in_(chunk))
        ).all()
    out: dict[str, tuple[Any, Any]] = {}
    for row in rows:
        try:
            request = json.loads(row.request)
        except (TypeError, json.JSONDecodeError):
            request = None
        prompt = None
        if isinstance(request, dict):
            prompt = _last_user(request["messages"]) if "messages" in request else request.get("prompt")
        out[row.trace_id] = (prompt if isinstance(prompt, str) else None, row.response)
    return out


def feedback_scores(
    conn: Connection, deployment: str, since: datetime, until: datetime
) -> dict[str, tuple[float | None, float | None]]:
    """Mean feedback score per trace of the window, as (from people, from judges); {} without a feedback table.

    Reads the `feedback` table (columns `trace_id`, `score`, and `source` when present: `judge`
    scores are kept apart) if the workspace has it: feedback storage is built separately, and
    drift and the rollout guard `feedback>=…` only need these two or three columns.
    """
    inspector = inspect(conn)
    if not inspector.has_table("feedback"):
        return {}
    columns = {c["name"] for c in inspector.get_columns("feedback")}
    if not {"trace_id", "score"} <= columns:
        return {}
    source = "f.source" if "source" in columns else "NULL"
    # Table and columns are checked above; values are bound parameters.
    query = text(
        f"SELECT f.trace_id AS trace_id, f.score AS score, {source} AS source FROM feedback f "  # noqa: S608
        "JOIN traces t ON t.id = f.trace_id "
        "WHERE t.deployment = :deployment AND t.at >= :since AND t.at < :until AND f.score IS NOT NULL"
    ).bindparams(deployment=deployment, since=_bind_time(conn, since), until=_bind_time(conn, until))
    sums: dict[str, list[float]] = {}
    for row in conn.execute(query):
        totals = sums.setdefault(row.trace_id, [0.0, 0.0, 0.0, 0.0])
        offset = 2 if row.source == "judge" else 0
        totals[offset] += float(row.score)
        totals[offset + 1] += 1
    return {trace: (t[0] / t[1] if t[1] else None, t[2] / t[3] if t[3] else None) for trace, t in sums.items()}


def _bind_time(conn: Connection, when: datetime) -> Any:
    # A textual query bypasses UTCDateTime: bind what that type would (naive UTC on SQLite).
    return UTCDateTime().process_bind_param(when, conn.dialect)


def dataset_observations(store: Store, ref: str, *, limit: int | None = None) -> list[Observation]:
    """Observations of a dataset version's prompts: its `prompt`, last user `messages` turn, or `text`.

    Raises:
        InputError: The version has none of those columns.
    """
    version = get_version(store, ref)
    table = load_version(store, version)
    column = next((c for c in ("prompt", "messages", "text") if c in table.column_names), None)
    if column is None:
        raise InputError(
            f"expected dataset {ref} to have a `prompt`, `messages` or `text` column to compare prompts with; "
            f"found {', '.join(table.column_names)}",
            hint="pass --baseline-window to compare against earlier traffic instead",
        )
    values = table.column(column).to_pylist()
    if limit is not None:
        values = values[:limit]
    out = []
    for value in values:
        prompt = _last_user(value) if column == "messages" else value
        if isinstance(prompt, str):
            out.append(Observation(prompt=prompt))
    return out


def _last_user(messages: Any) -> str | None:
    if isinstance(messages, str):
        try:
            messages = json.loads(messages)
        except json.JSONDecodeError:
            return None
    if not isinstance(messages, list):
        return None
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user" and isinstance(message.get("content"), str):
            return str(message["content"])
    return None
