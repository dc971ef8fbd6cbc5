"""calls linked to case, contact, task and queue

Revision ID: 3cb9fa3d99c8
Revises: e9e0649d3f26
Create Date: 2026-11-26 07:34:34.537625

Self-contained: imports nothing from `app`.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "3cb9fa3d99c8"
down_revision: str | None = "e9e0649d3f26"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("calls", schema=None) as batch_op:
        batch_op.add_column(sa.Column("case_id", sa.Uuid(), nullable=True))
        batch_op.add_column(sa.Column("contact_id", sa.Uuid(), nullable=True))
        batch_op.add_column(sa.Column("task_id", sa.Uuid(), nullable=True))
        batch_op.add_column(sa.Column("queue_sid", sa.String(length=34), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_calls_task_id_routing_tasks"), "routing_tasks", ["task_id"], ["id"]
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_calls_contact_id_contacts"), "contacts", ["contact_id"], ["id"]
        )
        batch_op.create_foreign_key(batch_op.f("fk_calls_case_id_cases"), "cases", ["case_id"], ["id"])


def downgrade() -> None:
    with op.batch_alter_table("calls", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_calls_case_id_cases"), type_="foreignkey")
        batch_op.drop_constraint(batch_op.f("fk_calls_contact_id_contacts"), type_="foreignkey")
        batch_op.drop_constraint(batch_op.f("fk_calls_task_id_routing_tasks"), type_="foreignkey")
        batch_op.drop_column("queue_sid")
        batch_op.drop_column("task_id")
        batch_op.drop_column("contact_id")
        batch_op.drop_column("case_id")
