"""Pin each package's public surface: a change here is a deliberate API change."""

from __future__ import annotations

import importlib

import pytest

EXPECTED = {
    "keel.core": [
        "BlobCorruptedError", "BlobNotFoundError", "Clock", "ConfigError", "DatabaseUnavailableError", "InputError",
        "IntegrityError", "KeelError", "NotFoundError", "SchemaError", "Settings", "StoreError",
        "WorkspaceNotFoundError", "canonical_json", "find_workspace", "format_time", "is_sha256", "load_settings",
        "new_ulid", "require_sha256", "sha256_hex", "system_clock",
    ],
    "keel.store": [
        "AuditEvent", "BlobInfo", "BlobStore", "Database", "Direction", "Edge", "FsspecBlobStore", "LineageHit",
        "LineagePath", "LocalBlobStore", "Store", "VerifyReport", "add_edge", "add_edges", "events",
        "init_workspace", "keel_version", "mask_url", "node_id", "open_blob_store", "open_store", "parse_node_id",
        "path_between", "put_bytes", "read_bytes", "record", "redact_details", "verify", "walk",
    ],
    "keel.cli": ["app", "main"],
}  # fmt: skip


@pytest.mark.parametrize("module", sorted(EXPECTED))
def test_public_names(module: str) -> None:
    imported = importlib.import_module(module)
    assert sorted(imported.__all__) == sorted(EXPECTED[module])
    for name in imported.__all__:
        assert hasattr(imported, name), f"{module}.__all__ lists {name}, which it does not define"
