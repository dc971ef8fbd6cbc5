"""public ids for grants, notes and referrals; audit verification runs

Revision ID: e197a17927a6
Revises: 37fc742eef67
Create Date: 2026-11-26 06:52:57.255224

Self-contained: imports nothing from `app`.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "e197a17927a6"
down_revision: str | None = "37fc742eef67"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # No endpoint wrote grants, notes or referrals before this revision (the API arrives with it),
    # so the new NOT NULL public ids need no backfill.
    op.create_table(
        "audit_verifications",
        sa.Column("public_id", sa.String(length=16), nullable=False),
        sa.Column("requested_by_id", sa.Uuid(), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("entries_checked", sa.Integer(), nullable=False),
        sa.Column("entries_total", sa.Integer(), nullable=True),
        sa.Column("problems", sa.JSON(), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["requested_by_id"], ["users.id"], name=op.f("fk_audit_verifications_requested_by_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_verifications")),
        sa.UniqueConstraint("public_id", name=op.f("uq_audit_verifications_public_id")),
    )
    with op.batch_alter_table("break_glass_grants", schema=None) as batch_op:
        batch_op.add_column(sa.Column("public_id", sa.String(length=16), nullable=False))
        batch_op.create_unique_constraint(batch_op.f("uq_break_glass_grants_public_id"), ["public_id"])

    with op.batch_alter_table("case_notes", schema=None) as batch_op:
        batch_op.add_column(sa.Column("public_id", sa.String(length=16), nullable=False))
        batch_op.create_unique_constraint(batch_op.f("uq_case_notes_public_id"), ["public_id"])

    with op.batch_alter_table("referrals", schema=None) as batch_op:
        batch_op.add_column(sa.Column("public_id", sa.String(length=16), nullable=False))
        batch_op.create_unique_constraint(batch_op.f("uq_referrals_public_id"), ["public_id"])


def downgrade() -> None:
    with op.batch_alter_table("referrals", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_referrals_public_id"), type_="unique")
        batch_op.drop_column("public_id")

    with op.batch_alter_table("case_notes", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_case_notes_public_id"), type_="unique")
        batch_op.drop_column("public_id")

    with op.batch_alter_table("break_glass_grants", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_break_glass_grants_public_id"), type_="unique")
        batch_op.drop_column("public_id")

    op.drop_table("audit_verifications")
