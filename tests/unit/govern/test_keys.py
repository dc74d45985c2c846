from __future__ import annotations

import pytest
from sqlalchemy import select

from keel.core.errors import InputError, NotFoundError
from keel.govern import (
    AuthenticationError,
    AuthenticationThrottledError,
    KeyVerifier,
    create_key,
    list_keys,
    revoke_key,
)
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

    now = [0.0]
    verifier = KeyVerifier(store, clock=lambda: now[0])
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
    now[0] += 1.0  # an unknown id reloads the rows at most once per interval
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


def test_wrong_secrets_are_remembered_throttled_and_unknown_ids_reload_once_per_interval(store: Store) -> None:
    created = create_key(store, "app")
    now = [0.0]
    verifier = KeyVerifier(store, failures=3, window_s=60, refresh_interval_s=1.0, clock=lambda: now[0])
    assert verifier.verify(created.secret).id == created.key.id  # its user, verified before the attack
    wrong = created.secret[:-3] + "xyz"
    for _ in range(2):  # the same wrong secret twice: argon2 runs once, the verdict is remembered
        with pytest.raises(AuthenticationError, match="invalid API key secret"):
            verifier.verify(wrong, client="10.0.0.1")
    assert verifier.argon2_checks == 2
    with pytest.raises(AuthenticationError, match="invalid API key secret"):
        verifier.verify(created.secret[:-3] + "abc", client="10.0.0.2")
    assert verifier.argon2_checks == 3
    # Three failures for this key id within the window: a fourth guess is refused before argon2.
    with pytest.raises(AuthenticationThrottledError, match="for this key") as throttled:
        verifier.verify(created.secret[:-3] + "def", client="10.0.0.3")
    assert verifier.argon2_checks == 3 and 1 <= throttled.value.retry_after <= 60
    assert verifier.verify(created.secret).id == created.key.id  # its verified user is not locked out
    # Per address: unknown ids from one client are counted against it; the table reloads once per interval.
    refreshes = verifier.refreshes
    now[0] += 2  # past the reload interval of the constructor's load
    for i in range(3):
        with pytest.raises(AuthenticationError, match="unknown API key"):
            verifier.verify(f"keel_{'0' * 25}{i}_{'a' * 43}", client="10.9.9.9")
    assert verifier.refreshes == refreshes + 1
    with pytest.raises(AuthenticationThrottledError, match="client address"):
        verifier.verify(f"keel_{'0' * 25}9_{'a' * 43}", client="10.9.9.9")
    now[0] += 61  # the window passed
    with pytest.raises(AuthenticationError, match="unknown API key") as again:
        verifier.verify(f"keel_{'0' * 25}9_{'a' * 43}", client="10.9.9.9")
    assert not isinstance(again.value, AuthenticationThrottledError) and verifier.refreshes == refreshes + 2
