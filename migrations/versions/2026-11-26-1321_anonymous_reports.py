"""anonymous reports

Revision ID: f495df5f5e8a
Revises: c9d5fa0008fe
Create Date: 2026-11-26 13:21:27.675134

Self-contained: imports nothing from `app`.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "f495df5f5e8a"
down_revision: str | None = "c9d5fa0008fe"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "report_code_attempts",
        sa.Column("scope", sa.String(length=80), nullable=False),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_report_code_attempts")),
        sa.UniqueConstraint("scope", "window_start", name=op.f("uq_report_code_attempts_scope_window_start")),
    )
    op.create_table(
        "twilio_cleanups",
        sa.Column("public_id", sa.String(length=16), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("sid_hash", sa.String(length=64), nullable=False),
        sa.Column("sid", sa.LargeBinary(), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("done_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_twilio_cleanups")),
        sa.UniqueConstraint("public_id", name=op.f("uq_twilio_cleanups_public_id")),
        sa.UniqueConstraint("sid_hash", name=op.f("uq_twilio_cleanups_sid_hash")),
    )
    op.create_table(
        "anonymous_reports",
        sa.Column("public_id", sa.String(length=16), nullable=False),
        sa.Column("case_id", sa.Uuid(), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("category", sa.String(length=32), nullable=False),
        sa.Column("language", sa.String(length=8), nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=True),
        sa.Column("additions", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"], name=op.f("fk_anonymous_reports_case_id_cases")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_anonymous_reports")),
        sa.UniqueConstraint("case_id", name=op.f("uq_anonymous_reports_case_id")),
        sa.UniqueConstraint("code_hash", name=op.f("uq_anonymous_reports_code_hash")),
        sa.UniqueConstraint("public_id", name=op.f("uq_anonymous_reports_public_id")),
    )
    op.create_table(
        "anonymous_report_entries",
        sa.Column("public_id", sa.String(length=16), nullable=False),
        sa.Column("report_id", sa.Uuid(), nullable=False),
        sa.Column("case_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=True),
        sa.Column("audio", sa.LargeBinary(), nullable=True),
        sa.Column("recording_sid", sa.LargeBinary(), nullable=True),
        sa.Column("length", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["case_id"], ["cases.id"], name=op.f("fk_anonymous_report_entries_case_id_cases")
        ),
        sa.ForeignKeyConstraint(
            ["report_id"],
            ["anonymous_reports.id"],
            name=op.f("fk_anonymous_report_entries_report_id_anonymous_reports"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_anonymous_report_entries")),
        sa.UniqueConstraint("public_id", name=op.f("uq_anonymous_report_entries_public_id")),
    )
    with op.batch_alter_table("anonymous_report_entries", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_anonymous_report_entries_report_id"), ["report_id"], unique=False
        )

    with op.batch_alter_table("chat_conversations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("report_started_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("report_language", sa.String(length=8), nullable=True))
        batch_op.add_column(sa.Column("report_opened", sa.Boolean(), nullable=True))
    op.execute(sa.text("UPDATE chat_conversations SET report_opened = false"))
    with op.batch_alter_table("chat_conversations", schema=None) as batch_op:
        batch_op.alter_column("report_opened", existing_type=sa.Boolean(), nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("chat_conversations", schema=None) as batch_op:
        batch_op.drop_column("report_opened")
        batch_op.drop_column("report_language")
        batch_op.drop_column("report_started_at")

    with op.batch_alter_table("anonymous_report_entries", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_anonymous_report_entries_report_id"))

    op.drop_table("anonymous_report_entries")
    op.drop_table("anonymous_reports")
    op.drop_table("twilio_cleanups")
    op.drop_table("report_code_attempts")
