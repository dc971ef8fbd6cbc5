from __future__ import annotations

import uuid
from datetime import date, datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base, UUIDPrimaryKey
from app.keys.sealed import RetentionClass, Sealed, sealed_column


class Call(UUIDPrimaryKey, Base):
    """An inbound call as the voice flow sees it. The first webhook does little: this row, with the
    caller's number sealed, and the CallSid kept only as a keyed hash."""

    __tablename__ = "calls"
    # The number is sealed under one data key per day of calls (not per call): the first webhook
    # must stay one cheap write, and a day's numbers are crypto-shredded together.
    __sealed_subject__ = "key_subject"

    call_sid_hash: Mapped[str] = mapped_column(String(64), unique=True)
    key_subject: Mapped[uuid.UUID]
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


class Voicemail(UUIDPrimaryKey, Base):
    """A message a caller chose to leave (they pressed the key for it). The audio is fetched from
    Twilio, sealed under the case's key and stored here; only then is it deleted at Twilio."""

    __tablename__ = "voicemails"
    __sealed_subject__ = "case_id"

    public_id: Mapped[str] = mapped_column(String(16), unique=True)
    case_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("cases.id"), index=True)
    contact_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("contacts.id"), unique=True)
    # recording → stored → deleted_at_twilio; or absent (nothing recorded) / failed.
    state: Mapped[str] = mapped_column(String(24), default="recording")
    recording_sid: Mapped[Sealed | None] = sealed_column(
        "voicemail.recording_sid", RetentionClass.contact_meta
    )
    # The audio (base64 of Twilio's WAV) under the case's voicemail key.
    audio: Mapped[Sealed | None] = sealed_column("voicemail.audio", RetentionClass.voicemail_audio)
    audio_type: Mapped[str | None] = mapped_column(String(32))
    duration_seconds: Mapped[int | None]
    created_at: Mapped[datetime]
    stored_at: Mapped[datetime | None]
    deleted_at_twilio: Mapped[datetime | None]


class CallbackState(StrEnum):
    open = "open"  # waiting for a volunteer to claim it
    claimed = "claimed"  # one volunteer holds it; their phone is being rung
    completed = "completed"  # the caller was reached
    unreached = "unreached"  # tried; nobody (or a machine we may not speak to) answered
    cancelled = "cancelled"


class Callback(UUIDPrimaryKey, Base):
    """A promise to call a caller back: exactly one volunteer can claim it (conditional update),
    and placing it rings that volunteer first, then the caller, with the hotline's number."""

    __tablename__ = "callbacks"
    __table_args__ = (Index("ix_callbacks_state", "state", "emergency", "created_at"),)

    public_id: Mapped[str] = mapped_column(String(16), unique=True)
    case_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("cases.id"), index=True)
    contact_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("contacts.id"), unique=True)
    voicemail_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("voicemails.id"))
    language: Mapped[str] = mapped_column(String(8))
    emergency: Mapped[bool] = mapped_column(default=False)
    drill: Mapped[bool] = mapped_column(default=False)
    state: Mapped[str] = mapped_column(String(16), default=CallbackState.open)
    claimed_by_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    claimed_at: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(default=0)
    # answered, no-answer, busy, failed, machine (hung up: voicemail not safe), volunteer-declined…
    outcome: Mapped[str | None] = mapped_column(String(24))
    created_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]


def daily_key_subject(kind: str, day: date) -> uuid.UUID:
    """The data-key subject shared by one day's rows of `kind` (e.g. the numbers of a day's calls)."""
    return uuid.uuid5(uuid.NAMESPACE_URL, f"hotline:{kind}:{day.isoformat()}")
