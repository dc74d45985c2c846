from __future__ import annotations

import multiprocessing as mp
import shutil
import subprocess
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.engine import make_url
from tests.conftest import REQUIRE_ALL_TIERS, PostgresServer
from tests.postgres import create_schema, drop_schema, schema_of, schema_url

from keel.core.errors import DatabaseUnavailableError, SchemaError
from keel.store import Database, Store, mask_url
from keel.store.schema import metadata


def test_migrations_build_exactly_the_declared_schema(database_url: str) -> None:
    db = Database(database_url)
    assert db.upgrade() is True
    with db.read() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata)
    assert diff == []
    assert db.revision() == Database.head()
    db.dispose()


def test_the_store_fixtures_copied_database_is_the_declared_schema_at_head(store: Store) -> None:
    """The `store` fixture copies a database migrated once a session (tests/conftest.py): the copy is complete."""
    with store.db.read() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata)
    assert diff == []
    assert store.db.revision() == Database.head()


def _pg_dump(base_url: str, schema: str) -> list[str]:
    """The schema's pg_dump (tables, indexes, comments, sequences, statistics, rows) with its name as SCHEMA."""
    pg_dump = shutil.which("pg_dump")
    assert pg_dump is not None
    libpq_url = make_url(base_url).set(drivername="postgresql").render_as_string(hide_password=False)
    dumped = subprocess.run(
        [pg_dump, "--no-owner", "--no-privileges", "--inserts", "--schema", schema, "--dbname", libpq_url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    # \restrict and \unrestrict carry a random key per dump.
    return [line.replace(schema, "SCHEMA") for line in dumped.splitlines() if not line.startswith("\\")]


@pytest.mark.postgres
def test_the_store_fixtures_replayed_postgresql_migration_makes_what_the_migration_makes(
    postgres_url: str, postgres_server: PostgresServer
) -> None:
    """A schema the `store` fixture migrates (the session's migration SQL replayed) dumps as one migrated now."""
    if shutil.which("pg_dump") is None:
        (pytest.fail if REQUIRE_ALL_TIERS else pytest.skip)("needs pg_dump (postgresql-client), to compare the schemas")
    db = Database(postgres_url)
    assert db.upgrade() is True
    db.dispose()
    copy = postgres_server.run.name("keel_test")
    create_schema(postgres_server.admin, copy)
    try:
        postgres_server.migrate(schema_url(postgres_server.base_url, copy))
        migrated = _pg_dump(postgres_server.base_url, schema_of(postgres_url))
        copied = _pg_dump(postgres_server.base_url, copy)
    finally:
        drop_schema(postgres_server.admin, copy)
    assert any(line.startswith("CREATE TABLE SCHEMA.") for line in migrated)
    assert any("INSERT INTO SCHEMA.alembic_version VALUES" in line for line in migrated)
    assert copied == migrated


def test_upgrade_is_idempotent(database_url: str) -> None:
    db = Database(database_url)
    assert db.upgrade() is True
    assert db.upgrade() is False
    db.dispose()


def _upgrade(url: str) -> None:
    db = Database(url)
    db.upgrade()
    db.dispose()


def test_many_processes_opening_a_new_database_at_once(database_url: str) -> None:
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_upgrade, args=(database_url,)) for _ in range(4)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=120)
    assert [proc.exitcode for proc in procs] == [0, 0, 0, 0]
    db = Database(database_url)
    assert db.revision() == Database.head()
    db.dispose()


def test_a_database_from_a_newer_keel_is_refused(store: Store) -> None:
    with store.db.write() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    with pytest.raises(SchemaError, match="revision '9999', which this Keel does not know"):
        store.db.upgrade()


def test_sqlite_runs_in_wal_mode(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'k.db'}")
    with db.read() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    db.dispose()


def test_an_unreachable_server_is_one_clear_error() -> None:
    db = Database("postgresql://keel:s3cret@127.0.0.1:1/keel", origin="KEEL_DATABASE_URL")
    with pytest.raises(DatabaseUnavailableError) as caught:
        db.upgrade()
    message = str(caught.value)
    assert "postgresql://keel:***@127.0.0.1:1/keel (from KEEL_DATABASE_URL)" in message
    assert "s3cret" not in message
    assert "\n" not in message


def test_mask_url_hides_only_the_password() -> None:
    assert mask_url("postgresql://u:p@h/d") == "postgresql://u:***@h/d"
    assert mask_url("sqlite:////x/keel.db") == "sqlite:////x/keel.db"
