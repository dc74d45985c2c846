"""pipelines: each stage execution with its cache key, and one lock per pipeline (keel.pipeline)

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

import keel.store.schema

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pipeline_stages",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("pipeline", sa.String(length=128), nullable=False),
        sa.Column("stage", sa.String(length=128), nullable=False),
        sa.Column("run_id", sa.String(length=26), nullable=False, comment="the stage's run"),
        sa.Column("pipeline_run_id", sa.String(length=26), nullable=False, comment="the pipeline's run"),
        sa.Column(
            "cache_key",
            sa.String(length=64),
            nullable=False,
            comment="sha256 of the op, resolved args and input digests",
        ),
        sa.Column("status", sa.String(length=16), nullable=False, comment="running, finished, failed or cached"),
        sa.Column(
            "inputs", sa.Text(), nullable=False, comment="canonical JSON: each input reference → its content digest"
        ),
        sa.Column(
            "args", sa.Text(), nullable=False, comment="canonical JSON of the stage's arguments, params substituted"
        ),
        sa.Column(
            "outputs", sa.Text(), nullable=False, comment="canonical JSON: each declared output → the version made"
        ),
        sa.Column("started_at", keel.store.schema.UTCDateTime(timezone=True), nullable=False),
        sa.Column("ended_at", keel.store.schema.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["pipeline_run_id"], ["runs.id"], name=op.f("fk_pipeline_stages_pipeline_run_id_runs")),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name=op.f("fk_pipeline_stages_run_id_runs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pipeline_stages")),
        comment="Each stage of each pipeline run: its cache key, inputs, outputs and status.",
    )
    with op.batch_alter_table("pipeline_stages", schema=None) as batch_op:
        # The cache hit: a finished execution of this stage with this key; and a stage's latest status.
        batch_op.create_index(
            batch_op.f("ix_pipeline_stages_pipeline_stage_cache_key"), ["pipeline", "stage", "cache_key"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_pipeline_stages_pipeline_stage_id"), ["pipeline", "stage", "id"], unique=False
        )

    op.create_table(
        "pipeline_locks",
        sa.Column("pipeline", sa.String(length=128), nullable=False),
        sa.Column("run_id", sa.String(length=26), nullable=False, comment="the pipeline run holding the lock"),
        sa.Column(
            "holder", sa.Text(), nullable=False, comment="canonical JSON: host, pid and start of the holding process"
        ),
        sa.Column("acquired_at", keel.store.schema.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("pipeline", name=op.f("pk_pipeline_locks")),
        comment="At most one run of each pipeline at a time; a holder whose process died is taken over.",
    )


def downgrade() -> None:
    op.drop_table("pipeline_locks")
    with op.batch_alter_table("pipeline_stages", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_pipeline_stages_pipeline_stage_id"))
        batch_op.drop_index(batch_op.f("ix_pipeline_stages_pipeline_stage_cache_key"))
    op.drop_table("pipeline_stages")
