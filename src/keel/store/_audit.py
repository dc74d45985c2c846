"""The audit log: one append function for every mutating operation, chained by sha256.

Each event hashes its sequence number, time, actor id, action, object id, the sha256 of its
details, and the previous event's hash. Details are hashed by digest, so erasing personal data
from them later (`redact_details`) leaves the chain verifiable. Appends lock the one-row
`audit_head` table, so concurrent writers in many processes neither fork nor gap the chain,
and the head also reveals a cut-off tail.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select, update

from keel.core.clock import format_time, system_clock
from keel.core.errors import InputError, NotFoundError
from keel.core.ids import canonical_json, sha256_hex
from keel.store._db import insert_for
from keel.store.schema import audit_events, audit_head

__all__ = ["AuditEvent", "VerifyReport", "events", "record", "redact_details", "verify"]

GENESIS = "0" * 64
_HEAD_ID = 1
_VERIFY_BATCH = 5_000


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One recorded operation. `details` is None once redacted."""

    seq: int
    at: datetime
    actor: str
    action: str
    object_id: str
    details: dict[str, Any] | None
    details_sha256: str
    prev_hash: str
    hash: str
    redacted_at: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict, times in ISO 8601 UTC."""
        return {
            "seq": self.seq,
            "at": format_time(self.at),
            "actor": self.actor,
            "action": self.action,
            "object": self.object_id,
            "details": self.details,
            "redacted_at": format_time(self.redacted_at) if self.redacted_at else None,
            "prev_hash": self.prev_hash,
            "hash": self.hash,
        }


def _event_hash(seq: int, at: datetime, actor: str, action: str, object_id: str, details_sha: str, prev: str) -> str:
    payload = {
        "seq": seq,
        "at": format_time(at),
        "actor": actor,
        "action": action,
        "object": object_id,
        "details_sha256": details_sha,
        "prev": prev,
    }
    return sha256_hex(canonical_json(payload))


def record(
    conn: Connection,
    *,
    actor: str,
    action: str,
    object_id: str,
    details: dict[str, Any] | None = None,
    at: datetime | None = None,
) -> AuditEvent:
    """Append one event to the audit log, inside the caller's write transaction.

    Call it in the same transaction as the change it records, so both commit or neither does.
    Reference people and objects by id; keep personal data out of `actor` and `object_id`.

    Args:
        conn: A connection inside `Database.write()`.
        actor: The principal acting, e.g. `local:alice` or an API key id.
        action: A dotted verb such as `dataset.commit` or `model.alias`.
        object_id: The lineage node id (or other id) of the object acted on.
        details: JSON-serialisable parameters of the operation.
        at: The event time; now by default.

    Returns:
        The stored event, with its sequence number and hash.

    Examples:
        >>> with db.write() as conn:  # doctest: +SKIP
        ...     record(conn, actor="local:alice", action="model.alias", object_id="model:chat",
        ...            details={"alias": "production", "version": 3})
    """
    if not action or not actor or not object_id:
        raise InputError(f"an audit event needs an actor, action and object; got {actor!r}, {action!r}, {object_id!r}")
    body = canonical_json(details or {})
    details_sha = sha256_hex(body)
    moment = at or system_clock()
    # Locking the head row serialises appenders on PostgreSQL; on SQLite the write transaction
    # already holds the database's write lock (BEGIN IMMEDIATE). The row is created first if
    # missing, so the very first appenders also have a row to queue on.
    conn.execute(insert_for(conn, audit_head).values(id=_HEAD_ID, seq=0, hash=GENESIS).on_conflict_do_nothing())
    head = conn.execute(
        select(audit_head.c.seq, audit_head.c.hash).where(audit_head.c.id == _HEAD_ID).with_for_update()
    ).one()
    seq, prev = head.seq + 1, head.hash
    digest = _event_hash(seq, moment, actor, action, object_id, details_sha, prev)
    conn.execute(
        audit_events.insert().values(
            seq=seq,
            at=moment,
            actor=actor,
            action=action,
            object_id=object_id,
            details=body,
            details_sha256=details_sha,
            prev_hash=prev,
            hash=digest,
        )
    )
    conn.execute(update(audit_head).where(audit_head.c.id == _HEAD_ID).values(seq=seq, hash=digest))
    return AuditEvent(seq, moment, actor, action, object_id, details or {}, details_sha, prev, digest)


def _from_row(row: Any) -> AuditEvent:
    return AuditEvent(
        seq=row.seq,
        at=row.at,
        actor=row.actor,
        action=row.action,
        object_id=row.object_id,
        details=json.loads(row.details) if row.details is not None else None,
        details_sha256=row.details_sha256,
        prev_hash=row.prev_hash,
        hash=row.hash,
        redacted_at=row.redacted_at,
    )


def events(
    conn: Connection,
    *,
    action: str | None = None,
    object_id: str | None = None,
    actor: str | None = None,
    after_seq: int | None = None,
    limit: int | None = 100,
    newest_first: bool = True,
) -> list[AuditEvent]:
    """Events matching every given filter, newest first by default."""
    query = select(audit_events)
    if action is not None:
        query = query.where(audit_events.c.action == action)
    if object_id is not None:
        query = query.where(audit_events.c.object_id == object_id)
    if actor is not None:
        query = query.where(audit_events.c.actor == actor)
    if after_seq is not None:
        query = query.where(audit_events.c.seq > after_seq)
    query = query.order_by(audit_events.c.seq.desc() if newest_first else audit_events.c.seq)
    if limit is not None:
        query = query.limit(limit)
    return [_from_row(row) for row in conn.execute(query)]


def redact_details(conn: Connection, seq: int, *, at: datetime | None = None) -> None:
    """Erase an event's details (e.g. for a data-subject request) without breaking the chain.

    The details' digest stays in the chain; `verify` reports the event as redacted, not altered.
    """
    done = conn.execute(
        update(audit_events).where(audit_events.c.seq == seq).values(details=None, redacted_at=at or system_clock())
    )
    if done.rowcount == 0:
        raise NotFoundError(f"no audit event with sequence number {seq}")


@dataclass(slots=True)
class VerifyReport:
    """The outcome of `verify`: `ok`, how many events were checked, and the first bad one if any."""

    ok: bool
    checked: int
    redacted: int = 0
    first_bad_seq: int | None = None
    reason: str | None = None
    head_seq: int | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "ok": self.ok,
            "checked": self.checked,
            "redacted": self.redacted,
            "first_bad_seq": self.first_bad_seq,
            "reason": self.reason,
            "head_seq": self.head_seq,
        }


def _stream(conn: Connection) -> Iterator[Any]:
    last = 0
    while True:
        rows = conn.execute(
            select(audit_events).where(audit_events.c.seq > last).order_by(audit_events.c.seq).limit(_VERIFY_BATCH)
        ).all()
        if not rows:
            return
        yield from rows
        last = rows[-1].seq


def _check_event(row: Any, expected_seq: int, prev: str) -> str | None:
    if row.seq != expected_seq:
        return f"expected sequence number {expected_seq} next, found {row.seq}: events removed or renumbered"
    if row.prev_hash != prev:
        return "its prev_hash does not match the previous event's hash: events removed, inserted or reordered"
    if row.details is not None and sha256_hex(row.details) != row.details_sha256:
        return "its details were altered (they no longer match their recorded digest)"
    if (
        _event_hash(row.seq, row.at, row.actor, row.action, row.object_id, row.details_sha256, row.prev_hash)
        != row.hash
    ):
        return "its recorded fields (time, actor, action, object or digests) were altered"
    return None


def verify(conn: Connection) -> VerifyReport:
    """Re-hash the whole chain and report the first event that was altered, removed or reordered.

    Runs in batches, so memory stays flat however long the log is.
    """
    head = conn.execute(select(audit_head.c.seq, audit_head.c.hash).where(audit_head.c.id == _HEAD_ID)).first()
    report = VerifyReport(ok=True, checked=0, head_seq=head.seq if head else None)
    prev, expected = GENESIS, 1
    for row in _stream(conn):
        problem = _check_event(row, expected, prev)
        if problem:
            report.ok, report.first_bad_seq, report.reason = False, expected if row.seq > expected else row.seq, problem
            return report
        report.checked += 1
        report.redacted += row.redacted_at is not None
        prev, expected = row.hash, expected + 1
    last_seq = expected - 1
    if head is None and last_seq:
        report.ok, report.first_bad_seq, report.reason = False, 1, "the chain's head record is missing"
    elif head is not None and (head.seq != last_seq or head.hash != prev):
        report.ok = False
        report.first_bad_seq = last_seq + 1 if head.seq > last_seq else head.seq
        report.reason = f"the chain ends at {last_seq} but its head records {head.seq}: events after it were removed"
    return report
