"""volunteer shifts, date overrides, presence and phone verifications

Revision ID: 9f9b308ee97e
Revises: e197a17927a6
Create Date: 2026-11-26 07:06:16.829155

Self-contained: imports nothing from `app`. New tables only; nothing to backfill.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "9f9b308ee97e"
down_revision: str | None = "e197a17927a6"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "phone_verifications",
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("phone_fingerprint", sa.String(length=64), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("confirmed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_phone_verifications_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_phone_verifications")),
    )
    op.create_index(op.f("ix_phone_verifications_user_id"), "phone_verifications", ["user_id"], unique=False)
    op.create_table(
        "volunteer_presence",
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("voice_capacity", sa.Integer(), nullable=False),
        sa.Column("chat_capacity", sa.Integer(), nullable=False),
        sa.Column("away_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("away_reason", sa.String(length=16), nullable=True),
        sa.Column("state_changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.CheckConstraint(
            "state IN ('available', 'busy', 'away', 'offline')", name=op.f("ck_volunteer_presence_state")
        ),
        sa.CheckConstraint(
            "voice_capacity >= 0 AND chat_capacity >= 0", name=op.f("ck_volunteer_presence_capacity")
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_volunteer_presence_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_volunteer_presence")),
        sa.UniqueConstraint("user_id", name=op.f("uq_volunteer_presence_user_id")),
    )
    op.create_table(
        "volunteer_shift_overrides",
        sa.Column("public_id", sa.String(length=16), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("on_date", sa.Date(), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("start_minute", sa.Integer(), nullable=True),
        sa.Column("duration_minutes", sa.Integer(), nullable=True),
        sa.Column("created_by_id", sa.Uuid(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.CheckConstraint(
            "(kind = 'off' AND start_minute IS NULL AND duration_minutes IS NULL) OR (kind = 'extra' AND start_minute >= 0 AND start_minute < 1440 AND duration_minutes > 0 AND duration_minutes <= 1440)",
            name=op.f("ck_volunteer_shift_overrides_shape"),
        ),
        sa.CheckConstraint("kind IN ('off', 'extra')", name=op.f("ck_volunteer_shift_overrides_kind")),
        sa.ForeignKeyConstraint(
            ["created_by_id"],
            ["users.id"],
            name=op.f("fk_volunteer_shift_overrides_created_by_id_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_volunteer_shift_overrides_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_volunteer_shift_overrides")),
        sa.UniqueConstraint("public_id", name=op.f("uq_volunteer_shift_overrides_public_id")),
    )
    op.create_index(
        op.f("ix_volunteer_shift_overrides_on_date"), "volunteer_shift_overrides", ["on_date"], unique=False
    )
    op.create_index(
        op.f("ix_volunteer_shift_overrides_user_id"), "volunteer_shift_overrides", ["user_id"], unique=False
    )
    op.create_table(
        "volunteer_shifts",
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("weekday", sa.Integer(), nullable=False),
        sa.Column("start_minute", sa.Integer(), nullable=False),
        sa.Column("duration_minutes", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.CheckConstraint(
            "duration_minutes > 0 AND duration_minutes <= 1440", name=op.f("ck_volunteer_shifts_duration")
        ),
        sa.CheckConstraint(
            "start_minute >= 0 AND start_minute < 1440", name=op.f("ck_volunteer_shifts_start_minute")
        ),
        sa.CheckConstraint("weekday >= 0 AND weekday <= 6", name=op.f("ck_volunteer_shifts_weekday")),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_volunteer_shifts_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_volunteer_shifts")),
    )
    op.create_index(op.f("ix_volunteer_shifts_user_id"), "volunteer_shifts", ["user_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_volunteer_shifts_user_id"), table_name="volunteer_shifts")
    op.drop_table("volunteer_shifts")
    op.drop_index(op.f("ix_volunteer_shift_overrides_user_id"), table_name="volunteer_shift_overrides")
    op.drop_index(op.f("ix_volunteer_shift_overrides_on_date"), table_name="volunteer_shift_overrides")
    op.drop_table("volunteer_shift_overrides")
    op.drop_table("volunteer_presence")
    op.drop_index(op.f("ix_phone_verifications_user_id"), table_name="phone_verifications")
    op.drop_table("phone_verifications")
