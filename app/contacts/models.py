from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base, UUIDPrimaryKey
from app.keys.sealed import RetentionClass, Sealed, sealed_column


class Channel(StrEnum):
    voice = "voice"
    sms = "sms"
    whatsapp = "whatsapp"


class Contact(UUIDPrimaryKey, Base):
    """One call or one chat conversation. The Twilio SID is kept twice: a keyed hash to find the
    contact from a webhook, and a sealed copy for REST calls (redirect, clean-up at Twilio)."""

    __tablename__ = "contacts"

    public_id: Mapped[str] = mapped_column(String(16), unique=True)
    channel: Mapped[str] = mapped_column(String(16))
    caller_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("callers.id"), index=True)
    case_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("cases.id"), index=True)
    language: Mapped[str | None] = mapped_column(String(8))
    started_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]
    outcome: Mapped[str | None] = mapped_column(String(32))
    drill: Mapped[bool] = mapped_column(default=False)
    # Code-word attempts for linking a possible repeat caller (5 per contact).
    code_word_attempts: Mapped[int] = mapped_column(default=0)
    twilio_sid_hash: Mapped[str] = mapped_column(String(64), unique=True)
    twilio_sid: Mapped[Sealed | None] = sealed_column("contact.twilio_sid", RetentionClass.contact_meta)
