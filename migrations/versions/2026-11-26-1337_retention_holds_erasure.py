"""retention holds erasure

Revision ID: c2c83aa90e24
Revises: f495df5f5e8a
Create Date: 2026-11-26 13:37:16.885374

Self-contained: imports nothing from `app`.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "c2c83aa90e24"
down_revision: str | None = "f495df5f5e8a"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "erasure_requests",
        sa.Column("public_id", sa.String(length=16), nullable=False),
        sa.Column("caller_id", sa.Uuid(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("requested_by_id", sa.Uuid(), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("approved_by_id", sa.Uuid(), nullable=True),
        sa.Column("approved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["approved_by_id"], ["users.id"], name=op.f("fk_erasure_requests_approved_by_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["caller_id"], ["callers.id"], name=op.f("fk_erasure_requests_caller_id_callers")
        ),
        sa.ForeignKeyConstraint(
            ["requested_by_id"], ["users.id"], name=op.f("fk_erasure_requests_requested_by_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_erasure_requests")),
        sa.UniqueConstraint("public_id", name=op.f("uq_erasure_requests_public_id")),
    )
    with op.batch_alter_table("erasure_requests", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_erasure_requests_caller_id"), ["caller_id"], unique=False)

    op.create_table(
        "legal_holds",
        sa.Column("public_id", sa.String(length=16), nullable=False),
        sa.Column("case_id", sa.Uuid(), nullable=True),
        sa.Column("caller_id", sa.Uuid(), nullable=True),
        sa.Column("reason", sa.LargeBinary(), nullable=True),
        sa.Column("placed_by_id", sa.Uuid(), nullable=False),
        sa.Column("placed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("released_by_id", sa.Uuid(), nullable=True),
        sa.Column("released_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(["caller_id"], ["callers.id"], name=op.f("fk_legal_holds_caller_id_callers")),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"], name=op.f("fk_legal_holds_case_id_cases")),
        sa.ForeignKeyConstraint(
            ["placed_by_id"], ["users.id"], name=op.f("fk_legal_holds_placed_by_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["released_by_id"], ["users.id"], name=op.f("fk_legal_holds_released_by_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_legal_holds")),
        sa.UniqueConstraint("public_id", name=op.f("uq_legal_holds_public_id")),
    )
    with op.batch_alter_table("legal_holds", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_legal_holds_caller_id"), ["caller_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_legal_holds_case_id"), ["case_id"], unique=False)

    with op.batch_alter_table("break_glass_grants", schema=None) as batch_op:
        batch_op.alter_column("reason", existing_type=sa.LargeBinary(), nullable=True)

    with op.batch_alter_table("callers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("erased_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("erased_reason", sa.String(length=16), nullable=True))

    with op.batch_alter_table("case_notes", schema=None) as batch_op:
        batch_op.alter_column("body", existing_type=sa.LargeBinary(), nullable=True)

    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.add_column(sa.Column("erased_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("erased_reason", sa.String(length=16), nullable=True))

    with op.batch_alter_table("contacts", schema=None) as batch_op:
        batch_op.alter_column("twilio_sid", existing_type=sa.LargeBinary(), nullable=True)


def downgrade() -> None:
    with op.batch_alter_table("contacts", schema=None) as batch_op:
        batch_op.alter_column("twilio_sid", existing_type=sa.LargeBinary(), nullable=False)

    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.drop_column("erased_reason")
        batch_op.drop_column("erased_at")

    with op.batch_alter_table("case_notes", schema=None) as batch_op:
        batch_op.alter_column("body", existing_type=sa.LargeBinary(), nullable=False)

    with op.batch_alter_table("callers", schema=None) as batch_op:
        batch_op.drop_column("erased_reason")
        batch_op.drop_column("erased_at")

    with op.batch_alter_table("break_glass_grants", schema=None) as batch_op:
        batch_op.alter_column("reason", existing_type=sa.LargeBinary(), nullable=False)

    with op.batch_alter_table("legal_holds", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_legal_holds_case_id"))
        batch_op.drop_index(batch_op.f("ix_legal_holds_caller_id"))

    op.drop_table("legal_holds")
    with op.batch_alter_table("erasure_requests", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_erasure_requests_caller_id"))

    op.drop_table("erasure_requests")
