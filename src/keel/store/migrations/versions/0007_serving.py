"""serving: deployments, routes, API keys, traces (keel.serve)

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

import keel.store.schema

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "deployments",
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column(
            "routes", sa.Text(), nullable=False, comment="canonical JSON: the weighted routes requests go to now"
        ),
        sa.Column("settings", sa.Text(), nullable=False, comment="canonical JSON: guardrails, cache, fallback route"),
        sa.Column("created_by", sa.String(length=255), nullable=False),
        sa.Column("created_at", keel.store.schema.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", keel.store.schema.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_deployments")),
        comment="A named entry point of the gateway and where its requests are routed now.",
    )
    op.create_table(
        "deployment_events",
        sa.Column(
            "id", sa.Integer(), autoincrement=True, nullable=False, comment="also the gateway's reload generation"
        ),
        sa.Column("deployment", sa.String(length=128), nullable=False),
        sa.Column(
            "action", sa.String(length=32), nullable=False, comment="create, canary, promote, rollback, configure"
        ),
        sa.Column("from_routes", sa.Text(), nullable=True, comment="canonical JSON; NULL for create"),
        sa.Column("to_routes", sa.Text(), nullable=False, comment="canonical JSON"),
        sa.Column("actor", sa.String(length=255), nullable=False),
        sa.Column("at", keel.store.schema.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["deployment"], ["deployments.name"], name=op.f("fk_deployment_events_deployment_deployments")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deployment_events")),
        comment="Append-only history of every route change of every deployment: the rollback trail.",
    )
    with op.batch_alter_table("deployment_events", schema=None) as batch_op:
        # History of one deployment, in order, without a scan.
        batch_op.create_index(batch_op.f("ix_deployment_events_deployment_id"), ["deployment", "id"], unique=False)

    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(length=26), nullable=False, comment="ULID; also the key's visible prefix"),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column(
            "hash",
            sa.String(length=255),
            nullable=False,
            comment="argon2id hash of the secret; the secret is never stored",
        ),
        sa.Column("scopes", sa.Text(), nullable=False, comment="canonical JSON list of deployment names, or ['*']"),
        sa.Column("rate_per_minute", sa.Float(), nullable=True, comment="NULL: unlimited"),
        sa.Column("burst", sa.Integer(), nullable=True),
        sa.Column("created_by", sa.String(length=255), nullable=False),
        sa.Column("created_at", keel.store.schema.UTCDateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", keel.store.schema.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        comment="Gateway API keys: argon2-hashed, shown once, scoped to deployments, rate limited.",
    )
    op.create_table(
        "traces",
        sa.Column("id", sa.String(length=26), nullable=False, comment="ULID"),
        sa.Column("at", keel.store.schema.UTCDateTime(timezone=True), nullable=False),
        sa.Column("deployment", sa.String(length=128), nullable=False),
        sa.Column("model_version", sa.String(length=160), nullable=True, comment="NAME@vN that answered"),
        sa.Column("prompt_version", sa.String(length=160), nullable=True),
        sa.Column("key_id", sa.String(length=26), nullable=True),
        sa.Column("operation", sa.String(length=32), nullable=False, comment="chat, completion or embeddings"),
        sa.Column("status", sa.Integer(), nullable=False, comment="HTTP status returned"),
        sa.Column("error", sa.String(length=64), nullable=True, comment="OpenAI error type when status >= 400"),
        sa.Column("tokens_in", sa.Integer(), nullable=False),
        sa.Column("tokens_out", sa.Integer(), nullable=False),
        sa.Column("ttft_ms", sa.Float(), nullable=True),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.Column("cost", sa.Float(), nullable=False),
        sa.Column("cache_hit", sa.Integer(), nullable=False, comment="1 when answered from the response cache"),
        sa.Column("flags", sa.Text(), nullable=False, comment="canonical JSON list of guardrail flags"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_traces")),
        comment="One served request each: route, versions, tokens, latency, cost, cache and guardrail outcome.",
    )
    with op.batch_alter_table("traces", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_traces_at"), ["at"], unique=False)
        # The monitor's per-deployment summaries over a time window.
        batch_op.create_index(batch_op.f("ix_traces_deployment_at"), ["deployment", "at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("traces", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_traces_deployment_at"))
        batch_op.drop_index(batch_op.f("ix_traces_at"))

    op.drop_table("traces")
    op.drop_table("api_keys")
    with op.batch_alter_table("deployment_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_deployment_events_deployment_id"))

    op.drop_table("deployment_events")
    op.drop_table("deployments")
