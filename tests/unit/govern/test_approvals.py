"""Protected aliases and promotions move only after a different principal with the approver role approves."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from keel.core.errors import InputError
from keel.core.settings import load_settings
from keel.govern import (
    ApprovalRequiredError,
    PermissionDeniedError,
    approve,
    create_key,
    get_request,
    grant,
    list_requests,
    protect,
    reject,
)
from keel.registry import alias_model, get_model, register_model
from keel.serve import canary_deployment, create_deployment, get_deployment, promote_deployment
from keel.store import Store, events, open_store


def _model(store: Store, tmp_path: Path, name: str, content: bytes) -> None:
    folder = tmp_path / content.hex()
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(content * 64)
    register_model(store, name, folder)


@pytest.fixture
def people(store: Store, tmp_path: Path) -> Iterator[dict[str, Store]]:
    """The owner (admin), an editor and an approver, each a store acting as its own principal."""
    _model(store, tmp_path, "chat", b"one")
    _model(store, tmp_path, "chat", b"two")
    opened = {"owner": store}
    for role in ("editor", "approver", "viewer"):
        created = create_key(store, role)
        grant(store, f"key:{created.key.id}", role)
        opened[role] = open_store(load_settings(store.settings.workspace, api_key=created.secret))
    yield opened
    for name in ("editor", "approver", "viewer"):
        opened[name].close()


def test_a_protected_alias_moves_only_after_another_principal_approves(people: dict[str, Store]) -> None:
    owner, editor, approver = people["owner"], people["editor"], people["approver"]
    protect(owner, "model:*", "alias:production")
    alias_model(editor, "chat", "staging", 2, reason="unprotected aliases move at once")

    with pytest.raises(ApprovalRequiredError, match="approval request .* is pending") as refused:
        alias_model(editor, "chat", "production", 2, reason="eval passed", evidence="eval-result:01ABC")
    request_id = refused.value.request_id
    assert request_id is not None
    assert "production" not in get_model(owner, "chat").aliases
    with pytest.raises(ApprovalRequiredError) as again:  # asking again files no second request
        alias_model(editor, "chat", "production", 2, reason="eval passed")
    assert again.value.request_id == request_id and len(list_requests(owner)) == 1

    with pytest.raises(PermissionDeniedError, match="different principal"):
        approve(editor, request_id)
    with pytest.raises(PermissionDeniedError, match="approval.approve"):
        approve(people["viewer"], request_id)
    decided = approve(approver, request_id, note="looks good", evidence=["eval-result:01DEF"])
    assert (decided.status, decided.evidence) == ("approved", ["eval-result:01ABC", "eval-result:01DEF"])
    with pytest.raises(InputError, match="not pending"):
        approve(owner, request_id)

    with pytest.raises(ApprovalRequiredError):  # the approval covers v2, not another version
        alias_model(editor, "chat", "production", 1, reason="other version")
    moved = alias_model(editor, "chat", "production", 2, reason="eval passed")
    assert moved.to_version == 2 and "production" in get_model(owner, "chat@v2").aliases
    assert get_request(owner, request_id).status == "used"
    with pytest.raises(ApprovalRequiredError):  # an approval is used once
        alias_model(editor, "chat", "production", None, reason="remove")

    with owner.db.read() as conn:
        trail = events(conn, object_id="model:chat", newest_first=False)
    (move,) = [e for e in trail if e.action == "model.alias" and e.details and e.details["alias"] == "production"]
    (asked,) = [e for e in trail if e.action == "approval.request" and e.details and e.details["request"] == request_id]
    (approval,) = [e for e in trail if e.action == "approval.approve"]
    assert (asked.actor, approval.actor, move.actor) == (editor.actor, approver.actor, editor.actor)
    assert asked.seq < approval.seq < move.seq
    assert move.details is not None and move.details["approval"] == request_id


def test_a_rejected_request_does_not_let_the_move_through(people: dict[str, Store]) -> None:
    owner, editor, approver = people["owner"], people["editor"], people["approver"]
    protect(owner, "model:chat", "alias:production")
    with pytest.raises(ApprovalRequiredError) as refused:
        alias_model(editor, "chat", "production", 1, reason="try")
    assert refused.value.request_id is not None
    reject(approver, refused.value.request_id, note="no eval yet")
    with pytest.raises(ApprovalRequiredError):
        alias_model(editor, "chat", "production", 1, reason="try")


def test_a_protected_promotion_needs_approval(people: dict[str, Store]) -> None:
    owner, editor, approver = people["owner"], people["editor"], people["approver"]
    upstream = {"upstream": "http://127.0.0.1:9/v1", "backend": "openai"}
    create_deployment(editor, "support", "chat@v1", route=upstream)
    canary_deployment(editor, "support", "chat@v2", weight=10)
    protect(owner, "deployment:support", "promote")
    with pytest.raises(ApprovalRequiredError) as refused:
        promote_deployment(editor, "support")
    assert len(get_deployment(owner, "support").routes) == 2
    assert refused.value.request_id is not None
    approve(approver, refused.value.request_id)
    promoted = promote_deployment(editor, "support")
    assert [r.model for r in promoted.routes] == ["chat@v2"]


def test_protecting_needs_admin_and_a_valid_target(people: dict[str, Store]) -> None:
    with pytest.raises(PermissionDeniedError):
        protect(people["editor"], "model:*", "alias:production")
    with pytest.raises(InputError, match="expected a target"):
        protect(people["owner"], "model:*", "production")
    with pytest.raises(InputError, match="promote protects deployments"):
        protect(people["owner"], "model:*", "promote")
