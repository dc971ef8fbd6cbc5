"""offer leg sid and rung at

Revision ID: 8279d6140d36
Revises: 8c465ef28958
Create Date: 2026-11-26 10:06:17.352482

Self-contained: imports nothing from `app`.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "8279d6140d36"
down_revision: str | None = "8c465ef28958"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("routing_offers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("leg_sid", sa.LargeBinary(), nullable=True))
        batch_op.add_column(sa.Column("rung_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("routing_offers", schema=None) as batch_op:
        batch_op.drop_column("rung_at")
        batch_op.drop_column("leg_sid")
