"""Floor 2: the metadata database, blob store, lineage graph and audit log of a workspace."""

from keel.store._audit import AuditEvent, VerifyReport, events, record, redact_details, verify
from keel.store._blobs import (
    BlobInfo,
    BlobStore,
    FsspecBlobStore,
    LocalBlobStore,
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
from keel.store._workspace import Store, init_workspace, keel_version, open_store

__all__ = [
    "AuditEvent",
    "BlobInfo",
    "BlobStore",
    "Database",
    "Direction",
    "Edge",
    "FsspecBlobStore",
    "LineageHit",
    "LineagePath",
    "LocalBlobStore",
    "Store",
    "VerifyReport",
    "add_edge",
    "add_edges",
    "add_node",
    "events",
    "init_workspace",
    "insert_for",
    "keel_version",
    "mask_url",
    "node_id",
    "open_blob_store",
    "open_store",
    "parse_node_id",
    "path_between",
    "put_bytes",
    "read_bytes",
    "record",
    "redact_details",
    "verify",
    "verify_blob",
    "walk",
]
