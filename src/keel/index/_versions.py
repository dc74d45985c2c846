"""Index versions in the metadata database: `NAME@vN` rows, their manifests, lookups and listings.

An index version is immutable. Its manifest (a JSON blob whose sha256 identifies it) names the
blobs holding its chunk table, embeddings, FAISS index and BM25 index; this module reads and
writes the rows and manifests, not the files' contents.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, select

from keel.core.clock import format_time
from keel.core.errors import InputError, NotFoundError
from keel.index._chunking import ChunkSettings
from keel.registry import Ref, parse_ref
from keel.store import Store, insert_for, read_bytes
from keel.store.schema import index_versions, indexes

__all__ = ["IndexVersion", "get_index", "list_indexes", "parse_index_ref"]

MANIFEST_SCHEMA = 1


@dataclass(frozen=True)
class IndexVersion:
    """A stored index version: what it indexes, with which model and chunking, and its manifest."""

    name: str
    version: int
    manifest_digest: str
    dataset_ref: str | None
    dataset_digest: str | None
    embedding_model: str
    chunking: ChunkSettings
    kind: str
    num_records: int
    num_chunks: int
    embedded_chunks: int
    created_by: str
    created_at: datetime

    @property
    def ref(self) -> str:
        """`NAME@vN`."""
        return f"{self.name}@v{self.version}"

    @property
    def node(self) -> str:
        """The version's lineage node id."""
        return f"index-version:{self.ref}"

    def manifest(self, store: Store) -> dict[str, Any]:
        """The manifest blob, parsed: files, dataset, model, chunking and vector index settings."""
        parsed: dict[str, Any] = json.loads(read_bytes(store.blobs, self.manifest_digest))
        return parsed

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "ref": self.ref,
            "name": self.name,
            "version": self.version,
            "manifest": self.manifest_digest,
            "dataset": self.dataset_ref,
            "dataset_digest": self.dataset_digest,
            "embedding_model": self.embedding_model,
            "chunking": self.chunking.to_json(),
            "kind": self.kind,
            "num_records": self.num_records,
            "num_chunks": self.num_chunks,
            "embedded_chunks": self.embedded_chunks,
            "created_by": self.created_by,
            "created_at": format_time(self.created_at),
        }


def parse_index_ref(text: str) -> Ref:
    """Parse `NAME`, `NAME@vN` or `NAME@latest`; indexes have no aliases.

    Examples:
        >>> parse_index_ref("docs@v2")
        Ref(name='docs', version=2, alias=None)
    """
    ref = parse_ref(text, "index")
    if ref.alias is not None:
        raise InputError(f"expected an index reference NAME, NAME@vN or NAME@latest; got {text!r} (no aliases)")
    return ref


def _from_row(row: Any) -> IndexVersion:
    return IndexVersion(
        name=row.name,
        version=int(row.version),
        manifest_digest=row.manifest_digest,
        dataset_ref=row.dataset_ref,
        dataset_digest=row.dataset_digest,
        embedding_model=row.embedding_model,
        chunking=ChunkSettings(**json.loads(row.chunking)),
        kind=row.kind,
        num_records=int(row.num_records),
        num_chunks=int(row.num_chunks),
        embedded_chunks=int(row.embedded_chunks),
        created_by=row.created_by,
        created_at=row.created_at,
    )


def latest_version(conn: Connection, name: str) -> IndexVersion | None:
    """The newest version of index `name`, or None."""
    row = conn.execute(
        select(index_versions).where(index_versions.c.name == name).order_by(index_versions.c.version.desc()).limit(1)
    ).first()
    return None if row is None else _from_row(row)


def lock_index(conn: Connection, name: str, at: datetime) -> None:
    """Create the index's row if needed and lock it, so concurrent builds number versions in turn."""
    conn.execute(insert_for(conn, indexes).values(name=name, created_at=at).on_conflict_do_nothing())
    conn.execute(select(indexes.c.name).where(indexes.c.name == name).with_for_update())


def insert_version(conn: Connection, row: dict[str, Any]) -> IndexVersion:
    """Insert a version row (its number already chosen under `lock_index`) and return it."""
    conn.execute(index_versions.insert().values(**row))
    return get_version_row(conn, row["name"], row["version"])


def get_version_row(conn: Connection, name: str, version: int) -> IndexVersion:
    """The version `name@v{version}`, which must exist."""
    row = conn.execute(
        select(index_versions).where(index_versions.c.name == name, index_versions.c.version == version)
    ).one()
    return _from_row(row)


def get_index(store: Store, ref: str | Ref) -> IndexVersion:
    """The index version a reference (`NAME`, `NAME@vN`, `NAME@latest`) points at.

    Raises:
        InputError: The reference is malformed.
        NotFoundError: No such index or version; the message lists the versions that exist.

    Examples:
        >>> get_index(store, "docs@v1").num_chunks  # doctest: +SKIP
        412
    """
    parsed = parse_index_ref(ref) if isinstance(ref, str) else ref
    with store.db.read() as conn:
        latest = conn.scalar(select(func.max(index_versions.c.version)).where(index_versions.c.name == parsed.name))
        if latest is None:
            raise NotFoundError(
                f"no index named {parsed.name!r} in this workspace",
                hint="list them with `keel index list` or build one with `keel index build NAME --dataset REF`",
            )
        version = int(latest) if parsed.version is None else parsed.version
        if version > int(latest):
            raise NotFoundError(f"index {parsed.name!r} has versions v1..v{latest}; got {parsed}")
        return get_version_row(conn, parsed.name, version)


def list_indexes(store: Store) -> list[IndexVersion]:
    """The latest version of every index, by name."""
    newest = (
        select(index_versions.c.name, func.max(index_versions.c.version).label("version"))
        .group_by(index_versions.c.name)
        .subquery()
    )
    query = (
        select(index_versions)
        .join(
            newest,
            (index_versions.c.name == newest.c.name) & (index_versions.c.version == newest.c.version),
        )
        .order_by(index_versions.c.name)
    )
    with store.db.read() as conn:
        return [_from_row(row) for row in conn.execute(query)]
