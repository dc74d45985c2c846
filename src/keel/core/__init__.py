"""Floor 1: settings, errors, ids and hashing, clocks. Imports nothing else of Keel."""

from typing import TYPE_CHECKING

from keel.core._lazy import lazy_getattr

if TYPE_CHECKING:
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

# Each name loads its module on first use (PEP 562): importing keel.core.errors (which every `keel` command
# does) then costs the errors alone, not pydantic-settings (~80 ms) and python-ulid (~25 ms).
_MODULES = {
    **dict.fromkeys(("Clock", "format_time", "system_clock"), "clock"),
    **dict.fromkeys(("canonical_json", "is_sha256", "new_ulid", "require_sha256", "sha256_hex"), "ids"),
    **dict.fromkeys(("Settings", "find_workspace", "load_settings"), "settings"),
    **dict.fromkeys(
        (
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
        ),
        "errors",
    ),  # fmt: skip
}
__getattr__ = lazy_getattr("keel.core", _MODULES)


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
