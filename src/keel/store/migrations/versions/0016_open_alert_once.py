"""one open alert incident per fingerprint, across processes (keel.monitor alerts)

Two `keel monitor watch` processes evaluating the same rule at once could each find no open
incident and each insert one. A partial unique index makes the second insert conflict; incidents
left open twice by that race before this revision are resolved first (the oldest stays open).

Revision ID: 0016
Revises: 0012
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0012"
branch_labels = None
depends_on = None

_OPEN = "state IN ('pending', 'firing')"


def upgrade() -> None:
    op.execute(
        "UPDATE alerts SET state = 'resolved', resolved_at = updated_at "
        f"WHERE {_OPEN} AND id NOT IN (SELECT MIN(id) FROM alerts WHERE {_OPEN} GROUP BY fingerprint)"
    )
    op.create_index(
        "uq_alerts_open_fingerprint",
        "alerts",
        ["fingerprint"],
        unique=True,
        sqlite_where=sa.text(_OPEN),
        postgresql_where=sa.text(_OPEN),
    )


def downgrade() -> None:
    op.drop_index("uq_alerts_open_fingerprint", table_name="alerts")
