"""Presence, phone verification and schedule API. Thin: validate, load by public id, call the service.

* `/me/availability`, `/me/phone-verification…`: the signed-in volunteer's own state.
* `/schedule`: own shifts for a volunteer, everyone's (with filters) for supervisors and admins,
  who also replace shifts and add or remove date overrides; `/schedule/on-call` (supervisors) is
  who is on call now, with languages and live presence.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from sqlalchemy import select

from app.access.permissions import Permission
from app.accounts.deps import Auth, Staff, require
from app.accounts.models import User, UserStatus
from app.cases.schemas import PublicId
from app.db.session import DbSession
from app.errors import InvalidInput, NotFound
from app.routing.service import RoutingTimes, offer_waiting_work
from app.volunteers import service
from app.volunteers.models import OverrideKind, PresenceState, Shift, ShiftOverride
from app.volunteers.schemas import (
    AvailabilityIn,
    AvailabilityOut,
    LanguageCode,
    OnCallList,
    OnCallOut,
    OverrideIn,
    OverrideOut,
    ScheduleIn,
    ScheduleList,
    ShiftOut,
    VerificationConfirmed,
    VerificationConfirmIn,
    VerificationStarted,
    VolunteerSchedule,
)

router = APIRouter(tags=["volunteers"])
Volunteer = Annotated[Staff, require(Permission.availability)]
ScheduleReader = Annotated[Staff, require(Permission.schedule_read)]
ScheduleManager = Annotated[Staff, require(Permission.schedule_manage)]
OnCallReader = Annotated[Staff, require(Permission.on_call_read)]
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "No such volunteer or override."}}

VERIFICATION_FAILURES = {
    service.VerificationOutcome.wrong_code: "That code is not right.",
    service.VerificationOutcome.expired: "The code has expired; request a new call.",
    service.VerificationOutcome.exhausted: "Too many wrong codes; request a new call.",
    service.VerificationOutcome.no_verification: "No verification is in progress; request a call first.",
    service.VerificationOutcome.phone_changed: "The phone number changed; request a new call.",
}


def availability_out(view: service.PresenceView) -> AvailabilityOut:
    return AvailabilityOut(
        state=view.state.value,
        voice_capacity=view.voice_capacity,
        chat_capacity=view.chat_capacity,
        away_until=view.away_until,
        away_reason=view.away_reason,
        state_changed_at=view.state_changed_at,
        phone_verified=view.phone_verified,
        takes_voice=view.takes_voice,
        takes_chat=view.takes_chat,
    )


def shift_out(row: Shift) -> ShiftOut:
    weekly = service.as_weekly(row)
    return ShiftOut(
        weekday=service.WEEKDAYS[row.weekday],
        start=service.minute_text(row.start_minute),
        end=service.minute_text(row.start_minute + row.duration_minutes),
        duration_minutes=row.duration_minutes,
        overnight=weekly.overnight,
    )


def override_out(row: ShiftOverride) -> OverrideOut:
    timed = row.start_minute is not None and row.duration_minutes is not None
    return OverrideOut(
        id=row.public_id,
        date=row.on_date,
        kind=row.kind,
        start=service.minute_text(row.start_minute) if row.start_minute is not None else None,
        end=service.minute_text(row.start_minute + row.duration_minutes)  # type: ignore[operator]
        if timed
        else None,
        duration_minutes=row.duration_minutes,
    )


async def schedules(db: DbSession, users: list[User], since: date) -> list[VolunteerSchedule]:
    ids = [u.id for u in users]
    shifts = await service.shifts_by_user(db, ids)
    overrides = await service.overrides_by_user(db, ids, since=since)
    return [
        VolunteerSchedule(
            user=u.public_id,
            name=u.display_name,
            timezone=u.timezone,
            languages=u.language_list,
            shifts=[shift_out(s) for s in shifts.get(u.id, [])],
            overrides=[override_out(o) for o in overrides.get(u.id, [])],
        )
        for u in users
    ]


async def volunteer_by_public_id(db: DbSession, public_id: str) -> User:
    user = await db.scalar(select(User).where(User.public_id == public_id))
    if user is None:
        raise NotFound()
    return user


@router.get("/me/availability", response_model=AvailabilityOut)
async def get_availability(staff: Volunteer, db: DbSession, auth: Auth) -> AvailabilityOut:
    return availability_out(await service.presence_of(db, staff.user, auth.clock.now()))


@router.put("/me/availability", response_model=AvailabilityOut, responses={422: {}})
async def put_availability(
    body: AvailabilityIn, staff: Volunteer, db: DbSession, auth: Auth
) -> AvailabilityOut:
    """Available for voice needs a verified phone (`POST /me/phone-verification`); voice capacity
    0 means chat only. Omitted capacities keep their current value."""
    view = await service.set_availability(
        db,
        auth.clock,
        staff.user,
        state=PresenceState(body.state),
        voice_capacity=body.voice_capacity,
        chat_capacity=body.chat_capacity,
        actor=staff.principal.actor,
    )
    if view.state == PresenceState.available:
        # Callers may be waiting for exactly this volunteer: offer them now, not on the next event.
        await offer_waiting_work(db, auth.clock, RoutingTimes.from_settings(auth.settings))
    return availability_out(view)


@router.post(
    "/me/phone-verification",
    response_model=VerificationStarted,
    status_code=202,
    responses={422: {"description": "No phone on file."}, 429: {}},
)
async def start_phone_verification(staff: Volunteer, db: DbSession, auth: Auth) -> VerificationStarted:
    """We call the phone on file and read out a 6-digit code; type it into `…/confirm`."""
    verification = await service.start_phone_verification(
        db, auth.clock, auth.keys.material.keyed_hasher(), staff.user, actor=staff.principal.actor
    )
    return VerificationStarted(
        status="calling", expires_at=verification.expires_at, tries=service.VERIFICATION_MAX_ATTEMPTS
    )


@router.post("/me/phone-verification/confirm", response_model=VerificationConfirmed, responses={422: {}})
async def confirm_phone_verification(
    body: VerificationConfirmIn, staff: Volunteer, db: DbSession, auth: Auth
) -> VerificationConfirmed:
    outcome = await service.confirm_phone_verification(
        db, auth.clock, auth.keys.material.keyed_hasher(), staff.user, body.code, actor=staff.principal.actor
    )
    if outcome != service.VerificationOutcome.verified:
        await db.commit()  # the spent try and its audit entry stand, although the answer is an error
        raise InvalidInput(VERIFICATION_FAILURES[outcome], code=outcome.value)
    assert staff.user.phone_verified_at is not None
    return VerificationConfirmed(status="verified", phone_verified_at=staff.user.phone_verified_at)


@router.get("/schedule", response_model=ScheduleList)
async def list_schedule(
    staff: ScheduleReader,
    db: DbSession,
    auth: Auth,
    user: PublicId | None = None,
    language: LanguageCode | None = None,
    overrides_from: Annotated[date | None, Query(description="default: yesterday (UTC)")] = None,
) -> ScheduleList:
    """A volunteer sees their own shifts; supervisors and admins everyone's (filter by user or language)."""
    query = select(User).where(User.roles.contains("volunteer"), User.status != UserStatus.disabled)
    if Permission.schedule_manage not in staff.permissions:
        query = query.where(User.id == staff.user.id)
    if user is not None:
        query = query.where(User.public_id == user)
    users = [
        u
        for u in await db.scalars(query.order_by(User.display_name, User.public_id))
        if service.is_volunteer(u) and (language is None or language in u.language_list)
    ]
    since = overrides_from or auth.clock.now().date() - timedelta(days=1)
    return ScheduleList(volunteers=await schedules(db, users, since))


@router.get("/schedule/on-call", response_model=OnCallList)
async def on_call(
    staff: OnCallReader, db: DbSession, auth: Auth, language: LanguageCode | None = None
) -> OnCallList:
    """Who is on call now: available ones first, longest idle first."""
    now = auth.clock.now()
    found = await service.on_call_at(db, now, language=language)
    return OnCallList(
        at=now,
        volunteers=[
            OnCallOut(
                user=o.public_id,
                name=o.name,
                languages=o.languages,
                timezone=o.timezone,
                on_call_until=o.on_call_until,
                presence=availability_out(o.presence),
            )
            for o in found
        ],
    )


@router.put("/schedule/{user_id}", response_model=VolunteerSchedule, responses={**NOT_FOUND, 422: {}})
async def replace_schedule(
    user_id: PublicId, body: ScheduleIn, staff: ScheduleManager, db: DbSession, auth: Auth
) -> VolunteerSchedule:
    """Replace the volunteer's weekly shifts (local wall-clock times in their own time zone)."""
    target = await volunteer_by_public_id(db, user_id)
    shifts = [
        service.WeeklyShift(
            service.WEEKDAYS.index(s.weekday), service.parse_minute(s.start), s.duration_minutes
        )
        for s in body.shifts
    ]
    await service.replace_shifts(db, auth.clock, target, shifts, actor=staff.principal.actor)
    return (await schedules(db, [target], auth.clock.now().date() - timedelta(days=1)))[0]


@router.post(
    "/schedule/{user_id}/overrides",
    response_model=OverrideOut,
    status_code=201,
    responses={**NOT_FOUND, 409: {}, 422: {}},
)
async def add_override(
    user_id: PublicId, body: OverrideIn, staff: ScheduleManager, db: DbSession, auth: Auth
) -> OverrideOut:
    target = await volunteer_by_public_id(db, user_id)
    override = await service.add_override(
        db,
        auth.clock,
        target,
        on_date=body.date,
        kind=OverrideKind(body.kind),
        start_minute=service.parse_minute(body.start) if body.start is not None else None,
        duration_minutes=body.duration_minutes,
        actor=staff.principal.actor,
        created_by=staff.user,
    )
    return override_out(override)


@router.delete(
    "/schedule/{user_id}/overrides/{override_id}",
    status_code=204,
    response_class=Response,
    responses=NOT_FOUND,
)
async def remove_override(
    user_id: PublicId, override_id: PublicId, staff: ScheduleManager, db: DbSession, auth: Auth
) -> Response:
    target = await volunteer_by_public_id(db, user_id)
    await service.remove_override(db, auth.clock, target, override_id, actor=staff.principal.actor)
    return Response(status_code=204)
