"""Schedule and presence tables.

* `volunteer_shifts`: the weekly pattern, as (weekday, local start minute, wall-clock duration) in
  the volunteer's IANA time zone (`users.timezone`). Concrete UTC windows are computed in Python
  (`app.volunteers.service`), so DST changes never need a data migration.
* `volunteer_shift_overrides`: a date in the volunteer's zone that is `off` (the weekly shifts
  starting that date are cancelled) or has an `extra` shift.
* `volunteer_presence`: one row per volunteer: availability state, per-channel capacity, when the
  state last changed (longest-idle-first), and `away_until` for a timed away (missed offer).
* `phone_verifications`: a coded verification call; only a keyed hash of the code is stored.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from enum import StrEnum

from sqlalchemy import CheckConstraint, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base, UUIDPrimaryKey


class PresenceState(StrEnum):
    available = "available"
    busy = "busy"  # set by the routing engine while handling contacts, not by the volunteer
    away = "away"
    offline = "offline"


class OverrideKind(StrEnum):
    off = "off"  # the weekly shifts that start on this local date are cancelled
    extra = "extra"  # an additional shift starting on this local date


class AwayReason(StrEnum):
    manual = "manual"
    missed_offer = "missed_offer"


class Shift(UUIDPrimaryKey, Base):
    """A recurring weekly shift. `weekday` is 0 = Monday … 6 = Sunday (Python's `date.weekday()`)."""

    __tablename__ = "volunteer_shifts"
    __table_args__ = (
        CheckConstraint("weekday >= 0 AND weekday <= 6", name="weekday"),
        CheckConstraint("start_minute >= 0 AND start_minute < 1440", name="start_minute"),
        CheckConstraint("duration_minutes > 0 AND duration_minutes <= 1440", name="duration"),
    )

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    weekday: Mapped[int]
    start_minute: Mapped[int]  # local wall-clock minutes after midnight
    duration_minutes: Mapped[int]  # wall-clock length; may run past midnight (overnight)
    created_at: Mapped[datetime]


class ShiftOverride(UUIDPrimaryKey, Base):
    """A date-specific change to the weekly pattern, on a date in the volunteer's time zone."""

    __tablename__ = "volunteer_shift_overrides"
    __table_args__ = (
        CheckConstraint("kind IN ('off', 'extra')", name="kind"),
        CheckConstraint(
            "(kind = 'off' AND start_minute IS NULL AND duration_minutes IS NULL) OR "
            "(kind = 'extra' AND start_minute >= 0 AND start_minute < 1440 "
            "AND duration_minutes > 0 AND duration_minutes <= 1440)",
            name="shape",
        ),
    )

    public_id: Mapped[str] = mapped_column(String(16), unique=True)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    on_date: Mapped[date] = mapped_column(index=True)
    kind: Mapped[str] = mapped_column(String(8))
    start_minute: Mapped[int | None]
    duration_minutes: Mapped[int | None]
    created_by_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime]


class Presence(UUIDPrimaryKey, Base):
    """A volunteer's availability. Absent row = offline with default capacities."""

    __tablename__ = "volunteer_presence"
    __table_args__ = (
        CheckConstraint("state IN ('available', 'busy', 'away', 'offline')", name="state"),
        CheckConstraint("voice_capacity >= 0 AND chat_capacity >= 0", name="capacity"),
    )

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), unique=True)
    state: Mapped[str] = mapped_column(String(16))
    voice_capacity: Mapped[int]
    chat_capacity: Mapped[int]
    # A timed away (e.g. after a missed offer) ends by itself at this instant; null = until changed.
    away_until: Mapped[datetime | None]
    away_reason: Mapped[str | None] = mapped_column(String(16))
    # When `state` last changed (not capacity edits): longest-idle-first routing orders by it.
    state_changed_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class PhoneVerification(UUIDPrimaryKey, Base):
    """One coded verification call. The code itself is never stored: `code_hash` is a keyed hash,
    and `phone_fingerprint` a keyed hash of the sealed phone's ciphertext, so a number changed
    mid-verification does not get verified by a code sent to the old one."""

    __tablename__ = "phone_verifications"

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    code_hash: Mapped[str] = mapped_column(String(64))
    phone_fingerprint: Mapped[str] = mapped_column(String(64))
    attempts: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    confirmed_at: Mapped[datetime | None]
