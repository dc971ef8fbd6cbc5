"""Legal holds and caller erasure requests (retention and crypto-shredding act on data keys)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base, UUIDPrimaryKey
from app.keys.sealed import RetentionClass, Sealed, sealed_column


class LegalHold(UUIDPrimaryKey, Base):
    """A case or a caller kept out of retention until a supervisor releases it. The reason is
    sealed (it may name a proceeding)."""

    __tablename__ = "legal_holds"

    public_id: Mapped[str] = mapped_column(String(16), unique=True)
    case_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("cases.id"), index=True)
    caller_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("callers.id"), index=True)
    reason: Mapped[Sealed | None] = sealed_column("legal_hold.reason", RetentionClass.case_content)
    placed_by_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    placed_at: Mapped[datetime]
    released_by_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    released_at: Mapped[datetime | None]


class ErasureRequest(UUIDPrimaryKey, Base):
    """A caller's request to be erased, blind until approved: one supervisor records the number
    (sealed under the request's own key; nothing is looked up), a second, distinct one approves,
    and only then is the number looked up, holds checked and everything of the caller's
    crypto-shredded. The number is shredded with the request's key once processed. The row never
    names the caller."""

    __tablename__ = "erasure_requests"

    public_id: Mapped[str] = mapped_column(String(16), unique=True)
    phone: Mapped[Sealed | None] = sealed_column("erasure_request.phone", RetentionClass.caller_identity)
    state: Mapped[str] = mapped_column(String(16))  # pending | processed | cancelled
    requested_by_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    requested_at: Mapped[datetime]
    approved_by_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    approved_at: Mapped[datetime | None]
