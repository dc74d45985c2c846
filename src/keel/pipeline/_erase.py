"""Data-subject erasure across the whole loop: datasets, indexes, traces, feedback, models, deployments.

`erasure_impact` finds every place a subject (by keyed hash) or a record id reaches, reading only
indexes and lineage; `erase_subjects` then writes dataset versions without the records and deletes
the old shards' blobs, rebuilds the affected index versions and deletes the old ones' files, deletes
the subject's traces (and feedback, where that table exists) and the cached model generations
(augmentation and synthesis answers under `.keel/cache/augment`) whose request or answer holds an
erased value, marks the models trained on the affected versions and the deployments serving them,
and records a signed certificate in the audit log. It lives on the pipeline floor because it calls
every floor below; each part is theirs.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, delete, inspect, select, text

from keel.core.clock import format_time
from keel.core.errors import BlobNotFoundError, InputError
from keel.core.ids import new_ulid
from keel.core.keyring import load_keyring, parse_subject
from keel.curate._generate import GenerationCache, workspace_cache_root
from keel.data._erasure import DatasetHits, ReplacedVersion, erase_rows, find_rows, live_hits
from keel.govern._erasures import Certificate, record_erasure, sha256_text
from keel.index._build import build_index
from keel.index._engines import VectorParams
from keel.index._versions import IndexVersion, _from_row
from keel.monitor._traces import delete_traces, trace_ids_of
from keel.registry._marks import Mark, marks_for
from keel.serve._deployments import list_deployments
from keel.store import Store, read_bytes, walk
from keel.store.schema import blobs, index_versions

__all__ = ["ErasureImpact", "erase_subjects", "erasure_impact"]

FEEDBACK_TABLE = "feedback"  # added by the feedback feature; erased when the table exists


@dataclass
class ErasureImpact:
    """Everything an erasure would touch, found by keyed hash and id (the values are never stored)."""

    subjects: list[str]
    record_ids: list[str]
    hits: DatasetHits = field(repr=False)
    records: dict[str, list[str]] = field(default_factory=dict)  # version ref -> live erased record ids
    shard_rows: int = 0
    indexes: list[IndexVersion] = field(default_factory=list)
    traces: list[str] = field(default_factory=list)
    feedback: int | None = None  # None: no feedback table in this workspace
    models: list[str] = field(default_factory=list)
    deployments: list[str] = field(default_factory=list)
    generations: list[Path] = field(default_factory=list, repr=False)  # cached answers holding a value

    @property
    def empty(self) -> bool:
        """Whether nothing holds the subject."""
        return self.hits.empty and not self.indexes and not self.traces and not self.feedback and not self.generations

    def to_json(self) -> dict[str, Any]:
        """The impact report (`keel govern erase` without --yes)."""
        return {
            "subjects": self.subjects,
            "record_ids_sha256": sorted(sha256_text(i) for i in self.record_ids),
            "records": sum(len(v) for v in self.records.values()),
            "shard_rows": self.shard_rows,
            "dataset_versions": {ref: len(ids) for ref, ids in self.records.items()},
            "index_versions": [i.ref for i in self.indexes],
            "traces": len(self.traces),
            "feedback": self.feedback,
            "models": self.models,
            "deployments": self.deployments,
            "cached_generations": len(self.generations),
        }


def _subject_keys(store: Store, subjects: Sequence[str]) -> list[str]:
    keyring = load_keyring(store.settings)
    return sorted({keyring.subject_key(parse_subject(s)) for s in subjects})


def _feedback_columns(conn: Connection) -> list[str] | None:
    names = inspect(conn).get_table_names()
    if FEEDBACK_TABLE not in names:
        return None
    return [c["name"] for c in inspect(conn).get_columns(FEEDBACK_TABLE)]


def _feedback_where(columns: list[str], traces: list[str], values: list[str]) -> tuple[str, dict[str, Any]] | None:
    """A WHERE clause for the feedback rows of these traces or holding these values in any text column."""
    clauses: list[str] = []
    params: dict[str, Any] = {}
    if "trace_id" in columns and traces:
        marks = ", ".join(f":t{i}" for i in range(len(traces)))
        clauses.append(f"trace_id IN ({marks})")
        params |= {f"t{i}": t for i, t in enumerate(traces)}
    for j, value in enumerate(values):
        for column in columns:
            if column in ("id", "trace_id", "at", "created_at"):
                continue
            clauses.append(f'CAST("{column}" AS TEXT) LIKE :v{j}')
        params[f"v{j}"] = f"%{value}%"
    if not clauses:
        return None
    return " OR ".join(clauses), params


def _raw_values(subjects: Sequence[str]) -> list[str]:
    return [parse_subject(s).split(":", 1)[1] for s in subjects]


def erasure_impact(store: Store, subjects: Sequence[str] = (), record_ids: Sequence[str] = ()) -> ErasureImpact:
    """Find every place the subjects (`email:jane@example.com`) or record ids reach; change nothing.

    Raises:
        InputError: Neither a subject nor a record id was given, or a subject is malformed.
    """
    if not subjects and not record_ids:
        raise InputError("expected at least one --subject TYPE:VALUE or --record ID to erase; got neither")
    keys = _subject_keys(store, subjects)
    with store.db.read() as conn:
        hits = find_rows(conn, keys, record_ids)
        impact = ErasureImpact(keys, list(record_ids), hits, shard_rows=sum(len(r) for r in hits.rows.values()))
        digests = [d for _, _, d in hits.versions]
        if digests:
            rows = conn.execute(select(index_versions).where(index_versions.c.dataset_digest.in_(digests)))
            impact.indexes = [_from_row(r) for r in rows]
        impact.traces = trace_ids_of(conn, keys)
        columns = _feedback_columns(conn)
        if columns is not None:
            where = _feedback_where(columns, impact.traces, _raw_values(subjects))
            impact.feedback = (
                int(
                    conn.execute(text(f"SELECT COUNT(*) FROM {FEEDBACK_TABLE} WHERE {where[0]}"), where[1]).scalar()
                    or 0
                )
                if where
                else 0
            )
        impact.models = _models_downstream(conn, [f"dataset-version:{n}@v{v}" for n, v, _ in hits.versions])
    impact.records = live_hits(store, hits)
    impact.generations = _cached_generations(store, subjects)
    served = set(impact.models)
    impact.deployments = sorted(
        d.name for d in list_deployments(store) if any(f"model-version:{r.model}" in served for r in d.routes)
    )
    return impact


def _cached_generations(store: Store, subjects: Sequence[str]) -> list[Path]:
    """Cached model answers (augmentation, synthesis) whose request or answer holds a subject's value.

    By value, not keyed hash: the cache stores text, not hashes. A cache given its own `cache_dir` outside
    the workspace is not searched (docs/curation.md says so).
    """
    root = workspace_cache_root(store.settings.workspace)
    values = _raw_values(subjects)
    return GenerationCache(root).holding(values) if root is not None and values else []


def _models_downstream(conn: Connection, nodes: list[str]) -> list[str]:
    """Model versions trained (directly or through runs and other models) on any of these dataset versions."""
    found: set[str] = set()
    for node in nodes:
        with contextlib.suppress(InputError):  # a version with no lineage node yet
            found.update(h.node for h in walk(conn, node, "downstream", depth=6, limit=None))
    return sorted(n for n in found if n.startswith("model-version:"))


@dataclass
class _Done:
    replaced: list[ReplacedVersion] = field(default_factory=list)
    indexes: list[dict[str, Any]] = field(default_factory=list)
    blobs: list[str] = field(default_factory=list)
    traces: int = 0
    feedback: int | None = None
    generations: int = 0


def erase_subjects(
    store: Store, subjects: Sequence[str] = (), record_ids: Sequence[str] = ()
) -> tuple[ErasureImpact, Certificate | None]:
    """Erase what `erasure_impact` finds, and return the impact and the signed certificate (None: nothing found).

    Order: dataset versions (one transaction), index rebuilds, then traces, feedback, marks and the
    certificate (one transaction), then the old blobs leave the blob store.
    """
    impact = erasure_impact(store, subjects, record_ids)
    if impact.empty:
        return impact, None
    erasure_id = new_ulid()
    done = _Done()
    if not impact.hits.empty:
        with store.db.write() as conn:
            _secure_delete(conn)
            done.replaced, doomed = erase_rows(store, conn, impact.hits, erasure_id)
        done.blobs += doomed
        _delete_blobs(store, doomed)  # at once: nothing references them any more, and nothing would find them
    replacement = {r.old_digest: r for r in done.replaced}
    for index in impact.indexes:
        done.indexes.append(_rebuild_index(store, index, replacement.get(index.dataset_digest or "")))
        doomed = done.indexes[-1].pop("_doomed")
        done.blobs += doomed
        _delete_blobs(store, doomed)
    keyring = load_keyring(store.settings)
    with store.db.write() as conn:
        _secure_delete(conn)
        done.traces = delete_traces(conn, impact.traces)
        done.feedback = _erase_feedback(conn, impact, subjects)
        marks = _marks(conn, impact, done, erasure_id)
        for path in impact.generations:  # before the certificate: it counts what was removed
            path.unlink(missing_ok=True)
            done.generations += 1
        certificate = record_erasure(store, conn, keyring, _document(store, erasure_id, impact, done), marks)
    _checkpoint(store)
    return impact, certificate


def _delete_blobs(store: Store, digests: list[str]) -> None:
    """Delete blobs whose rows a committed transaction removed (a crash before this leaves orphans for `keel gc`)."""
    for digest in dict.fromkeys(digests):
        with contextlib.suppress(BlobNotFoundError):
            store.blobs.delete(digest)


def _secure_delete(conn: Connection) -> None:
    """On SQLite, overwrite deleted content with zeros, so erased rows leave no bytes in the file."""
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("PRAGMA secure_delete = ON")


def _checkpoint(store: Store) -> None:
    """On SQLite, copy the WAL into the database and empty it: no erased page survives in the log."""
    if store.db.dialect == "sqlite":
        with store.db.read() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")


def _rebuild_index(store: Store, index: IndexVersion, replaced: ReplacedVersion | None) -> dict[str, Any]:
    """Build the index anew from the dataset version without the records; delete the old version's files."""
    manifest = index.manifest(store)
    new_ref = None
    if replaced is not None:
        vectors = VectorParams(
            **{k: v for k, v in manifest["vectors"].items() if k in ("kind", "m", "ef_construction", "storage")}
        )
        build = build_index(
            store, index.name, replaced.new_ref, chunking=index.chunking, model=index.embedding_model, vectors=vectors
        )
        new_ref = build.index.ref
    doomed = [f["digest"] for f in manifest["files"].values()] + [index.manifest_digest]
    with store.db.write() as conn:
        _secure_delete(conn)
        shared: set[str] = set()  # files another version of the index still uses (none today; kept safe)
        for digest in conn.scalars(
            select(index_versions.c.manifest_digest).where(index_versions.c.manifest_digest != index.manifest_digest)
        ):
            with contextlib.suppress(BlobNotFoundError):
                other = json.loads(read_bytes(store.blobs, digest))
                shared.update(f["digest"] for f in other["files"].values())
        conn.execute(
            delete(index_versions).where(index_versions.c.name == index.name, index_versions.c.version == index.version)
        )
        doomed = [d for d in doomed if d not in shared]
        conn.execute(delete(blobs).where(blobs.c.digest.in_(doomed)))
    return {"old": index.ref, "old_manifest": index.manifest_digest, "new": new_ref, "_doomed": doomed}


def _erase_feedback(conn: Connection, impact: ErasureImpact, subjects: Sequence[str]) -> int | None:
    columns = _feedback_columns(conn)
    if columns is None:
        return None
    where = _feedback_where(columns, impact.traces, _raw_values(subjects))
    if where is None:
        return 0
    return int(conn.execute(text(f"DELETE FROM {FEEDBACK_TABLE} WHERE {where[0]}"), where[1]).rowcount or 0)


def _marks(conn: Connection, impact: ErasureImpact, done: _Done, erasure_id: str) -> list[Mark]:
    marks = [
        Mark(f"dataset-version:{r.old_ref}", "erased", erasure_id, f"dataset-version:{r.new_ref}")
        for r in done.replaced
    ]
    marks += [
        Mark(f"index-version:{i['old']}", "erased", erasure_id, f"index-version:{i['new']}" if i["new"] else None)
        for i in done.indexes
    ]
    marks += [Mark(m, "trained_on_erased_data", erasure_id) for m in impact.models]
    marks += [Mark(f"deployment:{d}", "serves_erased_data", erasure_id) for d in impact.deployments]
    return marks


def _document(store: Store, erasure_id: str, impact: ErasureImpact, done: _Done) -> dict[str, Any]:
    return {
        "id": erasure_id,
        "at": format_time(store.clock()),
        "actor": store.actor,
        "subjects": impact.subjects,
        "found": impact.to_json(),
        "done": {
            "dataset_versions": [r.to_json() for r in done.replaced],
            "shards_destroyed": sorted({impact.hits.shards[s][0] for s in impact.hits.shards}),
            "index_versions": done.indexes,
            "blobs_deleted": sorted(set(done.blobs)),
            "traces_deleted": done.traces,
            "trace_ids_sha256": sorted(sha256_text(t) for t in impact.traces),
            "feedback_deleted": done.feedback,
            "feedback_table": done.feedback is not None,
            "models_marked": impact.models,
            "deployments_marked": impact.deployments,
            "cached_generations_deleted": done.generations,
        },
    }


def erasure_marks(store: Store, nodes: Sequence[str]) -> dict[str, list[Mark]]:
    """The marks of these nodes (for faces that show them)."""
    with store.db.read() as conn:
        return marks_for(conn, nodes)
