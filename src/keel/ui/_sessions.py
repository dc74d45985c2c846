"""Console sessions that end server-side: each signed cookie names a random session id, and sign-out records it.

The cookie is signed, not stored, so until sign-out is recorded a copy of it keeps working for its whole
lifetime. Recording the id in the workspace database (`console_signouts`) ends the session in every console
process serving the workspace (`keel ui` replicas, `keel serve --ui` workers) at its next request: each request
already reads whether its key is live, and the same query now asks whether its session was signed out.
"""

from __future__ import annotations

import secrets
from datetime import timedelta

from sqlalchemy import delete, exists, select
from sqlalchemy.exc import IntegrityError

from keel.store import Store
from keel.store.schema import api_keys, console_signouts

__all__ = ["end_session", "new_session_id", "session_live"]


def new_session_id() -> str:
    """A random session id for a new sign-in (128 bits, 22 URL-safe characters)."""
    return secrets.token_urlsafe(16)


def session_live(store: Store, key_id: object, session_id: object) -> bool:
    """Whether a session's key is unrevoked and the session was not signed out: one indexed query."""
    if not isinstance(key_id, str) or not isinstance(session_id, str):
        return False  # a cookie signed before sessions had ids, or a malformed one: sign in again
    signed_out = exists().where(console_signouts.c.session_id == session_id)
    query = select(api_keys.c.id).where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None), ~signed_out)
    with store.db.read() as conn:
        return conn.scalar(query) is not None


def end_session(store: Store, key_id: str, session_id: str, lifetime: timedelta) -> None:
    """Record that a session signed out, and forget sign-outs older than `lifetime` (their cookies have expired).

    Raises:
        DatabaseUnavailableError: The workspace is read-only here; the session could not be ended server-side.
    """
    now = store.clock()
    try:
        with store.db.write() as conn:
            conn.execute(delete(console_signouts).where(console_signouts.c.ended_at < now - lifetime))
            if conn.scalar(select(console_signouts.c.session_id).where(console_signouts.c.session_id == session_id)):
                return
            conn.execute(console_signouts.insert().values(session_id=session_id, key_id=key_id, ended_at=now))
    except IntegrityError:  # another copy of the cookie signed out at the same moment: it is ended all the same
        pass
