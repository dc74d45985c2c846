"""Aliases shared by models and prompts: where each points now, and the append-only trail of moves.

Moving an alias writes its new position, an `alias_events` row with actor, reason and optional
evidence, and an audit event, in one transaction. Rolling back is moving it to an earlier version.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Table, and_, delete, func, select, update

from keel.core.clock import format_time
from keel.core.errors import InputError, NotFoundError
from keel.govern._access import require
from keel.govern._approvals import approval_gate, consume_approval
from keel.registry._refs import Ref, Subject, check_alias, check_name, parse_ref
from keel.store import Store, insert_for
from keel.store.schema import alias_events, aliases, dataset_versions, model_versions, prompt_versions

__all__ = [
    "AliasEvent",
    "alias_history",
    "aliases_of",
    "history",
    "lock_name",
    "move_alias",
    "previous_version",
    "resolve_version",
    "roll_back_alias",
    "set_alias",
    "version_target",
]

_VERSIONS: dict[str, Table] = {"model": model_versions, "prompt": prompt_versions, "dataset": dataset_versions}
# The CLI group that lists each subject and shows its history, for hints (datasets live under `keel data`).
_GROUP: dict[str, str] = {"model": "model", "prompt": "prompt", "dataset": "data"}
_HISTORY: dict[str, str] = {"model": "history", "prompt": "history", "dataset": "log"}


@dataclass(frozen=True, slots=True)
class AliasEvent:
    """One move of an alias: from which version to which (None: absent), by whom, why, on what evidence."""

    id: int
    subject: str
    name: str
    alias: str
    from_version: int | None
    to_version: int | None
    actor: str
    reason: str
    evidence: str | None
    at: datetime

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "id": self.id,
            "name": self.name,
            "alias": self.alias,
            "from_version": self.from_version,
            "to_version": self.to_version,
            "actor": self.actor,
            "reason": self.reason,
            "evidence": self.evidence,
            "at": format_time(self.at),
        }


def lock_name(conn: Connection, table: Table, name: str, at: datetime) -> None:
    """Create the model's or prompt's row if needed and lock it, so concurrent creators number versions in turn.

    FOR UPDATE serialises them on PostgreSQL; on SQLite the write transaction already holds the lock.
    """
    conn.execute(insert_for(conn, table).values(name=name, created_at=at).on_conflict_do_nothing())
    conn.execute(select(table.c.name).where(table.c.name == name).with_for_update())


def latest_version(conn: Connection, subject: Subject, name: str) -> int | None:
    """The highest version number of `name`, or None if it has none."""
    table = _VERSIONS[subject]
    latest = conn.scalar(select(func.max(table.c.version)).where(table.c.name == name))
    return None if latest is None else int(latest)


def resolve_version(conn: Connection, subject: Subject, ref: Ref) -> int:
    """The version number a reference points at, or a `NotFoundError` that says what exists."""
    table = _VERSIONS[subject]
    if ref.alias is not None:
        version = conn.scalar(
            select(aliases.c.version).where(
                aliases.c.subject == subject, aliases.c.name == ref.name, aliases.c.alias == ref.alias
            )
        )
        if version is None:
            known = ", ".join(sorted(aliases_of(conn, subject, ref.name))) or "none"
            raise NotFoundError(f"{subject} {ref.name!r} has no alias {ref.alias!r} (its aliases: {known})")
        return int(version)
    if ref.version is not None:
        exists = conn.scalar(select(table.c.version).where(table.c.name == ref.name, table.c.version == ref.version))
        if exists is not None:
            return ref.version
    latest = latest_version(conn, subject, ref.name)
    if latest is None:
        raise NotFoundError(
            f"no {subject} named {ref.name!r} in this workspace",
            hint=f"list them with `keel {_GROUP[subject]} list`",
        )
    if ref.version is not None:
        raise NotFoundError(f"{subject} {ref.name!r} has versions v1..v{latest}; got {ref}")
    return latest


def aliases_of(conn: Connection, subject: Subject, name: str) -> dict[str, int]:
    """Every alias of `name` and the version it points at."""
    rows = conn.execute(
        select(aliases.c.alias, aliases.c.version).where(aliases.c.subject == subject, aliases.c.name == name)
    )
    return {row.alias: int(row.version) for row in rows}


def move_alias(
    store: Store,
    conn: Connection,
    subject: Subject,
    name: str,
    alias: str,
    version: int | None,
    *,
    reason: str,
    evidence: str | None = None,
) -> AliasEvent:
    """Point `alias` of `name` at `version` (None removes it), recording who, why and on what evidence.

    Args:
        store: The store whose actor and clock are recorded.
        conn: A write transaction.
        subject: `model` or `prompt`.
        name: The model or prompt name.
        alias: The alias to move, e.g. `production`.
        version: The version to point at, or None to remove the alias.
        reason: Why; required, because the history is for people reading it later.
        evidence: An optional id supporting the move, e.g. an eval result.

    Returns:
        The recorded event.
    """
    check_alias(alias)
    if not reason.strip():
        raise InputError("expected a reason for moving an alias (--reason '...'); got an empty one")
    if version is not None:
        resolve_version(conn, subject, Ref(name, version=version))
    elif latest_version(conn, subject, name) is None:
        resolve_version(conn, subject, Ref(name))  # raises the "no such name" error
    key = and_(aliases.c.subject == subject, aliases.c.name == name, aliases.c.alias == alias)
    current = conn.scalar(select(aliases.c.version).where(key))
    if current is None and version is None:
        raise NotFoundError(f"{subject} {name!r} has no alias {alias!r} to remove")
    if current is not None and current == version:
        raise InputError(f"{subject} {name!r} alias {alias!r} already points at v{version}; nothing to move")
    # A protected alias (`keel access protect`) moves only on another principal's approval of this very move.
    change = {"alias": alias, "from": current, "to": version}
    approval = consume_approval(store, conn, f"{subject}.alias", f"{subject}:{name}", f"alias:{alias}", change)
    if version is None:
        conn.execute(delete(aliases).where(key))
    elif current is None:
        conn.execute(aliases.insert().values(subject=subject, name=name, alias=alias, version=version))
    else:
        conn.execute(update(aliases).where(key).values(version=version))
    at = store.clock()
    row = {
        "subject": subject,
        "name": name,
        "alias": alias,
        "from_version": current,
        "to_version": version,
        "actor": store.actor,
        "reason": reason,
        "evidence": evidence,
        "at": at,
    }
    event_id = conn.execute(alias_events.insert().values(**row)).inserted_primary_key[0]  # type: ignore[index]
    store.audit(
        conn,
        f"{subject}.alias",
        f"{subject}:{name}",
        {
            "alias": alias,
            "from": current,
            "to": version,
            "evidence": evidence,
            "alias_event": event_id,
            **({"approval": approval} if approval else {}),
        },
    )
    return AliasEvent(id=int(event_id), **row)  # type: ignore[arg-type]


def history(conn: Connection, subject: Subject, name: str, alias: str | None = None) -> list[AliasEvent]:
    """Every alias move of `name` (or of one alias), oldest first."""
    query = select(alias_events).where(alias_events.c.subject == subject, alias_events.c.name == name)
    if alias is not None:
        query = query.where(alias_events.c.alias == alias)
    return [
        AliasEvent(
            id=row.id,
            subject=row.subject,
            name=row.name,
            alias=row.alias,
            from_version=row.from_version,
            to_version=row.to_version,
            actor=row.actor,
            reason=row.reason,
            evidence=row.evidence,
            at=row.at,
        )
        for row in conn.execute(query.order_by(alias_events.c.id))
    ]


def previous_version(conn: Connection, subject: Subject, name: str, alias: str) -> int:
    """The version `alias` pointed at before its current one: the target of a rollback."""
    events = history(conn, subject, name, alias)
    if not events or events[-1].from_version is None:
        raise NotFoundError(
            f"{subject} {name!r} alias {alias!r} has no earlier version to roll back to",
            hint=f"see `keel {_GROUP[subject]} {_HISTORY[subject]} {name}`",
        )
    return events[-1].from_version


def version_target(subject: Subject, name: str, version: int | str) -> Ref:
    """The reference a version argument names: `3`, `"3"`, `"v3"`, `"latest"`, an alias, or `NAME@…`.

    Examples:
        >>> version_target("model", "chat", "v3"), version_target("prompt", "support", "production").alias
        (Ref(name='chat', version=3, alias=None), 'production')
    """
    text = str(version).strip()
    if text.lstrip("-").isdigit():
        if int(text) < 1:
            raise InputError(f"expected a version number of at least 1 for {subject} {name!r}; got {text}")
        return Ref(name, version=int(text))
    ref = parse_ref(text if "@" in text else f"{name}@{text}", subject)
    if ref.name != name:
        raise InputError(f"expected a version of {subject} {name!r}; got {text!r}, which names {subject} {ref.name!r}")
    return ref


def set_alias(
    store: Store,
    subject: Subject,
    name: str,
    alias: str,
    version: int | str | None,
    *,
    reason: str,
    evidence: str | None = None,
) -> AliasEvent:
    """Point an alias of a model, prompt or dataset at one of its versions (None removes it), recording who and why.

    The one implementation behind `alias_model`, `alias_prompt` and their CLI commands.

    Args:
        store: The workspace's store.
        subject: `model`, `prompt` or `dataset`.
        name: The model, prompt or dataset name.
        alias: The alias to move, e.g. `production`.
        version: `3`, `"3"`, `"v3"`, `"latest"`, another alias of the same name, `NAME@…`, or None to remove.
        reason: Why; kept in the alias history.
        evidence: An optional id supporting the move, e.g. an eval result.

    Returns:
        The recorded alias event.

    Raises:
        InputError: A malformed name, alias or version, or an empty reason.
        NotFoundError: No such name or version, or no alias to remove.
    """
    check_name(name, subject)
    require(store, f"{subject}.alias", f"{subject}:{name}")
    with approval_gate(store, reason=reason, evidence=evidence), store.db.write() as conn:
        number = None if version is None else resolve_version(conn, subject, version_target(subject, name, version))
        return move_alias(store, conn, subject, name, alias, number, reason=reason, evidence=evidence)


def roll_back_alias(
    store: Store, subject: Subject, name: str, alias: str, *, reason: str, evidence: str | None = None
) -> AliasEvent:
    """Move an alias back to the version it pointed at before its last move.

    Raises:
        NotFoundError: No such name, or the alias has no earlier version.
    """
    check_name(name, subject)
    require(store, f"{subject}.alias", f"{subject}:{name}")
    with approval_gate(store, reason=reason, evidence=evidence), store.db.write() as conn:
        resolve_version(conn, subject, Ref(name))  # a clear error when there is no such name
        target = previous_version(conn, subject, name, alias)
        return move_alias(store, conn, subject, name, alias, target, reason=reason, evidence=evidence)


def alias_history(store: Store, subject: Subject, name: str, alias: str | None = None) -> list[AliasEvent]:
    """Every alias move of a name, or of one of its aliases, oldest first.

    Raises:
        NotFoundError: Nothing of this subject is named `name`.
    """
    check_name(name, subject)
    with store.db.read() as conn:
        resolve_version(conn, subject, Ref(name))
        return history(conn, subject, name, alias)
