"""Keel's one error hierarchy: every failure a user can cause or fix is a `KeelError`.

Messages say what was expected, what was found and what to do. The CLI prints
`ErrorName: message` and exits with `exit_code` (2 for a user's mistake); anything that
is not a `KeelError` is a bug and keeps its traceback.

    KeelError
    ├── ConfigError                 bad settings, keel.yaml or environment
    │   └── WorkspaceNotFoundError  no keel.yaml here or in any parent
    ├── InputError                  a malformed argument (node id, digest, reference)
    ├── NotFoundError               a named object does not exist
    │   └── BlobNotFoundError
    ├── ConflictError               concurrent writers outlasted Keel's retries; run it again
    ├── StoreError                  the metadata database or blob store failed
    │   ├── DatabaseUnavailableError
    │   ├── SchemaError             database schema missing, ahead of or behind this Keel
    │   └── BlobCorruptedError      stored bytes no longer match their digest
    └── IntegrityError              a tamper-evidence check failed (audit chain)
"""

from __future__ import annotations

__all__ = [
    "BlobCorruptedError",
    "BlobNotFoundError",
    "ConfigError",
    "ConflictError",
    "DatabaseUnavailableError",
    "InputError",
    "IntegrityError",
    "KeelError",
    "NotFoundError",
    "SchemaError",
    "StoreError",
    "WorkspaceNotFoundError",
]


class KeelError(Exception):
    """Root of every error Keel raises on purpose.

    Args:
        message: The whole sentence: what was expected, what was found, what to do.
        hint: An optional "what to do" appended to the message when it is not already in it.

    Examples:
        >>> str(KeelError("expected a file, found a directory", hint="pass the file inside it"))
        'expected a file, found a directory; pass the file inside it'
    """

    exit_code: int = 2

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(f"{message}; {hint}" if hint else message)


class ConfigError(KeelError):
    """A setting, `keel.yaml` or environment variable holds a value Keel cannot use."""


class WorkspaceNotFoundError(ConfigError):
    """No `keel.yaml` was found in the working directory or any of its parents."""


class InputError(KeelError):
    """An argument has the wrong shape (a node id, a digest, a reference)."""


class NotFoundError(KeelError):
    """A named object does not exist in this workspace."""


class ConflictError(KeelError):
    """Concurrent writers kept the operation from completing after Keel's own retries; run it again.

    Not the user's mistake, so not exit code 2.
    """

    exit_code = 1


class BlobNotFoundError(NotFoundError):
    """No blob with the requested digest is stored."""


class StoreError(KeelError):
    """The metadata database or the blob store could not do what was asked."""


class DatabaseUnavailableError(StoreError):
    """The metadata database cannot be reached or opened."""


class SchemaError(StoreError):
    """The database schema is missing, or newer or older than this version of Keel."""


class BlobCorruptedError(StoreError):
    """Bytes read from the blob store do not hash to the digest they are stored under."""

    exit_code = 1


class IntegrityError(KeelError):
    """A tamper-evidence check failed, e.g. the audit hash chain is broken."""

    exit_code = 1
