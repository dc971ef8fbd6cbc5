"""Request and response shapes for presence, phone verification and the schedule.

Users appear by public id only. Times of day are the volunteer's local wall clock ("HH:MM"),
instants are UTC. Validation messages never quote the value.
"""

from __future__ import annotations

import datetime as dt
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

WeekdayName = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WallTime = Annotated[str, StringConstraints(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")]
Minutes = Annotated[int, Field(ge=1, le=1440)]
Capacity = Annotated[int, Field(ge=0, le=100)]  # the service enforces the real limits, with a message
LanguageCode = Annotated[str, StringConstraints(pattern=r"^[a-z]{2,3}$")]
VerificationCode = Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^[0-9]{6}$")]


class AvailabilityIn(BaseModel):
    """`busy` is not settable: the routing engine sets it while a volunteer handles contacts."""

    model_config = ConfigDict(extra="forbid")
    state: Literal["available", "away", "offline"]
    voice_capacity: Capacity | None = None
    chat_capacity: Capacity | None = None


class AvailabilityOut(BaseModel):
    state: str  # effective now: a timed away that has passed reads as available
    voice_capacity: int
    chat_capacity: int
    away_until: datetime | None
    away_reason: str | None
    state_changed_at: datetime | None
    phone_verified: bool
    takes_voice: bool
    takes_chat: bool


class VerificationStarted(BaseModel):
    status: Literal["calling"]
    expires_at: datetime
    tries: int


class VerificationConfirmIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: VerificationCode


class VerificationConfirmed(BaseModel):
    status: Literal["verified"]
    phone_verified_at: datetime


class ShiftIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    weekday: WeekdayName
    start: WallTime
    duration_minutes: Minutes


class ScheduleIn(BaseModel):
    """The whole weekly pattern; it replaces the previous one (an empty list clears it)."""

    model_config = ConfigDict(extra="forbid")
    shifts: list[ShiftIn] = Field(max_length=100)


class ShiftOut(BaseModel):
    weekday: WeekdayName
    start: str
    end: str
    duration_minutes: int
    overnight: bool


class OverrideIn(BaseModel):
    """`off`: the weekly shifts starting on `date` (volunteer's zone) are cancelled.
    `extra`: an additional shift on `date` from `start` for `duration_minutes`."""

    model_config = ConfigDict(extra="forbid")
    date: dt.date
    kind: Literal["off", "extra"]
    start: WallTime | None = None
    duration_minutes: Minutes | None = None


class OverrideOut(BaseModel):
    id: str
    date: dt.date
    kind: str
    start: str | None
    end: str | None
    duration_minutes: int | None


class VolunteerSchedule(BaseModel):
    user: str
    name: str
    timezone: str
    languages: list[str]
    shifts: list[ShiftOut]
    overrides: list[OverrideOut]


class ScheduleList(BaseModel):
    volunteers: list[VolunteerSchedule]


class OnCallOut(BaseModel):
    user: str
    name: str
    languages: list[str]
    timezone: str
    on_call_until: datetime
    presence: AvailabilityOut


class OnCallList(BaseModel):
    at: datetime
    volunteers: list[OnCallOut]
