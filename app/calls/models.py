from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base, UUIDPrimaryKey
from app.keys.sealed import RetentionClass, Sealed, sealed_column


class Call(UUIDPrimaryKey, Base):
    """An inbound call as the voice flow sees it. The first webhook does little: this row, with the
    caller's number sealed, and the CallSid kept only as a keyed hash."""

    __tablename__ = "calls"

    call_sid_hash: Mapped[str] = mapped_column(String(64), unique=True)
    from_number: Mapped[Sealed | None] = sealed_column("call.from_number", RetentionClass.caller_identity)
    language: Mapped[str | None] = mapped_column(String(8))
    emergency: Mapped[bool] = mapped_column(default=False)
    drill: Mapped[bool] = mapped_column(default=False)
    state: Mapped[str] = mapped_column(String(16), default="menu")
    case_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("cases.id"))
    contact_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("contacts.id"))
    task_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("routing_tasks.id"))
    # Twilio's queue resource id (from the waitUrl), needed to dequeue this caller by CallSid.
    queue_sid: Mapped[str | None] = mapped_column(String(34))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class WebhookReply(UUIDPrimaryKey, Base):
    """The TwiML we answered to one (CallSid, step, discriminator): a true replay gets the same
    bytes back. Sealed at rest — some replies name numbers to dial."""

    __tablename__ = "call_webhook_replies"
    __table_args__ = (UniqueConstraint("call_sid_hash", "step", "discriminator"),)

    call_sid_hash: Mapped[str] = mapped_column(String(64), index=True)
    step: Mapped[str] = mapped_column(String(32))
    discriminator: Mapped[str] = mapped_column(String(64))
    reply: Mapped[Sealed] = sealed_column("call_webhook.reply", RetentionClass.contact_meta)
    created_at: Mapped[datetime]
