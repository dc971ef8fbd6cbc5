"""role grants and case reassignments

Revision ID: a2c51070f0e1
Revises: 9d4f1a6b2c70
Create Date: 2026-12-08 02:00:00

* `role_grants`: granting supervisor or admin is asked by one admin and approved by a second,
  distinct one; the row holds role names and staff ids only.
* `case_reassignments`: every change of a case's assignee by a supervisor, listed for review by
  another supervisor next to break-glass grants.

Both tables are new: the downgrade drops them (pending grants and reviews are lost).

Self-contained: imports nothing from `app`.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "a2c51070f0e1"
down_revision: str | None = "9d4f1a6b2c70"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "role_grants",
        sa.Column("public_id", sa.String(length=16), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("roles", sa.String(length=64), nullable=False),
        sa.Column("roles_before", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("requested_by_id", sa.Uuid(), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_by_id", sa.Uuid(), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_role_grants_user_id_users")),
        sa.ForeignKeyConstraint(
            ["requested_by_id"], ["users.id"], name=op.f("fk_role_grants_requested_by_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["decided_by_id"], ["users.id"], name=op.f("fk_role_grants_decided_by_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_role_grants")),
        sa.UniqueConstraint("public_id", name=op.f("uq_role_grants_public_id")),
    )
    with op.batch_alter_table("role_grants", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_role_grants_user_id"), ["user_id"], unique=False)

    op.create_table(
        "case_reassignments",
        sa.Column("public_id", sa.String(length=16), nullable=False),
        sa.Column("case_id", sa.Uuid(), nullable=False),
        sa.Column("supervisor_id", sa.Uuid(), nullable=False),
        sa.Column("assignee_id", sa.Uuid(), nullable=False),
        sa.Column("previous_assignee_id", sa.Uuid(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reviewed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reviewed_by_id", sa.Uuid(), nullable=True),
        sa.Column("review_outcome", sa.String(length=16), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"], name=op.f("fk_case_reassignments_case_id_cases")),
        sa.ForeignKeyConstraint(
            ["supervisor_id"], ["users.id"], name=op.f("fk_case_reassignments_supervisor_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["assignee_id"], ["users.id"], name=op.f("fk_case_reassignments_assignee_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["previous_assignee_id"],
            ["users.id"],
            name=op.f("fk_case_reassignments_previous_assignee_id_users"),
        ),
        sa.ForeignKeyConstraint(
            ["reviewed_by_id"], ["users.id"], name=op.f("fk_case_reassignments_reviewed_by_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_case_reassignments")),
        sa.UniqueConstraint("public_id", name=op.f("uq_case_reassignments_public_id")),
    )
    with op.batch_alter_table("case_reassignments", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_case_reassignments_case_id"), ["case_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_case_reassignments_supervisor_id"), ["supervisor_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("case_reassignments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_case_reassignments_supervisor_id"))
        batch_op.drop_index(batch_op.f("ix_case_reassignments_case_id"))
    op.drop_table("case_reassignments")

    with op.batch_alter_table("role_grants", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_role_grants_user_id"))
    op.drop_table("role_grants")
