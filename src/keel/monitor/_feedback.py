"""Feedback on served answers: a score, a label, a comment, a corrected answer; from people or judges.

`make_feedback` validates what any face received (HTTP, CLI, Python) and says what was wrong;
`record_feedback` writes one at once (CLI, scripts); the gateway queues many through
`FeedbackWriter`, the trace writer's design. Each row is linked `trace:<id> → feedback:<id>` in
the lineage graph. `feedback_scores` is the stable read for summaries, drift and guarded rollouts.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import select

from keel.core.clock import format_time
from keel.core.echo import shown
from keel.core.errors import InputError, NotFoundError
from keel.core.ids import canonical_json, new_ulid
from keel.govern import require
from keel.monitor._traces import CONTENT_LIMIT, storable, storable_changes
from keel.monitor._writer import BatchWriter
from keel.store import Edge, Store, add_edges
from keel.store.schema import feedback, traces

__all__ = [
    "SOURCES",
    "Feedback",
    "FeedbackWriter",
    "feedback_scores",
    "list_feedback",
    "make_feedback",
    "parse_score",
    "record_feedback",
    "write_feedback",
]

Source = Literal["human", "judge"]
SOURCES: tuple[str, ...] = ("human", "judge")
_THUMBS = {"up": 1.0, "down": 0.0, "thumbs_up": 1.0, "thumbs_down": 0.0, "👍": 1.0, "👎": 0.0}
_ULID_CHARS = frozenset("0123456789ABCDEFGHJKMNPQRSTVWXYZ")
_LABEL_LENGTH, _ACTOR_LENGTH = 64, 255
# Column lengths of `feedback` (store/schema.py), and the bound of its texts.
_LIMITS = {"comment": CONTENT_LIMIT, "correction": CONTENT_LIMIT, "deployment": 128, "model_version": 160,
           "actor": _ACTOR_LENGTH, "label": _LABEL_LENGTH}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Feedback:
    """One piece of feedback on one served answer (its trace)."""

    id: str
    trace_id: str
    at: datetime
    label: str = "rating"
    score: float | None = None
    comment: str | None = None
    correction: str | None = None
    source: str = "human"
    actor: str = "-"
    deployment: str | None = None
    model_version: str | None = None
    details: dict[str, Any] | None = None

    @property
    def node(self) -> str:
        """The feedback's lineage node id."""
        return f"feedback:{self.id}"

    def storable(self) -> Feedback:
        """This feedback with every text made storable (the gateway's strings come from requests); itself if all are."""
        changes = storable_changes(self, _LIMITS)
        return replace(self, **changes) if changes else self

    def to_row(self) -> dict[str, Any]:
        """The `feedback` row."""
        # Spelled out: dataclasses.asdict deep-copies; it cost 21 µs of the writer's 71–82 µs per feedback (now 46–54).
        return {"id": self.id, "trace_id": self.trace_id, "at": self.at, "deployment": self.deployment,
                "model_version": self.model_version, "label": self.label, "score": self.score,
                "comment": self.comment, "correction": self.correction, "source": self.source, "actor": self.actor,
                "details": None if self.details is None else canonical_json(self.details)}  # fmt: skip

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {**asdict(self), "at": format_time(self.at)}


def _from_json(data: dict[str, Any]) -> Feedback:
    return Feedback(**{**data, "at": datetime.fromisoformat(data["at"].replace("Z", "+00:00"))})


def _from_row(row: Any) -> Feedback:
    values = dict(row._mapping)
    values["details"] = None if values["details"] is None else json.loads(values["details"])
    return Feedback(**values)


def parse_score(value: object) -> float | None:
    """A score from 0 to 1: a number, a boolean, or thumbs `up`/`down`; None stays None.

    Raises:
        InputError: Anything else, or a number outside 0–1.

    Examples:
        >>> parse_score("up"), parse_score(0.25), parse_score(False)
        (1.0, 0.25, 0.0)
    """
    if value is None:
        return None
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        key = value.strip().lower()
        if key in _THUMBS:
            return _THUMBS[key]
        try:
            number = float(key)
        except ValueError:
            raise InputError(
                f"expected `score` to be a number from 0 to 1 or thumbs 'up'/'down'; got {shown(value, 40)}"
            ) from None
        value = number
    if not isinstance(value, int | float) or not math.isfinite(value) or not 0 <= value <= 1:
        raise InputError(f"expected `score` to be a number from 0 to 1 or thumbs 'up'/'down'; got {shown(value)}")
    return float(value)


def _text(value: object, name: str, limit: int) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InputError(f"expected `{name}` to be a string; got {type(value).__name__}")
    if len(value) > limit:
        raise InputError(f"expected `{name}` of at most {limit} characters; got {len(value)}")
    return value


def check_trace_id(value: object) -> str:
    """A trace id as the gateway issues them (a 26-character ULID), or InputError."""
    if not isinstance(value, str) or len(value) != 26 or not set(value.upper()) <= _ULID_CHARS:
        shown = storable(value, 40) if isinstance(value, str) else type(value).__name__
        raise InputError(
            f"expected `trace_id` to be a 26-character trace id (from the answer's `trace_id` field or its "
            f"x-keel-trace-id header); got {shown!r}"
        )
    return value.upper()


def make_feedback(
    trace_id: object,
    *,
    score: object = None,
    label: object = "rating",
    comment: object = None,
    correction: object = None,
    source: object = "human",
    actor: str = "-",
    at: datetime,
    details: dict[str, Any] | None = None,
) -> Feedback:
    """Validated feedback, not yet tied to a deployment (`storable()` bounds its texts); every face builds it here.

    Raises:
        InputError: A malformed trace id, score, label or source; texts too long or not strings;
            no score, comment or correction at all.
    """
    trace = check_trace_id(trace_id)
    value = parse_score(score)
    if label is None:
        label = "rating"
    if not isinstance(label, str) or not label.strip() or len(label) > _LABEL_LENGTH:
        raise InputError(f"expected `label` to be a name of 1 to {_LABEL_LENGTH} characters; got {label!r}"[:200])
    if source not in SOURCES:
        raise InputError(f"expected `source` to be one of {list(SOURCES)}; got {source!r}"[:200])
    note = _text(comment, "comment", CONTENT_LIMIT)
    fixed = _text(correction, "correction", CONTENT_LIMIT)
    if value is None and not note and not fixed:
        raise InputError("expected at least one of `score`, `comment` or `correction`; got none")
    return Feedback(
        id=new_ulid(),
        trace_id=trace,
        at=at,
        label=label.strip(),
        score=value,
        comment=note,
        correction=fixed,
        source=str(source),
        actor=actor,
        details=details,
    )


def write_feedback(conn: Any, batch: list[Feedback]) -> None:
    """Insert feedback rows and their `trace → feedback` lineage edges (in the caller's transaction)."""
    if not batch:
        return
    conn.execute(feedback.insert(), [f.to_row() for f in batch])
    add_edges(conn, [Edge(f"trace:{f.trace_id}", f.node, "rated") for f in batch], at=batch[-1].at)


def record_feedback(
    store: Store,
    trace_id: str,
    *,
    score: object = None,
    label: str = "rating",
    comment: str | None = None,
    correction: str | None = None,
    source: Source = "human",
    actor: str | None = None,
    details: dict[str, Any] | None = None,
) -> Feedback:
    """Record feedback on a served answer now (one transaction); the gateway batches instead.

    Args:
        store: The workspace store.
        trace_id: The answer's trace id (its `trace_id` field or `x-keel-trace-id` header).
        score: 0–1, a boolean, or thumbs `up`/`down`.
        label: What is scored (`rating`, `helpfulness`, `answer_relevance`, …).
        comment: Free text.
        correction: The answer that should have been given (exported as a chat pair).
        source: `human` or `judge`.
        actor: Who gave it; the workspace's actor by default.
        details: A judge's evidence.

    Returns:
        The stored feedback, with the trace's deployment and model version.

    Raises:
        InputError: Malformed input (see `make_feedback`).
        NotFoundError: No trace has this id.
        PermissionDeniedError: The acting principal may not `feedback.write` on the trace's deployment.

    Examples:
        >>> record_feedback(store, "01JF…", score="down", correction="Returns take 30 days.")  # doctest: +SKIP
    """
    made = make_feedback(trace_id, score=score, label=label, comment=comment, correction=correction,
                         source=source, actor=actor or store.actor, at=store.clock(), details=details)  # fmt: skip
    with store.db.read() as conn:
        deployment = conn.scalar(select(traces.c.deployment).where(traces.c.id == made.trace_id))
    require(store, "feedback.write", f"deployment:{deployment or '-'}")
    with store.db.write() as conn:
        row = conn.execute(
            select(traces.c.deployment, traces.c.model_version).where(traces.c.id == made.trace_id)
        ).first()
        if row is None:
            raise NotFoundError(f"no trace with id {made.trace_id!r}", hint="see `keel trace list`")
        made = replace(made, deployment=row.deployment, model_version=row.model_version).storable()
        write_feedback(conn, [made])
    return made


def list_feedback(
    store: Store,
    *,
    trace_id: str | None = None,
    deployment: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    source: str | None = None,
    limit: int | None = 50,
    trace_ids: Sequence[str] | None = None,
) -> list[Feedback]:
    """Feedback, newest first, optionally of one trace (or any of `trace_ids`) or deployment, in a window, by source."""
    query = select(feedback).order_by(feedback.c.at.desc(), feedback.c.id.desc())
    if trace_id is not None:
        query = query.where(feedback.c.trace_id == trace_id.upper())
    if trace_ids is not None:
        query = query.where(feedback.c.trace_id.in_([t.upper() for t in trace_ids]))
    if deployment is not None:
        query = query.where(feedback.c.deployment == deployment)
    if since is not None:
        query = query.where(feedback.c.at >= since)
    if until is not None:
        query = query.where(feedback.c.at < until)
    if source is not None:
        query = query.where(feedback.c.source == source)
    if limit is not None:
        query = query.limit(limit)
    with store.db.read() as conn:
        return [_from_row(row) for row in conn.execute(query)]


def feedback_scores(
    store: Store,
    deployment: str,
    *,
    model_version: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    label: str | None = None,
    source: str | None = None,
) -> list[float]:
    """The scores (0–1) given to one deployment's answers in `[since, until)`, oldest first.

    This signature is stable: summaries, drift and guarded rollouts read feedback through it.

    Args:
        store: The workspace store.
        deployment: The deployment.
        model_version: Only answers of this route's model version (`NAME@vN`).
        since: Feedback given at or after this time.
        until: Feedback given before this time.
        label: Only this label (`rating`, `answer_relevance`, …).
        source: Only `human` or only `judge` feedback.

    Returns:
        The non-null scores.
    """
    query = (
        select(feedback.c.score)
        .where(feedback.c.deployment == deployment, feedback.c.score.is_not(None))
        .order_by(feedback.c.at, feedback.c.id)
    )
    for column, value in ((feedback.c.model_version, model_version), (feedback.c.label, label),
                          (feedback.c.source, source)):  # fmt: skip
        if value is not None:
            query = query.where(column == value)
    if since is not None:
        query = query.where(feedback.c.at >= since)
    if until is not None:
        query = query.where(feedback.c.at < until)
    with store.db.read() as conn:
        return [float(v) for v in conn.scalars(query)]


class FeedbackWriter(BatchWriter[Feedback]):
    """Writes feedback in batches, as `TraceWriter` writes traces (spills under `.keel/feedback/`)."""

    noun = "feedback"
    folder_name = "feedback"

    def _already_stored(self, item: Feedback) -> bool:
        with self._store.db.read() as conn:
            return conn.scalar(select(feedback.c.id).where(feedback.c.id == item.id)) is not None

    def _load(self, data: dict[str, Any]) -> Feedback:
        return _from_json(data)

    def write(self, batch: list[Feedback]) -> None:
        """Insert feedback and its lineage edges in one transaction (the writer task calls this)."""
        if not batch:
            return
        with self._transaction() as conn:
            write_feedback(conn, batch)
        self.written += len(batch)
