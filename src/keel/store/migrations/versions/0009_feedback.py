"""feedback: scores on served answers, and the content of served requests (keel.monitor)

Revision ID: 0009
Revises: 0007
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

import keel.store.schema

revision = "0009"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "trace_contents",
        sa.Column("trace_id", sa.String(length=26), nullable=False),
        sa.Column(
            "request",
            sa.Text(),
            nullable=False,
            comment="canonical JSON: {'messages': [...]} or {'prompt': ...}",
        ),
        sa.Column("response", sa.Text(), nullable=True, comment="the text of the first choice; NULL when none"),
        sa.PrimaryKeyConstraint("trace_id", name=op.f("pk_trace_contents")),
        comment="What a served chat or completion request asked and was answered, when its deployment records it.",
    )
    op.create_table(
        "feedback",
        sa.Column("id", sa.String(length=26), nullable=False, comment="ULID; lineage node feedback:<id>"),
        sa.Column("trace_id", sa.String(length=26), nullable=False),
        sa.Column("at", keel.store.schema.UTCDateTime(timezone=True), nullable=False),
        sa.Column("deployment", sa.String(length=128), nullable=True, comment="the trace's deployment"),
        sa.Column(
            "model_version", sa.String(length=160), nullable=True, comment="the trace's model version (its route)"
        ),
        sa.Column(
            "label", sa.String(length=64), nullable=False, comment="what is scored: 'rating', 'answer_relevance', …"
        ),
        sa.Column("score", sa.Float(), nullable=True, comment="0–1; thumbs up is 1, thumbs down 0"),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("correction", sa.Text(), nullable=True, comment="a corrected answer"),
        sa.Column("source", sa.String(length=16), nullable=False, comment="human or judge"),
        sa.Column("actor", sa.String(length=255), nullable=False, comment="the API key id, user or judge that gave it"),
        sa.Column("details", sa.Text(), nullable=True, comment="canonical JSON: a judge's evidence"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_feedback")),
        comment="Scores, labels, comments and corrected answers on served answers, from people or judges.",
    )
    with op.batch_alter_table("feedback", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_feedback_at"), ["at"], unique=False)
        # Scores of one deployment over a window (summaries, drift, guarded rollouts).
        batch_op.create_index(batch_op.f("ix_feedback_deployment_at"), ["deployment", "at"], unique=False)
        # Feedback of one trace (export, erasure).
        batch_op.create_index(batch_op.f("ix_feedback_trace_id"), ["trace_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("feedback", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_feedback_trace_id"))
        batch_op.drop_index(batch_op.f("ix_feedback_deployment_at"))
        batch_op.drop_index(batch_op.f("ix_feedback_at"))

    op.drop_table("feedback")
    op.drop_table("trace_contents")
