"""Validated shapes of the referral directory. Messages never quote the value sent."""

from __future__ import annotations

from datetime import date, datetime
from functools import cache
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit
from zoneinfo import available_timezones

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, model_validator

from app.validation import one_line
from telephony.numbers import normalize_e164

ServiceName = Literal[
    "legal_defense",
    "immigration_court_representation",
    "mental_health",
    "housing",
    "benefits",
    "family_support",
    "emergency_support",
    "know_your_rights",
]
AreaName = Literal[
    "bronx", "brooklyn", "manhattan", "queens", "staten_island", "statewide", "national", "remote"
]
LanguageCode = Literal[
    "en", "es", "fr", "ht", "pt", "ar", "ru", "uk", "bn",
    "ur", "pl", "ko", "cmn", "yue", "wo", "ff", "qu", "kjb",
]  # fmt: skip
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


@cache
def _zones() -> frozenset[str]:
    return frozenset(available_timezones())


def _timezone(value: str) -> str:
    if value not in _zones():
        raise ValueError("unknown IANA time zone")
    return value


def _e164(value: str) -> str:
    if normalize_e164(value) != value:
        raise ValueError("must be a valid phone number in E.164 form, e.g. +12125550100")
    return value


def _label(label: str) -> bool:
    return bool(label) and label.isascii() and label.replace("-", "").isalnum()


def _https_url(value: str) -> str:
    one_line(value)
    parts = urlsplit(value)
    host = parts.hostname or ""
    if (
        parts.scheme != "https"
        or parts.username is not None
        or parts.password is not None
        or "." not in host
        or not all(
            label and label.replace("-", "").isalnum() and label.isascii() for label in host.split(".")
        )
    ):
        raise ValueError("must be an https:// address with a host name")
    try:
        _ = parts.port
    except ValueError:
        raise ValueError("must be an https:// address with a valid port") from None
    return value


def _unique(values: list[Any]) -> list[Any]:
    if len(set(values)) != len(values):
        raise ValueError("must not repeat a value")
    return values


Name = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=2, max_length=200), AfterValidator(one_line)
]
TimeZone = Annotated[
    str,
    StringConstraints(max_length=64, pattern=r"^[A-Za-z][A-Za-z0-9_+\-/]{0,63}$"),
    AfterValidator(_timezone),
]
E164 = Annotated[
    str, StringConstraints(max_length=16, pattern=r"^\+[1-9][0-9]{6,14}$"), AfterValidator(_e164)
]
HttpsUrl = Annotated[
    str, StringConstraints(min_length=12, max_length=300, pattern=r"^https://"), AfterValidator(_https_url)
]
Services = Annotated[list[ServiceName], Field(min_length=1, max_length=8), AfterValidator(_unique)]
Languages = Annotated[list[LanguageCode], Field(max_length=18), AfterValidator(_unique)]
Areas = Annotated[list[AreaName], Field(min_length=1, max_length=8), AfterValidator(_unique)]


class Window(BaseModel):
    """A weekly opening window in the organisation's time zone; a close at or before the open runs
    past midnight into the next day ("22:00"–"06:00"); "24:00" closes at midnight."""

    model_config = ConfigDict(extra="forbid")
    day: Weekday
    open: Annotated[str, StringConstraints(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")]
    close: Annotated[str, StringConstraints(pattern=r"^(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)$")]

    @model_validator(mode="after")
    def _not_empty(self) -> Window:
        if self.open == self.close:
            raise ValueError("a window must not open and close at the same time (use open_24_7)")
        return self


Windows = Annotated[list[Window], Field(max_length=28)]


class OrganisationIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Name
    services: Services
    languages: Languages = Field(default_factory=list)
    timezone: TimeZone = "America/New_York"
    open_24_7: bool = False
    opening_hours: Windows = Field(default_factory=list)
    service_areas: Areas
    intake_phone: E164 | None = None
    intake_url: HttpsUrl | None = None
    accepts_direct_referrals: bool = False

    @model_validator(mode="after")
    def _hours(self) -> OrganisationIn:
        if self.open_24_7 and self.opening_hours:
            raise ValueError("give either open_24_7 or opening_hours, not both")
        return self


# Fields that must not be set to null in a PATCH (null only clears the intake phone and URL).
NOT_NULLABLE = (
    "name",
    "services",
    "languages",
    "timezone",
    "open_24_7",
    "opening_hours",
    "service_areas",
    "accepts_direct_referrals",
    "active",
)


class OrganisationPatch(BaseModel):
    """Omitted fields are left unchanged; null clears `intake_phone` or `intake_url`."""

    model_config = ConfigDict(extra="forbid")
    name: Name | None = None
    services: Services | None = None
    languages: Languages | None = None
    timezone: TimeZone | None = None
    open_24_7: bool | None = None
    opening_hours: Windows | None = None
    service_areas: Areas | None = None
    intake_phone: E164 | None = None
    intake_url: HttpsUrl | None = None
    accepts_direct_referrals: bool | None = None
    active: bool | None = None

    @model_validator(mode="after")
    def _no_nulls(self) -> OrganisationPatch:
        for name in NOT_NULLABLE:
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError("only intake_phone and intake_url may be cleared with null")
        return self


class HoursOut(BaseModel):
    timezone: str
    open_24_7: bool
    windows: list[Window]
    known: bool = Field(description="False when neither 24/7 nor any window is on record.")


class OrganisationOut(BaseModel):
    id: str
    name: str
    services: list[str]
    languages: list[str]
    hours: HoursOut
    service_areas: list[str]
    intake_phone: str | None
    intake_url: str | None
    accepts_direct_referrals: bool
    active: bool
    verified: bool
    verified_on: date | None
    verified_by: str | None
    updated_at: datetime


class OrganisationMatch(OrganisationOut):
    open: bool | None = Field(description="Open at the searched moment; null when the hours are unknown.")
    language_match: bool | None = Field(description="Serves the language searched or the case's language.")


class OrganisationList(BaseModel):
    items: list[OrganisationMatch]
    page: int
    page_size: int
    total: int
    at: datetime = Field(description="The moment `open` refers to (now, or `open_at`).")
    needs: list[str] = Field(description="Service kinds searched (given, or derived from the case).")
    language: str | None = Field(description="Language ranked first (given, or the case's language).")
