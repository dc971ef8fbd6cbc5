"""chat conversations and messages

Revision ID: 5496de8f197b
Revises: 8279d6140d36
Create Date: 2026-11-26 10:44:58.983903

Self-contained: imports nothing from `app`.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "5496de8f197b"
down_revision: str | None = "8279d6140d36"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "chat_conversations",
        sa.Column("public_id", sa.String(length=16), nullable=False),
        sa.Column("contact_id", sa.Uuid(), nullable=False),
        sa.Column("case_id", sa.Uuid(), nullable=False),
        sa.Column("caller_id", sa.Uuid(), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("language", sa.String(length=8), nullable=True),
        sa.Column("task_id", sa.Uuid(), nullable=True),
        sa.Column("drill", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_inbound_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_activity_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("closed_reason", sa.String(length=16), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["caller_id"], ["callers.id"], name=op.f("fk_chat_conversations_caller_id_callers")
        ),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"], name=op.f("fk_chat_conversations_case_id_cases")),
        sa.ForeignKeyConstraint(
            ["contact_id"], ["contacts.id"], name=op.f("fk_chat_conversations_contact_id_contacts")
        ),
        sa.ForeignKeyConstraint(
            ["task_id"], ["routing_tasks.id"], name=op.f("fk_chat_conversations_task_id_routing_tasks")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_chat_conversations")),
        sa.UniqueConstraint("contact_id", name=op.f("uq_chat_conversations_contact_id")),
        sa.UniqueConstraint("public_id", name=op.f("uq_chat_conversations_public_id")),
    )
    with op.batch_alter_table("chat_conversations", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_chat_conversations_case_id"), ["case_id"], unique=False)
        batch_op.create_index("ix_chat_conversations_open", ["caller_id", "channel", "state"], unique=False)

    op.create_table(
        "chat_messages",
        sa.Column("public_id", sa.String(length=16), nullable=False),
        sa.Column("conversation_id", sa.Uuid(), nullable=False),
        sa.Column("case_id", sa.Uuid(), nullable=False),
        sa.Column("direction", sa.String(length=8), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("sid_hash", sa.String(length=64), nullable=True),
        sa.Column("message_sid", sa.LargeBinary(), nullable=True),
        sa.Column("body", sa.LargeBinary(), nullable=True),
        sa.Column("length", sa.Integer(), nullable=False),
        sa.Column("media_count", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("status_rank", sa.Integer(), nullable=False),
        sa.Column("error_code", sa.Integer(), nullable=True),
        sa.Column("author_id", sa.Uuid(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deleted_at_twilio", sa.DateTime(timezone=True), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(["author_id"], ["users.id"], name=op.f("fk_chat_messages_author_id_users")),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"], name=op.f("fk_chat_messages_case_id_cases")),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["chat_conversations.id"],
            name=op.f("fk_chat_messages_conversation_id_chat_conversations"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_chat_messages")),
        sa.UniqueConstraint("public_id", name=op.f("uq_chat_messages_public_id")),
        sa.UniqueConstraint("sid_hash", name=op.f("uq_chat_messages_sid_hash")),
    )
    with op.batch_alter_table("chat_messages", schema=None) as batch_op:
        batch_op.create_index(
            "ix_chat_messages_conversation", ["conversation_id", "created_at"], unique=False
        )

    with op.batch_alter_table("callers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("opted_out_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("callers", schema=None) as batch_op:
        batch_op.drop_column("opted_out_at")

    with op.batch_alter_table("chat_messages", schema=None) as batch_op:
        batch_op.drop_index("ix_chat_messages_conversation")

    op.drop_table("chat_messages")
    with op.batch_alter_table("chat_conversations", schema=None) as batch_op:
        batch_op.drop_index("ix_chat_conversations_open")
        batch_op.drop_index(batch_op.f("ix_chat_conversations_case_id"))

    op.drop_table("chat_conversations")
