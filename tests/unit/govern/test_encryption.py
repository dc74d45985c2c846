"""Encryption at rest: a restricted dataset's blobs hold only ciphertext, locally and on S3.

Every blob is read back raw (the files, or the bucket's objects through boto3) and searched for a
canary sentence, also after decoding it as Parquet, Arrow IPC or zstd: the search finds the canary in
an unclassified dataset's blobs (the control) and nowhere in the restricted one's. Reading through
Keel still gives the rows; a key rotation keeps them readable; without the key file they are not.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from tests.unit.govern.blobscan import raw_blob_files
from typer.testing import CliRunner

from keel.cli._app import app
from keel.core.errors import ConfigError
from keel.core.settings import load_settings
from keel.data import commit_version, load_version
from keel.data._classification import classify_dataset, rotate_keys
from keel.pipeline._erase import erase_subjects
from keel.store import Store, init_workspace, open_store

CANARY = "Canary sentence 7731: the vault code is heron-plum-ladder."


def _rows(n: int) -> pa.Table:
    texts = [CANARY if i % 3 == 0 else f"ordinary record {i}" for i in range(n)]
    return pa.table({"id": [f"r{i}" for i in range(n)], "text": texts})


def _holds_canary(data: bytes) -> bool:
    import pyarrow.parquet as pq
    import zstandard

    needles = (CANARY.encode(), b"heron-plum-ladder")
    decoded = [data]
    for decode in (
        lambda d: json.dumps(pq.read_table(pa.BufferReader(d)).to_pylist()).encode(),
        lambda d: json.dumps(pa.ipc.open_stream(d).read_all().to_pylist()).encode(),
        lambda d: zstandard.ZstdDecompressor().decompress(d, max_output_size=1 << 26),
    ):
        try:
            decoded.append(decode(data))
        except (pa.ArrowInvalid, OSError, zstandard.ZstdError):
            pass
    return any(n in d for d in decoded for n in needles)


def _check(store: Store) -> None:
    commit_version(store, "open", _rows(30))
    assert [name for name, data in raw_blob_files(store) if _holds_canary(data)]  # control: plaintext is found
    before = {name for name, _ in raw_blob_files(store)}
    classify_dataset(store, "vault", "restricted")
    commit_version(store, "vault", _rows(30), shard_rows=10)
    commit_version(store, "vault", _rows(33), shard_rows=10)  # reuses the sealed shards of v1
    vault_blobs = [(name, data) for name, data in raw_blob_files(store) if name not in before]
    assert len(vault_blobs) >= 8
    assert not [name for name, data in vault_blobs if _holds_canary(data)]
    assert all(data.startswith(b"\x00KEEL-AESGCM1") for _, data in vault_blobs)
    assert load_version(store, "vault@v2").column("text").to_pylist() == _rows(33).column("text").to_pylist()

    rotation = rotate_keys(store)
    assert rotation.data_keys == 2 and len(rotation.retired) == 1
    again = open_store(load_settings(store.settings.workspace))
    try:
        assert load_version(again, "vault@v1").num_rows == 30
        # Erasing a record of a restricted dataset writes its new shard sealed too.
        _, certificate = erase_subjects(again, record_ids=["r0"])
        assert certificate is not None
        assert load_version(again, "vault@v4").num_rows == 32
        assert not [name for name, data in raw_blob_files(again) if _holds_canary(data) and name not in before]
    finally:
        again.close()


def test_a_restricted_dataset_is_ciphertext_on_disk(store: Store) -> None:
    _check(store)


@pytest.mark.s3
def test_a_restricted_dataset_is_ciphertext_in_s3(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, s3_blob_url: str, s3_server: dict[str, Any]
) -> None:
    monkeypatch.setenv("KEEL_BLOB_URL", s3_blob_url)
    monkeypatch.setenv("KEEL_BLOB_OPTIONS", json.dumps(s3_server))
    store = init_workspace(tmp_path / "ws")
    try:
        _check(store)
    finally:
        store.close()


def test_without_the_key_file_restricted_rows_are_unreadable(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(workspace)
    runner = CliRunner()
    assert runner.invoke(app, ["govern", "classify", "vault", "restricted"]).exit_code == 0
    store = open_store(load_settings(workspace))
    try:
        commit_version(store, "vault", _rows(5))
    finally:
        store.close()
    key_file = workspace / ".keel" / "govern.key"
    key_file.rename(workspace / "elsewhere.key")
    fresh = open_store(load_settings(workspace))
    try:
        with pytest.raises(ConfigError, match="expected the governance key file"):
            load_version(fresh, "vault@v1")
    finally:
        fresh.close()
    result = runner.invoke(app, ["data", "show", "vault@v1"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    (workspace / "elsewhere.key").rename(key_file)
    rotated = runner.invoke(app, ["govern", "rotate-key", "--json"])
    assert rotated.exit_code == 0 and json.loads(rotated.output)["data_keys"] == 1


def test_a_bad_classification_is_one_line_exit_2(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(workspace)
    result = CliRunner().invoke(app, ["govern", "classify", "vault", "secret"])
    assert result.exit_code == 2 and "expected a classification among" in result.output


def test_rotation_refuses_a_keyring_from_the_environment(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(workspace)
    store = open_store(load_settings(workspace))
    try:
        from keel.core.keyring import load_keyring

        monkeypatch.setenv("KEEL_GOVERN_KEY", load_keyring(store.settings).to_json())
        from_env = open_store(load_settings(workspace))
        try:
            with pytest.raises(ConfigError, match="KEEL_GOVERN_KEY"):
                rotate_keys(from_env)
        finally:
            from_env.close()
    finally:
        store.close()


@pytest.mark.postgres
def test_postgresql_sslmode_in_the_url_reaches_the_driver() -> None:
    """`?sslmode=` is passed through to libpq: the test server has no TLS, so `require` is refused by name."""
    import os

    from keel.core.errors import DatabaseUnavailableError
    from keel.store import Database

    url = os.environ.get("KEEL_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("needs KEEL_TEST_POSTGRES_URL")
    base = url.split("?", 1)[0]
    plain, required = (
        Database(f"{base}?sslmode=disable", origin="test"),
        Database(f"{base}?sslmode=require", origin="t"),
    )
    try:
        with plain.read() as conn:
            assert conn.exec_driver_sql("SELECT 1").scalar() == 1
        with pytest.raises(DatabaseUnavailableError, match="SSL was required"), required.read() as conn:
            conn.exec_driver_sql("SELECT 1")
    finally:
        plain.dispose()
        required.dispose()
