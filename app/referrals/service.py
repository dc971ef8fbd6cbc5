"""The referral directory: search (ranked, opening hours on the application clock), admin changes
with verification, and texting an organisation's public details to a caller. Services flush,
never commit.

Search needs no caller data: a case contributes only its category (→ service kinds) and its
language, both plain metadata columns; nothing is decrypted.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import or_, select
from sqlalchemy import update as sql_update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts.models import User
from app.audit import service as audit
from app.audit.service import Actor
from app.callers.models import Caller
from app.cases.models import Case, Referral
from app.clock import Clock
from app.contacts.service import sid_hash
from app.errors import Conflict, InvalidInput
from app.jobs.service import enqueue
from app.publicid import new_public_id
from app.referrals.models import WEEKDAYS, Area, Organisation
from telephony.payloads import message_status_rank

# Case category → the service kinds that answer it (a category not listed derives no need).
NEEDS_BY_CATEGORY: dict[str, tuple[str, ...]] = {
    "detention": ("legal_defense", "emergency_support"),
    "removal_proceedings": ("immigration_court_representation", "legal_defense"),
    "asylum": ("immigration_court_representation", "legal_defense"),
    "family_separation": ("family_support", "legal_defense"),
    "workplace_raid": ("emergency_support", "legal_defense"),
    "enforcement_report": ("emergency_support", "know_your_rights"),
    "know_your_rights": ("know_your_rights",),
    "housing_benefits": ("housing", "benefits"),
    "abuse_report": ("family_support", "mental_health"),
}
# Texted to the caller: a change to any of these clears the organisation's verification.
SENT_DETAILS = frozenset({"name", "intake_phone", "intake_url", "timezone", "open_24_7", "opening_hours"})
SMS_JOB = "referrals.send_sms"
FINAL_FAILURES = frozenset({"failed", "undelivered"})


class NotVerified(Conflict):
    code = "organisation_not_verified"
    message = "An admin has not verified this organisation's details: it cannot be texted yet."


# -- opening hours --------------------------------------------------------------------------------


def _minutes(hhmm: str) -> int:
    hours, minutes = hhmm.split(":")
    return int(hours) * 60 + int(minutes)


def is_open(organisation: Organisation, at: datetime) -> bool | None:
    """Open at the instant `at` in the organisation's own time zone; None when hours are unknown."""
    if organisation.open_24_7:
        return True
    if not organisation.opening_hours:
        return None
    local = at.astimezone(ZoneInfo(organisation.timezone))
    today, now = local.weekday(), local.hour * 60 + local.minute
    for window in organisation.opening_hours:
        day, start, end = WEEKDAYS.index(window["day"]), _minutes(window["open"]), _minutes(window["close"])
        if end > start:
            if day == today and start <= now < end:
                return True
        elif (day == today and now >= start) or ((day + 1) % 7 == today and now < end):
            return True  # a window past midnight
    return False


def describe_hours(organisation: Organisation) -> str | None:
    """ "Mon-Fri 09:00-17:00, Sat 10:00-14:00 (America/New_York)", "24/7", or None if unknown."""
    if organisation.open_24_7:
        return "24/7"
    if not organisation.opening_hours:
        return None
    by_times: dict[tuple[str, str], list[int]] = {}
    for window in sorted(organisation.opening_hours, key=lambda w: (WEEKDAYS.index(w["day"]), w["open"])):
        by_times.setdefault((window["open"], window["close"]), []).append(WEEKDAYS.index(window["day"]))
    parts = []
    for (start, end), days in by_times.items():
        runs: list[list[int]] = []
        for day in sorted(set(days)):
            if runs and runs[-1][-1] == day - 1:
                runs[-1].append(day)
            else:
                runs.append([day])
        names = [
            WEEKDAYS[r[0]].title() if len(r) == 1 else f"{WEEKDAYS[r[0]].title()}-{WEEKDAYS[r[-1]].title()}"
            for r in runs
        ]
        parts.append(f"{', '.join(names)} {start}-{end}")
    return f"{'; '.join(parts)} ({organisation.timezone})"


# -- search ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Match:
    organisation: Organisation
    open: bool | None
    language_match: bool | None


def needs_of(case: Case) -> list[str]:
    return list(NEEDS_BY_CATEGORY.get(case.category_id or "", ()))


async def search(
    session: AsyncSession,
    *,
    at: datetime,
    needs: Iterable[str] = (),
    language: str | None = None,
    rank_language: str | None = None,
    area: str | None = None,
    open_only: bool = False,
    verified_only: bool = False,
    include_inactive: bool = False,
) -> list[Match]:
    """Filter, then rank: verified first, then serving the language, then open at `at`, then name.

    The directory is a few hundred public entries, so it is filtered in Python (JSON list columns
    the same way on both databases)."""
    query = select(Organisation)
    if not include_inactive:
        query = query.where(Organisation.active.is_(True))
    wanted_needs = set(needs)
    areas = Area.covering(area) if area else None
    ranked_language = language or rank_language
    found: list[Match] = []
    for organisation in await session.scalars(query):
        languages = organisation.language_list
        if wanted_needs and not wanted_needs & set(organisation.services):
            continue
        if language and language not in languages:
            continue
        if areas is not None and not areas & set(organisation.service_areas):
            continue
        if verified_only and not organisation.verified:
            continue
        open_at = is_open(organisation, at)
        if open_only and open_at is not True:
            continue
        language_match = (ranked_language in languages) if ranked_language else None
        found.append(Match(organisation, open_at, language_match))
    found.sort(
        key=lambda m: (
            not m.organisation.verified,
            m.language_match is not True,
            m.open is not True,
            m.organisation.name.casefold(),
        )
    )
    return found


# -- admin changes --------------------------------------------------------------------------------


def _stored(name: str, value: Any) -> Any:
    if name == "languages":
        return ",".join(value)
    if name == "opening_hours":
        return [dict(w) for w in value]
    return value


async def _flush_unique(session: AsyncSession) -> None:
    try:
        await session.flush()
    except IntegrityError as exc:
        raise Conflict("Another organisation has that name.", code="name_taken") from exc


async def _name_free(session: AsyncSession, name: str, exclude: uuid.UUID | None = None) -> None:
    query = select(Organisation.id).where(Organisation.name == name)
    if exclude is not None:
        query = query.where(Organisation.id != exclude)
    if await session.scalar(query) is not None:
        raise Conflict("Another organisation has that name.", code="name_taken")


async def create(
    session: AsyncSession, clock: Clock, values: Mapping[str, Any], *, actor: Actor
) -> Organisation:
    await _name_free(session, values["name"])
    now = clock.now()
    organisation = Organisation(
        public_id=new_public_id("OR"),
        created_at=now,
        updated_at=now,
        active=True,
        **{name: _stored(name, value) for name, value in values.items()},
    )
    session.add(organisation)
    await _flush_unique(session)
    audit.record(
        session,
        clock,
        actor=actor,
        action="organisation.created",
        object_type="organisation",
        object_id=organisation.public_id,
        fields=sorted(values),
    )
    return organisation


async def update(
    session: AsyncSession,
    clock: Clock,
    organisation: Organisation,
    changes: Mapping[str, Any],
    *,
    actor: Actor,
) -> Organisation:
    """Apply the fields that really change; any change to what a caller is sent clears verification.
    Everything is checked before anything is written."""
    changed = {
        name: _stored(name, value)
        for name, value in changes.items()
        if _stored(name, value) != getattr(organisation, name)
    }
    open_24_7 = changed.get("open_24_7", organisation.open_24_7)
    windows = changed.get("opening_hours", organisation.opening_hours)
    if open_24_7 and windows:
        raise InvalidInput("Give either open_24_7 or opening hours, not both.", code="hours_conflict")
    if "name" in changed:
        await _name_free(session, changed["name"], exclude=organisation.id)
    if not changed:
        return organisation
    for name, value in changed.items():
        setattr(organisation, name, value)
    cleared = bool(SENT_DETAILS & set(changed)) and organisation.verified_by_id is not None
    if cleared:
        organisation.verified_by_id, organisation.verified_on = None, None
    organisation.updated_at = clock.now()
    await _flush_unique(session)
    audit.record(
        session,
        clock,
        actor=actor,
        action="organisation.updated",
        object_type="organisation",
        object_id=organisation.public_id,
        fields=sorted(changed),
        details={"verification_cleared": cleared},
    )
    return organisation


async def verify(
    session: AsyncSession, clock: Clock, organisation: Organisation, admin: User, *, actor: Actor
) -> Organisation:
    """An admin confirms the public details (e.g. by calling the intake line)."""
    if not organisation.active:
        raise Conflict("This organisation is deactivated.", code="organisation_inactive")
    if organisation.intake_phone is None and organisation.intake_url is None:
        raise Conflict("Add an intake phone or web address before verifying.", code="nothing_to_verify")
    now = clock.now()
    organisation.verified_by_id, organisation.verified_on = admin.id, now.date()
    organisation.updated_at = now
    await session.flush()
    audit.record(
        session,
        clock,
        actor=actor,
        action="organisation.verified",
        object_type="organisation",
        object_id=organisation.public_id,
    )
    return organisation


async def deactivate(
    session: AsyncSession, clock: Clock, organisation: Organisation, *, actor: Actor
) -> None:
    """Out of searches and texts; kept, because referrals on cases name it."""
    if not organisation.active:
        return
    organisation.active = False
    organisation.updated_at = clock.now()
    await session.flush()
    audit.record(
        session,
        clock,
        actor=actor,
        action="organisation.deactivated",
        object_type="organisation",
        object_id=organisation.public_id,
    )


# -- referral by SMS ------------------------------------------------------------------------------


def sms_text(organisation: Organisation) -> str:
    """What the caller receives: the organisation's public details, nothing else."""
    lines = [f"Referral from the hotline: {organisation.name}"]
    if organisation.intake_phone:
        lines.append(f"Phone: {organisation.intake_phone}")
    if organisation.intake_url:
        lines.append(f"Web: {organisation.intake_url}")
    hours = describe_hours(organisation)
    if hours:
        lines.append(f"Hours: {hours}")
    return "\n".join(lines)


async def request_sms(
    session: AsyncSession,
    clock: Clock,
    *,
    case: Case,
    referral: Referral,
    organisation: Organisation,
    requested_by: User,
    actor: Actor,
) -> None:
    """Queue the text (sent by the `referrals.send_sms` job, which opens the caller's number through
    the broker). Refused unless the details are verified and the caller can safely be texted."""
    if not organisation.active or not organisation.verified:
        raise NotVerified()
    caller = await session.get(Caller, case.caller_id) if case.caller_id is not None else None
    if caller is None or caller.phone is None:
        raise Conflict("The caller's number is withheld or unknown: nothing can be texted.", code="no_number")
    if caller.opted_out_at is not None:
        raise Conflict("The caller texted STOP: no more messages can be sent.", code="opted_out")
    if caller.safe_to_text is False:
        raise Conflict("The caller said texting them is not safe.", code="unsafe_to_text")
    if caller.safe_to_text is None:
        raise Conflict(
            "Ask the caller whether a text is safe first (case caller_safety.safe_to_text).",
            code="safety_not_asked",
        )
    now = clock.now()
    # Conditional, so two requests at once (a double click, two workers) queue one text.
    claimed = await session.execute(
        sql_update(Referral)
        .where(
            Referral.id == referral.id,
            or_(Referral.sms_status.is_(None), Referral.sms_status.in_(FINAL_FAILURES)),
        )
        .values(
            sms_status="pending",
            sms_status_rank=-1,
            sms_error_code=None,
            sms_requested_by_id=requested_by.id,
            sms_requested_at=now,
        )
        .execution_options(synchronize_session="fetch")
    )
    if getattr(claimed, "rowcount", 0) != 1:
        raise Conflict("This referral has been texted already.", code="already_sent")
    await enqueue(session, clock, SMS_JOB, {"referral": referral.public_id})
    audit.record(
        session,
        clock,
        actor=actor,
        action="case.referral_texted",
        object_type="case",
        object_id=case.public_id,
        details={"referral": referral.public_id, "organisation": organisation.public_id},
    )


def fail_sms(referral: Referral, error_code: int | None = None) -> None:
    referral.sms_status, referral.sms_status_rank = "failed", message_status_rank("failed")
    referral.sms_error_code = error_code


async def record_sms_status(
    state: Any, session: AsyncSession, message_sid: str, status: str, error_code: int | None
) -> Referral | None:
    """A delivery status for a referral text (only moves forward by Twilio's rank)."""
    referral = await session.scalar(
        select(Referral).where(Referral.sms_sid_hash == sid_hash(state.keys, message_sid))
    )
    if referral is None:
        return None
    try:
        rank = message_status_rank(status)
    except ValueError:
        return referral
    if rank <= referral.sms_status_rank:
        return referral
    referral.sms_status, referral.sms_status_rank = status, rank
    referral.sms_error_code = error_code or referral.sms_error_code
    if error_code == 21610:
        case = await session.get(Case, referral.case_id)
        caller = await session.get(Caller, case.caller_id) if case and case.caller_id else None
        if caller is not None and caller.opted_out_at is None:
            caller.opted_out_at = state.clock.now()
    return referral
