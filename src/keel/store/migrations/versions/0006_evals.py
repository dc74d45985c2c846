"""evals: suites, results, per-case scores (keel.evals)

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

import keel.store.schema

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "eval_results",
        sa.Column("id", sa.String(length=26), nullable=False, comment="ULID; lineage node eval-result:<id>"),
        sa.Column("suite", sa.String(length=128), nullable=False),
        sa.Column(
            "suite_digest",
            sa.String(length=64),
            nullable=False,
            comment="sha256 of the canonical suite, subject excluded",
        ),
        sa.Column(
            "subject",
            sa.String(length=512),
            nullable=False,
            comment="what was evaluated, e.g. model-version:x@v2",
        ),
        sa.Column("dataset", sa.String(length=255), nullable=True, comment="the dataset version of the cases, NAME@vN"),
        sa.Column("seed", sa.Integer(), nullable=False),
        sa.Column("num_cases", sa.Integer(), nullable=False),
        sa.Column("passed", sa.Integer(), nullable=False, comment="1 when every metric met its threshold"),
        sa.Column("config", sa.Text(), nullable=False, comment="canonical JSON of the suite and subject as run"),
        sa.Column(
            "aggregates",
            sa.Text(),
            nullable=False,
            comment="canonical JSON: metric -> mean, CI, threshold, passed",
        ),
        sa.Column("outputs_digest", sa.String(length=64), nullable=False, comment="JSON of case outputs"),
        sa.Column("run_id", sa.String(length=26), nullable=True, comment="the eval run: environment, seed"),
        sa.Column("created_by", sa.String(length=255), nullable=False),
        sa.Column("created_at", keel.store.schema.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["outputs_digest"], ["blobs.digest"], name=op.f("fk_eval_results_outputs_digest_blobs")
        ),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_eval_results_run_id_runs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_eval_results")),
        comment="One run of an eval suite against one subject, with aggregate scores and their confidence intervals.",
    )
    with op.batch_alter_table("eval_results", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_eval_results_suite"), ["suite"], unique=False)
        batch_op.create_index(batch_op.f("ix_eval_results_subject"), ["subject"], unique=False)

    op.create_table(
        "eval_case_scores",
        sa.Column("result_id", sa.String(length=26), nullable=False),
        sa.Column("case_index", sa.Integer(), nullable=False),
        sa.Column("metric", sa.String(length=64), nullable=False),
        sa.Column("case_id", sa.String(length=255), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("details", sa.Text(), nullable=True, comment="canonical JSON: the judge's evidence for this score"),
        sa.ForeignKeyConstraint(
            ["result_id"],
            ["eval_results.id"],
            name=op.f("fk_eval_case_scores_result_id_eval_results"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("result_id", "case_index", "metric", name=op.f("pk_eval_case_scores")),
        comment="Every per-case score of an eval result, for paired comparisons and drill-down.",
    )


def downgrade() -> None:
    op.drop_table("eval_case_scores")
    with op.batch_alter_table("eval_results", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_eval_results_subject"))
        batch_op.drop_index(batch_op.f("ix_eval_results_suite"))

    op.drop_table("eval_results")
