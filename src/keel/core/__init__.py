"""Floor 1: settings, errors, ids and hashing, clocks. Imports nothing else of Keel."""

from keel.core.clock import Clock, format_time, system_clock
from keel.core.errors import (
    BlobCorruptedError,
    BlobNotFoundError,
    ConfigError,
    ConflictError,
    DatabaseUnavailableError,
    InputError,
    IntegrityError,
    KeelError,
    NotFoundError,
    SchemaError,
    StoreError,
    WorkspaceNotFoundError,
)
from keel.core.ids import canonical_json, is_sha256, new_ulid, require_sha256, sha256_hex
from keel.core.settings import Settings, find_workspace, load_settings

__all__ = [
    "BlobCorruptedError",
    "BlobNotFoundError",
    "Clock",
    "ConfigError",
    "ConflictError",
    "DatabaseUnavailableError",
    "InputError",
    "IntegrityError",
    "KeelError",
    "NotFoundError",
    "SchemaError",
    "Settings",
    "StoreError",
    "WorkspaceNotFoundError",
    "canonical_json",
    "find_workspace",
    "format_time",
    "is_sha256",
    "load_settings",
    "new_ulid",
    "require_sha256",
    "sha256_hex",
    "system_clock",
]
