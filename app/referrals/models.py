"""The referral directory: legal-aid and support organisations, searchable by need, language,
opening hours and service area.

Everything here is public information about an organisation (nothing about callers), so it is
stored in the clear; each text column is classified in `app/classification.py`.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

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


class Area:
    """Service areas: the five New York City boroughs, or wider. An organisation serving
    `statewide` (New York State) covers every borough; `national` covers everything statewide does;
    `remote` (by phone or online, wherever the caller is) matches every search."""

    BOROUGHS = ("bronx", "brooklyn", "manhattan", "queens", "staten_island")
    ALL = (*BOROUGHS, "statewide", "national", "remote")

    @staticmethod
    def covering(area: str) -> frozenset[str]:
        """The areas whose organisations serve someone in `area`."""
        if area in Area.BOROUGHS:
            return frozenset({area, "statewide", "national", "remote"})
        if area == "statewide":
            return frozenset({"statewide", "national", "remote"})
        if area == "national":
            return frozenset({"national", "remote"})
        return frozenset({area})


WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class Organisation(UUIDPrimaryKey, Base):
    """A legal-aid or support organisation. Public information only; contact details count as
    unverified until an admin records who checked them and when, and any later change to what a
    caller is sent (name, intake phone, URL, hours) clears that again.

    Hours: `open_24_7`, or weekly windows (`opening_hours`, a list of
    `{"day": "mon", "open": "09:00", "close": "17:00"}`, a close at or before the open running
    past midnight) in the organisation's own IANA `timezone`; no windows and not 24/7 means the
    hours are unknown.
    """

    __tablename__ = "organisations"

    public_id: Mapped[str] = mapped_column(String(16), unique=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    services: Mapped[list[str]] = mapped_column(JSON, default=list)
    languages: Mapped[str] = mapped_column(String(200), default="")
    timezone: Mapped[str] = mapped_column(String(64), default="America/New_York")
    open_24_7: Mapped[bool] = mapped_column(default=False)
    opening_hours: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    service_areas: Mapped[list[str]] = mapped_column(JSON, default=list)
    intake_phone: Mapped[str | None] = mapped_column(String(32))
    intake_url: Mapped[str | None] = mapped_column(String(300))
    accepts_direct_referrals: Mapped[bool] = mapped_column(default=False)
    active: Mapped[bool] = mapped_column(default=True)
    verified_by_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    verified_on: Mapped[date | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]

    @property
    def language_list(self) -> list[str]:
        return [code for code in self.languages.split(",") if code]

    @property
    def verified(self) -> bool:
        return self.verified_by_id is not None and self.verified_on is not None
