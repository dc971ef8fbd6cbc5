from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base, UUIDPrimaryKey
from app.keys.sealed import RetentionClass, Sealed, sealed_column


class Caller(UUIDPrimaryKey, Base):
    """Someone who reached the hotline from a number we could identify.

    The number is sealed; `phone_index` (a truncated keyed hash of the E.164 form) finds *possible*
    repeat callers without storing it in the clear, and only the last two digits are display-safe.
    Withheld numbers never get a caller row, an index, a callback or a text.
    """

    __tablename__ = "callers"

    # What the access log names (`CL-…`): the row UUID never leaves the server.
    public_id: Mapped[str] = mapped_column(String(16), unique=True)
    phone: Mapped[Sealed | None] = sealed_column("caller.phone", RetentionClass.caller_identity)
    phone_index: Mapped[str | None] = mapped_column(String(64), index=True)
    phone_last2: Mapped[str | None] = mapped_column(String(2))
    # Safety flags: None means "not asked yet", which the console treats as "no".
    safe_to_call: Mapped[bool | None]
    safe_to_text: Mapped[bool | None]
    safe_to_voicemail: Mapped[bool | None]
    # The caller texted STOP (Twilio then refuses our texts, error 21610) until START.
    opted_out_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    last_contact_at: Mapped[datetime | None]
    # Identity crypto-shredded (number and blind index gone): "retention" or "request".
    erased_at: Mapped[datetime | None]
    erased_reason: Mapped[str | None] = mapped_column(String(16))
