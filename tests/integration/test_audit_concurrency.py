"""8 processes append 500 audit events each at once: the chain neither forks nor gaps."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from keel.core.settings import load_settings
from keel.store import Store, events, open_store, verify
from keel.store.schema import audit_events

PROCESSES = 8
EVENTS_EACH = 500


def _append_many(workspace: str, database_url: str, worker: int, count: int, start: mp.synchronize.Event) -> None:
    store = open_store(load_settings(workspace, database_url=database_url, actor=f"worker:{worker}"))
    start.wait()
    for i in range(count):
        with store.db.write() as conn:
            store.audit(conn, "test.append", f"run:w{worker}-{i}", {"worker": worker, "i": i})
    store.close()


@pytest.mark.timeout(600)
def test_concurrent_appends_from_many_processes(store: Store, database_url: str, tmp_path: Path) -> None:
    ctx = mp.get_context("spawn")  # a fresh interpreter each, as separate `keel` processes would be
    start = ctx.Event()
    workers = [
        ctx.Process(
            target=_append_many,
            args=(str(store.settings.workspace), database_url, w, EVENTS_EACH, start),
        )
        for w in range(PROCESSES)
    ]
    for proc in workers:
        proc.start()
    start.set()
    for proc in workers:
        proc.join(timeout=540)
    assert [proc.exitcode for proc in workers] == [0] * PROCESSES

    total = PROCESSES * EVENTS_EACH
    with store.db.read() as conn:
        seqs = conn.execute(select(audit_events.c.seq).order_by(audit_events.c.seq)).scalars().all()
        # KEEL_ACTOR (here `actor=`) is the on-behalf-of note; the actor is the authenticated principal.
        by_note = select(audit_events.c.on_behalf_of, func.count()).group_by(audit_events.c.on_behalf_of)
        per_worker = dict(conn.execute(by_note).all())
        actors = set(conn.scalars(select(audit_events.c.actor).distinct()))
        report = verify(conn, key=store.audit_key)
    assert seqs == list(range(1, total + 1))
    assert per_worker == {f"worker:{w}": EVENTS_EACH for w in range(PROCESSES)}
    assert actors == {store.actor}
    assert report.ok and report.checked == total

    # Tamper with one event's details behind Keel's back: verify names exactly that event.
    with store.db.read() as conn:
        (victim,) = events(conn, object_id="run:w5-250")
    with store.db.write() as conn:
        conn.execute(
            update(audit_events).where(audit_events.c.seq == victim.seq).values(details='{"i":250,"worker":6}')
        )
    with store.db.read() as conn:
        tampered = verify(conn)
    assert (tampered.ok, tampered.first_bad_seq) == (False, victim.seq)
    assert tampered.checked == victim.seq - 1
