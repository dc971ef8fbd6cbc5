"""routing tasks, offers and seats

Revision ID: 263df81b9bc4
Revises: 9f9b308ee97e
Create Date: 2026-11-26 07:20:21.227229

Self-contained: imports nothing from `app`.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "263df81b9bc4"
down_revision: str | None = "9f9b308ee97e"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "routing_tasks",
        sa.Column("public_id", sa.String(length=16), nullable=False),
        sa.Column("contact_id", sa.Uuid(), nullable=True),
        sa.Column("case_id", sa.Uuid(), nullable=True),
        sa.Column("channel", sa.String(length=8), nullable=False),
        sa.Column("language", sa.String(length=8), nullable=False),
        sa.Column("emergency", sa.Boolean(), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("escalation_step", sa.Integer(), nullable=False),
        sa.Column("interpreter_needed", sa.Boolean(), nullable=False),
        sa.Column("drill", sa.Boolean(), nullable=False),
        sa.Column("enqueued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("assigned_to_id", sa.Uuid(), nullable=True),
        sa.Column("assigned_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["assigned_to_id"], ["users.id"], name=op.f("fk_routing_tasks_assigned_to_id_users")
        ),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"], name=op.f("fk_routing_tasks_case_id_cases")),
        sa.ForeignKeyConstraint(
            ["contact_id"], ["contacts.id"], name=op.f("fk_routing_tasks_contact_id_contacts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_routing_tasks")),
        sa.UniqueConstraint("public_id", name=op.f("uq_routing_tasks_public_id")),
    )
    with op.batch_alter_table("routing_tasks", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_routing_tasks_case_id"), ["case_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_routing_tasks_contact_id"), ["contact_id"], unique=False)
        batch_op.create_index(
            "ix_routing_tasks_queue", ["state", "channel", "priority", "enqueued_at"], unique=False
        )

    op.create_table(
        "routing_offers",
        sa.Column("public_id", sa.String(length=16), nullable=False),
        sa.Column("task_id", sa.Uuid(), nullable=False),
        sa.Column("volunteer_id", sa.Uuid(), nullable=False),
        sa.Column("channel", sa.String(length=8), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["task_id"], ["routing_tasks.id"], name=op.f("fk_routing_offers_task_id_routing_tasks")
        ),
        sa.ForeignKeyConstraint(
            ["volunteer_id"], ["users.id"], name=op.f("fk_routing_offers_volunteer_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_routing_offers")),
        sa.UniqueConstraint("public_id", name=op.f("uq_routing_offers_public_id")),
    )
    with op.batch_alter_table("routing_offers", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_routing_offers_task_id"), ["task_id"], unique=False)
        batch_op.create_index("ix_routing_offers_volunteer_state", ["volunteer_id", "state"], unique=False)

    op.create_table(
        "routing_seats",
        sa.Column("volunteer_id", sa.Uuid(), nullable=False),
        sa.Column("channel", sa.String(length=8), nullable=False),
        sa.Column("slot", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("task_id", sa.Uuid(), nullable=False),
        sa.Column("taken_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["task_id"], ["routing_tasks.id"], name=op.f("fk_routing_seats_task_id_routing_tasks")
        ),
        sa.ForeignKeyConstraint(
            ["volunteer_id"], ["users.id"], name=op.f("fk_routing_seats_volunteer_id_users")
        ),
        sa.PrimaryKeyConstraint("volunteer_id", "channel", "slot", name=op.f("pk_routing_seats")),
        sa.UniqueConstraint("task_id", name=op.f("uq_routing_seats_task_id")),
    )


def downgrade() -> None:
    op.drop_table("routing_seats")
    with op.batch_alter_table("routing_offers", schema=None) as batch_op:
        batch_op.drop_index("ix_routing_offers_volunteer_state")
        batch_op.drop_index(batch_op.f("ix_routing_offers_task_id"))

    op.drop_table("routing_offers")
    with op.batch_alter_table("routing_tasks", schema=None) as batch_op:
        batch_op.drop_index("ix_routing_tasks_queue")
        batch_op.drop_index(batch_op.f("ix_routing_tasks_contact_id"))
        batch_op.drop_index(batch_op.f("ix_routing_tasks_case_id"))

    op.drop_table("routing_tasks")
