"""one actor per alert incident and per rollout check, across processes (keel.monitor)

Two `keel monitor watch` processes evaluating the same rule at once could each find no open
incident and each insert one. A partial unique index makes the second insert conflict; incidents
left open twice by that race before this revision are resolved first (the oldest stays open).
A guarded-rollout check that outlasted its interval could be claimed again by a second controller
(a gateway replica): `rollouts.lease_until` marks a check in progress.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

import keel.store.schema

revision = "0015"
down_revision = "0014"
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
    with op.batch_alter_table("rollouts", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "lease_until",
                keel.store.schema.UTCDateTime(timezone=True),
                nullable=True,
                comment="a controller is checking it until then; no other may (migration 0016)",
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("rollouts", schema=None) as batch_op:
        batch_op.drop_column("lease_until")
    op.drop_index("uq_alerts_open_fingerprint", table_name="alerts")
