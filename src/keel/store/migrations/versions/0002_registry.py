"""registry: runs, models, prompts, aliases

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

import keel.store.schema

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "alias_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("subject", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("alias", sa.String(length=64), nullable=False),
        sa.Column("from_version", sa.Integer(), nullable=True),
        sa.Column("to_version", sa.Integer(), nullable=True, comment="NULL when the alias was removed"),
        sa.Column("actor", sa.String(length=255), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column(
            "evidence", sa.String(length=255), nullable=True, comment="e.g. the eval result id that justified it"
        ),
        sa.Column("at", keel.store.schema.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alias_events")),
        comment="Append-only history of every alias move: the rollback trail.",
    )
    with op.batch_alter_table("alias_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_alias_events_subject_name_id"), ["subject", "name", "id"], unique=False)

    op.create_table(
        "aliases",
        sa.Column("subject", sa.String(length=16), nullable=False, comment="model or prompt"),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("alias", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("subject", "name", "alias", name=op.f("pk_aliases")),
        comment="Where each alias (production, staging, …) of a model or prompt points now.",
    )
    op.create_table(
        "models",
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("created_at", keel.store.schema.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_models")),
        comment="A named line of model versions.",
    )
    op.create_table(
        "prompts",
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("created_at", keel.store.schema.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_prompts")),
        comment="A named line of prompt versions.",
    )
    op.create_table(
        "runs",
        sa.Column("id", sa.String(length=26), nullable=False, comment="ULID"),
        sa.Column("kind", sa.String(length=64), nullable=False, comment="curate, train, eval, index, …"),
        sa.Column("name", sa.String(length=255), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False, comment="running, finished, failed, killed"),
        sa.Column("params", sa.Text(), nullable=False, comment="canonical JSON of the run's parameters"),
        sa.Column("env", sa.Text(), nullable=False, comment="canonical JSON of the captured environment"),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_by", sa.String(length=255), nullable=False),
        sa.Column("started_at", keel.store.schema.UTCDateTime(timezone=True), nullable=False),
        sa.Column("ended_at", keel.store.schema.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_runs")),
        comment="One execution of a job: its parameters, environment, status and timing.",
    )
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_runs_kind"), ["kind"], unique=False)
        batch_op.create_index(batch_op.f("ix_runs_started_at"), ["started_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_runs_status"), ["status"], unique=False)

    op.create_table(
        "model_versions",
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("manifest_digest", sa.String(length=64), nullable=False),
        sa.Column("format", sa.String(length=32), nullable=False, comment="hf, peft-adapter, gguf or files"),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("file_count", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.String(length=26), nullable=True),
        sa.Column(
            "base_model", sa.String(length=512), nullable=True, comment="hub id, path or registry ref it was tuned from"
        ),
        sa.Column(
            "info", sa.Text(), nullable=False, comment="canonical JSON: description, intended use, limitations, …"
        ),
        sa.Column("created_by", sa.String(length=255), nullable=False),
        sa.Column("created_at", keel.store.schema.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["manifest_digest"], ["blobs.digest"], name=op.f("fk_model_versions_manifest_digest_blobs")
        ),
        sa.ForeignKeyConstraint(["name"], ["models.name"], name=op.f("fk_model_versions_name_models")),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_model_versions_run_id_runs")),
        sa.PrimaryKeyConstraint("name", "version", name=op.f("pk_model_versions")),
        comment="An immutable set of model files (a manifest of blobs) registered as NAME@vN.",
    )
    with op.batch_alter_table("model_versions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_model_versions_manifest_digest"), ["manifest_digest"], unique=False)
        batch_op.create_index(batch_op.f("ix_model_versions_run_id"), ["run_id"], unique=False)

    op.create_table(
        "prompt_versions",
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False, comment="sha256 of the canonical content"),
        sa.Column("template", sa.Text(), nullable=False),
        sa.Column("variables", sa.Text(), nullable=False, comment="canonical JSON: declared variables"),
        sa.Column("examples", sa.Text(), nullable=False, comment="canonical JSON: few-shot examples"),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("created_by", sa.String(length=255), nullable=False),
        sa.Column("created_at", keel.store.schema.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["name"], ["prompts.name"], name=op.f("fk_prompt_versions_name_prompts")),
        sa.PrimaryKeyConstraint("name", "version", name=op.f("pk_prompt_versions")),
        comment="An immutable Jinja2 template with declared variables and few-shot examples, as NAME@vN.",
    )
    with op.batch_alter_table("prompt_versions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_prompt_versions_digest"), ["digest"], unique=False)

    op.create_table(
        "run_artifacts",
        sa.Column("run_id", sa.String(length=26), nullable=False),
        sa.Column("path", sa.String(length=1024), nullable=False, comment="relative path inside the run's artifacts"),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["digest"], ["blobs.digest"], name=op.f("fk_run_artifacts_digest_blobs")),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_run_artifacts_run_id_runs"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("run_id", "path", name=op.f("pk_run_artifacts")),
        comment="Files a run produced, stored as blobs.",
    )
    op.create_table(
        "run_latest_metrics",
        sa.Column("run_id", sa.String(length=26), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("step", sa.BigInteger(), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name=op.f("fk_run_latest_metrics_run_id_runs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("run_id", "key", name=op.f("pk_run_latest_metrics")),
        comment="The value at the highest step of each run's metric, kept current as metrics are logged.",
    )
    with op.batch_alter_table("run_latest_metrics", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_run_latest_metrics_key_value_run_id"), ["key", "value", "run_id"], unique=False
        )

    op.create_table(
        "run_metrics",
        sa.Column("run_id", sa.String(length=26), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("step", sa.BigInteger(), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("at", keel.store.schema.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_run_metrics_run_id_runs"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("run_id", "key", "step", name=op.f("pk_run_metrics")),
        comment="Every logged metric value, as a series per run and key.",
    )
    op.create_table(
        "run_params",
        sa.Column("run_id", sa.String(length=26), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("value", sa.Text(), nullable=False, comment="the value as canonical JSON text, for equality filters"),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_run_params_run_id_runs"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("run_id", "key", name=op.f("pk_run_params")),
        comment="Top-level parameters of each run, one row each, for filtering.",
    )
    with op.batch_alter_table("run_params", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_run_params_key_value_run_id"), ["key", "value", "run_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("run_params", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_run_params_key_value_run_id"))

    op.drop_table("run_params")
    op.drop_table("run_metrics")
    with op.batch_alter_table("run_latest_metrics", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_run_latest_metrics_key_value_run_id"))

    op.drop_table("run_latest_metrics")
    op.drop_table("run_artifacts")
    with op.batch_alter_table("prompt_versions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_prompt_versions_digest"))

    op.drop_table("prompt_versions")
    with op.batch_alter_table("model_versions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_model_versions_run_id"))
        batch_op.drop_index(batch_op.f("ix_model_versions_manifest_digest"))

    op.drop_table("model_versions")
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_runs_status"))
        batch_op.drop_index(batch_op.f("ix_runs_started_at"))
        batch_op.drop_index(batch_op.f("ix_runs_kind"))

    op.drop_table("runs")
    op.drop_table("prompts")
    op.drop_table("models")
    op.drop_table("aliases")
    with op.batch_alter_table("alias_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_alias_events_subject_name_id"))

    op.drop_table("alias_events")
