"""erasure and encryption: subject index, trace subjects, erasures and marks, classifications, data keys

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

import keel.store.schema

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

_HMAC = "HMAC-SHA256 of 'type:value' under the workspace key"


def upgrade() -> None:
    op.create_table(
        "subject_index",
        sa.Column("subject", sa.String(length=64), nullable=False, comment=_HMAC),
        sa.Column("shard_id", sa.Integer(), nullable=False),
        sa.Column("row", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["shard_id"], ["dataset_shards.id"], name=op.f("fk_subject_index_shard_id_dataset_shards")
        ),
        sa.PrimaryKeyConstraint("subject", "shard_id", "row", name=op.f("pk_subject_index")),
        comment="Where each detected personal value sits, by keyed hash (never the value): found after redaction.",
        sqlite_with_rowid=False,
    )
    op.create_table(
        "trace_subjects",
        sa.Column("subject", sa.String(length=64), nullable=False, comment=_HMAC),
        sa.Column("trace_id", sa.String(length=26), nullable=False),
        sa.PrimaryKeyConstraint("subject", "trace_id", name=op.f("pk_trace_subjects")),
        comment="Which traces carried which personal value, by keyed hash, for erasure.",
        sqlite_with_rowid=False,
    )
    op.create_table(
        "erasures",
        sa.Column("id", sa.String(length=26), nullable=False, comment="ULID; lineage and audit object erasure:<id>"),
        sa.Column("at", keel.store.schema.UTCDateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=255), nullable=False),
        sa.Column("certificate", sa.Text(), nullable=False, comment="canonical JSON of the signed certificate"),
        sa.Column("certificate_sha256", sa.String(length=64), nullable=False),
        sa.Column(
            "signature", sa.String(length=128), nullable=False, comment="Ed25519 signature of the certificate, hex"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_erasures")),
        comment="Every data-subject erasure carried out, with its signed certificate.",
    )
    op.create_table(
        "erasure_marks",
        sa.Column("node", sa.String(length=255), nullable=False, comment="lineage node id of the marked object"),
        sa.Column("erasure_id", sa.String(length=26), nullable=False),
        sa.Column(
            "mark", sa.String(length=64), nullable=False, comment="erased, trained_on_erased_data or serves_erased_data"
        ),
        sa.Column(
            "replaced_by",
            sa.String(length=255),
            nullable=True,
            comment="the version written without the records",
        ),
        sa.ForeignKeyConstraint(["erasure_id"], ["erasures.id"], name=op.f("fk_erasure_marks_erasure_id_erasures")),
        sa.PrimaryKeyConstraint("node", "erasure_id", name=op.f("pk_erasure_marks")),
        comment="Objects an erasure removed or tainted: shown by `model show`, cards and `deploy list`.",
    )

    # dataset_classifications: created by 0009 (access), which writes and reads the same table.
    op.create_table(
        "data_keys",
        sa.Column("id", sa.String(length=26), nullable=False, comment="ULID, written into each blob it encrypts"),
        sa.Column("dataset", sa.String(length=128), nullable=False),
        sa.Column(
            "kek_id", sa.String(length=32), nullable=False, comment="the workspace key-encryption key that wraps it"
        ),
        sa.Column("wrapped", sa.Text(), nullable=False, comment="base64 of AES-GCM nonce + wrapped AES-256 data key"),
        sa.Column("created_at", keel.store.schema.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_data_keys")),
        comment="Per-version data keys of restricted datasets, wrapped by a workspace key kept outside the database.",
    )
    op.create_index(op.f("ix_data_keys_dataset"), "data_keys", ["dataset"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_data_keys_dataset"), table_name="data_keys")
    op.drop_table("data_keys")
    op.drop_table("erasure_marks")
    op.drop_table("erasures")
    op.drop_table("trace_subjects")
    op.drop_table("subject_index")
