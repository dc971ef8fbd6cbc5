"""Validated shapes of case data. Validation messages never quote the value (it may be sensitive)."""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated

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
