"""indexes: versioned retrieval indexes (keel.index)

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

import keel.store.schema

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "indexes",
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("created_at", keel.store.schema.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_indexes")),
        comment="A named line of retrieval index versions.",
    )
    op.create_table(
        "index_versions",
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("manifest_digest", sa.String(length=64), nullable=False),
        sa.Column(
            "dataset_ref", sa.String(length=255), nullable=True, comment="NAME@vN of the dataset version it indexes"
        ),
        sa.Column("dataset_digest", sa.String(length=64), nullable=True, comment="that dataset version's manifest"),
        sa.Column("embedding_model", sa.String(length=512), nullable=False, comment="sentence-transformers id or path"),
        sa.Column("chunking", sa.Text(), nullable=False, comment="canonical JSON of the chunking settings"),
        sa.Column("kind", sa.String(length=16), nullable=False, comment="flat (exact) or hnsw (approximate)"),
        sa.Column("num_records", sa.BigInteger(), nullable=False),
        sa.Column("num_chunks", sa.BigInteger(), nullable=False),
        sa.Column(
            "embedded_chunks",
            sa.BigInteger(),
            nullable=False,
            comment="chunks embedded anew; the rest were reused",
        ),
        sa.Column("created_by", sa.String(length=255), nullable=False),
        sa.Column("created_at", keel.store.schema.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["manifest_digest"], ["blobs.digest"], name=op.f("fk_index_versions_manifest_digest_blobs")
        ),
        sa.ForeignKeyConstraint(["name"], ["indexes.name"], name=op.f("fk_index_versions_name_indexes")),
        sa.PrimaryKeyConstraint("name", "version", name=op.f("pk_index_versions")),
        comment="An immutable retrieval index (NAME@vN): chunks, embeddings, vector and BM25 indexes as blobs.",
    )
    with op.batch_alter_table("index_versions", schema=None) as batch_op:
        # Find the versions built from a dataset version, and the version a manifest belongs to.
        batch_op.create_index(batch_op.f("ix_index_versions_dataset_digest"), ["dataset_digest"], unique=False)
        batch_op.create_index(batch_op.f("ix_index_versions_manifest_digest"), ["manifest_digest"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("index_versions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_index_versions_manifest_digest"))
        batch_op.drop_index(batch_op.f("ix_index_versions_dataset_digest"))

    op.drop_table("index_versions")
    op.drop_table("indexes")
