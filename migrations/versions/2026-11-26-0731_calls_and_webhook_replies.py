"""calls and webhook replies

Revision ID: e9e0649d3f26
Revises: 263df81b9bc4
Create Date: 2026-11-26 07:31:35.557444

Self-contained: imports nothing from `app`.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "e9e0649d3f26"
down_revision: str | None = "263df81b9bc4"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "call_webhook_replies",
        sa.Column("call_sid_hash", sa.String(length=64), nullable=False),
        sa.Column("step", sa.String(length=32), nullable=False),
        sa.Column("discriminator", sa.String(length=64), nullable=False),
        sa.Column("reply", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_call_webhook_replies")),
        sa.UniqueConstraint(
            "call_sid_hash",
            "step",
            "discriminator",
            name=op.f("uq_call_webhook_replies_call_sid_hash_step_discriminator"),
        ),
    )
    with op.batch_alter_table("call_webhook_replies", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_call_webhook_replies_call_sid_hash"), ["call_sid_hash"], unique=False
        )

    op.create_table(
        "calls",
        sa.Column("call_sid_hash", sa.String(length=64), nullable=False),
        sa.Column("from_number", sa.LargeBinary(), nullable=True),
        sa.Column("language", sa.String(length=8), nullable=True),
        sa.Column("emergency", sa.Boolean(), nullable=False),
        sa.Column("drill", sa.Boolean(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_calls")),
        sa.UniqueConstraint("call_sid_hash", name=op.f("uq_calls_call_sid_hash")),
    )


def downgrade() -> None:
    op.drop_table("calls")
    with op.batch_alter_table("call_webhook_replies", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_call_webhook_replies_call_sid_hash"))

    op.drop_table("call_webhook_replies")
