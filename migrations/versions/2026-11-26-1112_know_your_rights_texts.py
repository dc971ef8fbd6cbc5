"""know your rights texts

Revision ID: 2f38fc387361
Revises: 1bbb59ec1c80
Create Date: 2026-11-26 11:12:02.495679

Self-contained: imports nothing from `app`.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "2f38fc387361"
down_revision: str | None = "1bbb59ec1c80"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "rights_texts",
        sa.Column("public_id", sa.String(length=16), nullable=False),
        sa.Column("topic", sa.String(length=32), nullable=False),
        sa.Column("language", sa.String(length=8), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(length=80), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("audio_url", sa.String(length=500), nullable=True),
        sa.Column("placeholder", sa.Boolean(), nullable=False),
        sa.Column("created_by_id", sa.Uuid(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reviewed_by_id", sa.Uuid(), nullable=True),
        sa.Column("reviewed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("review_note", sa.String(length=500), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["created_by_id"], ["users.id"], name=op.f("fk_rights_texts_created_by_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["reviewed_by_id"], ["users.id"], name=op.f("fk_rights_texts_reviewed_by_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rights_texts")),
        sa.UniqueConstraint("public_id", name=op.f("uq_rights_texts_public_id")),
        sa.UniqueConstraint(
            "topic", "language", "version", name=op.f("uq_rights_texts_topic_language_version")
        ),
    )
    # Structure, not legal advice: one placeholder per topic and language, never served (a
    # placeholder cannot be reviewed; an admin adds the real text as version 2 and another admin
    # reviews it).
    table = sa.table(
        "rights_texts",
        sa.column("id", sa.Uuid()),
        sa.column("public_id", sa.String()),
        sa.column("topic", sa.String()),
        sa.column("language", sa.String()),
        sa.column("version", sa.Integer()),
        sa.column("title", sa.String()),
        sa.column("body", sa.Text()),
        sa.column("placeholder", sa.Boolean()),
        sa.column("created_at", sa.DateTime(timezone=True)),
    )
    now = datetime.now(UTC)
    rows = []
    for topic, title in TOPICS.items():
        for language in LANGUAGES:
            rows.append(
                {
                    "id": uuid.uuid4(),
                    "public_id": _public_id(),
                    "topic": topic,
                    "language": language,
                    "version": 1,
                    "title": title,
                    "body": f"[Placeholder: a reviewed text about '{title}' in this language goes here.]",
                    "placeholder": True,
                    "created_at": now,
                }
            )
    op.bulk_insert(table, rows)


TOPICS = {
    "at_the_door": "If immigration agents come to your door",
    "at_work": "If agents come to your workplace",
    "in_the_street": "If you are stopped in the street",
    "family_detained": "If a family member is detained",
    "finding_someone": "Finding someone in detention",
    "right_to_lawyer": "Your right to a lawyer",
}
LANGUAGES = ("en", "es", "cmn", "yue", "ht", "ru", "bn")
_ALPHABET = "23456789ABCDEFGHJKMNPQRSTVWXYZ"


def _public_id() -> str:
    body = "".join(secrets.choice(_ALPHABET) for _ in range(8))
    return f"RT-{body[:4]}-{body[4:]}"


def downgrade() -> None:
    op.drop_table("rights_texts")
