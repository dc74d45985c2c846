"""rag traces: what a RAG route retrieved for each served request (keel.serve, keel.monitor)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "trace_retrievals",
        sa.Column("trace_id", sa.String(length=26), nullable=False, comment="the trace's ULID"),
        sa.Column("index_version", sa.String(length=160), nullable=True, comment="NAME@vN searched"),
        sa.Column("prompt_version", sa.String(length=160), nullable=True, comment="NAME@vN rendered"),
        sa.Column(
            "chunks", sa.Text(), nullable=False, comment="canonical JSON: chunk_id, record_id, source, score, rank"
        ),
        sa.Column("embed_ms", sa.Float(), nullable=False),
        sa.Column("search_ms", sa.Float(), nullable=False),
        sa.Column("render_ms", sa.Float(), nullable=False),
        sa.Column("generation_ms", sa.Float(), nullable=True, comment="the backend's time, apart from retrieval"),
        sa.Column("failed", sa.Integer(), nullable=False, comment="1 when retrieval failed (answered 503)"),
        sa.PrimaryKeyConstraint("trace_id", name=op.f("pk_trace_retrievals")),
        comment="What a RAG route retrieved for one served request: versions, chunks with scores, step times.",
    )


def downgrade() -> None:
    op.drop_table("trace_retrievals")
