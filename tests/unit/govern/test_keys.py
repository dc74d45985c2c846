from __future__ import annotations

import pytest
from sqlalchemy import select

from keel.core.errors import InputError, NotFoundError
from keel.govern import AuthenticationError, KeyVerifier, create_key, list_keys, revoke_key
from keel.store import Store, events
from keel.store.schema import api_keys


def test_keys_are_hashed_shown_once_scoped_and_revocable(store: Store) -> None:
    created = create_key(store, "billing", scopes=["chat", "embed"], rate_per_minute=120)
    key = created.key
    assert created.secret.startswith(f"keel_{key.id}_") and key.burst == 120
    with store.db.read() as conn:
        stored = conn.execute(select(api_keys.c.hash)).scalar_one()
    assert stored.startswith("$argon2id$") and created.secret not in stored
    assert key.allows("chat") and not key.allows("other")
    assert create_key(store, "admin").key.allows("anything")

    verifier = KeyVerifier(store)
    assert verifier.cached(created.secret) is None  # not verified yet: argon2 will run once
    assert verifier.verify(created.secret).id == key.id
    assert verifier.cached(created.secret) == verifier.verify(created.secret)  # now a dictionary lookup
    for wrong, message in [
        (created.secret[:-3] + "xyz", "invalid API key secret"),
        ("sk-123", "expected an API key"),
        (f"keel_{'0' * 26}_{'a' * 43}", "unknown API key"),
    ]:
        with pytest.raises(AuthenticationError, match=message):
            verifier.verify(wrong)

    late = create_key(store, "late")  # made after the verifier loaded its rows
    assert verifier.verify(late.secret).name == "late"

    revoke_key(store, key.id)
    verifier.refresh()
    with pytest.raises(AuthenticationError, match="revoked"):
        verifier.verify(created.secret)
    assert [k.name for k in list_keys(store)] == ["admin", "late"]
    assert len(list_keys(store, include_revoked=True)) == 3
    with store.db.read() as conn:
        actions = {e.action for e in events(conn)}
    assert {"key.create", "key.revoke"} <= actions


def test_key_input_errors(store: Store) -> None:
    with pytest.raises(InputError, match="key name"):
        create_key(store, "has space")
    with pytest.raises(InputError, match="at least one scope"):
        create_key(store, "x", scopes=[])
    with pytest.raises(InputError, match="positive rate"):
        create_key(store, "x", rate_per_minute=0)
    with pytest.raises(NotFoundError):
        revoke_key(store, "01JD3Z0000000000000000000X")
