"""Anonymous reports (abuse, immigration-enforcement activity) and what must be deleted at Twilio.

A report is a case of category `abuse_report` or `enforcement_report` with no caller: its entries
(the facts the caller chose to give, by text or by voice, and additions made later with the
reference code) are sealed under the report case's own keys. The reference code is never stored:
only its keyed hash (`code_hash`). Nothing here names the person who reported.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base, UUIDPrimaryKey
from app.keys.sealed import RetentionClass, Sealed, sealed_column


class Report(UUIDPrimaryKey, Base):
    __tablename__ = "anonymous_reports"

    public_id: Mapped[str] = mapped_column(String(16), unique=True)
    case_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("cases.id"), unique=True)
    channel: Mapped[str] = mapped_column(String(16))  # voice | sms | whatsapp
    category: Mapped[str] = mapped_column(String(32))  # abuse_report | enforcement_report
    language: Mapped[str] = mapped_column(String(8))
    # Keyed hash (HMAC under the keyring) of the 10-digit reference code; null until it is issued.
    code_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    additions: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class ReportEntry(UUIDPrimaryKey, Base):
    """One piece of a report: a text or a recording (fetched from Twilio, sealed, then deleted
    there), from the first report or added later with the reference code."""

    __tablename__ = "anonymous_report_entries"
    __sealed_subject__ = "case_id"

    public_id: Mapped[str] = mapped_column(String(16), unique=True)
    report_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("anonymous_reports.id"), index=True)
    case_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("cases.id"))
    kind: Mapped[str] = mapped_column(String(16))  # text | audio
    source: Mapped[str] = mapped_column(String(16))  # report | addition
    state: Mapped[str] = mapped_column(String(16))  # stored | fetching | failed
    body: Mapped[Sealed | None] = sealed_column("report_entry.body", RetentionClass.case_content)
    audio: Mapped[Sealed | None] = sealed_column("report_entry.audio", RetentionClass.voicemail_audio)
    recording_sid: Mapped[Sealed | None] = sealed_column(
        "report_entry.recording_sid", RetentionClass.contact_meta
    )
    length: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime]


class TwilioCleanup(UUIDPrimaryKey, Base):
    """A record Twilio holds that must be deleted (a message, a call once it has ended, a
    recording once stored). The SID is sealed under this row's own key and kept as a keyed hash
    (a call's final status callback finds its row); the row is done once Twilio confirms."""

    __tablename__ = "twilio_cleanups"

    public_id: Mapped[str] = mapped_column(String(16), unique=True)
    kind: Mapped[str] = mapped_column(String(16))  # message | call | recording
    sid_hash: Mapped[str] = mapped_column(String(64), unique=True)
    sid: Mapped[Sealed | None] = sealed_column("twilio_cleanup.sid", RetentionClass.contact_meta)
    state: Mapped[str] = mapped_column(String(16))  # waiting (a call still running) | pending | done
    created_at: Mapped[datetime]
    done_at: Mapped[datetime | None]


class ReportCodeAttempt(UUIDPrimaryKey, Base):
    """Wrong reference codes per scope (a call, a keyed number, everyone) and hour window."""

    __tablename__ = "report_code_attempts"
    __table_args__ = (UniqueConstraint("scope", "window_start"),)

    scope: Mapped[str] = mapped_column(String(80))
    window_start: Mapped[datetime]
    failures: Mapped[int] = mapped_column(default=0)


class ReportDialogue(UUIDPrimaryKey, Base):
    """An SMS/WhatsApp report dialogue in progress (`REPORT` → menu → the report), keyed by a
    hash of the number under the generic hash key in its own domain (never the callers' blind
    index key), so no caller, conversation, contact or case row is read or written for a
    report's messages. Deleted when the dialogue ends, and at the latest minutes after it began
    (`expires_at`)."""

    __tablename__ = "report_dialogues"

    number_hash: Mapped[str] = mapped_column(String(64), unique=True)
    channel: Mapped[str] = mapped_column(String(16))
    language: Mapped[str] = mapped_column(String(8))
    drill: Mapped[bool] = mapped_column(default=False)
    started_at: Mapped[datetime]
    expires_at: Mapped[datetime] = mapped_column(index=True)
