"""The audit log: one append function for every mutating operation, chained by sha256 and keyed by HMAC.

Each event hashes its sequence number, time, actor id, action, object id, the sha256 of its
details, and the previous event's hash. Details are hashed by digest, so erasing personal data
from them later (`redact_details`) leaves the chain verifiable. Appends lock the one-row
`audit_head` table, so concurrent writers in many processes neither fork nor gap the chain,
and the head also reveals a cut-off tail.

The sha256 chain alone can be rebuilt by anyone who can write the database, so every event also
carries `mac`, an HMAC of its hash under the audit key kept outside the database (`_audit_key`):
`verify(conn, key=...)` refuses a rebuilt chain. Signed checkpoints (`checkpoint`) anchor the head
elsewhere, so a wiped log or a cut tail with its head row moved back is caught against them.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, select, update

from keel.core.clock import format_time, system_clock
from keel.core.errors import InputError, NotFoundError
from keel.core.ids import canonical_json, sha256_hex
from keel.store._audit_key import AuditKey, verify_signature
from keel.store._db import insert_for
from keel.store.schema import audit_events, audit_head

__all__ = [
    "AuditEvent",
    "Checkpoint",
    "VerifyReport",
    "checkpoint",
    "events",
    "record",
    "redact_details",
    "seal_legacy",
    "verify",
]

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
    on_behalf_of: str | None = None
    key_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict, times in ISO 8601 UTC."""
        return {
            "seq": self.seq,
            "at": format_time(self.at),
            "actor": self.actor,
            "on_behalf_of": self.on_behalf_of,
            "action": self.action,
            "object": self.object_id,
            "details": self.details,
            "redacted_at": format_time(self.redacted_at) if self.redacted_at else None,
            "prev_hash": self.prev_hash,
            "hash": self.hash,
            "key_id": self.key_id,
        }


def _event_hash(
    seq: int,
    at: datetime,
    actor: str,
    action: str,
    object_id: str,
    details_sha: str,
    prev: str,
    on_behalf_of: str | None = None,
) -> str:
    payload = {
        "seq": seq,
        "at": format_time(at),
        "actor": actor,
        "action": action,
        "object": object_id,
        "details_sha256": details_sha,
        "prev": prev,
    }
    if on_behalf_of is not None:  # absent from events made before the note existed, so their hashes still hold
        payload["on_behalf_of"] = on_behalf_of
    return sha256_hex(canonical_json(payload))


def record(
    conn: Connection,
    *,
    actor: str,
    action: str,
    object_id: str,
    details: dict[str, Any] | None = None,
    at: datetime | None = None,
    on_behalf_of: str | None = None,
    key: AuditKey | None = None,
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
        on_behalf_of: Whom the actor says it acts for (`KEEL_ACTOR`): a note, hashed into the chain.
        key: The audit key that MACs the event; `Store.audit` always passes it. Without it the event
            has no MAC, and `verify` with the key reports it.

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
    digest = _event_hash(seq, moment, actor, action, object_id, details_sha, prev, on_behalf_of)
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
            on_behalf_of=on_behalf_of,
            mac=key.mac(digest.encode()) if key else None,
            key_id=key.key_id if key else None,
        )
    )
    conn.execute(update(audit_head).where(audit_head.c.id == _HEAD_ID).values(seq=seq, hash=digest))
    return AuditEvent(
        seq,
        moment,
        actor,
        action,
        object_id,
        details or {},
        details_sha,
        prev,
        digest,
        on_behalf_of=on_behalf_of,
        key_id=key.key_id if key else None,
    )


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
        on_behalf_of=row.on_behalf_of,
        key_id=row.key_id,
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
    before_seq: int | None = None,
) -> list[AuditEvent]:
    """Events matching every given filter, newest first by default; `before_seq` pages back (keyset)."""
    query = select(audit_events)
    if action is not None:
        query = query.where(audit_events.c.action == action)
    if object_id is not None:
        query = query.where(audit_events.c.object_id == object_id)
    if actor is not None:
        query = query.where(audit_events.c.actor == actor)
    if after_seq is not None:
        query = query.where(audit_events.c.seq > after_seq)
    if before_seq is not None:
        query = query.where(audit_events.c.seq < before_seq)
    query = query.order_by(audit_events.c.seq.desc() if newest_first else audit_events.c.seq)
    if limit is not None:
        query = query.limit(limit)
    return [_from_row(row) for row in conn.execute(query)]


def redact_details(
    conn: Connection, seq: int, *, actor: str, key: AuditKey | None = None, at: datetime | None = None
) -> AuditEvent:
    """Erase an event's details (e.g. for a data-subject request) without breaking the chain, and record that.

    The details' digest stays in the chain; the redaction itself is an `audit.redact` event naming `seq`, so
    `verify` reports the event as redacted, not altered, while details blanked behind Keel's back (no such
    event, whose MAC only the audit key makes) are reported as tampering.

    Args:
        conn: A connection inside `Database.write()`.
        seq: The event whose details to erase.
        actor: The principal redacting (recorded as the `audit.redact` event's actor).
        key: The audit key that MACs the `audit.redact` event (`Store.audit_key`).
        at: The time of the redaction; now by default.

    Returns:
        The `audit.redact` event.

    Raises:
        NotFoundError: No event has this sequence number.
        InputError: The event is itself an `audit.redact` event (it holds no personal data).
    """
    action = conn.scalar(select(audit_events.c.action).where(audit_events.c.seq == seq))
    if action is None:
        raise NotFoundError(f"no audit event with sequence number {seq}")
    if action == "audit.redact":  # its details name the redacted event: without them `verify` reports tampering
        raise InputError(
            f"audit event {seq} is an audit.redact event: expected an event whose details may be erased; its details "
            "hold only the sequence number of the event it redacted, which `verify` needs"
        )
    moment = at or system_clock()
    conn.execute(update(audit_events).where(audit_events.c.seq == seq).values(details=None, redacted_at=moment))
    return record(
        conn, actor=actor, action="audit.redact", object_id=f"audit:{seq}", details={"seq": seq}, at=moment, key=key
    )


@dataclass(slots=True)
class VerifyReport:
    """The outcome of `verify`: `ok`, how many events were checked, and the first bad one if any.

    `keyed` says whether MACs were checked (a key was given); `checkpoint_seq` is the checkpoint's
    head when one was checked.
    """

    ok: bool
    checked: int
    redacted: int = 0
    first_bad_seq: int | None = None
    reason: str | None = None
    head_seq: int | None = None
    keyed: bool = False
    key_id: str | None = None
    checkpoint_seq: int | None = None

    def fail(self, seq: int | None, reason: str) -> VerifyReport:
        """Record the first problem found (later ones are left out) and return self."""
        if self.ok:
            self.ok, self.first_bad_seq, self.reason = False, seq, reason
        return self

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "ok": self.ok,
            "checked": self.checked,
            "redacted": self.redacted,
            "first_bad_seq": self.first_bad_seq,
            "reason": self.reason,
            "head_seq": self.head_seq,
            "keyed": self.keyed,
            "key_id": self.key_id,
            "checkpoint_seq": self.checkpoint_seq,
        }


def _stream(conn: Connection, last: int = 0) -> Iterator[Any]:
    while True:
        rows = conn.execute(
            select(audit_events).where(audit_events.c.seq > last).order_by(audit_events.c.seq).limit(_VERIFY_BATCH)
        ).all()
        if not rows:
            return
        yield from rows
        last = rows[-1].seq


def _row_hash(row: Any) -> str:
    return _event_hash(
        row.seq, row.at, row.actor, row.action, row.object_id, row.details_sha256, row.prev_hash, row.on_behalf_of
    )


def _check_event(row: Any, expected_seq: int, prev: str, key: AuditKey | None) -> str | None:
    if row.seq != expected_seq:
        return f"expected sequence number {expected_seq} next, found {row.seq}: events removed or renumbered"
    if row.prev_hash != prev:
        return "its prev_hash does not match the previous event's hash: events removed, inserted or reordered"
    if row.details is not None and sha256_hex(row.details) != row.details_sha256:
        return "its details were altered (they no longer match their recorded digest)"
    if _row_hash(row) != row.hash:
        return "its recorded fields (time, actor, action, object or digests) were altered"
    if key is None:
        return None
    if row.mac is None:
        return (
            "it carries no MAC: it was written without the audit key, or its MAC was removed "
            "(a chain rebuilt with the unkeyed hash function looks like this)"
        )
    if row.key_id != key.key_id:
        return (
            f"it was sealed by audit key {row.key_id}, not this workspace's key {key.key_id} "
            "(another KEEL_AUDIT_KEY or .keel/audit.key wrote it, or it was forged)"
        )
    if not hmac.compare_digest(key.mac(row.hash.encode()), row.mac):
        return "its MAC does not match: the event or its hash was rewritten by someone without the audit key"
    return None


def verify(conn: Connection, *, key: AuditKey | None = None, checkpoint: Checkpoint | None = None) -> VerifyReport:
    """Re-hash the whole chain and report the first event that was altered, removed or reordered.

    Runs in batches, so memory stays flat however long the log is.

    Args:
        conn: A read transaction.
        key: The audit key: also check every event's MAC, which a rebuilt chain cannot forge. Without it
            only the sha256 chain is checked, which anyone able to write the database can rebuild.
        checkpoint: A signed head emitted earlier by `checkpoint` and stored elsewhere: the log must
            still hold that event with that hash (so nothing up to it changed, and it was not cut off).

    Returns:
        The report; `first_bad_seq` and `reason` name the first problem.
    """
    head = conn.execute(select(audit_head.c.seq, audit_head.c.hash).where(audit_head.c.id == _HEAD_ID)).first()
    report = VerifyReport(ok=True, checked=0, head_seq=head.seq if head else None, keyed=key is not None)
    report.key_id = key.key_id if key else None
    if checkpoint is not None:
        report.checkpoint_seq = checkpoint.seq
        problem = checkpoint.problem(key)
        if problem:
            return report.fail(checkpoint.seq, problem)
    prev, expected = GENESIS, 1
    unexplained: set[int] = set()  # redacted events no `audit.redact` event has named yet
    for row in _stream(conn):
        problem = _check_event(row, expected, prev, key)
        if problem:
            return report.fail(expected if row.seq > expected else row.seq, problem)
        if checkpoint is not None and row.seq == checkpoint.seq and row.hash != checkpoint.hash:
            return report.fail(row.seq, "it is not the event the checkpoint recorded: the log was rewritten up to it")
        report.checked += 1
        if row.redacted_at is not None or row.details is None:
            report.redacted += 1
            unexplained.add(row.seq)
        if row.action == "audit.redact" and row.details is not None:
            unexplained.discard(json.loads(row.details).get("seq"))
        prev, expected = row.hash, expected + 1
    if unexplained:
        return report.fail(
            min(unexplained),
            "its details were removed without an audit.redact event naming it: blanked outside Keel's redaction",
        )
    last_seq = expected - 1
    if checkpoint is not None and last_seq < checkpoint.seq:
        gone = "the log was wiped" if last_seq == 0 else f"events {last_seq + 1}..{checkpoint.seq} were cut off"
        return report.fail(
            last_seq + 1, f"the checkpoint records event {checkpoint.seq} but the log ends at {last_seq}: {gone}"
        )
    if head is None and last_seq:
        report.fail(1, "the chain's head record is missing")
    elif head is not None and (head.seq != last_seq or head.hash != prev):
        seq = last_seq + 1 if head.seq > last_seq else head.seq
        report.fail(seq, f"the chain ends at {last_seq} but its head records {head.seq}: events after it were removed")
    return report


def seal_legacy(conn: Connection, key: AuditKey, *, actor: str, at: datetime | None = None) -> AuditEvent | None:
    """MAC the events of a chain that has never been keyed (made before migration 0011), once.

    Only a chain in which no event carries a MAC is sealed; the sha256 chain is verified first, and
    what it showed is recorded in the `audit.seal` event appended after it (so a chain that was already
    broken is sealed as broken, never silently). Called by `open_store` right after the migration ran.

    Returns:
        The `audit.seal` event, or None when there was nothing to seal.
    """
    if conn.scalar(select(audit_events.c.seq).where(audit_events.c.mac.is_not(None)).limit(1)) is not None:
        return None
    count = int(conn.scalar(select(func.count()).select_from(audit_events)) or 0)
    if count == 0:
        return None
    before = verify(conn)
    for row in _stream(conn):
        conn.execute(
            update(audit_events)
            .where(audit_events.c.seq == row.seq)
            .values(mac=key.mac(row.hash.encode()), key_id=key.key_id)
        )
    return record(
        conn,
        actor=actor,
        action="audit.seal",
        object_id="audit:log",
        details={
            "sealed_events": count,
            "chain_ok": before.ok,
            "first_bad_seq": before.first_bad_seq,
            "reason": before.reason,
            "key_id": key.key_id,
        },
        at=at,
        key=key,
    )


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A signed head of the chain: sequence number, hash and time, for storage outside the database."""

    seq: int
    hash: str
    at: str
    key_id: str
    public_key: str
    signature: str

    def signed_part(self) -> bytes:
        """The bytes the signature covers: canonical JSON of every field but the signature."""
        return canonical_json(
            {"seq": self.seq, "hash": self.hash, "at": self.at, "key_id": self.key_id, "public_key": self.public_key}
        ).encode()

    def problem(self, key: AuditKey | None) -> str | None:
        """Why this checkpoint cannot be trusted (bad signature, another workspace's key), or None."""
        if not verify_signature(self.public_key, self.signature, self.signed_part()):
            return "the checkpoint's signature does not verify: the checkpoint file was altered"
        if key is not None and (self.public_key != key.public_key or self.key_id != key.key_id):
            return f"the checkpoint was signed by audit key {self.key_id}, not this workspace's key {key.key_id}"
        return None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict: what `keel audit checkpoint` writes."""
        return {
            "seq": self.seq,
            "hash": self.hash,
            "at": self.at,
            "key_id": self.key_id,
            "public_key": self.public_key,
            "signature": self.signature,
        }

    @classmethod
    def from_json(cls, data: Any, origin: str = "checkpoint") -> Checkpoint:
        """Read a checkpoint written by `to_json`.

        Raises:
            InputError: Not a mapping with the six fields of the right types.
        """
        fields = {"seq": int, "hash": str, "at": str, "key_id": str, "public_key": str, "signature": str}
        if not isinstance(data, dict) or any(not isinstance(data.get(k), t) for k, t in fields.items()):
            found = sorted(data) if isinstance(data, dict) else type(data).__name__
            raise InputError(
                f"{origin}: expected a checkpoint with {', '.join(fields)} (from `keel audit checkpoint`); got {found}"
            )
        return cls(**{k: data[k] for k in fields})


def checkpoint(conn: Connection, key: AuditKey, *, at: datetime | None = None) -> Checkpoint:
    """Sign the chain's current head (sequence number, hash, time) with the audit key.

    Store the result outside the database (a file elsewhere, a webhook, a ticket): `verify` with it
    then proves the log still holds that head and nothing before it changed.

    Raises:
        InputError: The log is empty: there is no head to sign yet.
    """
    head = conn.execute(select(audit_head.c.seq, audit_head.c.hash).where(audit_head.c.id == _HEAD_ID)).first()
    if head is None or head.seq == 0:
        raise InputError("the audit log is empty: there is no head to checkpoint yet", hint="make a change first")
    unsigned = Checkpoint(head.seq, head.hash, format_time(at or system_clock()), key.key_id, key.public_key, "")
    return Checkpoint(**{**unsigned.to_json(), "signature": key.sign(unsigned.signed_part())})
