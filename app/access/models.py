from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base, UUIDPrimaryKey
from app.keys.sealed import RetentionClass, Sealed, sealed_column


class BreakGlassGrant(UUIDPrimaryKey, Base):
    """A supervisor's time-boxed access to one case's content, flagged for review.

    The reason is free text, so it is sealed under the case's key; the audit entry carries only
    the keyed hash of its ciphertext.
    """

    __tablename__ = "break_glass_grants"
    __sealed_subject__ = "case_id"

    public_id: Mapped[str] = mapped_column(String(16), unique=True)
    case_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("cases.id"), index=True)
    supervisor_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), index=True)
    reason: Mapped[Sealed | None] = sealed_column("break_glass.reason", RetentionClass.case_content)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    reviewed_at: Mapped[datetime | None]
    reviewed_by_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    review_outcome: Mapped[str | None] = mapped_column(String(16))


class CaseReassignment(UUIDPrimaryKey, Base):
    """A supervisor gave a case to a (different) volunteer, who then reads its content: listed for
    review next to break-glass grants, by a supervisor other than the one who moved it."""

    __tablename__ = "case_reassignments"

    public_id: Mapped[str] = mapped_column(String(16), unique=True)
    case_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("cases.id"), index=True)
    supervisor_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), index=True)
    assignee_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    previous_assignee_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime]
    reviewed_at: Mapped[datetime | None]
    reviewed_by_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    review_outcome: Mapped[str | None] = mapped_column(String(16))
