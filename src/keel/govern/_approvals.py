"""Four eyes on protected moves: a request, another principal's approval with evidence, then the move.

Moving a protected alias (`keel access protect model:* alias:production`) or promoting a protected
deployment fails with `ApprovalRequiredError` and files a request naming exactly what would move. A
different principal holding `approval.approve` on the object runs `keel approve REQUEST`; the requester
then repeats the same command, which consumes the approval. Request, approval and move are all audited,
and the move's audit event names the request and its evidence.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from fnmatch import fnmatchcase
from typing import Any

from sqlalchemy import Connection, select, update

from keel.core.clock import format_time
from keel.core.errors import InputError, NotFoundError
from keel.core.ids import canonical_json, new_ulid
from keel.govern._access import current_principal, protected_targets, require
from keel.govern._errors import ApprovalRequiredError, PermissionDeniedError
from keel.store import Store
from keel.store.schema import approval_requests

__all__ = [
    "ApprovalPending",
    "ApprovalRequest",
    "ApprovalRequiredError",
    "approval_gate",
    "approve",
    "consume_approval",
    "file_request",
    "get_request",
    "list_requests",
    "reject",
]


class ApprovalPending(Exception):  # noqa: N818 - a signal, not an error: it leaves the caller's transaction
    """Raised inside a write transaction that must roll back; `file_request` then records the request."""

    def __init__(self, action: str, object_id: str, change: dict[str, Any]) -> None:
        super().__init__(f"{action} on {object_id} needs approval")
        self.action, self.object_id, self.change = action, object_id, change


@dataclass(frozen=True, slots=True)
class ApprovalRequest:
    """A request to move a protected target, and its decision."""

    id: str
    action: str
    object_id: str
    change: dict[str, Any]
    reason: str
    evidence: list[str]
    requested_by: str
    requested_at: datetime
    status: str
    decided_by: str | None
    decided_at: datetime | None
    note: str | None
    used_at: datetime | None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "id": self.id,
            "action": self.action,
            "object": self.object_id,
            "change": self.change,
            "reason": self.reason,
            "evidence": self.evidence,
            "requested_by": self.requested_by,
            "requested_at": format_time(self.requested_at),
            "status": self.status,
            "decided_by": self.decided_by,
            "decided_at": format_time(self.decided_at) if self.decided_at else None,
            "note": self.note,
            "used_at": format_time(self.used_at) if self.used_at else None,
        }


def _from_row(row: Any) -> ApprovalRequest:
    return ApprovalRequest(
        id=row.id,
        action=row.action,
        object_id=row.object_id,
        change=json.loads(row.change),
        reason=row.reason,
        evidence=json.loads(row.evidence) if row.evidence else [],
        requested_by=row.requested_by,
        requested_at=row.requested_at,
        status=row.status,
        decided_by=row.decided_by,
        decided_at=row.decided_at,
        note=row.note,
        used_at=row.used_at,
    )


def _protected(conn: Connection, object_id: str, target: str) -> bool:
    return any(t == target and fnmatchcase(object_id, scope) for scope, t in protected_targets(conn))


def consume_approval(
    store: Store, conn: Connection, action: str, object_id: str, target: str, change: dict[str, Any]
) -> str | None:
    """Inside the move's transaction: let a protected move through only on an approved request for it.

    Args:
        store: The workspace store (its principal is the mover).
        conn: The move's write transaction.
        action: `model.alias`, `prompt.alias`, `dataset.alias` or `deployment.promote`.
        object_id: `model:chat`, `deployment:chat`, ...
        target: What is protected: `alias:<name>` or `promote`.
        change: Exactly what moves (e.g. alias and version): an approval covers this change only.

    Returns:
        None when the target is not protected; else the id of the approved request now used up.

    Raises:
        ApprovalPending: Protected and not approved yet (the caller's transaction must roll back and the
            caller then calls `file_request`).
    """
    if not _protected(conn, object_id, target):
        return None
    mover = current_principal(store)
    row = conn.execute(
        select(approval_requests)
        .where(
            approval_requests.c.object_id == object_id,
            approval_requests.c.status == "approved",
            approval_requests.c.action == action,
            approval_requests.c.change == canonical_json(change),
            approval_requests.c.requested_by == mover,
        )
        .order_by(approval_requests.c.id)
        .limit(1)
        .with_for_update()
    ).first()
    if row is None:
        raise ApprovalPending(action, object_id, change)
    conn.execute(
        update(approval_requests).where(approval_requests.c.id == row.id).values(status="used", used_at=store.clock())
    )
    return str(row.id)


def file_request(store: Store, pending: ApprovalPending, *, reason: str, evidence: list[str]) -> ApprovalRequiredError:
    """Record the request `pending` describes (or find the same one still pending) and return the error to raise."""
    requester = current_principal(store)
    body = canonical_json(pending.change)
    with store.db.write() as conn:
        row = conn.execute(
            select(approval_requests.c.id).where(
                approval_requests.c.object_id == pending.object_id,
                approval_requests.c.action == pending.action,
                approval_requests.c.change == body,
                approval_requests.c.requested_by == requester,
                approval_requests.c.status == "pending",
            )
        ).first()
        request_id = row.id if row is not None else new_ulid()
        if row is None:
            conn.execute(
                approval_requests.insert().values(
                    id=request_id,
                    action=pending.action,
                    object_id=pending.object_id,
                    change=body,
                    reason=reason,
                    evidence=canonical_json(evidence) if evidence else None,
                    requested_by=requester,
                    requested_at=store.clock(),
                    status="pending",
                )
            )
            details = {"request": request_id, "action": pending.action, "change": pending.change, "evidence": evidence}
            store.audit(conn, "approval.request", pending.object_id, details)
    return ApprovalRequiredError(
        f"{pending.action} on {pending.object_id} is protected: approval request {request_id} is pending",
        hint=f"another principal with the approver role runs `keel approve {request_id}`; then run this again",
        request_id=request_id,
    )


@contextmanager
def approval_gate(store: Store, *, reason: str, evidence: str | None = None) -> Iterator[None]:
    """Around a move's write transaction: turn `ApprovalPending` into a filed request and its error.

    Put it outside the transaction, so the refused move has rolled back before the request is written.

    Examples:
        >>> with approval_gate(store, reason="eval passed"), store.db.write() as conn:  # doctest: +SKIP
        ...     move_alias(store, conn, "model", "chat", "production", 3, reason="eval passed")
    """
    try:
        yield
    except ApprovalPending as pending:
        raise file_request(store, pending, reason=reason, evidence=[evidence] if evidence else []) from None


def get_request(store: Store, request_id: str) -> ApprovalRequest:
    """One request.

    Raises:
        NotFoundError: No request has this id.
    """
    with store.db.read() as conn:
        row = conn.execute(select(approval_requests).where(approval_requests.c.id == request_id)).first()
    if row is None:
        raise NotFoundError(f"no approval request {request_id!r}", hint="see `keel access requests`")
    return _from_row(row)


def list_requests(store: Store, *, status: str | None = "pending") -> list[ApprovalRequest]:
    """Requests, oldest first; pending ones by default (None: all)."""
    query = select(approval_requests).order_by(approval_requests.c.id)
    if status is not None:
        query = query.where(approval_requests.c.status == status)
    with store.db.read() as conn:
        return [_from_row(row) for row in conn.execute(query)]


def _decide(
    store: Store, request_id: str, status: str, note: str | None, evidence: list[str] | None
) -> ApprovalRequest:
    request = get_request(store, request_id)
    decider = current_principal(store)
    if decider != request.requested_by:
        require(store, "approval.approve", request.object_id)
    else:
        raise PermissionDeniedError(
            f"{decider} requested {request_id}; a different principal must approve or reject it",
            hint="ask another principal with the approver role",
        )
    with store.db.write() as conn:
        row = conn.execute(
            select(approval_requests).where(approval_requests.c.id == request_id).with_for_update()
        ).one()
        if row.status != "pending":
            raise InputError(f"approval request {request_id} is {row.status}, not pending; nothing to decide")
        merged = sorted({*json.loads(row.evidence or "[]"), *(evidence or [])})
        conn.execute(
            update(approval_requests)
            .where(approval_requests.c.id == request_id)
            .values(
                status=status,
                decided_by=decider,
                decided_at=store.clock(),
                note=note,
                evidence=canonical_json(merged) if merged else None,
            )
        )
        details = {"request": request_id, "change": json.loads(row.change), "evidence": merged, "note": note}
        store.audit(conn, f"approval.{'approve' if status == 'approved' else 'reject'}", row.object_id, details)
    return get_request(store, request_id)


def approve(
    store: Store, request_id: str, *, note: str | None = None, evidence: list[str] | None = None
) -> ApprovalRequest:
    """Approve another principal's pending request, attaching a note and evidence (e.g. an eval result id).

    Raises:
        NotFoundError: No such request.
        PermissionDeniedError: The approver requested it, or lacks `approval.approve` on the object.
        InputError: The request is not pending.
    """
    return _decide(store, request_id, "approved", note, evidence)


def reject(store: Store, request_id: str, *, note: str | None = None) -> ApprovalRequest:
    """Reject another principal's pending request (same rules as `approve`)."""
    return _decide(store, request_id, "rejected", note, None)
