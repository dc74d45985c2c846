"""Content-addressed blob store: bytes stored once under their sha256, never visible half-written.

Two implementations of one small `BlobStore` protocol: `LocalBlobStore` (a directory; write to
a temporary file, fsync, rename) and `FsspecBlobStore` (any fsspec URL, e.g. `s3://`; objects
appear atomically when an upload completes). Both stream in chunks, so multi-GB files never sit
in memory, and both verify the digest on every read. A write whose digest is already stored
checks the stored bytes (size first, then the hash) and atomically replaces them when they are
damaged, so re-adding the original file repairs a corrupted blob. Neither knows the database.

Sealed blobs (restricted datasets) are AES-256-GCM ciphertext behind a `SEAL_MAGIC` header naming
their data key: `SealingBlobStore` writes them, and a store given an `unsealer` (the workspace's
data-key look-up) decrypts them on `open`, so every reader gets plaintext and the disk or bucket
holds only ciphertext. The digest stays the sha256 of the stored (encrypted) bytes.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any, BinaryIO, Protocol, runtime_checkable

from keel.core.echo import without_credentials
from keel.core.errors import BlobCorruptedError, BlobNotFoundError, ConfigError, StoreError
from keel.core.ids import new_ulid, require_sha256

__all__ = [
    "SEAL_MAGIC",
    "BlobInfo",
    "BlobStore",
    "FsspecBlobStore",
    "LocalBlobStore",
    "SealingBlobStore",
    "open_blob_store",
    "put_bytes",
    "read_bytes",
    "verify_blob",
]

CHUNK = 1 << 20  # 1 MiB: large enough for throughput, small enough to never matter for memory
_MISSING = "re-add the original file or restore the blob store from a backup; `keel doctor` lists every missing blob"


@dataclass(frozen=True, slots=True)
class BlobInfo:
    """What `put` stored: the digest, the size, whether the bytes were new, whether they replaced a damaged copy."""

    digest: str
    size: int
    created: bool
    repaired: bool = False


@runtime_checkable
class BlobStore(Protocol):
    """Where Keel keeps bytes: datasets' shards, model weights, reports."""

    url: str

    def put_file(self, path: str | os.PathLike[str]) -> BlobInfo:
        """Store a local file's bytes."""
        ...

    def put_stream(self, stream: IO[bytes]) -> BlobInfo:
        """Store everything read from a binary stream until it ends."""
        ...

    def open(self, digest: str) -> BinaryIO:
        """A reader of the blob that raises `BlobCorruptedError` at the end if the bytes do not match."""
        ...

    def get_file(self, digest: str, dest: str | os.PathLike[str]) -> Path:
        """Copy the blob to `dest`, which appears only once the bytes are verified."""
        ...

    def exists(self, digest: str) -> bool:
        """Whether a blob with this digest is stored."""
        ...

    def size(self, digest: str) -> int:
        """The blob's size in bytes."""
        ...

    def delete(self, digest: str) -> bool:
        """Remove the blob; returns whether it existed."""
        ...

    def digests(self) -> Iterator[str]:
        """Every stored digest, in no particular order."""
        ...

    def modified_at(self, digest: str) -> float:
        """When the blob was last written or re-added, in seconds since the epoch (what `keel gc` ages by)."""
        ...


SEAL_MAGIC = b"\x00KEEL-AESGCM1"  # then the data key's 26-character id, a 12-byte nonce, ciphertext + tag
_KEY_ID_LENGTH = 26
_SEAL_HEADER = len(SEAL_MAGIC) + _KEY_ID_LENGTH
Unsealer = Callable[[str], bytes]  # data key id -> the AES-256 key; raises when it cannot be had


def seal(data: bytes, key_id: str, key: bytes) -> bytes:
    """Encrypt `data` with AES-256-GCM under a data key; the header (magic + key id) is authenticated too."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # only restricted datasets pay its import

    header = SEAL_MAGIC + key_id.encode("ascii")
    if len(header) != _SEAL_HEADER:
        raise ValueError(f"expected a data key id of {_KEY_ID_LENGTH} ASCII characters; got {key_id!r}")
    nonce = os.urandom(12)
    return header + nonce + AESGCM(key).encrypt(nonce, data, header)


def _unsealed(reader: BinaryIO, unsealer: Unsealer | None, location: str) -> BinaryIO:
    """The plaintext of a sealed blob (read whole, verified, decrypted), or the reader as it is."""
    if unsealer is None or not isinstance(reader, io.BufferedReader):
        return reader
    if not reader.peek(_SEAL_HEADER)[: len(SEAL_MAGIC)] == SEAL_MAGIC:
        return reader
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    with reader:
        data = reader.read()
    key_id = data[len(SEAL_MAGIC) : _SEAL_HEADER].decode("ascii", "replace")
    key = unsealer(key_id)
    try:
        plain = AESGCM(key).decrypt(
            data[_SEAL_HEADER : _SEAL_HEADER + 12], data[_SEAL_HEADER + 12 :], data[:_SEAL_HEADER]
        )
    except InvalidTag:
        raise BlobCorruptedError(
            f"the sealed blob at {location} does not decrypt with its data key {key_id}",
            hint="restore the key file in use when it was written",
        ) from None
    return io.BytesIO(plain)


class SealingBlobStore:
    """A blob store that encrypts every blob put through it under one data key (reads go to the inner store).

    Args:
        inner: The workspace's blob store (given an unsealer, it decrypts on `open`).
        key_id: The data key's id, written in each blob's header.
        key: The 32-byte AES-256 data key.
    """

    def __init__(self, inner: BlobStore, key_id: str, key: bytes) -> None:
        self.inner = inner
        self.url = inner.url
        self._key_id = key_id
        self._key = key

    def put_file(self, path: str | os.PathLike[str]) -> BlobInfo:
        return self.put_stream(io.BytesIO(Path(path).read_bytes()))

    def put_stream(self, stream: IO[bytes]) -> BlobInfo:
        return self.inner.put_stream(io.BytesIO(seal(stream.read(), self._key_id, self._key)))

    def open(self, digest: str) -> BinaryIO:
        return self.inner.open(digest)

    def get_file(self, digest: str, dest: str | os.PathLike[str]) -> Path:
        return self.inner.get_file(digest, dest)

    def exists(self, digest: str) -> bool:
        return self.inner.exists(digest)

    def size(self, digest: str) -> int:
        return self.inner.size(digest)

    def delete(self, digest: str) -> bool:
        return self.inner.delete(digest)

    def digests(self) -> Iterator[str]:
        return self.inner.digests()

    def modified_at(self, digest: str) -> float:
        return self.inner.modified_at(digest)


def put_bytes(store: BlobStore, data: bytes) -> BlobInfo:
    """Store `data` in any blob store.

    Examples:
        >>> put_bytes(LocalBlobStore("/tmp/keel-blobs"), b"hello").digest[:12]
        '2cf24dba5fb0'
    """
    return store.put_stream(io.BytesIO(data))


def read_bytes(store: BlobStore, digest: str) -> bytes:
    """Read a whole blob into memory, verified; for small blobs only."""
    with store.open(digest) as reader:
        return reader.read()


def mappable_path(store: BlobStore, digest: str) -> Path | None:
    """The verified file of a plaintext blob in a local store, for readers that map it; None otherwise.

    FAISS and numpy can memory-map a file, so every process serving the same blob shares its pages
    instead of each holding a copy. Blobs in an object store or sealed (encrypted) have no such file:
    read them with `read_bytes`.
    """
    if not isinstance(store, LocalBlobStore):
        return None
    verify_blob(store, digest)
    path = store.path(digest)
    with path.open("rb") as raw:
        if raw.read(len(SEAL_MAGIC)) == SEAL_MAGIC:
            return None
    return path


def verify_blob(store: BlobStore, digest: str) -> None:
    """Read a blob to its end, in chunks, checking its size and sha256.

    Raises:
        BlobNotFoundError: No blob with this digest is stored.
        BlobCorruptedError: The stored bytes do not hash to the digest.
    """
    if isinstance(store, LocalBlobStore):  # hashlib reads the file itself: no copies through a reader
        path = store.path(digest)
        try:
            with path.open("rb") as raw:
                actual = hashlib.file_digest(raw, "sha256").hexdigest()
        except FileNotFoundError:
            raise BlobNotFoundError(f"no blob {digest} in {store.url}") from None
        if actual != digest:
            raise BlobCorruptedError(
                f"blob {digest} at {path} is corrupted: its bytes hash to {actual}",
                hint="restore it from a backup or re-add the original file",
            )
        return
    with store.open(digest) as reader:
        while reader.read(CHUNK):
            pass


def _intact(store: BlobStore, digest: str, size: int) -> bool:
    """Whether the stored blob holds `size` bytes hashing to `digest`: the size first, the hash if it matches."""
    try:
        if store.size(digest) != size:
            return False
        verify_blob(store, digest)
    except (BlobCorruptedError, BlobNotFoundError):
        return False
    return True


class _VerifyingReader(io.RawIOBase):
    """Hashes what passes through; at the end of the stream, a mismatch raises `BlobCorruptedError`."""

    def __init__(self, raw: IO[bytes], digest: str, expected_size: int | None, location: str) -> None:
        super().__init__()
        self._raw = raw
        self._digest = digest
        self._expected_size = expected_size
        self._location = location
        self._hash = hashlib.sha256()
        self._seen = 0
        self._checked = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        chunk = self._raw.read(len(view))
        n = len(chunk)
        view[:n] = chunk
        self._hash.update(chunk)
        self._seen += n
        if n == 0 or (self._expected_size is not None and self._seen >= self._expected_size):
            self._check()
        return n

    def _check(self) -> None:
        if self._checked:
            return
        self._checked = True
        if self._expected_size is not None and self._seen != self._expected_size:
            raise BlobCorruptedError(
                f"blob {self._digest} at {self._location} should hold {self._expected_size} bytes; read {self._seen}",
                hint="restore it from a backup or re-add the original file",
            )
        actual = self._hash.hexdigest()
        if actual != self._digest:
            raise BlobCorruptedError(
                f"blob {self._digest} at {self._location} is corrupted: its bytes hash to {actual}",
                hint="restore it from a backup or re-add the original file",
            )

    def close(self) -> None:
        if not self.closed:
            self._raw.close()
        super().close()


class _Sink(Protocol):
    def write(self, data: bytes, /) -> int: ...


def _copy_hashing(source: IO[bytes], sink: _Sink) -> tuple[str, int]:
    hasher = hashlib.sha256()
    size = 0
    while chunk := source.read(CHUNK):
        hasher.update(chunk)
        sink.write(chunk)
        size += len(chunk)
    return hasher.hexdigest(), size


class LocalBlobStore:
    """Blobs as read-only files under `root/sha256/ab/<digest>`.

    Writes go to `root/tmp/` first and are renamed into place after an fsync, so a crash
    at any moment leaves either the whole blob or none of it. Blobs are readable by their
    owner only (0400, directories 0700) unless the store is `shared` with the OS group
    (0440, directories 2770).

    Args:
        root: The directory to keep blobs in; created if missing.
        shared: Let the directory's group read the blobs and add new ones.

    Examples:
        >>> store = LocalBlobStore("/tmp/keel-blobs")
        >>> info = store.put_stream(io.BytesIO(b"hello"))
        >>> store.exists(info.digest), info.size
        (True, 5)
    """

    def __init__(self, root: str | os.PathLike[str], *, shared: bool = False) -> None:
        self.root = Path(root).expanduser().resolve()
        self.url = str(self.root)
        self.file_mode = 0o440 if shared else 0o400
        self.dir_mode = 0o2770 if shared else 0o700
        self._tmp = self.root / "tmp"
        self.unsealer: Unsealer | None = None  # set by the workspace: decrypts sealed blobs on open
        if not self._tmp.is_dir():  # a read-only workspace has it already and cannot make it
            for directory in (self.root, self._tmp):
                self._mkdir(directory)

    def _mkdir(self, directory: Path) -> None:
        try:
            directory.mkdir(mode=self.dir_mode, parents=True)
        except FileExistsError:
            return
        directory.chmod(self.dir_mode)  # mkdir's mode is filtered by the umask

    def __repr__(self) -> str:
        return f"LocalBlobStore({self.url!r})"

    def path(self, digest: str) -> Path:
        """Where the blob with `digest` lives (or would live)."""
        require_sha256(digest, "blob digest")
        return self.root / "sha256" / digest[:2] / digest

    def put_file(self, path: str | os.PathLike[str]) -> BlobInfo:
        with open(path, "rb") as source:
            # Hash first: re-adding a stored file (an unchanged shard of a new model version) then
            # costs two reads and no write, instead of a full copy and fsync.
            size = os.fstat(source.fileno()).st_size
            digest = hashlib.file_digest(source, "sha256").hexdigest()
            final = self.path(digest)
            if final.exists() and _intact(self, digest, size):
                _renew(final)
                return BlobInfo(digest, size, created=False)
            source.seek(0)
            return self.put_stream(source)

    def put_stream(self, stream: IO[bytes]) -> BlobInfo:
        try:
            fd, new_name = tempfile.mkstemp(dir=self._tmp, prefix=f"{new_ulid()}-", suffix=".new")
        except OSError as exc:
            raise StoreError(
                f"cannot write to the blob store {self.url}: {exc.strerror}",
                hint="run this where you may write the workspace; reading commands work without",
            ) from None
        # The lock says "a live writer owns this file" to `sweep_partials`; the kernel drops it when
        # the writer dies. The file is named `.part` only once locked, so no sweeper sees it unlocked.
        # The file stays open (and locked) until it has been renamed into place or removed.
        tmp = Path(new_name).with_suffix(".part")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.rename(new_name, tmp)
            with os.fdopen(fd, "wb", closefd=False) as sink:
                digest, size = _copy_hashing(stream, sink)
                sink.flush()
                os.fsync(sink.fileno())
            final = self.path(digest)
            damaged = final.exists()
            if damaged and _intact(self, digest, size):
                _renew(final)
                return BlobInfo(digest, size, created=False)
            if not damaged:
                self._mkdir(final.parent.parent)
                self._mkdir(final.parent)
            tmp.chmod(self.file_mode)
            os.replace(tmp, final)  # atomic: readers see no file, or the whole file (also over a damaged one)
            _fsync_dir(final.parent)
            return BlobInfo(digest, size, created=not damaged, repaired=damaged)
        finally:
            Path(new_name).unlink(missing_ok=True)
            tmp.unlink(missing_ok=True)
            os.close(fd)

    def open(self, digest: str) -> BinaryIO:
        path = self.path(digest)
        try:
            raw = path.open("rb")
        except FileNotFoundError:
            raise BlobNotFoundError(f"no blob {digest} in {self.url}", hint=_MISSING) from None
        size = os.fstat(raw.fileno()).st_size
        return _unsealed(
            io.BufferedReader(_VerifyingReader(raw, digest, size, str(path)), CHUNK), self.unsealer, str(path)
        )

    def get_file(self, digest: str, dest: str | os.PathLike[str]) -> Path:
        return _get_file(self, digest, Path(dest))

    def exists(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def size(self, digest: str) -> int:
        try:
            return self.path(digest).stat().st_size
        except FileNotFoundError:
            raise BlobNotFoundError(f"no blob {digest} in {self.url}") from None

    def delete(self, digest: str) -> bool:
        path = self.path(digest)
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        return True

    def digests(self) -> Iterator[str]:
        for prefix in sorted((self.root / "sha256").glob("??")):
            for path in prefix.iterdir():
                yield path.name

    def modified_at(self, digest: str) -> float:
        try:
            return self.path(digest).stat().st_mtime
        except FileNotFoundError:
            raise BlobNotFoundError(f"no blob {digest} in {self.url}") from None

    def partials(self) -> list[tuple[Path, int, float]]:
        """Temporary files of writers in progress or dead: (path, size, modified time)."""
        found = []
        for part in sorted(self._tmp.glob("*.part")):
            try:
                info = part.stat()
            except FileNotFoundError:  # its writer finished meanwhile
                continue
            found.append((part, info.st_size, info.st_mtime))
        return found

    def sweep_partials(self, older_than_seconds: float = 3600) -> int:
        """Delete temporary files left by writers that died, untouched for longer than the given age.

        A live writer holds a lock on its file, so even with an age of 0 only dead writers' files go.

        Returns:
            How many files were removed.
        """
        cutoff = time.time() - older_than_seconds
        removed = 0
        for part, _size, modified in self.partials():
            if modified < cutoff and _remove_if_unlocked(part):
                removed += 1
        for new in self._tmp.glob("*.new"):  # killed between creating and locking its file
            with contextlib.suppress(FileNotFoundError):
                if new.stat().st_mtime < min(cutoff, time.time() - 60):
                    new.unlink()
        return removed


def _remove_if_unlocked(part: Path) -> bool:
    try:
        fd = os.open(part, os.O_RDONLY)
    except FileNotFoundError:  # its writer finished, or another sweeper got there first
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # a live writer holds it
        try:
            part.unlink()
        except FileNotFoundError:
            return False
        return True
    finally:
        os.close(fd)


class FsspecBlobStore:
    """Blobs in any fsspec file system, usually an object store (`s3://bucket/prefix`).

    Object stores publish an object only when its upload completes, which gives the same
    all-or-nothing guarantee as the local rename. The digest must be known before the upload
    starts, so a stream is first spooled to a local temporary file while it is hashed.

    Args:
        url: An fsspec URL such as `s3://bucket/keel`.
        storage_options: Passed to fsspec (e.g. `endpoint_url` for an S3-compatible server).
    """

    def __init__(self, url: str, storage_options: dict[str, Any] | None = None) -> None:
        import fsspec

        try:
            fs, root = fsspec.core.url_to_fs(url, **(storage_options or {}))
        except (ImportError, ValueError) as exc:
            raise ConfigError(
                f"cannot open the blob store {url!r}: {exc}",
                hint="install the file system's package (for s3://, `pip install 'keel-llmops[s3]'`)",
            ) from None
        self.url = url
        self.fs = fs
        self.root = root.rstrip("/")
        self.unsealer: Unsealer | None = None  # set by the workspace: decrypts sealed blobs on open

    def __repr__(self) -> str:
        return f"FsspecBlobStore({self.url!r})"

    def key(self, digest: str) -> str:
        """The object key of the blob with `digest`."""
        require_sha256(digest, "blob digest")
        return f"{self.root}/sha256/{digest[:2]}/{digest}"

    def put_file(self, path: str | os.PathLike[str]) -> BlobInfo:
        with open(path, "rb") as source:
            digest, size = _copy_hashing(source, _NullSink())
        return self._upload(Path(path), digest, size)

    def put_stream(self, stream: IO[bytes]) -> BlobInfo:
        with tempfile.NamedTemporaryFile(prefix="keel-blob-", suffix=".part") as spool:
            digest, size = _copy_hashing(stream, spool)
            spool.flush()
            return self._upload(Path(spool.name), digest, size)

    def _upload(self, path: Path, digest: str, size: int) -> BlobInfo:
        key = self.key(digest)
        damaged = self.exists(digest)
        if damaged and _intact(self, digest, size):
            return BlobInfo(digest, size, created=False)
        with self._reaching(f"upload blob {digest} to", missing_is_absent=False):
            self.fs.put_file(str(path), key)  # an object store replaces an object atomically
        self.fs.invalidate_cache()
        return BlobInfo(digest, size, created=not damaged, repaired=damaged)

    def open(self, digest: str) -> BinaryIO:
        key = self.key(digest)
        try:
            with self._reaching(f"read blob {digest} from"):
                size = int(self.fs.size(key))
                raw = self.fs.open(key, "rb", block_size=CHUNK)
        except FileNotFoundError:
            raise BlobNotFoundError(f"no blob {digest} in {self.url}", hint=_MISSING) from None
        reader = io.BufferedReader(_VerifyingReader(raw, digest, size, f"{self.url}/{key}"), CHUNK)
        return _unsealed(reader, self.unsealer, f"{self.url}/{key}")

    def get_file(self, digest: str, dest: str | os.PathLike[str]) -> Path:
        return _get_file(self, digest, Path(dest))

    def exists(self, digest: str) -> bool:
        self.fs.invalidate_cache()
        with self._reaching(f"look for blob {digest} in"):
            return bool(self.fs.exists(self.key(digest)))

    def size(self, digest: str) -> int:
        try:
            with self._reaching(f"read the size of blob {digest} in"):
                return int(self.fs.size(self.key(digest)))
        except FileNotFoundError:
            raise BlobNotFoundError(f"no blob {digest} in {self.url}") from None

    def delete(self, digest: str) -> bool:
        if not self.exists(digest):
            return False
        with self._reaching(f"delete blob {digest} from"):
            self.fs.rm_file(self.key(digest))
        return True

    def digests(self) -> Iterator[str]:
        prefix = f"{self.root}/sha256/"
        self.fs.invalidate_cache()
        with self._reaching("list the blobs of", missing_is_absent=False):
            found = self.fs.find(prefix)
        for path in found:
            yield path.rsplit("/", 1)[-1]

    def modified_at(self, digest: str) -> float:
        try:
            with self._reaching(f"read the age of blob {digest} in"):
                info = self.fs.info(self.key(digest))
        except FileNotFoundError:
            raise BlobNotFoundError(f"no blob {digest} in {self.url}") from None
        # s3fs says LastModified, local-like file systems mtime, the memory file system created.
        stamp = info.get("LastModified") or info.get("mtime") or info.get("created")
        if isinstance(stamp, datetime):
            return stamp.timestamp()
        if isinstance(stamp, int | float):
            return float(stamp)
        return time.time()  # unknown age: treat as new, so `keel gc` never removes it

    @contextlib.contextmanager
    def _reaching(self, doing: str, *, missing_is_absent: bool = True) -> Iterator[None]:
        """Turn the remote's failures (refused connection, no bucket, access denied) into one `StoreError`.

        A missing object stays `FileNotFoundError` for the caller to name, unless `missing_is_absent` is False
        (an upload or a listing, where it means the bucket is missing). botocore's connection errors are not
        `OSError`s: without this they reached the user as a traceback.
        """
        try:
            yield
        except FileNotFoundError:
            if missing_is_absent:
                raise
            raise StoreError(
                f"cannot {doing} the blob store {self.url}: its bucket does not exist",
                hint="create the bucket, or fix blob_url",
            ) from None
        except _remote_errors() as exc:
            found = without_credentials(" ".join(str(exc).split())) or type(exc).__name__
            raise StoreError(
                f"cannot {doing} the blob store {self.url}: {found}",
                hint="check blob_url and blob_options (endpoint_url, credentials) and that the bucket exists",
            ) from exc


def _remote_errors() -> tuple[type[BaseException], ...]:
    """What an fsspec file system raises when its remote fails: `OSError`s, and botocore's own for S3."""
    try:
        from botocore.exceptions import BotoCoreError, ClientError
    except ImportError:  # no S3 support installed: fsspec's other file systems raise OSErrors
        return (OSError,)
    return (OSError, BotoCoreError, ClientError)


class _NullSink:
    def write(self, data: bytes) -> int:
        return len(data)


def _get_file(store: BlobStore, digest: str, dest: Path) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as sink, store.open(digest) as reader:
            shutil.copyfileobj(reader, sink, CHUNK)
        os.replace(tmp_name, dest)
    finally:
        Path(tmp_name).unlink(missing_ok=True)
    return dest


def _renew(path: Path) -> None:
    """Re-adding counts as a fresh write: `keel gc` spares blobs younger than its grace period."""
    with contextlib.suppress(PermissionError):  # in a shared store, another member's blob: only its owner may
        os.utime(path)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def open_blob_store(url: str, storage_options: dict[str, Any] | None = None, *, shared: bool = False) -> BlobStore:
    """Open the blob store at `url`: a local path (or `file://`) or any fsspec URL.

    `shared` makes a local store's files readable by the directory's group (see `LocalBlobStore`).

    Examples:
        >>> open_blob_store("/tmp/keel-blobs")
        LocalBlobStore('/tmp/keel-blobs')
    """
    if url.startswith("file://"):
        url = url[len("file://") :]
    if "://" not in url:
        return LocalBlobStore(url, shared=shared)
    return FsspecBlobStore(url, storage_options)
