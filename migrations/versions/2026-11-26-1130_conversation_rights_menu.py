"""conversation rights menu

Revision ID: c9d5fa0008fe
Revises: 2f38fc387361
Create Date: 2026-11-26 11:30:14.492560

Self-contained: imports nothing from `app`.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "c9d5fa0008fe"
down_revision: str | None = "2f38fc387361"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("chat_conversations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("rights_language", sa.String(length=8), nullable=True))
        batch_op.add_column(sa.Column("rights_menu_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("chat_conversations", schema=None) as batch_op:
        batch_op.drop_column("rights_menu_at")
        batch_op.drop_column("rights_language")
