"""labelling: label schemas, queues of items to label, and each annotator's labels (keel.label)

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

import keel.store.schema

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "label_schemas",
        sa.Column("name", sa.String(length=160), nullable=False, comment="a dataset's name, or traces:DEPLOYMENT"),
        sa.Column("kind", sa.String(length=16), nullable=False, comment="classes, spans, rating or text"),
        sa.Column("spec", sa.Text(), nullable=False, comment="canonical JSON: classes, multi, scale"),
        sa.Column("updated_by", sa.String(length=255), nullable=False),
        sa.Column("updated_at", keel.store.schema.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_label_schemas")),
        comment="What annotators answer about a dataset's (or a deployment's traces') items.",
    )
    op.create_table(
        "label_queues",
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("source", sa.String(length=255), nullable=False, comment="data:NAME@vN or traces:DEPLOYMENT"),
        sa.Column(
            "spec",
            sa.Text(),
            nullable=False,
            comment="canonical JSON: the schema as it was, field, order, annotators",
        ),
        sa.Column("created_by", sa.String(length=255), nullable=False),
        sa.Column("created_at", keel.store.schema.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_label_queues")),
        comment="A queue of items to label, in labelling order, drawn from a dataset version or served traces.",
    )
    op.create_table(
        "label_items",
        sa.Column("queue", sa.String(length=128), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False, comment="0-based place in the labelling order"),
        sa.Column("item_id", sa.String(length=255), nullable=False, comment="the record id, or the trace id"),
        sa.ForeignKeyConstraint(
            ["queue"], ["label_queues.name"], name=op.f("fk_label_items_queue_label_queues"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("queue", "position", name=op.f("pk_label_items")),
        comment="The items of each queue, by position in labelling order; their text stays in the source.",
    )
    with op.batch_alter_table("label_items", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_label_items_queue_item_id"), ["queue", "item_id"], unique=False)
    op.create_table(
        "labels",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("queue", sa.String(length=128), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("annotator", sa.String(length=255), nullable=False, comment="the principal who answered"),
        sa.Column("status", sa.String(length=16), nullable=False, comment="labelled or skipped"),
        sa.Column("value", sa.Text(), nullable=True, comment="canonical JSON of the answer; NULL when skipped"),
        sa.Column("origin", sa.String(length=32), nullable=False, comment="terminal, cli, console or import"),
        sa.Column("at", keel.store.schema.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["queue", "position"],
            ["label_items.queue", "label_items.position"],
            name=op.f("fk_labels_queue_label_items"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_labels")),
        sa.UniqueConstraint("queue", "position", "annotator", name=op.f("uq_labels_queue_position_annotator")),
        comment="Each annotator's answer (or skip) on each item of a queue; one per annotator and item.",
    )
    with op.batch_alter_table("labels", schema=None) as batch_op:
        # An annotator's latest answer in a queue (undo, resume).
        batch_op.create_index(batch_op.f("ix_labels_queue_annotator_id"), ["queue", "annotator", "id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("labels", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_labels_queue_annotator_id"))
    op.drop_table("labels")
    with op.batch_alter_table("label_items", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_label_items_queue_item_id"))
    op.drop_table("label_items")
    op.drop_table("label_queues")
    op.drop_table("label_schemas")
