"""access: roles on scopes, protected targets, approvals, keyed audit events, dataset classifications (keel.govern)

Existing audit events keep their sha256 chain; they get no MAC here (the key lives outside the database):
`open_store` MACs them once, right after this migration ran, and records it as one `audit.seal` event
(keel.store._audit.seal_legacy).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

import keel.store.schema

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "on_behalf_of",
                sa.String(length=255),
                nullable=True,
                comment="KEEL_ACTOR's note: whom the actor says it acts for",
            )
        )
        batch_op.add_column(
            sa.Column(
                "mac",
                sa.String(length=64),
                nullable=True,
                comment="HMAC-SHA256 of `hash` under the audit key kept outside the DB",
            )
        )
        batch_op.add_column(
            sa.Column(
                "key_id",
                sa.String(length=16),
                nullable=True,
                comment="which audit key made `mac` (sha256 of its public key)",
            )
        )
    # Also created by the erasure/encryption branch's 0012: on merge, keep one of the two.
    op.create_table(
        "dataset_classifications",
        sa.Column(
            "name", sa.String(length=128), nullable=False, comment="dataset name (may precede its first version)"
        ),
        sa.Column(
            "classification",
            sa.String(length=16),
            nullable=False,
            comment="public, internal, confidential or restricted",
        ),
        sa.Column("updated_by", sa.String(length=255), nullable=False),
        sa.Column("updated_at", keel.store.schema.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_dataset_classifications")),
        comment="Each dataset's classification; versions of restricted datasets are committed encrypted.",
    )
    op.create_table(
        "access_roles",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column(
            "actions",
            sa.Text(),
            nullable=False,
            comment='canonical JSON list of action globs, e.g. ["dataset.*"]',
        ),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("created_by", sa.String(length=255), nullable=False),
        sa.Column("created_at", keel.store.schema.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_access_roles")),
        comment="Custom roles; viewer, editor, approver and admin are built in and not stored.",
    )
    op.create_table(
        "access_bindings",
        sa.Column("principal", sa.String(length=255), nullable=False, comment="local:<user>, key:<id> or user:<name>"),
        sa.Column("role", sa.String(length=64), nullable=False),
        sa.Column("scope", sa.String(length=255), nullable=False, comment="* (the workspace) or KIND:NAME-GLOB"),
        sa.Column("created_by", sa.String(length=255), nullable=False),
        sa.Column("created_at", keel.store.schema.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("principal", "role", "scope", name=op.f("pk_access_bindings")),
        comment="Who holds which role on which scope: the policy loaded into the casbin enforcer.",
    )
    op.create_table(
        "access_protections",
        sa.Column(
            "scope",
            sa.String(length=255),
            nullable=False,
            comment="KIND:NAME-GLOB, e.g. model:* or deployment:chat",
        ),
        sa.Column("target", sa.String(length=64), nullable=False, comment="alias:<name> or promote"),
        sa.Column("created_by", sa.String(length=255), nullable=False),
        sa.Column("created_at", keel.store.schema.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("scope", "target", name=op.f("pk_access_protections")),
        comment="Aliases and deployment promotions that move only with another principal's approval.",
    )
    op.create_table(
        "approval_requests",
        sa.Column("id", sa.String(length=26), nullable=False, comment="ULID"),
        sa.Column(
            "action",
            sa.String(length=64),
            nullable=False,
            comment="model.alias, prompt.alias, dataset.alias, deployment.promote",
        ),
        sa.Column("object_id", sa.String(length=255), nullable=False),
        sa.Column(
            "change", sa.Text(), nullable=False, comment="canonical JSON of exactly what moves, e.g. alias and version"
        ),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column(
            "evidence", sa.Text(), nullable=True, comment="canonical JSON list of supporting ids, e.g. eval results"
        ),
        sa.Column("requested_by", sa.String(length=255), nullable=False),
        sa.Column("requested_at", keel.store.schema.UTCDateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False, comment="pending, approved, rejected or used"),
        sa.Column("decided_by", sa.String(length=255), nullable=True),
        sa.Column("decided_at", keel.store.schema.UTCDateTime(timezone=True), nullable=True),
        sa.Column("note", sa.Text(), nullable=True, comment="the approver's note"),
        sa.Column("used_at", keel.store.schema.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_approval_requests")),
        comment="Requests to move a protected target, the approval by another principal, and when it was used.",
    )
    with op.batch_alter_table("approval_requests", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_approval_requests_object_id_status"), ["object_id", "status"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("approval_requests", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_approval_requests_object_id_status"))
    op.drop_table("approval_requests")
    op.drop_table("access_protections")
    op.drop_table("access_bindings")
    op.drop_table("access_roles")
    op.drop_table("dataset_classifications")
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.drop_column("key_id")
        batch_op.drop_column("mac")
        batch_op.drop_column("on_behalf_of")
