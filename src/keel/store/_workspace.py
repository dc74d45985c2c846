"""A workspace's stores opened together: the `Store` every higher layer is handed.

`init_workspace` makes `keel.yaml` and `.keel/`; `open_store` resolves settings, connects,
brings the schema up to date and opens the blob store. Nothing here runs at import time.
"""

from __future__ import annotations

import os
import shlex
import threading
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import IO, Any

from sqlalchemy import Connection, func, select
from sqlalchemy.engine import make_url

from keel.core.clock import Clock, system_clock
from keel.core.errors import ConfigError, StoreError
from keel.core.settings import CONFIG_FILE, STATE_DIR, Settings, load_settings, workspace_template
from keel.store import _audit
from keel.store._audit_key import AuditKey, load_audit_key
from keel.store._blobs import BlobInfo, BlobStore, FsspecBlobStore, LocalBlobStore, open_blob_store
from keel.store._db import PG_GC_LOCK, Database, insert_for
from keel.store.schema import blobs, data_keys

__all__ = ["PARTIAL_GRACE_SECONDS", "Store", "init_workspace", "keel_version", "open_store"]

# A live writer touches its temporary file with every MiB; one untouched for an hour has died.
PARTIAL_GRACE_SECONDS = 3600.0


def keel_version() -> str:
    """The installed version of Keel."""
    try:
        return version("keel-llmops")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
        return "0+unknown"


@dataclass
class Store:
    """The metadata database and blob store of one workspace, and who is acting on them.

    Examples:
        >>> store = open_store()  # doctest: +SKIP
        >>> with store.db.write() as conn:  # doctest: +SKIP
        ...     store.audit(conn, "dataset.tag", "dataset:docs", {"tag": "gold"})
    """

    settings: Settings
    db: Database
    blobs: BlobStore
    clock: Clock = field(default=system_clock)
    # The authenticated principal, set by keel.govern once it verified an API key (`key:<id>`);
    # None means the local OS user (`settings.resolved_actor`).
    principal: str | None = None
    # Per-store state that higher layers keep here rather than in module globals (keel.govern's
    # policy snapshot); opaque to the store.
    extensions: dict[str, Any] = field(default_factory=dict, repr=False)
    _audit_key: AuditKey | None = field(default=None, repr=False)

    @property
    def actor(self) -> str:
        """The authenticated principal recorded in the audit log: never a free environment variable."""
        return self.principal or self.settings.resolved_actor

    @property
    def audit_key(self) -> AuditKey:
        """The workspace's audit key (`KEEL_AUDIT_KEY` or `.keel/audit.key`, created on first use)."""
        if self._audit_key is None:
            self._audit_key = load_audit_key(self.settings)
        assert self._audit_key is not None  # load_audit_key creates it when missing
        return self._audit_key

    def audit(
        self, conn: Connection, action: str, object_id: str, details: dict[str, Any] | None = None
    ) -> _audit.AuditEvent:
        """Record an audit event as this store's principal, MACed with the audit key, in the caller's transaction.

        `KEEL_ACTOR`, when set, is recorded beside the principal as `on_behalf_of`, never instead of it.
        """
        return _audit.record(
            conn,
            actor=self.actor,
            action=action,
            object_id=object_id,
            details=details,
            at=self.clock(),
            on_behalf_of=self.settings.on_behalf_of,
            key=self.audit_key,
        )

    def upgrade_schema(self) -> bool:
        """Apply pending migrations (`keel db upgrade`), sealing a chain made before audit keys as `open_store` does.

        Returns:
            Whether any migration ran.
        """
        migrated = self.db.upgrade()
        if migrated:
            self._seal_legacy_audit()
        return migrated

    def _seal_legacy_audit(self) -> None:
        """After migrations ran: MAC the events made before audit keys existed, once, with the workspace's key.

        Only when this upgrade added the MAC column: a later migration must not seal a chain someone stripped of
        its MACs (with write access to the database, they can also step the schema back one migration).
        """
        if _before_audit_macs(self.db.upgraded_from):
            with self.db.write() as conn:
                _audit.seal_legacy(conn, self.audit_key, actor=self.actor, at=self.clock())

    def put_blob(self, source: str | os.PathLike[str] | IO[bytes], conn: Connection | None = None) -> BlobInfo:
        """Store a file or stream in the blob store and register it in the database.

        Args:
            source: A path or a binary stream.
            conn: A write transaction to register the blob in; a new one if omitted.

        Returns:
            The blob's digest and size.
        """
        info = self.blobs.put_file(source) if isinstance(source, str | os.PathLike) else self.blobs.put_stream(source)
        row = {"digest": info.digest, "size": info.size, "created_at": self.clock()}
        if conn is not None:
            conn.execute(insert_for(conn, blobs).values(**row).on_conflict_do_nothing())
        else:
            with self.db.write() as own:
                own.execute(insert_for(own, blobs).values(**row).on_conflict_do_nothing())
        return info

    def missing_blobs(self, conn: Connection, digests: list[str]) -> list[str]:
        """In a write transaction about to reference `digests`: wait out a running `keel gc`, then name those gone.

        `keel gc` removes blobs holding the exclusive side of the same lock (SQLite's write lock,
        a PostgreSQL advisory lock), so a blob found here stays until this transaction references it.
        """
        if conn.dialect.name == "postgresql":
            conn.execute(select(func.pg_advisory_xact_lock_shared(PG_GC_LOCK)))
        return [digest for digest in dict.fromkeys(digests) if not self.blobs.exists(digest)]

    def status(self) -> dict[str, Any]:
        """What `keel status` reports: where everything is and how much of it there is."""
        settings = self.settings
        return {
            "keel_version": keel_version(),
            "workspace": str(settings.workspace),
            "database": {
                "url": self.db.display_url,
                "dialect": self.db.dialect,
                "source": settings.source_of("database_url"),
                "schema_revision": self.db.revision(),
                "schema_head": self.db.head(),
            },
            "blob_store": {"url": self.blobs.url, "source": settings.source_of("blob_url")},
            "actor": self.actor,
            "counts": self.db.count_rows(),
        }

    def close(self) -> None:
        """Release database connections."""
        self.db.dispose()


def open_store(settings: Settings | None = None, *, upgrade: bool = True) -> Store:
    """Open the workspace's stores, applying pending schema migrations unless told not to.

    Args:
        settings: Resolved settings; found from the environment and working directory if omitted.
        upgrade: Apply migrations (safe with many processes opening at once).

    Returns:
        The open store.

    Raises:
        WorkspaceNotFoundError: No workspace here or in any parent.
        ConfigError: A configured SQLite database's folder does not exist (it is not made: a typo'd URL would
            otherwise open an empty workspace).
        DatabaseUnavailableError: The database cannot be reached.
        SchemaError: The database was made by a newer Keel.
    """
    settings = settings or load_settings()
    _check_sqlite_folder(settings)
    db = Database(
        settings.resolved_database_url,
        origin=settings.source_of("database_url"),
        file_mode=0o660 if settings.shared else 0o600,
    )
    migrated = db.upgrade() if upgrade else False
    blob_store = open_blob_store(settings.resolved_blob_url, settings.blob_options, shared=settings.shared)
    if isinstance(blob_store, LocalBlobStore | FsspecBlobStore):
        blob_store.unsealer = DataKeys(db, settings)
    if isinstance(blob_store, LocalBlobStore) and not db.read_only:
        _sweep_partials(blob_store)
    store = Store(settings=settings, db=db, blobs=blob_store)
    if migrated:
        store._seal_legacy_audit()
    return store


def _check_sqlite_folder(settings: Settings) -> None:
    """Refuse a configured SQLite file whose folder does not exist.

    A typo in the URL would otherwise make that folder and an empty database, and show an empty workspace. A
    missing file in an existing folder is a first use; the default database (and a URL naming the workspace's own
    `.keel`) may make `.keel`, which a clone of a workspace lacks (it is git-ignored).

    Raises:
        ConfigError: The folder of the configured SQLite file is missing or not a folder.
    """
    if settings.database_url is None:
        return
    url = make_url(settings.resolved_database_url)
    database = url.database
    if url.get_backend_name() != "sqlite" or not database or database == ":memory:" or database.startswith("file:"):
        return
    folder = Path(database).parent
    if folder.is_dir() or folder.resolve() == settings.state_dir.resolve():
        return
    if folder.exists():
        found, hint = "a file", "fix the URL"
    else:
        found, hint = "no such folder", f"fix the URL, or create the folder (mkdir -p {shlex.quote(str(folder))})"
    raise ConfigError(
        f"{settings.source_of('database_url')} names the SQLite database {database}: expected its folder "
        f"{folder} to exist; found {found}",
        hint=hint,
    )


# The migration that added `audit_events.mac`: events in a database made before it carry none.
_AUDIT_MACS_REVISION = 9


def _before_audit_macs(revision: str | None) -> bool:
    """Whether a database at schema `revision` predates keyed audit events (None: it was empty)."""
    return revision is None or (revision.isdigit() and int(revision) < _AUDIT_MACS_REVISION)


class DataKeys:
    """The blob store's unsealer: a data key by id, unwrapped with the workspace keyring (read on first use)."""

    def __init__(self, db: Database, settings: Settings) -> None:
        self._db = db
        self._settings = settings
        self._keys: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def __call__(self, key_id: str) -> bytes:
        with self._lock:
            if key_id in self._keys:
                return self._keys[key_id]
        with self._db.read() as conn:
            row = conn.execute(select(data_keys.c.kek_id, data_keys.c.wrapped).where(data_keys.c.id == key_id)).first()
        if row is None:
            raise StoreError(
                f"a sealed blob names data key {key_id}, which this workspace's database does not hold: "
                "it was destroyed, or the blob store belongs to another workspace",
                hint="point KEEL_DATABASE_URL at the database this blob store was written with",
            )
        from keel.core.keyring import load_keyring

        key = load_keyring(self._settings, create=False).unwrap(row.kek_id, row.wrapped)
        with self._lock:
            self._keys[key_id] = key
        return key

    def remember(self, key_id: str, key: bytes) -> None:
        """Know a data key made in a transaction not yet committed (its writer reads its own blobs back)."""
        with self._lock:
            self._keys[key_id] = key

    def forget(self) -> None:
        """Drop the cached keys (after a key rotation or a data key's destruction)."""
        with self._lock:
            self._keys.clear()


def _sweep_partials(blob_store: LocalBlobStore) -> None:
    """Remove what writers killed more than `PARTIAL_GRACE_SECONDS` ago left in `blobs/tmp`."""
    try:
        blob_store.sweep_partials(PARTIAL_GRACE_SECONDS)
    except PermissionError:  # a workspace this user may read but not write: leave it to its owner
        return


def init_workspace(path: str | os.PathLike[str] = ".") -> Store:
    """Create a workspace (`keel.yaml` and `.keel/`) at `path` and its database schema.

    Re-running it on an existing workspace leaves `keel.yaml` untouched and only upgrades the schema.

    Raises:
        ConfigError: `path` exists and is not a directory.
    """
    root = Path(path).expanduser().resolve()
    if root.exists() and not root.is_dir():
        raise ConfigError(f"expected a directory to create the workspace in; {root} is a file")
    state = root / STATE_DIR
    config = root / CONFIG_FILE
    try:
        state_exists = state.is_dir()
        state.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not config.exists():
            config.write_text(workspace_template(), encoding="utf-8")
        settings = load_settings(root)
        if not state_exists:
            state.chmod(0o2770 if settings.shared else 0o700)  # mkdir's mode is filtered by the umask
        gitignore = state / ".gitignore"
        if not gitignore.exists():
            gitignore.write_text("*\n", encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"cannot create a workspace in {root}: {exc.strerror} ({exc.filename})",
            hint="choose a directory you may write, or ask its owner",
        ) from None
    return open_store(settings)
