"""foundation: blobs, lineage, audit

Revision ID: 0001
Revises: (none)
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

import keel.store.schema

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_events",
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=False, nullable=False),
        sa.Column("at", keel.store.schema.UTCDateTime(timezone=True), nullable=False),
        sa.Column(
            "actor", sa.String(length=255), nullable=False, comment="principal id, never a person's name or email"
        ),
        sa.Column("action", sa.String(length=128), nullable=False),
        sa.Column("object_id", sa.String(length=255), nullable=False),
        sa.Column("details", sa.Text(), nullable=True, comment="canonical JSON; NULL once redacted"),
        sa.Column(
            "details_sha256", sa.String(length=64), nullable=False, comment="hashed into the chain instead of details"
        ),
        sa.Column("redacted_at", keel.store.schema.UTCDateTime(timezone=True), nullable=True),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_audit_events")),
        sa.UniqueConstraint("hash", name=op.f("uq_audit_events_hash")),
        comment="Append-only, hash-chained record of every mutating operation.",
    )
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_audit_events_action"), ["action"], unique=False)
        batch_op.create_index(batch_op.f("ix_audit_events_object_id"), ["object_id"], unique=False)

    op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False, comment="always 1"),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_head")),
        comment="The chain's last sequence number and hash: the row appenders lock, and the check for a cut tail.",
    )
    op.create_table(
        "blobs",
        sa.Column("digest", sa.String(length=64), nullable=False, comment="sha256 of the bytes, lowercase hex"),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("created_at", keel.store.schema.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("digest", name=op.f("pk_blobs")),
        comment="Blobs this workspace has stored; the bytes live in the blob store under the digest.",
    )
    op.create_table(
        "lineage_nodes",
        sa.Column("id", sa.String(length=255), nullable=False, comment="'<kind>:<identity>'"),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("created_at", keel.store.schema.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lineage_nodes")),
        comment="Every object in the lineage graph; rows are created with the first edge that names them.",
    )
    with op.batch_alter_table("lineage_nodes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_lineage_nodes_kind"), ["kind"], unique=False)

    op.create_table(
        "lineage_edges",
        sa.Column("upstream", sa.String(length=255), nullable=False),
        sa.Column("downstream", sa.String(length=255), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("created_at", keel.store.schema.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["downstream"], ["lineage_nodes.id"], name=op.f("fk_lineage_edges_downstream_lineage_nodes")
        ),
        sa.ForeignKeyConstraint(
            ["upstream"], ["lineage_nodes.id"], name=op.f("fk_lineage_edges_upstream_lineage_nodes")
        ),
        sa.PrimaryKeyConstraint("upstream", "downstream", "kind", name=op.f("pk_lineage_edges")),
        comment="Directed edges of the lineage graph, each with a kind such as trained_on or derived_from.",
    )
    with op.batch_alter_table("lineage_edges", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_lineage_edges_downstream_upstream"), ["downstream", "upstream"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("lineage_edges", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_lineage_edges_downstream_upstream"))

    op.drop_table("lineage_edges")
    with op.batch_alter_table("lineage_nodes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_lineage_nodes_kind"))

    op.drop_table("lineage_nodes")
    op.drop_table("blobs")
    op.drop_table("audit_head")
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_events_object_id"))
        batch_op.drop_index(batch_op.f("ix_audit_events_action"))

    op.drop_table("audit_events")
