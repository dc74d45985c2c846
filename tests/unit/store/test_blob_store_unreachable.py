"""An S3 blob store that cannot be reached or used: one line naming the store and what to check, exit 2.

`keel data commit` and `keel data show` against an endpoint nothing listens on printed botocore's
traceback (EndpointConnectionError is not an OSError) and exited 1.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from keel.cli import app

runner = CliRunner()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _env(url: str, endpoint: str) -> dict[str, str]:
    # One attempt and a short connect timeout: botocore's defaults retry a refused connection for seconds.
    options: dict[str, Any] = {
        "endpoint_url": endpoint,
        "key": "testing",
        "secret": "not-to-be-printed",
        "config_kwargs": {"retries": {"max_attempts": 1}, "connect_timeout": 2},
    }
    return {"KEEL_BLOB_URL": url, "KEEL_BLOB_OPTIONS": json.dumps(options)}


def _assert_refused(args: list[str], env: dict[str, str], *expected: str) -> None:
    result = runner.invoke(app, args, env=env)
    output = " ".join(result.output.split())
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "not-to-be-printed" not in result.output
    for text in expected:
        assert text in output, result.output


def test_an_unreachable_endpoint_is_one_line_exit_2(workspace: Path, tmp_path: Path) -> None:
    data = tmp_path / "a.jsonl"
    data.write_text('{"id": "a", "text": "hello"}\n')
    env = _env("s3://keel-nowhere/blobs", f"http://127.0.0.1:{_closed_port()}")
    _assert_refused(
        ["-w", str(workspace), "data", "commit", "docs", str(data)],
        env,
        "StoreError",
        "s3://keel-nowhere/blobs",
        "blob_options",
    )


def test_reading_from_an_unreachable_endpoint_is_one_line_exit_2(
    workspace: Path, tmp_path: Path, s3_blob_url: str, s3_server: dict[str, Any]
) -> None:
    data = tmp_path / "a.jsonl"
    data.write_text('{"id": "a", "text": "hello"}\n')
    reachable = _env(s3_blob_url, s3_server["endpoint_url"])
    committed = runner.invoke(app, ["-w", str(workspace), "data", "commit", "docs", str(data)], env=reachable)
    assert committed.exit_code == 0, committed.output
    _assert_refused(
        ["-w", str(workspace), "data", "export", "docs@v1", str(tmp_path / "out.jsonl")],
        _env(s3_blob_url, f"http://127.0.0.1:{_closed_port()}"),
        "StoreError",
        s3_blob_url,
    )


def test_a_bucket_that_does_not_exist_says_what_to_check(
    workspace: Path, tmp_path: Path, s3_server: dict[str, Any]
) -> None:
    data = tmp_path / "a.jsonl"
    data.write_text('{"id": "a", "text": "hello"}\n')
    env = _env("s3://keel-no-such-bucket/blobs", s3_server["endpoint_url"])
    _assert_refused(
        ["-w", str(workspace), "data", "commit", "docs", str(data)], env, "s3://keel-no-such-bucket/blobs", "bucket"
    )
    _assert_refused(["-w", str(workspace), "doctor"], env, "s3://keel-no-such-bucket/blobs", "bucket does not exist")


@pytest.mark.parametrize("command", ["status", "doctor"])
def test_workspace_commands_name_the_unreachable_store(command: str, workspace: Path) -> None:
    env = _env("s3://keel-nowhere/blobs", f"http://127.0.0.1:{_closed_port()}")
    result = runner.invoke(app, ["-w", str(workspace), command], env=env)
    assert "Traceback" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "not-to-be-printed" not in result.output
