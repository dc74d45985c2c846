"""console sign-out: sessions ended before their cookie expired, refused by every console process (keel.ui)

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

import keel.store.schema

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "console_signouts",
        sa.Column(
            "session_id",
            sa.String(length=32),
            nullable=False,
            comment="the random id the signed session cookie carries",
        ),
        sa.Column("key_id", sa.String(length=26), nullable=False, comment="the API key the session signed in with"),
        sa.Column("ended_at", keel.store.schema.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("session_id", name=op.f("pk_console_signouts")),
        comment="Console sessions signed out before their cookie expired: every console process refuses a copy at "
        "once. Rows older than a session's lifetime are pruned on sign-out.",
    )


def downgrade() -> None:
    op.drop_table("console_signouts")
