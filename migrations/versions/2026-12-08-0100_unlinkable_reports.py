"""unlinkable reports and blind erasure requests

Revision ID: 9d4f1a6b2c70
Revises: 5b1e0c7d2a10
Create Date: 2026-12-08 01:00:00

* `report_dialogues`: an SMS/WhatsApp report dialogue keeps its state under a keyed hash of the
  number, so it no longer lives on (and links to) the caller's conversation; the conversation's
  `report_*` columns go.
* `callers.public_id`: the access log names callers by a public id, never the row UUID
  (existing rows get a random one).
* `erasure_requests`: the number is sealed on the request and looked up only on approval; the
  request no longer names a caller row. Pending requests of the old kind (which named a caller
  but kept no number) cannot be processed blind and are cancelled; downgrade drops requests
  that name no caller.

Self-contained: imports nothing from `app`.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "9d4f1a6b2c70"
down_revision: str | None = "5b1e0c7d2a10"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ALPHABET = "23456789ABCDEFGHJKMNPQRSTVWXYZ"  # app/publicid.py's


def _public_id(prefix: str) -> str:
    body = "".join(secrets.choice(_ALPHABET) for _ in range(8))
    return f"{prefix}-{body[:4]}-{body[4:]}"


def upgrade() -> None:
    op.create_table(
        "report_dialogues",
        sa.Column("number_hash", sa.String(length=64), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("language", sa.String(length=8), nullable=False),
        sa.Column("drill", sa.Boolean(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_report_dialogues")),
        sa.UniqueConstraint("number_hash", name=op.f("uq_report_dialogues_number_hash")),
    )
    with op.batch_alter_table("report_dialogues", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_report_dialogues_expires_at"), ["expires_at"], unique=False)

    with op.batch_alter_table("chat_conversations", schema=None) as batch_op:
        batch_op.drop_column("report_opened")
        batch_op.drop_column("report_language")
        batch_op.drop_column("report_started_at")

    with op.batch_alter_table("callers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("public_id", sa.String(length=16), nullable=True))
    connection = op.get_bind()
    callers = sa.table("callers", sa.column("id", sa.Uuid()), sa.column("public_id", sa.String(16)))
    for (row_id,) in connection.execute(sa.select(callers.c.id)).all():
        connection.execute(callers.update().where(callers.c.id == row_id).values(public_id=_public_id("CL")))
    with op.batch_alter_table("callers", schema=None) as batch_op:
        batch_op.alter_column("public_id", existing_type=sa.String(length=16), nullable=False)
        batch_op.create_unique_constraint(batch_op.f("uq_callers_public_id"), ["public_id"])

    op.execute(sa.text("UPDATE erasure_requests SET state = 'cancelled' WHERE state = 'pending'"))
    with op.batch_alter_table("erasure_requests", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_erasure_requests_caller_id"))
        batch_op.drop_constraint(batch_op.f("fk_erasure_requests_caller_id_callers"), type_="foreignkey")
        batch_op.drop_column("caller_id")
        batch_op.add_column(sa.Column("phone", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    op.execute(sa.text("DELETE FROM erasure_requests"))
    with op.batch_alter_table("erasure_requests", schema=None) as batch_op:
        batch_op.drop_column("phone")
        batch_op.add_column(sa.Column("caller_id", sa.Uuid(), nullable=False))
        batch_op.create_foreign_key(
            batch_op.f("fk_erasure_requests_caller_id_callers"), "callers", ["caller_id"], ["id"]
        )
        batch_op.create_index(batch_op.f("ix_erasure_requests_caller_id"), ["caller_id"], unique=False)

    with op.batch_alter_table("callers", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_callers_public_id"), type_="unique")
        batch_op.drop_column("public_id")

    with op.batch_alter_table("chat_conversations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("report_started_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("report_language", sa.String(length=8), nullable=True))
        batch_op.add_column(sa.Column("report_opened", sa.Boolean(), nullable=True))
    op.execute(sa.text("UPDATE chat_conversations SET report_opened = false"))
    with op.batch_alter_table("chat_conversations", schema=None) as batch_op:
        batch_op.alter_column("report_opened", existing_type=sa.Boolean(), nullable=False)

    with op.batch_alter_table("report_dialogues", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_report_dialogues_expires_at"))
    op.drop_table("report_dialogues")
