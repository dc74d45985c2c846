"""Floor 2: the metadata database, blob store, lineage graph and audit log of a workspace."""

from typing import TYPE_CHECKING

from keel.core._lazy import lazy_getattr

if TYPE_CHECKING:
    from keel.store._audit import (
        AuditEvent,
        Checkpoint,
        VerifyReport,
        checkpoint,
        events,
        record,
        redact_details,
        seal_legacy,
        verify,
    )
    from keel.store._audit_key import AuditKey, load_audit_key
    from keel.store._blobs import (
        BlobInfo,
        BlobStore,
        FsspecBlobStore,
        LocalBlobStore,
        mappable_path,
        open_blob_store,
        put_bytes,
        read_bytes,
        verify_blob,
    )
    from keel.store._db import Database, insert_for, mask_url
    from keel.store._lineage import (
        Direction,
        Edge,
        LineageHit,
        LineagePath,
        add_edge,
        add_edges,
        add_node,
        node_id,
        parse_node_id,
        path_between,
        walk,
    )
    from keel.store._maintenance import (
        DoctorReport,
        Finding,
        GcReport,
        collect_garbage,
        doctor,
        parse_duration,
        referenced_blobs,
    )
    from keel.store._workspace import Store, init_workspace, keel_version, open_store

# Each name loads its module on first use (PEP 562): a command loads the parts of the store it uses
# (`keel curate run` does not load doctor and gc's maintenance module).
_MODULES = {
    **dict.fromkeys(
        (
            "AuditEvent",
            "Checkpoint",
            "VerifyReport",
            "checkpoint",
            "events",
            "record",
            "redact_details",
            "seal_legacy",
            "verify",
        ),
        "_audit",
    ),
    **dict.fromkeys(("AuditKey", "load_audit_key"), "_audit_key"),
    **dict.fromkeys(
        (
            "BlobInfo",
            "BlobStore",
            "FsspecBlobStore",
            "LocalBlobStore",
            "mappable_path",
            "open_blob_store",
            "put_bytes",
            "read_bytes",
            "verify_blob",
        ),
        "_blobs",
    ),
    **dict.fromkeys(("Database", "insert_for", "mask_url"), "_db"),
    **dict.fromkeys(
        (
            "Direction",
            "Edge",
            "LineageHit",
            "LineagePath",
            "add_edge",
            "add_edges",
            "add_node",
            "node_id",
            "parse_node_id",
            "path_between",
            "walk",
        ),
        "_lineage",
    ),
    **dict.fromkeys(
        ("DoctorReport", "Finding", "GcReport", "collect_garbage", "doctor", "parse_duration", "referenced_blobs"),
        "_maintenance",
    ),
    **dict.fromkeys(("Store", "init_workspace", "keel_version", "open_store"), "_workspace"),
}


__getattr__ = lazy_getattr("keel.store", _MODULES)


__all__ = [
    "AuditEvent",
    "AuditKey",
    "Checkpoint",
    "BlobInfo",
    "BlobStore",
    "Database",
    "DoctorReport",
    "Direction",
    "Edge",
    "Finding",
    "FsspecBlobStore",
    "GcReport",
    "LineageHit",
    "LineagePath",
    "LocalBlobStore",
    "Store",
    "VerifyReport",
    "add_edge",
    "add_edges",
    "add_node",
    "checkpoint",
    "collect_garbage",
    "doctor",
    "events",
    "init_workspace",
    "insert_for",
    "keel_version",
    "load_audit_key",
    "mappable_path",
    "mask_url",
    "node_id",
    "open_blob_store",
    "open_store",
    "parse_duration",
    "parse_node_id",
    "path_between",
    "put_bytes",
    "read_bytes",
    "record",
    "referenced_blobs",
    "redact_details",
    "seal_legacy",
    "verify",
    "verify_blob",
    "walk",
]
