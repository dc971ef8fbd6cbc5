from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base, UUIDPrimaryKey
from app.keys.sealed import RetentionClass, Sealed, sealed_column


class CaseStatus(StrEnum):
    open = "open"
    in_progress = "in_progress"
    referred = "referred"
    closed = "closed"


# Allowed moves; closing is possible from anywhere, reopening only back to in_progress.
STATUS_TRANSITIONS: dict[CaseStatus, frozenset[CaseStatus]] = {
    CaseStatus.open: frozenset({CaseStatus.in_progress, CaseStatus.referred, CaseStatus.closed}),
    CaseStatus.in_progress: frozenset({CaseStatus.referred, CaseStatus.closed}),
    CaseStatus.referred: frozenset({CaseStatus.in_progress, CaseStatus.closed}),
    CaseStatus.closed: frozenset({CaseStatus.in_progress}),
}


class Urgency(StrEnum):
    emergency = "emergency"  # detention in progress, a raid now
    high = "high"  # hearing or deadline within days
    normal = "normal"
    low = "low"


class Category(Base):
    """Seeded vocabulary (migration): detention, removal proceedings, asylum, …"""

    __tablename__ = "case_categories"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    label: Mapped[str] = mapped_column(String(100))
    sort_order: Mapped[int]


# Sealed fields of a case, in the order the intake form shows them.
CASE_SEALED_FIELDS = (
    "caller_name",
    "callback_number",
    "a_number",
    "date_of_birth",
    "country_of_origin",
    "detention_facility",
    "next_hearing_date",
    "next_hearing_court",
    "code_word",
)


class Case(UUIDPrimaryKey, Base):
    __tablename__ = "cases"

    public_id: Mapped[str] = mapped_column(String(16), unique=True)
    status: Mapped[str] = mapped_column(String(16), default=CaseStatus.open)
    category_id: Mapped[str | None] = mapped_column(ForeignKey("case_categories.id"))
    urgency: Mapped[str] = mapped_column(String(16), default=Urgency.normal)
    language: Mapped[str] = mapped_column(String(8))
    assignee_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"), index=True)
    caller_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("callers.id"), index=True)
    drill: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    closed_at: Mapped[datetime | None]
    # Content crypto-shredded: "retention" (policy) or "request" (caller erasure), and when.
    erased_at: Mapped[datetime | None]
    erased_reason: Mapped[str | None] = mapped_column(String(16))

    caller_name: Mapped[Sealed | None] = sealed_column("case.caller_name", RetentionClass.case_content)
    callback_number: Mapped[Sealed | None] = sealed_column(
        "case.callback_number", RetentionClass.case_content
    )
    a_number: Mapped[Sealed | None] = sealed_column("case.a_number", RetentionClass.case_content)
    date_of_birth: Mapped[Sealed | None] = sealed_column("case.date_of_birth", RetentionClass.case_content)
    country_of_origin: Mapped[Sealed | None] = sealed_column(
        "case.country_of_origin", RetentionClass.case_content
    )
    detention_facility: Mapped[Sealed | None] = sealed_column(
        "case.detention_facility", RetentionClass.case_content
    )
    next_hearing_date: Mapped[Sealed | None] = sealed_column(
        "case.next_hearing_date", RetentionClass.case_content
    )
    next_hearing_court: Mapped[Sealed | None] = sealed_column(
        "case.next_hearing_court", RetentionClass.case_content
    )
    code_word: Mapped[Sealed | None] = sealed_column("case.code_word", RetentionClass.case_content)

    def sealed_fields_present(self) -> list[str]:
        return [name for name in CASE_SEALED_FIELDS if getattr(self, name) is not None]


class CaseNote(UUIDPrimaryKey, Base):
    """Append-only intake note, sealed under its case's key."""

    __tablename__ = "case_notes"
    __sealed_subject__ = "case_id"

    public_id: Mapped[str] = mapped_column(String(16), unique=True)
    case_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("cases.id"), index=True)
    author_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime]
    body: Mapped[Sealed | None] = sealed_column("case_note.body", RetentionClass.case_content)


class IntakeDraft(UUIDPrimaryKey, Base):
    """A volunteer's unsaved intake form, autosaved by the console and sealed under the case's key
    (JSON of the typed fields): one per case and author, replaced on every save, deleted when the
    intake is saved. Read back only through the case reveal (audited, with a purpose)."""

    __tablename__ = "intake_drafts"
    __sealed_subject__ = "case_id"
    __table_args__ = (UniqueConstraint("case_id", "author_id"),)

    case_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("cases.id"), index=True)
    author_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    updated_at: Mapped[datetime]
    fields: Mapped[Sealed] = sealed_column("intake_draft.fields", RetentionClass.case_content)


class Referral(UUIDPrimaryKey, Base):
    __tablename__ = "referrals"

    public_id: Mapped[str] = mapped_column(String(16), unique=True)
    case_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("cases.id"), index=True)
    organisation_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organisations.id"))
    created_by_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime]
    services: Mapped[str] = mapped_column(String(200), default="")
    # The organisation's public details texted to the caller: who asked and when, and the delivery
    # status (pending → queued → sent → delivered/undelivered/failed, only forward by Twilio's rank;
    # null when never texted). Twilio's SID is kept only as a keyed hash to match status callbacks.
    sms_status: Mapped[str | None] = mapped_column(String(16))
    sms_status_rank: Mapped[int] = mapped_column(default=-1)
    sms_error_code: Mapped[int | None]
    sms_sid_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    sms_requested_by_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    sms_requested_at: Mapped[datetime | None]
