"""The metadata database: one engine, read and write transactions, and schema migrations.

SQLite is tuned for many local processes (WAL, a busy timeout, and `BEGIN IMMEDIATE` for
writes so a reader never has to upgrade its lock mid-transaction); PostgreSQL is used as is.
A SQLite file Keel may not write is opened read-only, so reading commands work on it; a damaged
or foreign file becomes one `DatabaseUnavailableError`, never a driver traceback.
This module knows no table but Alembic's; domain modules bring their own queries.
"""

from __future__ import annotations

import os
import re
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from sqlalchemy import Connection, Engine, Table, create_engine, event, func, inspect, select, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DatabaseError, OperationalError
from sqlalchemy.pool import NullPool

from keel.core.errors import DatabaseUnavailableError, SchemaError
from keel.store.schema import metadata, postgresql_options

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import ScriptDirectory
    from sqlalchemy.dialects import postgresql, sqlite

# Alembic (0.25-0.3 CPU-s of imports: its DDL implementations for every dialect, Mako, Pygments) is imported
# only when a migration has to run or a revision has to be looked up; an up-to-date schema, every command's
# common case, is recognised by reading `alembic_version` and the migration file names.

__all__ = ["Database", "insert_for", "mask_url"]

_MIGRATIONS = Path(__file__).parent / "migrations"
# Every migration script is `versions/NNNN_name.py` with revision "NNNN" revising the one before it (a single
# line of history, pinned by tests/unit/store/test_db.py), so the head is the largest number.
_SCRIPT_NAME = re.compile(r"(\d{4})_\w+\.py")
# Any constant works; it only has to be the same for every Keel process sharing a database.
_PG_MIGRATION_LOCK = 0x6B65656C  # "keel"
# Held exclusively by `keel gc` while it removes blobs, shared by writers about to reference blobs.
PG_GC_LOCK = 0x6B656567  # "keeg"
_SQLITE_BUSY_TIMEOUT_MS = 60_000
# What SQLite says when the file is damaged or is not a database at all.
_SQLITE_DAMAGED = ("file is not a database", "database disk image is malformed", "malformed database schema")


def insert_for(conn: Connection, table: Table) -> postgresql.Insert | sqlite.Insert:
    """An INSERT for `table` in the connection's dialect, with its ON CONFLICT clauses.

    `.on_conflict_do_nothing()` and `.on_conflict_do_update(index_elements=..., set_=..., where=...)`
    then work the same on SQLite and PostgreSQL.
    """
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as postgresql_insert

        return postgresql_insert(table)
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(table)


def mask_url(url: str | URL) -> str:
    """The URL with its password replaced by `***`, safe to print.

    Examples:
        >>> mask_url("postgresql://keel:s3cret@db:5432/keel")
        'postgresql://keel:***@db:5432/keel'
    """
    return make_url(url).render_as_string(hide_password=True)


def _normalise(url: str) -> URL:
    parsed = make_url(url)
    # Plain postgresql:// would pick psycopg2; Keel ships psycopg 3.
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


class Database:
    """A connection pool to Keel's metadata database.

    Args:
        url: A SQLAlchemy URL; `sqlite:///path` or `postgresql://user@host/db`.
        origin: Where the URL came from (e.g. `KEEL_DATABASE_URL`), named in error messages.
        file_mode: Permissions of a SQLite file this creates (SQLite gives its -wal and -shm files the same).

    Examples:
        >>> db = Database("sqlite:////tmp/keel-example.db")
        >>> db.upgrade()
        >>> with db.read() as conn:
        ...     conn.scalar(text("select 1"))
        1
    """

    def __init__(self, url: str, *, origin: str = "the database URL", file_mode: int = 0o600) -> None:
        self.url = _normalise(url)
        self.display_url = mask_url(url)  # as the user wrote it, minus the password
        self.origin = origin
        self.file_mode = file_mode
        self.read_only = False
        # The revision the last `upgrade()` that ran migrations started from (None: an empty database).
        self.upgraded_from: str | None = None
        self.engine = self._create_engine()

    @property
    def dialect(self) -> str:
        """`sqlite` or `postgresql`."""
        return self.engine.dialect.name

    def __repr__(self) -> str:
        return f"Database({self.display_url!r})"

    def _create_engine(self) -> Engine:
        if self.url.get_backend_name() != "sqlite":
            postgresql_options()
            engine = create_engine(self.url, pool_pre_ping=True)
            event.listen(engine, "connect", _postgres_on_connect)
            return engine
        database = self.url.database
        timeout = _SQLITE_BUSY_TIMEOUT_MS / 1000
        # One connection per checkout: SQLite connections are cheap, and a pooled connection
        # shared across fork() corrupts the file.
        if database and database != ":memory:" and not database.startswith("file:"):
            path = Path(database)
            if _writable(path):
                self._create_file(path)
            else:
                self.read_only = True
                uri = _read_only_uri(path)
                engine = create_engine(
                    "sqlite://",
                    poolclass=NullPool,
                    creator=lambda: sqlite3.connect(uri, uri=True, timeout=timeout, check_same_thread=False),
                )
                event.listen(engine, "connect", _sqlite_on_connect_read_only)
                event.listen(engine, "begin", _sqlite_on_begin)
                return engine
        engine = create_engine(self.url, poolclass=NullPool, connect_args={"timeout": timeout})
        event.listen(engine, "connect", _sqlite_on_connect)
        event.listen(engine, "begin", _sqlite_on_begin)
        return engine

    def _create_file(self, path: Path) -> None:
        """Make a new SQLite file with `file_mode` before SQLite makes it with the umask's."""
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, self.file_mode)
        except FileExistsError:
            return
        os.close(fd)
        path.chmod(self.file_mode)  # os.open's mode is filtered by the umask

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A transaction for reading; it sees one consistent snapshot."""
        with self._connect() as conn, self._translate(), conn.begin():
            yield conn

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A transaction for writing, committed on success and rolled back on any error.

        On SQLite it takes the write lock at once (`BEGIN IMMEDIATE`), waiting for other
        writers, so that read-then-write sequences such as an audit append never fail midway.
        """
        with self._connect() as conn, self._translate():
            conn.execution_options(keel_write=True)
            with conn.begin():
                yield conn

    @contextmanager
    def _connect(self) -> Iterator[Connection]:
        try:
            with self._translate():
                conn = self.engine.connect()
        except OperationalError as exc:
            raise DatabaseUnavailableError(
                f"cannot connect to the metadata database {self.display_url} (from {self.origin}): "
                f"{_first_line(exc.orig)}",
                hint="check the server is running and the URL is right, or unset it to use the embedded SQLite",
            ) from None
        with conn:
            yield conn

    @contextmanager
    def _translate(self) -> Iterator[None]:
        """Turn SQLite's "damaged file" and "read-only file" errors into one `DatabaseUnavailableError`."""
        try:
            yield
        except DatabaseError as exc:
            message = _first_line(exc.orig)
            if self.dialect != "sqlite":
                raise
            if any(marker in message for marker in _SQLITE_DAMAGED):
                raise DatabaseUnavailableError(
                    f"the metadata database {self.display_url} is damaged or is not a SQLite database ({message})",
                    hint="restore it from a backup; `keel doctor` reports what else is wrong",
                ) from None
            if "readonly database" in message or "read-only" in message:
                raise DatabaseUnavailableError(
                    f"this command writes to the metadata database {self.display_url}, which is read-only here",
                    hint="run it where you may write the workspace; reading commands (status, data list, …) work",
                ) from None
            raise

    def revision(self) -> str | None:
        """The schema revision the database is at, or None for an empty database."""
        with self.read() as conn:
            return _current_revision(conn)

    @staticmethod
    def head() -> str:
        """The newest schema revision this version of Keel knows."""
        return _head()

    def upgrade(self) -> bool:
        """Bring the schema to this Keel's head revision; safe to call from many processes at once.

        Returns:
            Whether any migration ran.

        Raises:
            SchemaError: The database is at a revision this Keel does not know (made by a newer Keel).
        """
        # The common case, an up-to-date schema, needs no write lock: readers must not queue behind
        # writers just to learn that nothing is to be done.
        if self.revision() == self.head():
            return False
        with self.write() as conn:
            if self.dialect == "postgresql":
                conn.execute(select(func.pg_advisory_xact_lock(_PG_MIGRATION_LOCK)))
            current = _current_revision(conn)
            head = self.head()
            if current == head:
                return False
            if current is not None and not _known_revision(current):
                raise SchemaError(
                    f"the metadata database {self.display_url} is at schema revision {current!r}, "
                    f"which this Keel does not know (its newest is {head!r})",
                    hint="upgrade Keel (`pip install -U keel-llmops`) to the version that wrote it",
                )
            from alembic import command

            config = _alembic_config()
            config.attributes["connection"] = conn
            command.upgrade(config, "head")
            self.upgraded_from = current
            return True

    def count_rows(self, names: Iterable[str] | None = None) -> dict[str, int]:
        """Row counts of every Keel table (or of the tables `names`), by table name in alphabetical order."""
        wanted = None if names is None else set(names)
        with self.read() as conn:
            return {
                name: int(conn.scalar(select(func.count()).select_from(table)) or 0)
                for name, table in sorted(metadata.tables.items())
                if wanted is None or name in wanted
            }

    def dispose(self) -> None:
        """Close every pooled connection (call before forking, or at exit)."""
        self.engine.dispose()


def _current_revision(conn: Connection) -> str | None:
    """What Alembic's `MigrationContext.get_current_revision()` answers, without importing Alembic.

    Alembic keeps the revision in the one row of `alembic_version` (no table: an empty database).
    """
    if not inspect(conn).has_table("alembic_version"):
        return None
    rows = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    if len(rows) > 1:  # several heads: Alembic's own error says what is wrong
        from alembic.runtime.migration import MigrationContext

        return MigrationContext.configure(conn).get_current_revision()
    return str(rows[0]) if rows else None


@cache
def _head() -> str:
    """The largest `NNNN` of the migration scripts' names (`_SCRIPT_NAME`); Alembic agrees (tests pin it)."""
    numbers = [m[1] for p in (_MIGRATIONS / "versions").iterdir() if (m := _SCRIPT_NAME.fullmatch(p.name))]
    if not numbers:  # pragma: no cover - the package always ships migrations
        raise SchemaError("Keel's migration scripts are missing from the installation", hint="reinstall Keel")
    return max(numbers)


def _known_revision(revision: str) -> bool:
    from alembic.script.revision import ResolutionError
    from alembic.util import CommandError

    try:
        return _scripts().get_revision(revision) is not None
    except (ResolutionError, CommandError):
        return False


@cache
def _scripts() -> ScriptDirectory:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_alembic_config())


def _alembic_config() -> Config:  # not cached: upgrade() attaches its connection to it
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    return config


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy's "begin" event emit BEGIN, instead of pysqlite's own implicit transactions.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout = {_SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA journal_mode = WAL")
    cursor.execute("PRAGMA synchronous = NORMAL")  # durable across process crashes; WAL makes it safe
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.close()


def _sqlite_on_connect_read_only(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout = {_SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA query_only = ON")
    cursor.close()


def _writable(path: Path) -> bool:
    """Whether this process may write the SQLite file (and its directory, for -wal and -shm files)."""
    directory = path.parent
    while not directory.exists():  # a new database: its folders will be made
        directory = directory.parent
    if path.exists() and not os.access(path, os.W_OK):
        return False
    return os.access(directory if not path.exists() else path.parent, os.W_OK)


def _read_only_uri(path: Path) -> str:
    """A URI that opens the file without writing anything beside it.

    WAL mode needs a writable -shm file; when the last writer has closed, there is none, and a
    read-only folder cannot get one, so the file is opened `immutable` (nothing can write it anyway).
    """
    uri = f"file:{quote(str(path))}?mode=ro"
    wal, shm = Path(f"{path}-wal"), Path(f"{path}-shm")
    if not (wal.exists() and shm.exists()):
        uri += "&immutable=1"
    return uri


def _postgres_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # Keel's queries are short lookups, but recursive lineage CTEs get huge cost estimates, which
    # switch on JIT compilation: 300 ms of compiling to save nothing (benchmarks/lineage.py).
    with dbapi_connection.cursor() as cursor:
        cursor.execute("SET jit = off")
    dbapi_connection.commit()


def _sqlite_on_begin(conn: Connection) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("keel_write") else "BEGIN")


def _first_line(exc: BaseException | None) -> str:
    message = str(exc).strip() if exc is not None else "unknown error"
    return message.splitlines()[0] if message else type(exc).__name__
