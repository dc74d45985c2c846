"""A writer killed in the middle of a large blob leaves nothing readable under its digest."""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from keel.core.errors import BlobNotFoundError
from keel.store import open_blob_store

CHUNK = 1 << 20
CHUNKS = 64
# s3fs uploads in one PUT below twice its 50 MiB part size; past that it goes multipart.
S3_CHUNKS = 112

# Writes CHUNKS MiB of deterministic bytes to the blob store, announcing each MiB on stdout.
WRITER = """
import hashlib, json, sys, time
from keel.store import open_blob_store

url, options, delay, chunks = sys.argv[1], json.loads(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
store = open_blob_store(url, options)

class Slow:
    def __init__(self):
        self.i = 0
    def read(self, n=-1):
        if self.i == chunks:
            return b""
        self.i += 1
        print(self.i, flush=True)
        time.sleep(delay)
        return hashlib.sha256(str(self.i).encode()).digest() * ((1 << 20) // 32)

store.put_stream(Slow())
print("done", flush=True)
"""


def _expected_digest(chunks: int) -> tuple[str, bytes]:
    data = b"".join(hashlib.sha256(str(i).encode()).digest() * (CHUNK // 32) for i in range(1, chunks + 1))
    return hashlib.sha256(data).hexdigest(), data


def _start_writer(url: str, options: dict[str, Any], delay: float, chunks: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", WRITER, url, json.dumps(options), str(delay), str(chunks)],
        stdout=subprocess.PIPE,
        text=True,
    )


def _kill_after(proc: subprocess.Popen[str], chunks_written: int) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.strip() == str(chunks_written):
            break
    _kill(proc)


def _kill(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.stdout is not None
    proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL


def _assert_absent_then_retry(url: str, options: dict[str, Any], chunks: int) -> None:
    digest, data = _expected_digest(chunks)
    store = open_blob_store(url, options)
    assert not store.exists(digest)
    with pytest.raises(BlobNotFoundError):
        store.open(digest)
    retry = _start_writer(url, options, 0.0, chunks)
    out, _ = retry.communicate(timeout=120)
    assert retry.returncode == 0 and out.strip().endswith("done")
    with store.open(digest) as reader:
        assert hashlib.sha256(reader.read()).hexdigest() == digest
    assert store.size(digest) == len(data)


def test_killed_local_writer_leaves_no_blob(tmp_path: Path) -> None:
    url = str(tmp_path / "blobs")
    proc = _start_writer(url, {}, 0.02, CHUNKS)
    _kill_after(proc, CHUNKS // 2)
    partials = list((tmp_path / "blobs" / "tmp").glob("*.part"))
    assert partials, "the writer should have been killed mid-write, leaving its temporary file"
    assert list((tmp_path / "blobs").glob("sha256/*/*")) == []
    _assert_absent_then_retry(url, {}, CHUNKS)


@pytest.mark.s3
def test_killed_s3_writer_mid_upload_leaves_no_object(s3_blob_url: str, s3_server: dict[str, Any]) -> None:
    import boto3

    client = boto3.client(
        "s3",
        endpoint_url=s3_server["endpoint_url"],
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    )
    bucket = s3_blob_url.split("/")[2]
    proc = _start_writer(s3_blob_url, s3_server, 0.0, S3_CHUNKS)
    # Wait until the multipart upload has begun, then kill the writer in the middle of it.
    deadline = time.monotonic() + 60
    while not client.list_multipart_uploads(Bucket=bucket).get("Uploads"):
        assert time.monotonic() < deadline, "the writer never started a multipart upload"
        assert proc.poll() is None, "the writer finished before it could be killed mid-upload"
        time.sleep(0.005)
    _kill(proc)
    assert client.list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0
    _assert_absent_then_retry(s3_blob_url, s3_server, S3_CHUNKS)
