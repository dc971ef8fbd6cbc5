from __future__ import annotations

import uuid
from datetime import date, datetime

from sqlalchemy import JSON, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base, UUIDPrimaryKey


class Service:
    """Service kinds of the referral directory."""

    ALL = (
        "legal_defense",
        "immigration_court_representation",
        "mental_health",
        "housing",
        "benefits",
        "family_support",
        "emergency_support",
        "know_your_rights",
    )


class Organisation(UUIDPrimaryKey, Base):
    """A legal-aid or support organisation. Public information only; contact details count as
    unverified until an admin records who checked them and when."""

    __tablename__ = "organisations"

    public_id: Mapped[str] = mapped_column(String(16), unique=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    services: Mapped[list[str]] = mapped_column(JSON, default=list)
    languages: Mapped[str] = mapped_column(String(200), default="")
    hours: Mapped[str | None] = mapped_column(String(200))
    service_area: Mapped[str | None] = mapped_column(String(200))
    intake_phone: Mapped[str | None] = mapped_column(String(32))
    intake_url: Mapped[str | None] = mapped_column(String(300))
    accepts_direct_referrals: Mapped[bool] = mapped_column(default=False)
    verified_by_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    verified_on: Mapped[date | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
