"""Every table of Keel's metadata database, in one SQLAlchemy `MetaData`.

Domain modules own the functions that read and write these tables; this module only says
what the tables are. A change here needs a migration in `store/migrations/versions/`, and
`tests/unit/store/test_migrations.py` fails until the two agree.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
)

__all__ = [
    "NODE_ID_LENGTH",
    "UTCDateTime",
    "audit_events",
    "audit_head",
    "blobs",
    "lineage_edges",
    "lineage_nodes",
    "metadata",
]

NODE_ID_LENGTH = 255

# Constraint names are deterministic so migrations can address them on both backends.
metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and always read back timezone-aware.

    SQLite keeps no zone, PostgreSQL converts to the session's; both come back as aware UTC here.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Refuse naive times; store UTC (naive on SQLite, which has no zones)."""
        if value is None:
            return None
        if value.tzinfo is None:
            raise TypeError(f"expected a timezone-aware datetime for a UTCDateTime column; got naive {value!r}")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Return an aware UTC datetime whatever the backend gave."""
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    def copy(self, **kw: Any) -> UTCDateTime:
        """A fresh instance (the type holds no state)."""
        return UTCDateTime()


blobs = Table(
    "blobs",
    metadata,
    Column("digest", String(64), primary_key=True, comment="sha256 of the bytes, lowercase hex"),
    Column("size", BigInteger, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    comment="Blobs this workspace has stored; the bytes live in the blob store under the digest.",
)

lineage_nodes = Table(
    "lineage_nodes",
    metadata,
    Column("id", String(NODE_ID_LENGTH), primary_key=True, comment="'<kind>:<identity>'"),
    Column("kind", String(64), nullable=False, index=True),
    Column("created_at", UTCDateTime, nullable=False),
    comment="Every object in the lineage graph; rows are created with the first edge that names them.",
)

lineage_edges = Table(
    "lineage_edges",
    metadata,
    # Data flows from upstream to downstream: a dataset version is upstream of the model trained on it.
    Column("upstream", String(NODE_ID_LENGTH), ForeignKey("lineage_nodes.id"), primary_key=True),
    Column("downstream", String(NODE_ID_LENGTH), ForeignKey("lineage_nodes.id"), primary_key=True),
    Column("kind", String(64), primary_key=True),
    Column("created_at", UTCDateTime, nullable=False),
    # The primary key serves downstream walks (by upstream); this index serves upstream walks.
    Index(None, "downstream", "upstream"),
    comment="Directed edges of the lineage graph, each with a kind such as trained_on or derived_from.",
)

audit_events = Table(
    "audit_events",
    metadata,
    Column("seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=False),
    Column("at", UTCDateTime, nullable=False),
    Column("actor", String(255), nullable=False, comment="principal id, never a person's name or email"),
    Column("action", String(128), nullable=False, index=True),
    Column("object_id", String(NODE_ID_LENGTH), nullable=False, index=True),
    Column("details", Text, nullable=True, comment="canonical JSON; NULL once redacted"),
    Column("details_sha256", String(64), nullable=False, comment="hashed into the chain instead of details"),
    Column("redacted_at", UTCDateTime, nullable=True),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False, unique=True),
    comment="Append-only, hash-chained record of every mutating operation.",
)

audit_head = Table(
    "audit_head",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False, comment="always 1"),
    Column("seq", BigInteger, nullable=False),
    Column("hash", String(64), nullable=False),
    comment="The chain's last sequence number and hash: the row appenders lock, and the check for a cut tail.",
)
