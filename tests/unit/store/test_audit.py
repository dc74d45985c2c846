from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import delete, update

from keel.core.errors import InputError, NotFoundError
from keel.store import Store, events, record, redact_details, verify
from keel.store.schema import audit_events, audit_head


def _append(store: Store, n: int) -> None:
    with store.db.write() as conn:
        for i in range(n):
            store.audit(conn, "dataset.commit", f"dataset-version:{i:064x}", {"i": i, "note": "ok"})


def _verify(store: Store):  # type: ignore[no-untyped-def]
    with store.db.read() as conn:
        return verify(conn)


def test_events_chain_and_verify(store: Store) -> None:
    _append(store, 5)
    report = _verify(store)
    assert report.ok and report.checked == 5 and report.head_seq == 5
    with store.db.read() as conn:
        listed = events(conn, limit=None, newest_first=False)
    assert [e.seq for e in listed] == [1, 2, 3, 4, 5]
    assert listed[0].prev_hash == "0" * 64
    assert all(b.prev_hash == a.hash for a, b in zip(listed, listed[1:], strict=False))
    assert listed[2].details == {"i": 2, "note": "ok"}
    assert listed[2].actor == store.actor
    assert listed[2].at.tzinfo is not None


def test_filters(store: Store) -> None:
    _append(store, 3)
    with store.db.write() as conn:
        record(conn, actor="key:01ABC", action="model.alias", object_id="model:chat", details={"alias": "prod"})
    with store.db.read() as conn:
        assert [e.seq for e in events(conn, action="model.alias")] == [4]
        assert [e.seq for e in events(conn, actor="key:01ABC")] == [4]
        assert [e.seq for e in events(conn, object_id=f"dataset-version:{1:064x}")] == [2]
        assert [e.seq for e in events(conn, after_seq=2, newest_first=False)] == [3, 4]
        assert [e.seq for e in events(conn, limit=2)] == [4, 3]


def test_an_event_rolls_back_with_the_change_it_records(store: Store) -> None:
    _append(store, 1)
    with pytest.raises(RuntimeError), store.db.write() as conn:
        store.audit(conn, "dataset.commit", "dataset:x")
        raise RuntimeError("the operation failed after auditing")
    assert _verify(store).checked == 1
    _append(store, 1)
    assert _verify(store).ok


@pytest.mark.parametrize(
    ("column", "value", "reason"),
    [
        ("details", '{"i":2,"note":"forged"}', "details were altered"),
        ("actor", "local:mallory", "recorded fields"),
        ("action", "dataset.delete", "recorded fields"),
        ("object_id", "dataset:other", "recorded fields"),
        ("at", datetime(2020, 1, 1, tzinfo=UTC), "recorded fields"),
        ("hash", "f" * 64, "recorded fields"),
    ],
)
def test_editing_any_field_is_detected_at_that_event(store: Store, column: str, value: object, reason: str) -> None:
    _append(store, 5)
    with store.db.write() as conn:
        conn.execute(update(audit_events).where(audit_events.c.seq == 3).values({column: value}))
    report = _verify(store)
    assert not report.ok
    # Rewriting a hash breaks its own check only if the event's fields are unchanged; either way 3 is named.
    assert report.first_bad_seq == 3
    assert reason in (report.reason or "")


def test_removing_a_middle_event_is_detected(store: Store) -> None:
    _append(store, 5)
    with store.db.write() as conn:
        conn.execute(delete(audit_events).where(audit_events.c.seq == 2))
    report = _verify(store)
    assert (report.ok, report.first_bad_seq) == (False, 2)
    assert "removed" in (report.reason or "")


def test_cutting_the_tail_is_detected(store: Store) -> None:
    _append(store, 5)
    with store.db.write() as conn:
        conn.execute(delete(audit_events).where(audit_events.c.seq >= 4))
    report = _verify(store)
    assert (report.ok, report.first_bad_seq) == (False, 4)


def test_swapping_two_events_is_detected(store: Store) -> None:
    _append(store, 5)
    with store.db.write() as conn:
        conn.execute(update(audit_events).where(audit_events.c.seq == 2).values(seq=-2))
        conn.execute(update(audit_events).where(audit_events.c.seq == 3).values(seq=2))
        conn.execute(update(audit_events).where(audit_events.c.seq == -2).values(seq=3))
    report = _verify(store)
    assert (report.ok, report.first_bad_seq) == (False, 2)


def test_a_missing_head_is_detected(store: Store) -> None:
    _append(store, 2)
    with store.db.write() as conn:
        conn.execute(delete(audit_head))
    assert _verify(store).first_bad_seq == 1


def test_redacting_details_keeps_the_chain_verifiable(store: Store) -> None:
    _append(store, 3)
    with store.db.write() as conn:
        redact_details(conn, 2, actor=store.actor, key=store.audit_key)
        with pytest.raises(NotFoundError):
            redact_details(conn, 99, actor=store.actor, key=store.audit_key)
    report = _verify(store)
    assert report.ok and report.redacted == 1
    with store.db.read() as conn:
        (event,) = events(conn, object_id=f"dataset-version:{1:064x}")
    assert event.details is None and event.redacted_at is not None


def test_an_event_needs_actor_action_and_object(store: Store) -> None:
    with store.db.write() as conn, pytest.raises(InputError, match="needs an actor"):
        record(conn, actor="", action="x", object_id="y")


def test_an_empty_log_verifies(store: Store) -> None:
    report = _verify(store)
    assert report.ok and report.checked == 0 and report.head_seq is None


def test_events_page_back_from_before_seq(store: Store) -> None:
    with store.db.write() as conn:
        for i in range(5):
            store.audit(conn, "test.event", f"thing:{i}")
    with store.db.read() as conn:
        newest = events(conn, action="test.event", limit=None)
        older = events(conn, action="test.event", before_seq=newest[1].seq, limit=2)
    assert [e.seq for e in older] == [newest[2].seq, newest[3].seq]
