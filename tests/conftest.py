"""Shared fixtures: a clean environment, a workspace on each database backend, blob stores.

PostgreSQL tests run when KEEL_TEST_POSTGRES_URL is set (CI sets it); each test gets its own
schema, dropped afterwards. S3 tests run against moto's real HTTP server on 127.0.0.1.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from keel.core.settings import load_settings
from keel.store import Store, init_workspace, open_store

POSTGRES_URL = os.environ.get("KEEL_TEST_POSTGRES_URL")
# CI sets this: there, a PostgreSQL or S3 test that cannot run is a failure, not a skip.
REQUIRE_ALL_TIERS = bool(os.environ.get("KEEL_REQUIRE_ALL_TIERS"))
POSTGRES_SKIP = (
    "PostgreSQL tests need a server: set KEEL_TEST_POSTGRES_URL, "
    "e.g. postgresql://postgres@127.0.0.1:5432/test (CI does)"
)


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """No KEEL_* variable leaks in from the developer's shell, and the cwd is an empty folder."""
    for name in list(os.environ):
        if name.startswith("KEEL_") and name not in ("KEEL_TEST_POSTGRES_URL", "KEEL_REQUIRE_ALL_TIERS"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))


def _postgres_schema_url(schema: str) -> str:
    assert POSTGRES_URL is not None
    url = make_url(POSTGRES_URL)
    return url.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(hide_password=False)


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A database URL whose search_path is a fresh, private schema."""
    if not POSTGRES_URL:
        if REQUIRE_ALL_TIERS:
            pytest.fail(POSTGRES_SKIP)
        pytest.skip(POSTGRES_SKIP)
    schema = f"keel_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(make_url(POSTGRES_URL).set(drivername="postgresql+psycopg"))
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield _postgres_schema_url(schema)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each test using it runs twice: on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'keel.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """An initialised workspace folder on the default (SQLite) database."""
    root = tmp_path / "ws"
    init_workspace(root).close()
    return root


@pytest.fixture
def store(tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Store]:
    """An open store on each database backend, configured the way users do: through the environment."""
    monkeypatch.setenv("KEEL_DATABASE_URL", database_url)
    opened = init_workspace(tmp_path / "ws")
    yield opened
    opened.close()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[dict[str, Any]]:
    """moto's S3 server on 127.0.0.1, and the storage options that reach it."""
    reason = "S3 tests need moto[server]: pip install -e '.[dev]'"
    try:
        import moto.server as moto_server
    except ImportError:
        if REQUIRE_ALL_TIERS:
            pytest.fail(reason)
        pytest.skip(reason)
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    options = {"endpoint_url": f"http://{host}:{port}", "key": "testing", "secret": "testing"}
    yield options
    server.stop()


@pytest.fixture
def s3_blob_url(s3_server: dict[str, Any]) -> str:
    """A fresh bucket on the moto server, as an s3:// URL with a prefix."""
    import boto3

    bucket = f"keel-{uuid.uuid4().hex[:12]}"
    client = boto3.client(
        "s3",
        endpoint_url=s3_server["endpoint_url"],
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    )
    client.create_bucket(Bucket=bucket)
    return f"s3://{bucket}/blobs"


def reopen(store: Store) -> Store:
    """A second, independent store on the same workspace (as another process would open it)."""
    return open_store(load_settings(store.settings.workspace))
