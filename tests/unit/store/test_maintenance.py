"""`doctor` finds what cannot be read back; `collect_garbage` reclaims leftovers and nothing else."""

from __future__ import annotations

import io
import os
import time
from pathlib import Path

import pyarrow as pa
import pytest
from sqlalchemy import update

from keel.core.errors import BlobCorruptedError, InputError
from keel.data import commit_version, load_version
from keel.registry import pull_model, register_model
from keel.store import (
    LocalBlobStore,
    Store,
    collect_garbage,
    doctor,
    open_store,
    parse_duration,
    put_bytes,
    referenced_blobs,
)
from keel.store.schema import audit_events


def _workspace_with_data(store: Store, tmp_path: Path) -> None:
    commit_version(store, "docs", pa.table({"id": ["a", "b"], "text": ["one", "two"]}))
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    (model / "weights.bin").write_bytes(b"\x02" * 2048)
    register_model(store, "chat", model)


def _problems(store: Store, **kwargs: int) -> list[str]:
    return [f"{f.check}: {f.message}" for f in doctor(store, **kwargs).findings if f.severity == "problem"]


def _referenced(store: Store) -> tuple[dict[str, str], list[str]]:
    with store.db.read() as conn:
        return referenced_blobs(store, conn)


def _age(store: Store, digest: str, seconds: float) -> None:
    assert isinstance(store.blobs, LocalBlobStore)
    then = time.time() - seconds
    os.utime(store.blobs.path(digest), (then, then))


def test_doctor_is_clean_on_a_healthy_workspace(store: Store, tmp_path: Path) -> None:
    _workspace_with_data(store, tmp_path)
    report = doctor(store)
    assert report.ok, report.to_json()
    checks = {f.check: f.severity for f in report.findings}
    assert checks == {"database": "ok", "schema": "ok", "blobs": "ok", "orphans": "ok", "audit": "ok"}
    used, unreadable = _referenced(store)
    assert unreadable == [] and len(used) == 3 + 3  # shard, keys, manifest; two files, manifest


def test_doctor_names_damaged_and_missing_blobs_and_what_to_do(store: Store, tmp_path: Path) -> None:
    _workspace_with_data(store, tmp_path)
    assert isinstance(store.blobs, LocalBlobStore)
    weights = next(d for d in store.blobs.digests() if store.blobs.size(d) == 2048)
    path = store.blobs.path(weights)
    path.chmod(0o600)
    path.write_bytes(b"\x03" * 2048)
    shard = next(d for d, where in _referenced(store)[0].items() if where == "dataset_shards.digest")
    report = doctor(store)
    assert not report.ok
    damaged = [f for f in report.findings if f.severity == "problem"]
    assert len(damaged) == 1 and f"blob {weights}" in damaged[0].message and "damaged" in damaged[0].message
    assert damaged[0].advice is not None and "re-add the original files" in damaged[0].advice
    store.blobs.path(shard).unlink()
    assert any("is missing" in p for p in _problems(store))
    assert any("is missing" in p for p in _problems(store, sample=1))  # presence is always checked


def test_doctor_reports_a_broken_audit_chain(store: Store, tmp_path: Path) -> None:
    _workspace_with_data(store, tmp_path)
    with store.db.write() as conn:
        conn.execute(update(audit_events).where(audit_events.c.seq == 1).values(actor="someone-else"))
    assert any(p.startswith("audit: the audit chain breaks at event 1") for p in _problems(store))


def test_gc_removes_old_orphans_only(store: Store, tmp_path: Path) -> None:
    _workspace_with_data(store, tmp_path)
    before = doctor(store)
    referenced = set(_referenced(store)[0])
    old = put_bytes(store.blobs, b"left by a killed commit").digest
    young = put_bytes(store.blobs, b"being written right now").digest
    registered = store.put_blob(io.BytesIO(b"uploaded, never referenced")).digest
    for digest in (old, registered):
        _age(store, digest, 7200)
    orphans = next(f for f in doctor(store).findings if f.check == "orphans")
    assert orphans.severity == "note" and orphans.message.startswith("3 blob(s)") and before.ok
    dry = collect_garbage(store, grace_seconds=3600, dry_run=True)
    assert sorted(dry.removed) == sorted([old, registered]) and store.blobs.exists(old)
    done = collect_garbage(store, grace_seconds=3600)
    assert sorted(done.removed) == sorted([old, registered]) and done.kept_young == 1 and done.rows_removed == 1
    assert set(store.blobs.digests()) == referenced | {young}
    assert collect_garbage(store, grace_seconds=0).removed == [young]
    assert set(store.blobs.digests()) == referenced
    assert doctor(store).ok
    pull_model(store, "chat", tmp_path / "pulled")
    assert load_version(store, "docs").num_rows == 2


def test_gc_sweeps_stale_partials_and_opening_does_too(store: Store) -> None:
    assert isinstance(store.blobs, LocalBlobStore)
    stale = store.blobs.root / "tmp" / "dead.part"
    stale.write_bytes(b"half")
    os.utime(stale, (0, 0))
    partials = next(f for f in doctor(store).findings if f.check == "partials")
    assert partials.severity == "note" and "1 partial upload(s)" in partials.message
    open_store(store.settings).close()
    assert not stale.exists()
    live = store.blobs.root / "tmp" / "live.part"
    live.write_bytes(b"half")
    assert collect_garbage(store, grace_seconds=3600).partials_removed == 0 and live.exists()
    assert collect_garbage(store, grace_seconds=0).partials_removed == 1 and not live.exists()


def test_parse_duration() -> None:
    assert [parse_duration(v) for v in ("0", "45s", "10m", "1h", "2d", "1.5h")] == [0, 45, 600, 3600, 172800, 5400]
    for bad in ("", "soon", "-1h", "h"):
        with pytest.raises(InputError, match="expected a duration"):
            parse_duration(bad)


def test_gc_removes_nothing_while_a_manifest_cannot_be_read(store: Store, tmp_path: Path) -> None:
    _workspace_with_data(store, tmp_path)
    assert isinstance(store.blobs, LocalBlobStore)
    manifest = next(d for d, where in _referenced(store)[0].items() if where == "model_versions.manifest_digest")
    orphan = put_bytes(store.blobs, b"an orphan").digest
    store.blobs.path(manifest).unlink()
    assert any(p.startswith(f"blobs: the manifest {manifest} cannot be read") for p in _problems(store))
    with pytest.raises(BlobCorruptedError, match="cannot tell which blobs are in use"):
        collect_garbage(store, grace_seconds=0)
    assert store.blobs.exists(orphan)
