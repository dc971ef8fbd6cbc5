"""Validated shapes of case data. Validation messages never quote the value (it may be sensitive)."""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from app.languages import LANGUAGES
from telephony.numbers import normalize_e164

_A_NUMBER = re.compile(r"^A?-?(\d{7,9})$")


def normalize_a_number(raw: str) -> str:
    """USCIS alien registration number: 7–9 digits, optionally prefixed "A"; stored as A + 9 digits."""
    compact = raw.strip().upper().replace(" ", "").replace("-", "")
    match = _A_NUMBER.match(compact)
    if not match:
        raise ValueError("A-number must be 'A' followed by 7 to 9 digits")
    return "A" + match.group(1).zfill(9)


def _iso_date(raw: str) -> str:
    try:
        return date.fromisoformat(raw.strip()).isoformat()
    except ValueError:
        raise ValueError("must be a date as YYYY-MM-DD") from None


def _phone(raw: str) -> str:
    number = normalize_e164(raw)
    if number is None:
        raise ValueError("must be a phone number that can be dialled")
    return number


def _language(raw: str) -> str:
    if raw not in LANGUAGES:
        raise ValueError("unknown language code")
    return raw


Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
ANumber = Annotated[str, AfterValidator(normalize_a_number)]
IsoDate = Annotated[str, AfterValidator(_iso_date)]
Phone = Annotated[str, AfterValidator(_phone)]
Language = Annotated[str, AfterValidator(_language)]
CodeWord = Annotated[str, StringConstraints(strip_whitespace=True, min_length=3, max_length=64)]
NoteBody = Annotated[str, StringConstraints(min_length=1, max_length=20000)]


class CaseFields(BaseModel):
    """The sealed intake fields. Omitted fields are left unchanged; null clears one."""

    model_config = ConfigDict(extra="forbid")

    caller_name: Text | None = None
    callback_number: Phone | None = None
    a_number: ANumber | None = None
    date_of_birth: IsoDate | None = None
    country_of_origin: Text | None = None
    detention_facility: Text | None = None
    next_hearing_date: IsoDate | None = None
    next_hearing_court: Text | None = None
    code_word: CodeWord | None = None


class NoteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    body: NoteBody = Field(description="Intake note; sealed, append-only.")


CaseStatusName = Literal["open", "in_progress", "referred", "closed"]
UrgencyName = Literal["emergency", "high", "normal", "low"]
SealedFieldName = Literal[
    "caller_name",
    "callback_number",
    "a_number",
    "date_of_birth",
    "country_of_origin",
    "detention_facility",
    "next_hearing_date",
    "next_hearing_court",
    "code_word",
]
StaffPurpose = Literal["intake", "callback", "referral", "follow_up", "safety_check", "break_glass"]
PublicId = Annotated[str, StringConstraints(pattern=r"^[A-Z]{1,3}-[0-9A-Z]{4}-[0-9A-Z]{4}$")]


class CallerOut(BaseModel):
    phone_last2: str | None
    safe_to_call: bool | None
    safe_to_text: bool | None
    safe_to_voicemail: bool | None
    erased: Literal["retention", "request"] | None = None


class CaseSummary(BaseModel):
    id: str
    status: CaseStatusName
    category: str | None
    urgency: UrgencyName
    language: str
    assignee: str | None
    drill: bool
    created_at: datetime
    updated_at: datetime
    closed_at: datetime | None
    erased: Literal["retention", "request"] | None = Field(
        default=None,
        description="The case's content was crypto-shredded: per the retention policy, or on the "
        "caller's request. Its metadata stays; reveals answer 410 `erased`.",
    )


class ReferralOut(BaseModel):
    id: str
    organisation: str
    organisation_name: str
    services: list[str]
    created_at: datetime
    sms_status: str | None = Field(
        None,
        description="Text of the organisation's public details to the caller: null (never texted), "
        "pending, queued, sent, delivered, undelivered or failed.",
    )
    sms_requested_at: datetime | None = None


class CaseDetail(CaseSummary):
    sealed_fields: list[str] = Field(
        description="Names of the sealed fields that hold a value (never the values)."
    )
    notes: int
    referrals: list[ReferralOut]
    caller: CallerOut | None
    possible_repeat_caller: bool = Field(
        description="The caller's number matched earlier contacts; confirm with the code word "
        "(no case id is shown)."
    )


class CaseList(BaseModel):
    items: list[CaseSummary]
    page: int
    page_size: int
    total: int


class RevealIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    fields: list[SealedFieldName | Literal["notes", "draft"]] = Field(min_length=1, max_length=11)
    purpose: StaffPurpose


class NoteOut(BaseModel):
    id: str
    author: str
    created_at: datetime
    body: str | None


class RevealOut(BaseModel):
    values: dict[str, str | None]
    erased: list[str]
    notes: list[NoteOut] | None = None
    draft: dict[str, str] | None = Field(
        default=None, description="Your own autosaved, unsaved intake form (when `draft` is asked for)."
    )


DraftKey = Literal[
    "caller_name",
    "callback_number",
    "a_number",
    "date_of_birth",
    "country_of_origin",
    "detention_facility",
    "next_hearing_date",
    "next_hearing_court",
    "code_word",
    "note",
]


class DraftIn(BaseModel):
    """What the volunteer has typed so far (unvalidated: it is a draft), sealed as it is."""

    model_config = ConfigDict(extra="forbid")
    fields: dict[DraftKey, Annotated[str, StringConstraints(max_length=20000)]] = Field(max_length=10)


class DraftSaved(BaseModel):
    saved_at: datetime


class SafetyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    safe_to_call: bool | None = None
    safe_to_text: bool | None = None
    safe_to_voicemail: bool | None = None


class CasePatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: CaseStatusName | None = None
    category: Annotated[str, StringConstraints(pattern=r"^[a-z_]{1,32}$")] | None = None
    urgency: UrgencyName | None = None
    assignee: PublicId | None = None
    fields: CaseFields | None = None
    caller_safety: SafetyIn | None = None


class NoteCreated(BaseModel):
    id: str
    created_at: datetime


class ReferralIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    organisation: PublicId
    services: list[Annotated[str, StringConstraints(pattern=r"^[a-z_]{1,40}$")]] = Field(
        default_factory=list, max_length=8
    )


class BreakGlassIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: Annotated[str, StringConstraints(strip_whitespace=True, min_length=20, max_length=1000)]
    totp: Annotated[str, StringConstraints(min_length=6, max_length=16)]


class BreakGlassOut(BaseModel):
    id: str
    case: str
    expires_at: datetime


class LinkContactIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    contact: PublicId
    code_word: CodeWord


class LinkContactOut(BaseModel):
    linked: bool
    case: str
