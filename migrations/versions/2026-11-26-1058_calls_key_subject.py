"""calls key subject

Revision ID: 1bbb59ec1c80
Revises: 5496de8f197b
Create Date: 2026-11-26 10:58:53.283989

Self-contained: imports nothing from `app`.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "1bbb59ec1c80"
down_revision: str | None = "5496de8f197b"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Rows from before sealed their number under their own id: that stays their subject.
    with op.batch_alter_table("calls", schema=None) as batch_op:
        batch_op.add_column(sa.Column("key_subject", sa.Uuid(), nullable=True))
    op.execute("UPDATE calls SET key_subject = id")
    with op.batch_alter_table("calls", schema=None) as batch_op:
        batch_op.alter_column("key_subject", existing_type=sa.Uuid(), nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("calls", schema=None) as batch_op:
        batch_op.drop_column("key_subject")
