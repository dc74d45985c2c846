"""Checking and cleaning a workspace: `doctor` (is everything readable?) and `collect_garbage` (`keel gc`).

A blob is referenced when a table names it (every column with a foreign key to `blobs`) or a
model or index manifest lists it. Everything else in the blob store is an orphan, left by a
writer that died between writing its blobs and committing the row that references them.
`collect_garbage` removes orphans older than a grace period holding the exclusive side of the
lock that writers take before they reference new blobs (`Store.missing_blobs`), so a concurrent
commit either finds its blobs or re-writes them. This module knows the schema, not the domains.
"""

from __future__ import annotations

import json
import random
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy import Column, Connection, delete, func, select, text
from sqlalchemy.exc import DBAPIError

from keel.core import durations
from keel.core.errors import BlobCorruptedError, BlobNotFoundError, ConfigError, DatabaseUnavailableError
from keel.store import _audit
from keel.store._audit_key import load_audit_key
from keel.store._blobs import LocalBlobStore, read_bytes, verify_blob
from keel.store._db import PG_GC_LOCK, Database
from keel.store._workspace import PARTIAL_GRACE_SECONDS, Store
from keel.store.schema import blobs, index_versions, metadata, model_versions

__all__ = ["DoctorReport", "Finding", "GcReport", "collect_garbage", "doctor", "parse_duration", "referenced_blobs"]

# Manifests that list further blobs ({"digest": ...} anywhere inside); dataset manifests need no
# parsing: their shards, key files and deletion vectors are rows of their own tables.
_MANIFEST_COLUMNS = (model_versions.c.manifest_digest, index_versions.c.manifest_digest)
_REPAIR = (
    "re-add the original files (`keel data commit` / `keel model register` of the same bytes repairs "
    "a blob in place) or restore the blob store from a backup"
)

Severity = Literal["ok", "note", "problem"]


@dataclass(frozen=True, slots=True)
class Finding:
    """One result of `doctor`: which check, how bad, what was found and what to do."""

    check: str
    severity: Severity
    message: str
    advice: str | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {"check": self.check, "severity": self.severity, "message": self.message, "advice": self.advice}


@dataclass
class DoctorReport:
    """Every finding of one `doctor` run; `ok` unless one is a problem."""

    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether nothing needs fixing (notes, such as reclaimable orphans, do not count)."""
        return all(f.severity != "problem" for f in self.findings)

    def add(self, check: str, severity: Severity, message: str, advice: str | None = None) -> None:
        """Record a finding."""
        self.findings.append(Finding(check, severity, message, advice))

    def to_json(self) -> dict[str, Any]:
        """What `keel doctor --json` prints."""
        return {"ok": self.ok, "findings": [f.to_json() for f in self.findings]}


def _blob_columns() -> Iterator[Column[Any]]:
    """Every column of the schema that holds a blob's digest (a foreign key to `blobs.digest`)."""
    for table in metadata.sorted_tables:
        for column in table.columns:
            if table is not blobs and any(fk.column is blobs.c.digest for fk in column.foreign_keys):
                yield column


def _digests_in(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "digest" and isinstance(item, str):
                yield item
            else:
                yield from _digests_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from _digests_in(item)


def referenced_blobs(store: Store, conn: Connection) -> tuple[dict[str, str], list[str]]:
    """Every blob the database references, with one place that references it.

    Returns:
        digest → where it is used (e.g. `model_versions.manifest_digest`), and the manifests
        that could not be read (their files cannot be listed, so nothing is known about them).
    """
    used: dict[str, str] = {}
    for column in _blob_columns():
        for digest in conn.scalars(select(column).where(column.is_not(None)).distinct()):
            used.setdefault(digest, f"{column.table.name}.{column.name}")
    unreadable = []
    for column in _MANIFEST_COLUMNS:
        for digest in conn.scalars(select(column).distinct()):
            try:
                manifest = json.loads(read_bytes(store.blobs, digest))
            except (BlobNotFoundError, BlobCorruptedError, ValueError):
                unreadable.append(digest)
                continue
            for listed in _digests_in(manifest):
                used.setdefault(listed, f"a file of the manifest {digest[:12]} ({column.table.name})")
    return used, unreadable


# --- doctor --------------------------------------------------------------------------------


def doctor(store: Store, *, sample: int | None = None, seed: int | None = None) -> DoctorReport:
    """Check the database, every referenced blob, leftovers, the audit chain and file permissions.

    Args:
        store: The workspace store (opened without migrating: a damaged database is a finding).
        sample: Verify the hashes of this many referenced blobs, chosen at random; all when None.
            Every referenced blob is still checked for presence and size.
        seed: Seed of the sample, for a repeatable choice.

    Returns:
        The findings; `ok` is False when something needs fixing.
    """
    report = DoctorReport()
    if not _check_database(store.db, report):
        return report
    try:  # MACs are checked where the audit key is at hand; doctor never creates one
        key = load_audit_key(store.settings, create=False)
    except ConfigError as exc:
        key, no_key = None, exc.message
    else:
        no_key = "no audit key here (KEEL_AUDIT_KEY or .keel/audit.key)" if key is None else ""
    with store.db.read() as conn:
        used, unreadable = referenced_blobs(store, conn)
        audit = _audit.verify(conn, key=key)
    for digest in unreadable:
        report.add("blobs", "problem", f"the manifest {digest} cannot be read, so its files are unknown", _REPAIR)
    _check_blobs(store, used, sample, seed, report)
    _check_leftovers(store, used, report)
    if audit.ok:
        macs = "every MAC checked" if key is not None else f"MACs not checked: {no_key}"
        report.add("audit", "ok", f"the audit chain verifies ({audit.checked} events, {macs})")
    else:
        report.add(
            "audit",
            "problem",
            f"the audit chain breaks at event {audit.first_bad_seq}: {audit.reason}",
            "the log was altered outside Keel: restore the database from a backup and find out who wrote it",
        )
    _check_permissions(store, report)
    return report


def _check_database(db: Database, report: DoctorReport) -> bool:
    try:
        with db.read() as conn:
            if db.dialect == "sqlite":
                problems = [row[0] for row in conn.exec_driver_sql("PRAGMA integrity_check")]
                problems = [p for p in problems if p != "ok"]
                problems += [f"foreign key: {tuple(row)}" for row in conn.exec_driver_sql("PRAGMA foreign_key_check")]
            else:
                problems = _postgres_checks(conn)
        revision = db.revision()
    except DatabaseUnavailableError as exc:
        report.add("database", "problem", str(exc.message), exc.hint)
        return False
    if problems:
        shown = "; ".join(problems[:5]) + (f"; … {len(problems) - 5} more" if len(problems) > 5 else "")
        report.add(
            "database",
            "problem",
            f"the metadata database {db.display_url} fails its integrity check: {shown}",
            "restore it from a backup (SQLite: `.recover` in the sqlite3 shell saves what is readable)",
        )
        return False
    report.add("database", "ok", f"{db.display_url} passes its integrity check")
    if revision != db.head():
        report.add(
            "schema",
            "problem",
            f"the schema is at revision {revision or '(empty)'}; this Keel's is {db.head()}",
            "run `keel db upgrade` (or upgrade Keel if the database is newer)",
        )
        return False
    report.add("schema", "ok", f"the schema is at the newest revision, {revision}")
    return True


def _postgres_checks(conn: Connection) -> list[str]:
    """Read every row of every Keel table (a damaged page fails the read), and check B-tree indexes with amcheck."""
    problems = []
    for table in metadata.sorted_tables:
        conn.execute(select(func.count()).select_from(table)).scalar()
    if conn.scalar(text("SELECT count(*) FROM pg_extension WHERE extname = 'amcheck'")):
        indexes = conn.execute(
            text(
                "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                "JOIN pg_am a ON a.oid = c.relam WHERE a.amname = 'btree' AND c.relnamespace = "
                "(SELECT oid FROM pg_namespace WHERE nspname = current_schema())"
            )
        ).scalars()
        for index in indexes:
            try:
                with conn.begin_nested():
                    conn.execute(text("SELECT bt_index_check(CAST(:name AS regclass))"), {"name": index})
            except DBAPIError as exc:  # amcheck reports damage as an error naming it
                problems.append(f"index {index}: {str(exc.orig).splitlines()[0]}")
    return problems


def _check_blobs(
    store: Store, used: dict[str, str], sample: int | None, seed: int | None, report: DoctorReport
) -> None:
    digests = sorted(used)
    to_hash = set(digests if sample is None else random.Random(seed).sample(digests, min(sample, len(digests))))
    missing, damaged = [], []
    for digest in digests:
        try:
            store.blobs.size(digest)
            if digest in to_hash:
                verify_blob(store.blobs, digest)
        except BlobNotFoundError:
            missing.append(digest)
        except BlobCorruptedError:
            damaged.append(digest)
    for kind, found in (("missing", missing), ("damaged", damaged)):
        for digest in found:
            report.add("blobs", "problem", f"blob {digest} (used by {used[digest]}) is {kind}", _REPAIR)
    if not (missing or damaged):
        how = "hash-verified" if sample is None else f"present, {len(to_hash)} hash-verified (a random sample)"
        report.add("blobs", "ok", f"{len(digests)} referenced blob(s) {how}")


def _check_leftovers(store: Store, used: dict[str, str], report: DoctorReport) -> None:
    orphans = [d for d in store.blobs.digests() if d not in used]
    if orphans:
        size = sum(_size_or_zero(store, d) for d in orphans)
        report.add(
            "orphans",
            "note",
            f"{len(orphans)} blob(s) ({size:,} bytes) are referenced by nothing (left by interrupted writes)",
            "`keel gc` removes those older than its grace period (`--grace 1h`)",
        )
    else:
        report.add("orphans", "ok", "every stored blob is referenced")
    if isinstance(store.blobs, LocalBlobStore):
        partials = store.blobs.partials()
        if partials:
            report.add(
                "partials",
                "note",
                f"{len(partials)} partial upload(s) ({sum(p[1] for p in partials):,} bytes) in {store.blobs.url}/tmp",
                f"removed when older than {PARTIAL_GRACE_SECONDS / 3600:g} h as the workspace is opened, "
                "or now by `keel gc --grace 0s` when no write is running",
            )


def _size_or_zero(store: Store, digest: str) -> int:
    try:
        return store.blobs.size(digest)
    except BlobNotFoundError:  # removed meanwhile
        return 0


def _check_permissions(store: Store, report: DoctorReport) -> None:
    if store.settings.shared or store.settings.database_url is not None:
        return
    state = store.settings.state_dir
    exposed = [
        path
        for path in (state, state / "keel.db")
        if path.exists() and stat.S_IMODE(path.stat().st_mode) & (stat.S_IRWXO | (stat.S_IRWXG & ~stat.S_IXGRP))
    ]
    if exposed:
        report.add(
            "permissions",
            "problem",
            f"{', '.join(str(p) for p in exposed)} can be read by other users; `shared` is not set",
            f"run `chmod -R go-rwx {state}`, or set `shared: true` in keel.yaml if the group should read it",
        )


# --- garbage collection --------------------------------------------------------------------


@dataclass
class GcReport:
    """What `keel gc` removed (or, with `dry_run`, would remove)."""

    dry_run: bool
    grace_seconds: float
    removed: list[str] = field(default_factory=list)
    removed_bytes: int = 0
    kept_young: int = 0
    rows_removed: int = 0
    partials_removed: int = 0

    def to_json(self) -> dict[str, Any]:
        """What `keel gc --json` prints."""
        return {
            "dry_run": self.dry_run,
            "grace_seconds": self.grace_seconds,
            "removed": len(self.removed),
            "removed_bytes": self.removed_bytes,
            "kept_young": self.kept_young,
            "rows_removed": self.rows_removed,
            "partials_removed": self.partials_removed,
            "digests": self.removed,
        }


def collect_garbage(store: Store, *, grace_seconds: float = 3600.0, dry_run: bool = False) -> GcReport:
    """Remove blobs nothing references that are older than `grace_seconds`, and stale partial uploads.

    Safe while others commit: removal happens under the lock writers take before they reference
    blobs; a writer whose blob went meanwhile finds it missing and writes it again. The grace
    period spares blobs whose writer has not reached that point yet (re-adding a blob renews it).

    Args:
        store: The workspace store.
        grace_seconds: Keep unreferenced blobs younger than this.
        dry_run: Report what would be removed; remove nothing.
    """
    report = GcReport(dry_run=dry_run, grace_seconds=grace_seconds)
    stored = list(store.blobs.digests())  # listing an object store is slow: done before taking the lock
    with store.db.write() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(select(func.pg_advisory_xact_lock(PG_GC_LOCK)))
        used, unreadable = referenced_blobs(store, conn)
        if unreadable:
            raise BlobCorruptedError(
                f"cannot tell which blobs are in use: manifest(s) {', '.join(d[:12] for d in unreadable)} "
                "cannot be read; nothing was removed",
                hint="run `keel doctor` and repair them first",
            )
        cutoff = time.time() - grace_seconds
        for digest in stored:
            if digest in used:
                continue
            try:
                if store.blobs.modified_at(digest) > cutoff:
                    report.kept_young += 1
                    continue
                size = store.blobs.size(digest)
                if not dry_run:
                    store.blobs.delete(digest)
            except BlobNotFoundError:
                continue
            report.removed.append(digest)
            report.removed_bytes += size
        if report.removed and not dry_run:
            for start in range(0, len(report.removed), 500):
                part = report.removed[start : start + 500]
                report.rows_removed += conn.execute(delete(blobs).where(blobs.c.digest.in_(part))).rowcount
    if isinstance(store.blobs, LocalBlobStore):
        if dry_run:
            report.partials_removed = sum(1 for p in store.blobs.partials() if p[2] < time.time() - grace_seconds)
        else:
            report.partials_removed = store.blobs.sweep_partials(grace_seconds)
    return report


def parse_duration(value: str) -> float:
    """Seconds in `30s`, `10m`, `1h`, `2d` or a plain number of seconds (zero allowed).

    Examples:
        >>> parse_duration("1h"), parse_duration("90s"), parse_duration("0")
        (3600.0, 90.0, 0.0)
    """
    return durations.parse_duration(value, allow_zero=True, bare_seconds=True).total_seconds()
