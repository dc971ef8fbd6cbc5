"""SMS and WhatsApp conversations and their messages.

A conversation is one chat contact (`contacts` row, channel sms or whatsapp) with its case and,
once the caller has chosen a language, a routing task. Each message's body is sealed under the
case's `chat_messages` key; its Twilio SID is kept as a keyed hash (to deduplicate webhooks and
match status callbacks) and sealed (to delete it at Twilio).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base, UUIDPrimaryKey
from app.keys.sealed import RetentionClass, Sealed, sealed_column


class ConversationState(StrEnum):
    language = "language"  # asked to pick a language
    waiting = "waiting"  # routed, waiting for a volunteer
    active = "active"  # a volunteer holds it
    closed = "closed"


class Conversation(UUIDPrimaryKey, Base):
    __tablename__ = "chat_conversations"
    __table_args__ = (Index("ix_chat_conversations_open", "caller_id", "channel", "state"),)

    public_id: Mapped[str] = mapped_column(String(16), unique=True)
    contact_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("contacts.id"), unique=True)
    case_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("cases.id"), index=True)
    caller_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("callers.id"))
    channel: Mapped[str] = mapped_column(String(16))  # sms | whatsapp
    state: Mapped[str] = mapped_column(String(16), default=ConversationState.language)
    language: Mapped[str | None] = mapped_column(String(8))
    task_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("routing_tasks.id"))
    drill: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime]
    last_inbound_at: Mapped[datetime]  # WhatsApp's 24-hour window counts from here
    last_activity_at: Mapped[datetime]
    closed_at: Mapped[datetime | None]
    closed_reason: Mapped[str | None] = mapped_column(String(16))  # volunteer | inactivity | stop
    # A know-your-rights topic menu sent in this language and when (digits answer it for a while).
    rights_language: Mapped[str | None] = mapped_column(String(8))
    rights_menu_at: Mapped[datetime | None]
    # An anonymous report being made here: since when, in which language, and whether this
    # conversation was opened by it (then nothing of it outlives the report).


class ChatMessage(UUIDPrimaryKey, Base):
    __tablename__ = "chat_messages"
    __sealed_subject__ = "case_id"
    __table_args__ = (Index("ix_chat_messages_conversation", "conversation_id", "created_at"),)

    public_id: Mapped[str] = mapped_column(String(16), unique=True)
    conversation_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("chat_conversations.id"))
    case_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("cases.id"))
    direction: Mapped[str] = mapped_column(String(8))  # in | out
    kind: Mapped[str] = mapped_column(String(16), default="text")  # text | system | template
    # Keyed hash of Twilio's MessageSid (null until an outbound message is accepted by Twilio).
    sid_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    message_sid: Mapped[Sealed | None] = sealed_column("chat_message.sid", RetentionClass.contact_meta)
    body: Mapped[Sealed | None] = sealed_column("chat_message.body", RetentionClass.chat_messages)
    length: Mapped[int] = mapped_column(default=0)
    media_count: Mapped[int] = mapped_column(default=0)
    # pending (ours, not yet at Twilio) → queued → sent → delivered/undelivered/failed (→ read);
    # received for inbound. Only moves forward by Twilio's status rank.
    status: Mapped[str] = mapped_column(String(16))
    status_rank: Mapped[int] = mapped_column(default=0)
    error_code: Mapped[int | None]
    author_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    deleted_at_twilio: Mapped[datetime | None]
