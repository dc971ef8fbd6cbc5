"""Know-your-rights texts: short, reviewed texts per topic and language, versioned.

Public information, not about any person, so stored in the clear. A text starts as an unreviewed
draft and is never played or sent until an admin other than its author records a review; the
text served for a (topic, language) is its latest reviewed version. A review older than
`HOTLINE_RIGHTS_REVIEW_MAX_DAYS` is flagged to supervisors as stale.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base, UUIDPrimaryKey


class RightsTopic(StrEnum):
    at_the_door = "at_the_door"
    at_work = "at_work"
    in_the_street = "in_the_street"
    family_detained = "family_detained"
    finding_someone = "finding_someone"
    right_to_lawyer = "right_to_lawyer"


class RightsText(UUIDPrimaryKey, Base):
    __tablename__ = "rights_texts"
    __table_args__ = (UniqueConstraint("topic", "language", "version"),)

    public_id: Mapped[str] = mapped_column(String(16), unique=True)
    topic: Mapped[str] = mapped_column(String(32))
    language: Mapped[str] = mapped_column(String(8))
    version: Mapped[int]
    title: Mapped[str] = mapped_column(String(80))
    body: Mapped[str] = mapped_column(Text)
    # A recording of the body for languages Twilio cannot speak (e.g. Haitian Creole).
    audio_url: Mapped[str | None] = mapped_column(String(500))
    placeholder: Mapped[bool] = mapped_column(default=False)
    created_by_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime]
    reviewed_by_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    reviewed_at: Mapped[datetime | None]
    review_note: Mapped[str | None] = mapped_column(String(500))
