"""PostgreSQL schemas for the tests: Keel's migrations run once a session, and their SQL replayed in each test's schema.

Migrating a new schema costs ~0.23 CPU-s in the test process (Alembic, ~140 statements each its own round trip).
The first migration of a session runs for real, in a schema of its own, and every statement it sends to the server
is recorded; each test's schema then gets those statements, in order, as one query (one round trip, one
transaction): ~0.02 CPU-s in the test process, and less server CPU and wall time than the migration
(benchmarks/suite_fixtures.py, `postgres_workspace`). The server parses the same SQL text it parsed for the
migration, so the catalog is the same as a migrated schema's, down to how an index predicate is stored:
tests/unit/store/test_db.py compares the two with pg_dump, and still migrates empty schemas for real (the
schema-vs-migrations test). Only reads are left out (Alembic's and Keel's revision checks, the advisory lock).

Measured and dropped (benchmarks/suite_fixtures.py):
- a new database per test, `CREATE DATABASE ... TEMPLATE` a migrated one: each `DROP DATABASE` forces a checkpoint
  of the whole server and each copy writes the template's ~7.5 MB of catalogs to the WAL; with fsync on that took
  longer than the migration it replaced, and slowed every other user of the server;
- replaying a `pg_dump` of a migrated schema: as cheap, but a dump stores expressions as PostgreSQL prints them back
  (the open-alert index's predicate came back as a different, equivalent, expression), so the copy was not the
  migrated schema; it also needs a pg_dump matching the server.

Names are unique per run and per test (a random part), so two runs sharing a server (a developer's and CI's) never
touch each other's schemas; the schema migrated for the recording is dropped at once.

A run that is killed (`kill -9`, a CI job cancelled) cannot drop its schemas. So each run claims a number on the
server: it holds the advisory lock (`RUN_LOCK_CLASS`, number) on a connection of its own for as long as the process
lives, and names its schemas `keel_test_r<number>_<random>` (`keel_template_r…` for the recording). At its start a
run sweeps (`sweep_dead_runs`): a schema named so whose run's lock it can take belongs to a process that is gone
(the server released the lock when that process's connection closed), and is dropped; schemas of live runs, whose
locks are held, and every schema named any other way (benchmarks', older suites') are left alone. A lock, not a pid:
the runs sharing a server may live in other containers, where a pid means nothing.
Also imported by benchmarks/suite_fixtures.py, which measures these functions.
"""

from __future__ import annotations

import re
import secrets
import uuid
from dataclasses import dataclass, field
from typing import Any

import psycopg
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from keel.store import Database

__all__ = [
    "RUN_LOCK_CLASS",
    "RunLock",
    "admin_engine",
    "claim_run",
    "create_schema",
    "drop_schema",
    "migrate_schema",
    "migration_sql",
    "schema_of",
    "schema_url",
    "sweep_dead_runs",
    "unique_name",
]

_OPTION = "-csearch_path="
# What a migration sends that changes nothing: Alembic's and Keel's revision checks and the migration lock.
_READ = re.compile(r"\s*(SELECT|SHOW)\b", re.IGNORECASE)


# The advisory-lock class of test runs ('keel' in ASCII). Two-int keys: apart from Keel's own one-bigint locks.
RUN_LOCK_CLASS = 0x6B65656C
# Schemas a run of the suite makes: the prefix, the run's number (hex) and a random part. Nothing else is swept.
_RUN_SCHEMA = re.compile(r"^(?:keel_test|keel_template)_r([0-9a-f]{8})_[0-9a-f]{16}$")


def unique_name(prefix: str) -> str:
    """A schema name no other run on the server uses."""
    return f"{prefix}_{uuid.uuid4().hex[:16]}"


@dataclass
class RunLock:
    """This run's claim on the server: the lock (`RUN_LOCK_CLASS`, `number`), held by `conn` while the run lives."""

    number: int
    conn: psycopg.Connection[Any] = field(repr=False)

    def name(self, prefix: str = "keel_test") -> str:
        """A schema name of this run (`sweep_dead_runs` drops it once this run is gone)."""
        if prefix not in ("keel_test", "keel_template"):
            raise ValueError(f"expected the prefix keel_test or keel_template; found {prefix!r}")
        return f"{prefix}_r{self.number:08x}_{uuid.uuid4().hex[:16]}"

    def close(self) -> None:
        """End the claim (closing the connection releases the lock)."""
        self.conn.close()


def _libpq_url(base_url: str) -> str:
    return make_url(base_url).set(drivername="postgresql").render_as_string(hide_password=False)


def claim_run(base_url: str) -> RunLock:
    """Take a run number no live run holds, on a connection kept open (and the lock held) until `close`."""
    conn = psycopg.connect(_libpq_url(base_url), autocommit=True)
    while True:
        number = 1 + secrets.randbelow(2**31 - 1)
        taken = conn.execute("SELECT pg_try_advisory_lock(%s, %s)", (RUN_LOCK_CLASS, number)).fetchone()
        if taken and taken[0]:
            return RunLock(number, conn)


def sweep_dead_runs(run: RunLock) -> list[str]:
    """Drop the schemas of runs that are gone (killed before their teardown); returns the names dropped.

    A run is gone when its lock can be taken: the lock is held for as long as the run's connection is open, and
    the server closes that connection when the process dies. The lock is taken while the run's schemas are
    dropped, so two sweeping runs never drop the same schema, then released. This run's own are never touched.
    """
    rows = run.conn.execute("SELECT nspname FROM pg_namespace WHERE nspname LIKE 'keel\\_%' ORDER BY 1").fetchall()
    by_run: dict[int, list[str]] = {}
    for (schema,) in rows:
        found = _RUN_SCHEMA.match(schema)
        if found and int(found[1], 16) != run.number:
            by_run.setdefault(int(found[1], 16), []).append(schema)
    dropped = []
    for number, schemas in by_run.items():
        taken = run.conn.execute("SELECT pg_try_advisory_lock(%s, %s)", (RUN_LOCK_CLASS, number)).fetchone()
        if not (taken and taken[0]):
            continue  # that run is alive (or another run is sweeping it)
        try:
            for schema in schemas:
                run.conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
                dropped.append(schema)
        finally:
            run.conn.execute("SELECT pg_advisory_unlock(%s, %s)", (RUN_LOCK_CLASS, number))
    return dropped


def admin_engine(base_url: str) -> Engine:
    """An engine on the base URL's database for making, filling and dropping schemas, committing each statement.

    NullPool: no connection stays open between uses (nor keeps the search_path a replay set).
    """
    url = make_url(base_url).set(drivername="postgresql+psycopg")
    return create_engine(url, isolation_level="AUTOCOMMIT", poolclass=NullPool)


def schema_url(base_url: str, schema: str) -> str:
    """The base URL with its search_path set to `schema`: Keel's tables are made and found there."""
    url = make_url(base_url).update_query_dict({"options": f"{_OPTION}{schema}"})
    return url.render_as_string(hide_password=False)


def schema_of(url: str) -> str:
    """The schema a `schema_url` names."""
    options = make_url(url).query.get("options")
    if not isinstance(options, str) or not options.startswith(_OPTION):
        raise ValueError(f"expected a URL made by schema_url (options={_OPTION}SCHEMA); found {url}")
    return options.removeprefix(_OPTION)


def create_schema(admin: Engine, schema: str) -> None:
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))


def drop_schema(admin: Engine, schema: str) -> None:
    with admin.connect() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))


def migration_sql(admin: Engine, base_url: str, template: str | None = None) -> str:
    """Every statement but the reads that Keel's migrations send to an empty schema, values inlined, in order.

    Recorded from a real `Database.upgrade()` of a new schema (`template`, default a unique name), then dropped.
    """
    template = template or unique_name("keel_template")
    create_schema(admin, template)
    statements: list[str] = []

    def record(_conn: Any, cursor: Any, statement: str, parameters: Any, _context: Any, executemany: bool) -> None:
        if _READ.match(statement):
            return
        if executemany:  # none today; mogrify renders one set of values
            raise AssertionError(f"expected single statements from the migrations; found executemany of {statement}")
        # The text the server received, with the values the driver bound inlined by the driver's own quoting.
        statements.append(psycopg.ClientCursor(cursor.connection).mogrify(statement, parameters))

    db = Database(schema_url(base_url, template))
    event.listen(db.engine, "before_cursor_execute", record)
    try:
        if not db.upgrade():
            raise AssertionError(f"expected the new schema {template} to need migrating; it was at the head")
    finally:
        db.dispose()
        drop_schema(admin, template)
    return ";\n".join(statements) + ";\n"


def migrate_schema(admin: Engine, sql: str, schema: str) -> None:
    """Run the recorded migration in the empty `schema`, as one query (PostgreSQL makes it one transaction)."""
    with admin.connect() as conn:
        # The driver's own execute: with no parameters psycopg sends the text as is, in the simple protocol.
        conn.connection.driver_connection.execute(f'SET search_path TO "{schema}";\n{sql}')  # type: ignore[union-attr]
