from __future__ import annotations

import hashlib
import io
import os
import stat
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from keel.core.errors import BlobCorruptedError, BlobNotFoundError, InputError
from keel.store import BlobStore, FsspecBlobStore, LocalBlobStore, Store, open_blob_store, put_bytes, read_bytes


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3)])
def blob_store(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    if request.param == "local":
        return open_blob_store(str(tmp_path / "blobs"))
    url = request.getfixturevalue("s3_blob_url")
    return open_blob_store(url, request.getfixturevalue("s3_server"))


def _corrupt(store: BlobStore, digest: str, data: bytes) -> None:
    """Overwrite a stored blob's bytes behind the store's back."""
    if isinstance(store, LocalBlobStore):
        path = store.path(digest)
        path.chmod(stat.S_IWUSR | stat.S_IRUSR)
        path.write_bytes(data)
    else:
        assert isinstance(store, FsspecBlobStore)
        with store.fs.open(store.key(digest), "wb") as sink:
            sink.write(data)


class _Pattern(io.RawIOBase):
    """`size` pseudo-random-ish bytes produced on the fly: a stream larger than we want in memory."""

    def __init__(self, size: int) -> None:
        self.remaining = size
        self.block = hashlib.sha256(b"seed").digest() * (1 << 15)  # 1 MiB

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = min(len(buffer), self.remaining, len(self.block))
        buffer[:n] = self.block[:n]
        self.remaining -= n
        return n


def test_round_trip_and_deduplication(blob_store: BlobStore, tmp_path: Path) -> None:
    first = put_bytes(blob_store, b"hello keel")
    again = put_bytes(blob_store, b"hello keel")
    assert first.digest == hashlib.sha256(b"hello keel").hexdigest()
    assert (first.size, first.created, again.created) == (10, True, False)
    assert read_bytes(blob_store, first.digest) == b"hello keel"
    assert blob_store.exists(first.digest) and blob_store.size(first.digest) == 10
    dest = blob_store.get_file(first.digest, tmp_path / "out" / "copy.txt")
    assert dest.read_bytes() == b"hello keel"
    assert list(blob_store.digests()) == [first.digest]


def test_put_file_and_empty_blob(blob_store: BlobStore, tmp_path: Path) -> None:
    source = tmp_path / "weights.bin"
    source.write_bytes(os.urandom(3 * 1024 * 1024 + 7))
    info = blob_store.put_file(source)
    assert info.digest == hashlib.sha256(source.read_bytes()).hexdigest()
    assert read_bytes(blob_store, info.digest) == source.read_bytes()
    empty = put_bytes(blob_store, b"")
    assert read_bytes(blob_store, empty.digest) == b""


def test_a_corrupted_blob_raises_naming_its_digest(blob_store: BlobStore, tmp_path: Path) -> None:
    info = put_bytes(blob_store, b"the original bytes")
    _corrupt(blob_store, info.digest, b"the tampered bytes")
    with pytest.raises(BlobCorruptedError, match=f"blob {info.digest} .* is corrupted"):
        read_bytes(blob_store, info.digest)
    with pytest.raises(BlobCorruptedError):
        blob_store.get_file(info.digest, tmp_path / "restored.txt")
    assert not (tmp_path / "restored.txt").exists()
    assert list(tmp_path.glob(".restored.txt.*")) == []


def test_a_truncated_blob_raises(blob_store: BlobStore) -> None:
    info = put_bytes(blob_store, b"0123456789")
    _corrupt(blob_store, info.digest, b"01234")
    with pytest.raises(BlobCorruptedError, match=info.digest):
        read_bytes(blob_store, info.digest)


def test_missing_and_malformed_digests(blob_store: BlobStore) -> None:
    missing = "0" * 64
    with pytest.raises(BlobNotFoundError, match=f"no blob {missing}"):
        blob_store.open(missing)
    with pytest.raises(BlobNotFoundError):
        blob_store.size(missing)
    assert not blob_store.exists(missing)
    assert blob_store.delete(missing) is False
    with pytest.raises(InputError, match="64 lowercase hex digits"):
        blob_store.exists("../../etc/passwd")


def test_delete(blob_store: BlobStore) -> None:
    info = put_bytes(blob_store, b"bye")
    assert blob_store.delete(info.digest) is True
    assert not blob_store.exists(info.digest)


def test_streaming_a_large_blob_keeps_memory_flat(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    size = 256 * 1024 * 1024
    tracemalloc.start()
    info = store.put_stream(_Pattern(size))
    with store.open(info.digest) as reader:
        total = 0
        while chunk := reader.read(1 << 20):
            total += len(chunk)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert total == size == info.size
    assert peak < 16 * 1024 * 1024, f"peak Python memory {peak / 2**20:.1f} MiB while streaming 256 MiB"


def test_local_blobs_are_read_only_files_of_their_owner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    os.umask(0o022)  # the usual umask, under which files were world-readable
    store = LocalBlobStore(tmp_path / "blobs")
    info = put_bytes(store, b"immutable")
    assert not os.access(store.path(info.digest), os.W_OK) or os.geteuid() == 0
    assert stat.S_IMODE(store.path(info.digest).stat().st_mode) == 0o400
    for directory in (store.root, store.root / "tmp", store.path(info.digest).parent):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700, directory
    shared = LocalBlobStore(tmp_path / "shared", shared=True)
    info = put_bytes(shared, b"for the team")
    assert stat.S_IMODE(shared.path(info.digest).stat().st_mode) == 0o440
    assert stat.S_IMODE(shared.path(info.digest).parent.stat().st_mode) == 0o2770


@pytest.mark.parametrize("damage", [b"the tampered bytes", b"short", b""])
def test_re_adding_the_original_repairs_a_damaged_blob(blob_store: BlobStore, damage: bytes) -> None:
    original = b"the original bytes"
    info = put_bytes(blob_store, original)
    _corrupt(blob_store, info.digest, damage)  # same size, shorter, empty
    with pytest.raises(BlobCorruptedError):
        read_bytes(blob_store, info.digest)
    again = put_bytes(blob_store, original)
    assert (again.digest, again.created, again.repaired) == (info.digest, False, True)
    assert read_bytes(blob_store, info.digest) == original
    assert put_bytes(blob_store, original).repaired is False


def test_re_adding_an_intact_blob_marks_it_fresh(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    info = put_bytes(store, b"old but wanted again")
    os.utime(store.path(info.digest), (0, 0))
    assert store.modified_at(info.digest) == 0
    assert put_bytes(store, b"old but wanted again").created is False
    assert store.modified_at(info.digest) > 0


def test_sweeping_leftover_partials(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    old = tmp_path / "blobs" / "tmp" / "dead-writer.part"
    old.write_bytes(b"half")
    os.utime(old, (0, 0))
    fresh = tmp_path / "blobs" / "tmp" / "live-writer.part"
    fresh.write_bytes(b"half")
    assert store.sweep_partials(older_than_seconds=3600) == 1
    assert not old.exists() and fresh.exists()


def test_open_blob_store_picks_the_implementation(tmp_path: Path) -> None:
    assert isinstance(open_blob_store(f"file://{tmp_path}/b"), LocalBlobStore)
    assert isinstance(open_blob_store("memory://keel/blobs"), FsspecBlobStore)


def test_the_store_registers_blobs_it_puts(store: Store, tmp_path: Path) -> None:
    source = tmp_path / "shard.parquet"
    source.write_bytes(b"PAR1" * 1000)
    from_path = store.put_blob(source)
    from_stream = store.put_blob(io.BytesIO(b"PAR1" * 1000))
    assert from_path.digest == from_stream.digest
    assert store.db.count_rows()["blobs"] == 1
