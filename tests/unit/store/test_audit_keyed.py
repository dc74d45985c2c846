"""The keyed chain and its checkpoints, tried as an attacker who can write the database but not read the key."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest
from sqlalchemy import delete, select, update

from keel.core.errors import ConfigError, InputError
from keel.core.settings import load_settings
from keel.store import AuditKey, Checkpoint, Store, checkpoint, load_audit_key, open_store, record, seal_legacy, verify
from keel.store._audit import _event_hash
from keel.store.schema import audit_events, audit_head


def _append(store: Store, n: int) -> None:
    with store.db.write() as conn:
        for i in range(n):
            store.audit(conn, "dataset.commit", f"dataset-version:{i:064x}", {"i": i})


def _verify(store: Store, key: AuditKey | None = None, anchor: Checkpoint | None = None):  # type: ignore[no-untyped-def]
    with store.db.read() as conn:
        return verify(conn, key=key, checkpoint=anchor)


def _forge_and_rebuild(store: Store, seq: int, *, drop_macs: bool = False) -> None:
    """Rewrite event `seq`'s actor and rebuild every later hash with Keel's own (unkeyed) hash function."""
    with store.db.write() as conn:
        rows = conn.execute(select(audit_events).where(audit_events.c.seq >= seq).order_by(audit_events.c.seq)).all()
        prev = rows[0].prev_hash
        for row in rows:
            actor = "local:mallory" if row.seq == seq else row.actor
            digest = _event_hash(
                row.seq, row.at, actor, row.action, row.object_id, row.details_sha256, prev, row.on_behalf_of
            )
            values = {"actor": actor, "prev_hash": prev, "hash": digest}
            if drop_macs:
                values.update(mac=None, key_id=None)
            conn.execute(update(audit_events).where(audit_events.c.seq == row.seq).values(**values))
            prev = digest
        conn.execute(update(audit_head).values(hash=prev))


def test_the_forged_rebuild_passes_the_unkeyed_check_and_fails_the_keyed_one(store: Store) -> None:
    _append(store, 8)
    _forge_and_rebuild(store, 3)
    assert _verify(store).ok  # the attack the issue reports: the sha256 chain alone says "intact"
    report = _verify(store, store.audit_key)
    assert (report.ok, report.first_bad_seq) == (False, 3)
    assert "MAC does not match" in (report.reason or "")


def test_a_rebuild_that_strips_the_macs_is_detected(store: Store) -> None:
    _append(store, 5)
    _forge_and_rebuild(store, 1, drop_macs=True)
    report = _verify(store, store.audit_key)
    assert (report.ok, report.first_bad_seq) == (False, 1)
    assert "carries no MAC" in (report.reason or "")


def test_another_key_cannot_verify_or_be_verified(store: Store) -> None:
    _append(store, 2)
    other = AuditKey.from_seed(bytes(range(32)))
    report = _verify(store, other)
    assert not report.ok and "not this workspace's key" in (report.reason or "")


def test_a_wiped_log_is_detected_against_a_checkpoint(store: Store) -> None:
    _append(store, 4)
    with store.db.read() as conn:
        anchor = checkpoint(conn, store.audit_key)
    assert _verify(store, store.audit_key, anchor).ok
    with store.db.write() as conn:
        conn.execute(delete(audit_events))
        conn.execute(delete(audit_head))
    assert _verify(store, store.audit_key).ok  # nothing left to contradict itself
    report = _verify(store, store.audit_key, anchor)
    assert (report.ok, report.first_bad_seq) == (False, 1)
    assert "the log was wiped" in (report.reason or "")


def test_a_cut_tail_with_its_head_moved_back_is_detected_against_a_checkpoint(store: Store) -> None:
    _append(store, 10)
    with store.db.read() as conn:
        anchor = checkpoint(conn, store.audit_key)
    _append(store, 2)  # the log goes on after the checkpoint: still fine
    assert _verify(store, store.audit_key, anchor).ok
    with store.db.write() as conn:
        kept = conn.execute(select(audit_events.c.hash).where(audit_events.c.seq == 7)).scalar_one()
        conn.execute(delete(audit_events).where(audit_events.c.seq > 7))
        conn.execute(update(audit_head).values(seq=7, hash=kept))
    assert _verify(store, store.audit_key).ok
    report = _verify(store, store.audit_key, anchor)
    assert (report.ok, report.first_bad_seq) == (False, 8)
    assert "events 8..10 were cut off" in (report.reason or "")


def test_a_rewrite_before_the_checkpoint_is_detected_even_with_the_key(store: Store) -> None:
    """Whoever holds the key could rebuild the MACs too; the checkpoint kept elsewhere still catches it."""
    _append(store, 6)
    with store.db.read() as conn:
        anchor = checkpoint(conn, store.audit_key)
    _forge_and_rebuild(store, 2)
    key = store.audit_key
    with store.db.write() as conn:
        for row in conn.execute(select(audit_events.c.seq, audit_events.c.hash)).all():
            conn.execute(
                update(audit_events).where(audit_events.c.seq == row.seq).values(mac=key.mac(row.hash.encode()))
            )
    assert _verify(store, key).ok
    report = _verify(store, key, anchor)
    assert (report.ok, report.first_bad_seq) == (False, 6)
    assert "not the event the checkpoint recorded" in (report.reason or "")


def test_an_edited_or_foreign_checkpoint_is_refused(store: Store) -> None:
    _append(store, 3)
    with store.db.read() as conn:
        anchor = checkpoint(conn, store.audit_key)
    edited = Checkpoint(**{**anchor.to_json(), "seq": 2})
    assert "signature does not verify" in (_verify(store, store.audit_key, edited).reason or "")
    other = AuditKey.from_seed(bytes(32))
    with store.db.read() as conn:
        foreign = checkpoint(conn, other)
    assert "signed by audit key" in (_verify(store, store.audit_key, foreign).reason or "")
    assert Checkpoint.from_json(json.loads(json.dumps(anchor.to_json()))) == anchor
    with pytest.raises(InputError, match="expected a checkpoint"):
        Checkpoint.from_json({"seq": "3"})
    with pytest.raises(InputError, match="expected a checkpoint"):
        Checkpoint.from_json([1, 2])


def test_an_empty_log_has_no_head_to_checkpoint(store: Store) -> None:
    with store.db.read() as conn, pytest.raises(InputError, match="empty"):
        checkpoint(conn, store.audit_key)


def test_a_legacy_chain_is_sealed_once_and_a_broken_one_is_sealed_as_broken(store: Store) -> None:
    with store.db.write() as conn:  # events as Keel wrote them before audit keys: no MAC
        for i in range(4):
            record(conn, actor="local:old", action="model.alias", object_id=f"model:m{i}")
        conn.execute(update(audit_events).where(audit_events.c.seq == 2).values(action="model.delete"))
    key = store.audit_key
    assert not _verify(store, key).ok
    with store.db.write() as conn:
        sealed = seal_legacy(conn, key, actor=store.actor)
        assert seal_legacy(conn, key, actor=store.actor) is None  # once only: a MACed chain is never resealed
    assert sealed is not None and sealed.details is not None
    assert sealed.details["sealed_events"] == 4 and sealed.details["chain_ok"] is False
    assert sealed.details["first_bad_seq"] == 2
    report = _verify(store, key)  # the edit made before sealing is still reported by the sha256 chain
    assert (report.ok, report.first_bad_seq) == (False, 2)


def _legacy_workspace(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A workspace whose database is at revision 0007 (before audit keys) holding one unkeyed event."""
    from alembic import command

    from keel.store._db import _alembic_config

    root = tmp_path / "ws"
    (root / ".keel").mkdir(parents=True)
    (root / "keel.yaml").write_text("version: 1\n")
    settings = load_settings(root)
    old = open_store(settings, upgrade=False)
    with old.db.write() as conn:
        config = _alembic_config()
        config.attributes["connection"] = conn
        command.upgrade(config, "0007")
    with old.db.write() as conn:
        conn.exec_driver_sql(
            "INSERT INTO audit_events (seq, at, actor, action, object_id, details, details_sha256, prev_hash, hash) "
            "VALUES (1, '2026-01-01 00:00:00', 'local:old', 'dataset.commit', 'dataset:x', '{}', "
            "'44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a', :g, :h)",
            {"g": "0" * 64, "h": _legacy_hash()},
        )
        conn.exec_driver_sql("INSERT INTO audit_head (id, seq, hash) VALUES (1, 1, :h)", {"h": _legacy_hash()})
    old.close()
    assert not settings.audit_key_file.exists()
    return settings


def _assert_sealed(upgraded: Store) -> None:
    report = _verify(upgraded, upgraded.audit_key)
    assert report.ok and report.checked == 2
    with upgraded.db.read() as conn:
        actions = conn.scalars(select(audit_events.c.action).order_by(audit_events.c.seq)).all()
    assert actions == ["dataset.commit", "audit.seal"]


def test_upgrading_a_workspace_seals_its_unkeyed_chain(tmp_path: Path) -> None:
    settings = _legacy_workspace(tmp_path)
    upgraded = open_store(settings)
    assert oct(settings.audit_key_file.stat().st_mode & 0o777) == "0o600"
    _assert_sealed(upgraded)
    upgraded.close()


def test_keel_db_upgrade_seals_an_unkeyed_chain_too(tmp_path: Path) -> None:
    """`keel db upgrade` migrates without opening the workspace the usual way: it used to leave the old events
    without MACs for good (every later open found the schema current), so `verify` failed on a clean log."""
    from typer.testing import CliRunner

    from keel.cli import app

    settings = _legacy_workspace(tmp_path)
    result = CliRunner().invoke(app, ["-w", str(settings.workspace), "db", "upgrade", "--json"])
    assert result.exit_code == 0 and json.loads(result.output)["before"] == "0007", result.output
    upgraded = open_store(settings)
    _assert_sealed(upgraded)
    upgraded.close()


def _legacy_hash() -> str:
    from datetime import UTC, datetime

    at = datetime(2026, 1, 1, tzinfo=UTC)
    return _event_hash(
        1,
        at,
        "local:old",
        "dataset.commit",
        "dataset:x",
        "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
        "0" * 64,
    )


def test_the_key_comes_from_the_environment_or_a_private_file(workspace: Path) -> None:
    seed = "ab" * 32
    from_env = load_audit_key(load_settings(workspace, audit_key=seed))
    assert from_env is not None and from_env.key_id == AuditKey.from_seed(bytes.fromhex(seed)).key_id
    with pytest.raises(ConfigError, match="64 hex digits"):
        load_audit_key(load_settings(workspace, audit_key="not-hex"))
    settings = load_settings(workspace)
    settings.audit_key_file.chmod(0o644)
    with pytest.raises(ConfigError, match="may be read by any user"):
        load_audit_key(settings)
    settings.audit_key_file.unlink()
    assert load_audit_key(settings, create=False) is None


def test_concurrent_first_users_agree_on_one_key(workspace: Path) -> None:
    settings = load_settings(workspace)
    settings.audit_key_file.unlink()
    found: list[str] = []
    barrier = threading.Barrier(8)

    def first_use() -> None:
        barrier.wait()
        key = load_audit_key(settings)
        assert key is not None
        found.append(key.key_id)

    threads = [threading.Thread(target=first_use) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(found) == 8 and len(set(found)) == 1
    assert [p.name for p in settings.audit_key_file.parent.iterdir() if p.name.startswith(".audit.key")] == []
    assert os.stat(settings.audit_key_file).st_mode & 0o077 == 0


def test_stripping_every_mac_is_not_laundered_by_a_later_migration(tmp_path: Path) -> None:
    """An attacker with write access to the database rewrites an event, rebuilds the chain without MACs and steps
    the schema back one migration (or waits for the next Keel release): the upgrade must not seal the forgery."""
    from alembic import command

    from keel.core.settings import load_settings
    from keel.store import init_workspace
    from keel.store._db import _alembic_config

    root = tmp_path / "ws"
    store = init_workspace(root)
    _append(store, 4)
    _forge_and_rebuild(store, 1, drop_macs=True)
    with store.db.write() as conn:  # what `alembic downgrade -1` does with the attacker's credentials
        config = _alembic_config()
        config.attributes["connection"] = conn
        command.downgrade(config, "-1")
    store.close()
    reopened = open_store(load_settings(root))  # the migration runs again here
    try:
        report = _verify(reopened, reopened.audit_key)
        assert (report.ok, report.first_bad_seq) == (False, 1)
        assert "carries no MAC" in (report.reason or "")
        with reopened.db.read() as conn:
            assert conn.scalar(select(audit_events.c.seq).where(audit_events.c.action == "audit.seal")) is None
    finally:
        reopened.close()


def test_details_blanked_behind_keels_back_are_reported_and_a_real_redaction_is_not(store: Store) -> None:
    """Setting an event's details to NULL with a `redacted_at` hid what it recorded (roles granted, routes moved)
    while `verify` said the chain was intact: a redaction is now an audited act, and one without it is tampering."""
    from datetime import UTC, datetime

    from keel.store import redact_details

    _append(store, 5)
    with store.db.write() as conn:
        made = redact_details(conn, 2, actor=store.actor, key=store.audit_key)
    assert (made.action, made.object_id, made.details) == ("audit.redact", "audit:2", {"seq": 2})
    report = _verify(store, store.audit_key)
    assert report.ok and report.redacted == 1
    with store.db.write() as conn:  # the attacker's "redaction": no audit.redact event names it
        conn.execute(
            update(audit_events).where(audit_events.c.seq == 4).values(details=None, redacted_at=datetime.now(UTC))
        )
    report = _verify(store, store.audit_key)
    assert (report.ok, report.first_bad_seq) == (False, 4)
    assert "without an audit.redact event" in (report.reason or "")


def test_a_redaction_event_cannot_be_redacted_so_verify_keeps_explaining_its_target(store: Store) -> None:
    """Erasing an `audit.redact` event's details (only the sequence number it names) left the event it redacted
    unexplained, so `verify` called Keel's own redaction tampering."""
    from keel.store import redact_details

    _append(store, 3)
    with store.db.write() as conn:
        made = redact_details(conn, 2, actor=store.actor, key=store.audit_key)
    with store.db.write() as conn, pytest.raises(InputError, match="audit.redact event"):
        redact_details(conn, made.seq, actor=store.actor, key=store.audit_key)
    report = _verify(store, store.audit_key)
    assert (report.ok, report.redacted) == (True, 1), report.reason
