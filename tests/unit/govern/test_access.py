"""Roles on scopes, enforced by the one check at library entry points: a second principal is an API key.

A key is a real principal: `KEEL_API_KEY` makes a store act as `key:<id>` after an argon2 check, so these
tests exercise the same authentication a CI job or a service would use.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest
from sqlalchemy import update

from keel.core.errors import InputError, NotFoundError
from keel.core.settings import load_settings
from keel.data import commit_version, load_version, tag_version, trace_record
from keel.govern import (
    AuthenticationError,
    PermissionDeniedError,
    access_enabled,
    check,
    classify_dataset,
    create_key,
    current_principal,
    define_role,
    grant,
    list_bindings,
    require,
    revoke,
    revoke_key,
    whoami,
)
from keel.registry import alias_model, create_prompt, register_model
from keel.store import Store, events, open_store
from keel.store.schema import api_keys


def _table(*ids: str) -> pa.Table:
    return pa.table({"id": list(ids), "text": [f"text of {i}" for i in ids]})


def _as_key(store: Store, secret: str, **settings: object) -> Store:
    return open_store(load_settings(store.settings.workspace, api_key=secret, **settings))


def _model_dir(tmp_path: Path, content: bytes) -> Path:
    folder = tmp_path / f"model-{content[:4].hex()}"
    folder.mkdir(exist_ok=True)
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(content * 50)
    return folder


@pytest.fixture
def team(store: Store) -> tuple[Store, str, str]:
    """The owner's store, and a key principal with its secret; no roles granted yet."""
    created = create_key(store, "ci")
    return store, f"key:{created.key.id}", created.secret


def test_a_single_user_workspace_behaves_as_before(store: Store) -> None:
    assert not access_enabled(store)
    assert current_principal(store).startswith("local:")
    commit_version(store, "faq", _table("a"))  # no role needed while one principal acts
    assert check(store, "local:nobody", "dataset.commit", "dataset:faq").allowed
    me = whoami(store)
    assert (me.enforced, me.principals, me.roles) == (False, 0, ())


def test_the_first_grant_makes_the_granter_admin_and_turns_enforcement_on(team: tuple[Store, str, str]) -> None:
    store, key, _ = team
    grant(store, key, "viewer")
    assert access_enabled(store)
    assert {(b.principal, b.role, b.scope) for b in list_bindings(store)} == {
        (key, "viewer", "*"),
        (store.actor, "admin", "*"),
    }
    with store.db.read() as conn:
        grants = events(conn, action="access.grant", newest_first=False)
    assert [e.details["bootstrap"] for e in grants if e.details] == [True, False]


def test_viewer_cannot_commit_or_move_an_alias_and_each_denial_is_audited(
    team: tuple[Store, str, str], tmp_path: Path
) -> None:
    store, key, secret = team
    commit_version(store, "faq", _table("a"))
    register_model(store, "chat", _model_dir(tmp_path, b"v1"))
    grant(store, key, "viewer")
    viewer = _as_key(store, secret)
    with pytest.raises(PermissionDeniedError, match=rf"{key} may not dataset.commit on dataset:faq \(holds viewer"):
        commit_version(viewer, "faq", _table("a", "b"))
    with pytest.raises(PermissionDeniedError, match="may not model.alias on model:chat"):
        alias_model(viewer, "chat", "production", 1, reason="try")
    with pytest.raises(PermissionDeniedError, match="may not dataset.alias"):
        tag_version(viewer, "faq@v1", "gold")
    assert load_version(viewer, "faq").num_rows == 1  # reading an unrestricted dataset needs no role
    with store.db.read() as conn:
        denied = events(conn, action="access.denied", newest_first=False)
    assert [(e.actor, e.object_id, e.details["action"] if e.details else None) for e in denied] == [
        (key, "dataset:faq", "dataset.commit"),
        (key, "model:chat", "model.alias"),
        (key, "dataset:faq", "dataset.alias"),
    ]
    viewer.close()


def test_editor_on_a_glob_scope_may_change_only_what_it_matches(team: tuple[Store, str, str], tmp_path: Path) -> None:
    store, key, secret = team
    grant(store, key, "editor", "dataset:faq-*")
    editor = _as_key(store, secret)
    version, _ = commit_version(editor, "faq-en", _table("a"))
    with pytest.raises(PermissionDeniedError, match="dataset:hr"):
        commit_version(editor, "hr", _table("a"))
    with pytest.raises(PermissionDeniedError, match="model.register on model:chat"):
        register_model(editor, "chat", _model_dir(tmp_path, b"v1"))
    grant(store, key, "editor", "model:*")
    editor.extensions.clear()  # another process would see the grant within a second; do not wait here
    register_model(editor, "chat", _model_dir(tmp_path, b"v1"))
    alias_model(editor, "chat", "staging", 1, reason="smoke test passed")
    with store.db.read() as conn:
        (commit,) = events(conn, action="dataset.commit", object_id=version.node)
    assert commit.actor == key
    editor.close()


def test_actor_is_the_principal_and_keel_actor_only_a_note(team: tuple[Store, str, str]) -> None:
    store, key, secret = team
    grant(store, key, "editor")
    on_behalf = _as_key(store, secret, actor="local:mallory")
    version, _ = commit_version(on_behalf, "faq", _table("a"))
    with store.db.read() as conn:
        (event,) = events(conn, object_id=version.node)
    assert (event.actor, event.on_behalf_of) == (key, "local:mallory")
    on_behalf.close()


def test_a_bad_or_revoked_key_authenticates_nothing(team: tuple[Store, str, str]) -> None:
    store, key, secret = team
    wrong = _as_key(store, secret[:-4] + "AAAA")
    with pytest.raises(AuthenticationError, match="invalid API key secret"):
        commit_version(wrong, "faq", _table("a"))
    garbage = _as_key(store, "not-a-key")
    with pytest.raises(AuthenticationError, match="expected an API key"):
        whoami(garbage)
    revoke_key(store, key.removeprefix("key:"))
    revoked = _as_key(store, secret)
    with pytest.raises(AuthenticationError, match="revoked"):
        whoami(revoked)
    for opened in (wrong, garbage, revoked):
        opened.close()


def test_restricted_datasets_need_read_permission(team: tuple[Store, str, str]) -> None:
    store, key, secret = team
    commit_version(store, "hr", _table("a"))
    commit_version(store, "faq", _table("b"))
    classify_dataset(store, "hr", "restricted")
    grant(store, key, "editor", "dataset:faq")
    reader = _as_key(store, secret)
    assert load_version(reader, "faq").num_rows == 1
    with pytest.raises(PermissionDeniedError, match="dataset.read on dataset:hr"):
        load_version(reader, "hr")
    assert trace_record(reader, "b").text_preview == "text of b"
    with pytest.raises(PermissionDeniedError, match="dataset.read on dataset:hr"):
        trace_record(reader, "a")  # `keel data trace` printed the record's source and text to anyone
    grant(store, key, "viewer", "dataset:hr")
    reader.extensions.clear()
    assert load_version(reader, "hr").num_rows == 1
    assert trace_record(reader, "a").text_preview == "text of a"
    with pytest.raises(InputError, match="expected a classification"):
        classify_dataset(store, "hr", "secret")
    reader.close()


def test_custom_roles_and_revocation(team: tuple[Store, str, str]) -> None:
    store, key, secret = team
    define_role(store, "prompt-writer", ["prompt.*", "*.read"])
    grant(store, key, "prompt-writer")
    writer = _as_key(store, secret)
    create_prompt(writer, "greet", "Hello {{ who }}!")
    with pytest.raises(PermissionDeniedError):
        commit_version(writer, "faq", _table("a"))
    revoke(store, key, "prompt-writer")  # the owner's admin grant remains: enforcement stays on
    writer.extensions.clear()
    with pytest.raises(PermissionDeniedError, match="holds no role"):
        create_prompt(writer, "greet", "Hi {{ who }}!")
    with pytest.raises(InputError, match="expected actions from"):
        define_role(store, "bad", ["dataset.delete"])
    with pytest.raises(InputError, match="new role name"):
        define_role(store, "admin", ["*"])
    writer.close()


def test_the_last_admin_cannot_be_revoked_and_bad_input_is_refused(team: tuple[Store, str, str]) -> None:
    store, key, _ = team
    grant(store, key, "viewer")
    with pytest.raises(InputError, match="last admin"):
        revoke(store, store.actor, "admin")
    with pytest.raises(InputError, match="expected a scope"):
        grant(store, key, "viewer", "dataset")
    with pytest.raises(InputError, match="expected a principal"):
        grant(store, "bob", "viewer")
    with pytest.raises(InputError, match="expected a principal"):
        grant(store, "local:bøb\u202e", "viewer")  # unicode and a direction override are not a principal
    with pytest.raises(NotFoundError, match="no role named 'owner'"):
        grant(store, key, "owner")
    with pytest.raises(NotFoundError, match="holds no role"):
        revoke(store, key, "editor")


def test_a_viewer_cannot_grant_itself_more(team: tuple[Store, str, str]) -> None:
    store, key, secret = team
    grant(store, key, "viewer")
    viewer = _as_key(store, secret)
    with pytest.raises(PermissionDeniedError, match="access.grant"):
        grant(viewer, key, "admin")
    with pytest.raises(PermissionDeniedError, match="key.create"):
        create_key(viewer, "escalate")
    viewer.close()


def test_a_scoped_admin_cannot_grant_beyond_its_scope(team: tuple[Store, str, str]) -> None:
    store, key, secret = team
    grant(store, key, "admin", "dataset:faq*")
    scoped = _as_key(store, secret)
    grant(scoped, "local:carol", "editor", "dataset:faq*")
    with pytest.raises(PermissionDeniedError):
        grant(scoped, "local:carol", "editor", "dataset:*")
    with pytest.raises(PermissionDeniedError):
        grant(scoped, "local:carol", "editor", "*")
    scoped.close()


def test_require_answers_from_the_snapshot_and_sees_changes_made_elsewhere(team: tuple[Store, str, str]) -> None:
    store, key, secret = team
    grant(store, key, "editor")
    editor = _as_key(store, secret)
    require(editor, "dataset.commit", "dataset:faq")
    revoke(store, key, "editor")  # through another store, as another process would
    editor.extensions["keel.govern.access"].loaded_at -= 10  # the snapshot is older than its refresh interval
    with pytest.raises(PermissionDeniedError):
        require(editor, "dataset.commit", "dataset:faq")
    editor.close()


def test_a_key_row_changed_behind_keels_back_fails_closed(team: tuple[Store, str, str]) -> None:
    store, key, secret = team
    with store.db.write() as conn:
        conn.execute(update(api_keys).values(hash="not an argon2 hash"))
    tampered = _as_key(store, secret)
    with pytest.raises(AuthenticationError):
        whoami(tampered)
    tampered.close()
