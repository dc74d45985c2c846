"""operate: alerts, guarded rollouts, evidence of deployment decisions (keel.monitor)

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

import keel.store.schema

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "alerts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("rule", sa.String(length=128), nullable=False),
        sa.Column(
            "fingerprint", sa.String(length=64), nullable=False, comment="sha256 of the rule name and its labels"
        ),
        sa.Column("severity", sa.String(length=32), nullable=False),
        sa.Column("labels", sa.Text(), nullable=False, comment="canonical JSON object"),
        sa.Column("state", sa.String(length=16), nullable=False, comment="pending, firing or resolved"),
        sa.Column("value", sa.Float(), nullable=True, comment="the last value the rule's metric had"),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("pending_since", keel.store.schema.UTCDateTime(timezone=True), nullable=False),
        sa.Column("fired_at", keel.store.schema.UTCDateTime(timezone=True), nullable=True),
        sa.Column("resolved_at", keel.store.schema.UTCDateTime(timezone=True), nullable=True),
        sa.Column(
            "notified",
            sa.Integer(),
            nullable=False,
            comment="1 once the firing was sent (0: suppressed by cool-down or inhibition)",
        ),
        sa.Column("updated_at", keel.store.schema.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alerts")),
        comment="One row per alert incident: pending, firing, then resolved; repeats update the open row.",
    )
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        # The open incident of one rule and label set, without a scan.
        batch_op.create_index(batch_op.f("ix_alerts_fingerprint_id"), ["fingerprint", "id"], unique=False)

    op.create_table(
        "rollouts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("deployment", sa.String(length=128), nullable=False),
        sa.Column("spec", sa.Text(), nullable=False, comment="canonical JSON: canary, stable, guards, steps, interval"),
        sa.Column("state", sa.String(length=16), nullable=False, comment="running, promoted, rolled_back or cancelled"),
        sa.Column("step", sa.Integer(), nullable=False, comment="index into the steps: the weight the canary has now"),
        sa.Column(
            "failures", sa.Integer(), nullable=False, comment="consecutive checks with a breached but unproven guard"
        ),
        sa.Column(
            "window_start",
            keel.store.schema.UTCDateTime(timezone=True),
            nullable=False,
            comment="start of the interval being analysed",
        ),
        sa.Column("created_at", keel.store.schema.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", keel.store.schema.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["deployment"], ["deployments.name"], name=op.f("fk_rollouts_deployment_deployments")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rollouts")),
        comment="Guarded rollouts: a canary stepped up on passing analyses or rolled back on failing ones.",
    )
    with op.batch_alter_table("rollouts", schema=None) as batch_op:
        # The running rollouts the controller steps.
        batch_op.create_index(batch_op.f("ix_rollouts_deployment_state"), ["deployment", "state"], unique=False)

    with op.batch_alter_table("deployment_events", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "evidence",
                sa.Text(),
                nullable=True,
                comment="canonical JSON: why a rollout controller decided (migration 0010)",
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("deployment_events", schema=None) as batch_op:
        batch_op.drop_column("evidence")
    with op.batch_alter_table("rollouts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_rollouts_deployment_state"))
    op.drop_table("rollouts")
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_alerts_fingerprint_id"))
    op.drop_table("alerts")
