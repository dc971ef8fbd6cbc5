"""On-call schedule, presence and the coded phone verification call. Services flush, never commit.

Time model
----------
A recurring shift is (weekday, local start minute, wall-clock duration) in the volunteer's IANA zone
(`users.timezone`). A volunteer is on call while their own wall clock reads within the shift: its
window on local date D runs from wall time D + start to wall time D + start + duration, each
resolved with `zoneinfo` to the first instant the wall clock reads that time or later
(`wall_to_utc`):

* a wall time the clock skips (spring forward, 02:30 on 2026-03-08 in New York) resolves to the end
  of the gap (03:00 EDT), when the clock first reads later than it;
* a wall time the clock shows twice (fall back, 01:30 on 2026-11-01) means its first occurrence.

So "22:00 for 8 hours" ends at 06:00 local every night: the night the clocks spring forward it lasts
7 real hours, the night they fall back 9. A shift may cross midnight (overnight) and lasts at most 24
wall-clock hours; a shift lying wholly inside a skipped hour does not happen that night.

Overrides are per local date of the volunteer: `off` cancels the weekly shifts that *start* on that
date (an overnight shift that began the evening before runs to its end); `extra` adds a shift
starting on that date. `off` + `extra` on one date moves a shift.

Who is on call
--------------
`on_call_at(session, at)` loads, in ONE query, the candidate rows (every weekly shift, plus the
overrides dated within three days of `at`) joined with the volunteer's user columns and presence,
then resolves the windows in Python: O(rows), milliseconds for 1,000 volunteers (no SQL can do it:
each row needs its own zone's DST rules). `on_call_now(session, clock)` is the same at the
application clock's now.

Presence
--------
One row per volunteer (absent = offline, default capacities). `state_changed_at` moves only when
the state changes (longest-idle-first ordering); a timed away (`away_until`, set by the routing
engine through `mark_away` after a missed offer) counts as available once it has passed, with idle
time from `away_until`. `available_clause(now)` is that rule as SQL, for conditional claims.
Nobody is available for voice without a verified phone (`users.phone_verified_at`).
"""

from __future__ import annotations

import hmac
import itertools
import logging
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import (
    ColumnElement,
    Date,
    Integer,
    String,
    and_,
    cast,
    delete,
    literal,
    null,
    or_,
    select,
    union_all,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts.models import Role, User, UserStatus
from app.audit import service as audit
from app.audit.service import Actor
from app.clock import Clock
from app.db.base import new_id
from app.errors import Conflict, DomainError, InvalidInput, NotFound
from app.jobs.service import enqueue
from app.publicid import derived_public_id, new_public_id
from app.volunteers.models import (
    AwayReason,
    OverrideKind,
    PhoneVerification,
    Presence,
    PresenceState,
    Shift,
    ShiftOverride,
)
from crypto.blind_index import KeyedHasher

log = logging.getLogger("hotline.volunteers")
ROUTING = Actor("system:routing")

MINUTES_PER_DAY = 24 * 60
MINUTES_PER_WEEK = 7 * MINUTES_PER_DAY
MIN_SHIFT_MINUTES = 15
MAX_SHIFTS = 42  # per volunteer and week
OVERRIDE_HORIZON = timedelta(days=400)

VOICE_CAPACITY_DEFAULT = 1
VOICE_CAPACITY_MAX = 1  # one phone, one call
CHAT_CAPACITY_DEFAULT = 3
CHAT_CAPACITY_MAX = 6

VERIFICATION_CALL_JOB = "volunteers.verification_call"
VERIFICATION_VALIDITY = timedelta(minutes=10)
VERIFICATION_MAX_ATTEMPTS = 5
VERIFICATION_COOLDOWN = timedelta(seconds=60)
VERIFICATION_DAILY_CALLS = 5
_CODE_DOMAIN = "volunteers.phone_verification.code"
_CODE_HASH_DOMAIN = "volunteers.phone_verification.code_hash"
_PHONE_DOMAIN = "volunteers.phone_verification.phone"

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


# ---------------------------------------------------------------------------------------------
# Schedule arithmetic (pure; no database)


@dataclass(frozen=True)
class WeeklyShift:
    weekday: int  # 0 = Monday
    start_minute: int
    duration_minutes: int

    @property
    def overnight(self) -> bool:
        return self.start_minute + self.duration_minutes > MINUTES_PER_DAY


@dataclass(frozen=True)
class DateOverride:
    on_date: date
    kind: OverrideKind
    start_minute: int | None = None
    duration_minutes: int | None = None


@dataclass(frozen=True)
class Window:
    """One concrete on-call window, in UTC, and the local date its shift starts on."""

    start: datetime
    end: datetime
    local_date: date
    extra: bool = False


@lru_cache(maxsize=512)
def zone(name: str) -> ZoneInfo:
    """A cached `ZoneInfo`; raises `ZoneInfoNotFoundError` (or ValueError) for an unknown name."""
    return ZoneInfo(name)


def wall_to_utc(day: date, minute: int, tz: ZoneInfo) -> datetime:
    """The first UTC instant at which the wall clock of `tz` reads `minute` after local midnight of
    `day` or later (minute may pass 1440: the next day).

    * an ordinary wall time: its instant;
    * a repeated one (fall back): its first occurrence (`fold=0`);
    * a skipped one (spring forward): the end of the gap, when the clock jumps past it.

    (Aware arithmetic within one zone is wall-clock arithmetic in Python, so instants are always
    built from a naive wall time and converted, never by adding to an aware local time.)
    """
    wall = datetime.combine(day, time()) + timedelta(minutes=minute)
    first = wall.replace(tzinfo=tz).astimezone(UTC)
    if first.astimezone(tz).replace(tzinfo=None) == wall:
        return first
    # Skipped: `fold=1` reads before the gap, `fold=0` after it; bisect (whole seconds) to the jump.
    low = int(wall.replace(tzinfo=tz, fold=1).timestamp())
    high = int(first.timestamp())
    while high - low > 1:
        middle = (low + high) // 2
        if datetime.fromtimestamp(middle, tz).replace(tzinfo=None) >= wall:
            high = middle
        else:
            low = middle
    return datetime.fromtimestamp(high, UTC)


def window_on(
    day: date, start_minute: int, duration_minutes: int, tz: ZoneInfo, *, extra: bool
) -> Window | None:
    start = wall_to_utc(day, start_minute, tz)
    end = wall_to_utc(day, start_minute + duration_minutes, tz)
    if end <= start:  # wholly inside a skipped (spring-forward) hour
        return None
    return Window(start, end, day, extra)


def windows_between(
    tz: ZoneInfo,
    shifts: Iterable[WeeklyShift],
    overrides: Iterable[DateOverride],
    start: datetime,
    end: datetime,
) -> list[Window]:
    """Every window that overlaps [start, end], sorted by start. A shift lasts at most one wall day,
    so shifts starting from two local days before `start` are enough (DST moves at most an hour)."""
    by_weekday: dict[int, list[WeeklyShift]] = defaultdict(list)
    for shift in shifts:
        by_weekday[shift.weekday].append(shift)
    off: set[date] = set()
    extras: dict[date, list[DateOverride]] = defaultdict(list)
    for override in overrides:
        if override.kind == OverrideKind.off:
            off.add(override.on_date)
        else:
            extras[override.on_date].append(override)
    found: list[Window] = []
    day = start.astimezone(tz).date() - timedelta(days=2)
    last = end.astimezone(tz).date()
    while day <= last:
        candidates: list[Window | None] = []
        if day not in off:
            candidates += [
                window_on(day, s.start_minute, s.duration_minutes, tz, extra=False)
                for s in by_weekday.get(day.weekday(), ())
            ]
        for o in extras.get(day, ()):
            if o.start_minute is not None and o.duration_minutes is not None:
                candidates.append(window_on(day, o.start_minute, o.duration_minutes, tz, extra=True))
        found += [w for w in candidates if w is not None and w.start <= end and w.end > start]
        day += timedelta(days=1)
    return sorted(found, key=lambda w: (w.start, w.end))


def on_call_until(
    tz: ZoneInfo, shifts: Iterable[WeeklyShift], overrides: Iterable[DateOverride], at: datetime
) -> datetime | None:
    """None when not on call at `at`; otherwise the end of the unbroken on-call stretch around it
    (back-to-back or overlapping shifts join, looking up to two days ahead)."""
    shifts, overrides = list(shifts), list(overrides)
    windows = windows_between(tz, shifts, overrides, at, at + timedelta(days=2))
    covering = [w for w in windows if w.start <= at < w.end]
    if not covering:
        return None
    until = max(w.end for w in covering)
    for w in windows:
        if w.start <= until < w.end:
            until = w.end
    return until


def check_weekly_pattern(shifts: Sequence[WeeklyShift]) -> None:
    """Ranges, count, and no overlap on the weekly wall-clock circle (Sunday night wraps to Monday)."""
    if len(shifts) > MAX_SHIFTS:
        raise InvalidInput(f"At most {MAX_SHIFTS} shifts a week.", code="too_many_shifts")
    for s in shifts:
        if not 0 <= s.weekday <= 6:
            raise InvalidInput("Weekday must be mon … sun.", code="invalid_shift")
        if not 0 <= s.start_minute < MINUTES_PER_DAY:
            raise InvalidInput("A shift starts between 00:00 and 23:59.", code="invalid_shift")
        if not MIN_SHIFT_MINUTES <= s.duration_minutes <= MINUTES_PER_DAY:
            raise InvalidInput(
                f"A shift lasts {MIN_SHIFT_MINUTES} minutes to 24 hours.", code="invalid_shift"
            )
    spans = sorted((s.weekday * MINUTES_PER_DAY + s.start_minute, s.duration_minutes) for s in shifts)
    for (start, length), (next_start, _) in itertools.pairwise(spans):
        if start + length > next_start:
            raise InvalidInput("Shifts overlap; merge them into one.", code="overlapping_shifts")
    if len(spans) > 1 and spans[-1][0] + spans[-1][1] > spans[0][0] + MINUTES_PER_WEEK:
        raise InvalidInput("Shifts overlap; merge them into one.", code="overlapping_shifts")


def minute_text(minute: int) -> str:
    minute %= MINUTES_PER_DAY
    return f"{minute // 60:02d}:{minute % 60:02d}"


def parse_minute(text: str) -> int:
    """'HH:MM' (already pattern-checked by the schema) → minutes after midnight."""
    hours, minutes = text.split(":")
    value = int(hours) * 60 + int(minutes)
    if not 0 <= value < MINUTES_PER_DAY:
        raise InvalidInput("Times are HH:MM between 00:00 and 23:59.", code="invalid_time")
    return value


# ---------------------------------------------------------------------------------------------
# Schedule storage


def is_volunteer(user: User) -> bool:
    return Role.volunteer.value in user.roles.split(",")


def _schedulable(user: User) -> None:
    if not is_volunteer(user) or user.status == UserStatus.disabled:
        raise InvalidInput("Only active volunteers have shifts.", code="not_a_volunteer")


def _user_zone(user: User) -> ZoneInfo:
    try:
        return zone(user.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidInput(
            "The volunteer's time zone is not valid; fix it first.", code="bad_timezone"
        ) from None


async def replace_shifts(
    session: AsyncSession, clock: Clock, user: User, shifts: Sequence[WeeklyShift], *, actor: Actor
) -> list[Shift]:
    """Replace the volunteer's whole weekly pattern (validated first; audited)."""
    _schedulable(user)
    check_weekly_pattern(shifts)
    await session.execute(delete(Shift).where(Shift.user_id == user.id))
    now = clock.now()
    rows = [
        Shift(
            user_id=user.id,
            weekday=s.weekday,
            start_minute=s.start_minute,
            duration_minutes=s.duration_minutes,
            created_at=now,
        )
        for s in sorted(shifts, key=lambda s: (s.weekday, s.start_minute))
    ]
    session.add_all(rows)
    await session.flush()
    audit.record(
        session,
        clock,
        actor=actor,
        action="schedule.replaced",
        object_type="user",
        object_id=user.public_id,
        details={"shifts": len(rows), "minutes": sum(s.duration_minutes for s in rows)},
    )
    return rows


async def add_override(
    session: AsyncSession,
    clock: Clock,
    user: User,
    *,
    on_date: date,
    kind: OverrideKind,
    start_minute: int | None = None,
    duration_minutes: int | None = None,
    actor: Actor,
    created_by: User | None = None,
) -> ShiftOverride:
    """An `off` date or an `extra` shift on a date of the volunteer's zone (today or later)."""
    _schedulable(user)
    if kind == OverrideKind.off:
        if start_minute is not None or duration_minutes is not None:
            raise InvalidInput("A day off has no start or duration.", code="invalid_override")
    else:
        if start_minute is None or duration_minutes is None:
            raise InvalidInput("An extra shift needs a start and a duration.", code="invalid_override")
        if not 0 <= start_minute < MINUTES_PER_DAY:
            raise InvalidInput("A shift starts between 00:00 and 23:59.", code="invalid_override")
        if not MIN_SHIFT_MINUTES <= duration_minutes <= MINUTES_PER_DAY:
            raise InvalidInput(
                f"A shift lasts {MIN_SHIFT_MINUTES} minutes to 24 hours.", code="invalid_override"
            )
    today = clock.now().astimezone(_user_zone(user)).date()
    if on_date < today:
        raise InvalidInput("That date has passed in the volunteer's time zone.", code="date_in_past")
    if on_date > today + OVERRIDE_HORIZON:
        raise InvalidInput("Overrides reach at most 400 days ahead.", code="date_too_far")
    duplicate = await session.scalar(
        select(ShiftOverride.id).where(
            ShiftOverride.user_id == user.id,
            ShiftOverride.on_date == on_date,
            ShiftOverride.kind == kind.value,
            ShiftOverride.start_minute.is_(None)
            if start_minute is None
            else ShiftOverride.start_minute == start_minute,
        )
    )
    if duplicate is not None:
        raise Conflict("That override exists already.", code="duplicate_override")
    override = ShiftOverride(
        public_id=new_public_id("SO"),
        user_id=user.id,
        on_date=on_date,
        kind=kind.value,
        start_minute=start_minute,
        duration_minutes=duration_minutes,
        created_by_id=created_by.id if created_by else None,
        created_at=clock.now(),
    )
    session.add(override)
    await session.flush()
    audit.record(
        session,
        clock,
        actor=actor,
        action="schedule.override_added",
        object_type="user",
        object_id=user.public_id,
        details={"override": override.public_id, "kind": kind.value, "date": on_date.isoformat()},
    )
    return override


async def remove_override(
    session: AsyncSession, clock: Clock, user: User, override_public_id: str, *, actor: Actor
) -> None:
    override = await session.scalar(
        select(ShiftOverride).where(
            ShiftOverride.public_id == override_public_id, ShiftOverride.user_id == user.id
        )
    )
    if override is None:
        raise NotFound()
    await session.delete(override)
    await session.flush()
    audit.record(
        session,
        clock,
        actor=actor,
        action="schedule.override_removed",
        object_type="user",
        object_id=user.public_id,
        details={"override": override_public_id},
    )


async def shifts_by_user(
    session: AsyncSession, user_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, list[Shift]]:
    found: dict[uuid.UUID, list[Shift]] = defaultdict(list)
    if user_ids:
        for row in await session.scalars(
            select(Shift).where(Shift.user_id.in_(user_ids)).order_by(Shift.weekday, Shift.start_minute)
        ):
            found[row.user_id].append(row)
    return found


async def overrides_by_user(
    session: AsyncSession, user_ids: Sequence[uuid.UUID], *, since: date
) -> dict[uuid.UUID, list[ShiftOverride]]:
    found: dict[uuid.UUID, list[ShiftOverride]] = defaultdict(list)
    if user_ids:
        for row in await session.scalars(
            select(ShiftOverride)
            .where(ShiftOverride.user_id.in_(user_ids), ShiftOverride.on_date >= since)
            .order_by(ShiftOverride.on_date, ShiftOverride.kind, ShiftOverride.start_minute)
        ):
            found[row.user_id].append(row)
    return found


def as_weekly(row: Shift) -> WeeklyShift:
    return WeeklyShift(row.weekday, row.start_minute, row.duration_minutes)


def as_override(row: ShiftOverride) -> DateOverride:
    return DateOverride(row.on_date, OverrideKind(row.kind), row.start_minute, row.duration_minutes)


# ---------------------------------------------------------------------------------------------
# Presence


@dataclass(frozen=True)
class PresenceView:
    """Presence as routing sees it at one instant (an expired timed away reads as available)."""

    state: PresenceState
    voice_capacity: int
    chat_capacity: int
    away_until: datetime | None
    away_reason: str | None
    state_changed_at: datetime | None  # idle since, for longest-idle-first (None: never set)
    phone_verified: bool

    @property
    def takes_voice(self) -> bool:
        return self.state == PresenceState.available and self.voice_capacity > 0 and self.phone_verified

    @property
    def takes_chat(self) -> bool:
        return self.state == PresenceState.available and self.chat_capacity > 0


def presence_view(row: Presence | None, now: datetime, *, phone_verified: bool) -> PresenceView:
    if row is None:
        return PresenceView(
            PresenceState.offline,
            VOICE_CAPACITY_DEFAULT,
            CHAT_CAPACITY_DEFAULT,
            None,
            None,
            None,
            phone_verified,
        )
    return _view(
        row.state,
        row.voice_capacity,
        row.chat_capacity,
        row.away_until,
        row.away_reason,
        row.state_changed_at,
        now,
        phone_verified,
    )


def _view(
    state: str,
    voice: int,
    chat: int,
    away_until: datetime | None,
    away_reason: str | None,
    changed: datetime | None,
    now: datetime,
    phone_verified: bool,
) -> PresenceView:
    if state == PresenceState.away and away_until is not None and away_until <= now:
        return PresenceView(PresenceState.available, voice, chat, None, None, away_until, phone_verified)
    return PresenceView(PresenceState(state), voice, chat, away_until, away_reason, changed, phone_verified)


def available_clause(now: datetime) -> ColumnElement[bool]:
    """SQL for "available at `now`" on `volunteer_presence`, for conditional claims and queries."""
    return or_(
        Presence.state == PresenceState.available.value,
        and_(
            Presence.state == PresenceState.away.value,
            Presence.away_until.is_not(None),
            Presence.away_until <= now,
        ),
    )


async def ensure_presence(session: AsyncSession, clock: Clock, user_id: uuid.UUID) -> Presence:
    """The volunteer's presence row, created (offline, default capacities) if missing; race-safe."""
    now = clock.now()
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    await session.execute(
        insert(Presence)
        .values(
            id=new_id(),
            user_id=user_id,
            state=PresenceState.offline.value,
            voice_capacity=VOICE_CAPACITY_DEFAULT,
            chat_capacity=CHAT_CAPACITY_DEFAULT,
            state_changed_at=now,
            updated_at=now,
        )
        .on_conflict_do_nothing(index_elements=["user_id"])
    )
    row = await session.scalar(
        select(Presence).where(Presence.user_id == user_id).execution_options(populate_existing=True)
    )
    assert row is not None
    return row


async def presence_of(session: AsyncSession, user: User, now: datetime) -> PresenceView:
    # populate_existing: conditional updates (mark_away, routing claims) bypass the identity map.
    row = await session.scalar(
        select(Presence).where(Presence.user_id == user.id).execution_options(populate_existing=True)
    )
    return presence_view(row, now, phone_verified=user.phone_verified_at is not None)


async def set_availability(
    session: AsyncSession,
    clock: Clock,
    user: User,
    *,
    state: PresenceState,
    voice_capacity: int | None = None,
    chat_capacity: int | None = None,
    actor: Actor,
) -> PresenceView:
    """A volunteer's own state and capacities (omitted capacities keep their value). Audited.

    Available with voice capacity above 0 needs a verified phone; available needs some capacity.
    """
    row = await ensure_presence(session, clock, user.id)
    voice = row.voice_capacity if voice_capacity is None else voice_capacity
    chat = row.chat_capacity if chat_capacity is None else chat_capacity
    if not 0 <= voice <= VOICE_CAPACITY_MAX:
        raise InvalidInput(f"Voice capacity is 0 to {VOICE_CAPACITY_MAX}.", code="invalid_capacity")
    if not 0 <= chat <= CHAT_CAPACITY_MAX:
        raise InvalidInput(f"Chat capacity is 0 to {CHAT_CAPACITY_MAX}.", code="invalid_capacity")
    if state == PresenceState.available:
        if voice > 0 and user.phone_verified_at is None:
            raise InvalidInput(
                "Verify your phone before taking calls, or set voice capacity to 0 for chat only.",
                code="phone_not_verified",
            )
        if voice == 0 and chat == 0:
            raise InvalidInput("Available needs a voice or chat capacity above 0.", code="no_capacity")
    now = clock.now()
    if state != row.state or row.away_until is not None:
        row.state_changed_at = now
    row.state = state.value
    row.voice_capacity, row.chat_capacity = voice, chat
    row.away_until = None
    row.away_reason = AwayReason.manual.value if state == PresenceState.away else None
    row.updated_at = now
    await session.flush()
    audit.record(
        session,
        clock,
        actor=actor,
        action="availability.changed",
        object_type="user",
        object_id=user.public_id,
        details={"state": state.value, "voice_capacity": voice, "chat_capacity": chat},
    )
    return presence_view(row, now, phone_verified=user.phone_verified_at is not None)


async def mark_away(
    session: AsyncSession,
    clock: Clock,
    user: User,
    *,
    until: datetime,
    reason: AwayReason = AwayReason.missed_offer,
    actor: Actor = ROUTING,
) -> bool:
    """For the routing engine: a timed away (e.g. a missed offer), only if the volunteer is
    available right now (conditional update; an offline volunteer stays offline). Audited.
    Returns whether the state changed."""
    now = clock.now()
    result = await session.execute(
        update(Presence)
        .where(Presence.user_id == user.id, available_clause(now))
        .values(
            state=PresenceState.away.value,
            away_until=until,
            away_reason=reason.value,
            state_changed_at=now,
            updated_at=now,
        )
        .returning(Presence.id)
        .execution_options(synchronize_session=False)
    )
    changed = result.first() is not None
    if changed:
        audit.record(
            session,
            clock,
            actor=actor,
            action="availability.changed",
            object_type="user",
            object_id=user.public_id,
            details={"state": PresenceState.away.value, "reason": reason.value},
        )
    return changed


# ---------------------------------------------------------------------------------------------
# Who is on call


@dataclass(frozen=True)
class OnCall:
    user_id: uuid.UUID
    public_id: str
    name: str
    languages: list[str]
    timezone: str
    on_call_until: datetime
    presence: PresenceView


def _candidate_rows(at: datetime) -> Any:
    # Every weekly shift (a volunteer has a handful) and the overrides of the local dates that
    # `on_call_until` can look at: local(at) is within a day of the UTC date, windows start up to two
    # days earlier and the stretch is followed up to two days later.
    utc_day = at.astimezone(UTC).date()
    weekly = select(
        Shift.user_id.label("user_id"),
        literal("weekly", String(8)).label("kind"),
        Shift.weekday.label("weekday"),
        cast(null(), Date).label("on_date"),
        Shift.start_minute.label("start_minute"),
        Shift.duration_minutes.label("duration_minutes"),
    )
    dated = select(
        ShiftOverride.user_id,
        ShiftOverride.kind,
        cast(null(), Integer),
        ShiftOverride.on_date,
        ShiftOverride.start_minute,
        ShiftOverride.duration_minutes,
    ).where(ShiftOverride.on_date.between(utc_day - timedelta(days=3), utc_day + timedelta(days=3)))
    windows = union_all(weekly, dated).subquery("windows")
    return (
        select(
            windows,
            User.public_id,
            User.display_name,
            User.languages,
            User.timezone,
            User.roles,
            User.phone_verified_at,
            Presence.state,
            Presence.voice_capacity,
            Presence.chat_capacity,
            Presence.away_until,
            Presence.away_reason,
            Presence.state_changed_at,
        )
        .join(User, User.id == windows.c.user_id)
        .outerjoin(Presence, Presence.user_id == User.id)
        .where(User.status == UserStatus.active.value)
    )


async def on_call_at(
    session: AsyncSession, at: datetime, *, language: str | None = None, available_only: bool = False
) -> list[OnCall]:
    """Active volunteers on call at `at`, with languages and presence, longest idle first among the
    available. One query; windows resolved in Python (see the module docstring). Routing asks for
    `available_only` (and a language): the database then leaves out everyone else, so a decision
    costs what the free volunteers cost, not the whole roster."""
    query = _candidate_rows(at)
    if available_only:
        query = query.where(available_clause(at))  # an expired "away" counts as available
    if language is not None:
        query = query.where(User.languages.contains(language))  # exact match checked below
    rows = (await session.execute(query)).all()
    grouped: dict[uuid.UUID, list[Any]] = defaultdict(list)
    for row in rows:
        grouped[row.user_id].append(row)
    found: list[OnCall] = []
    for user_id, user_rows in grouped.items():
        first = user_rows[0]
        if Role.volunteer.value not in first.roles.split(","):
            continue
        languages = [code for code in first.languages.split(",") if code]
        if language is not None and language not in languages:
            continue
        try:
            tz = zone(first.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            log.warning("volunteer with an invalid time zone left off call", extra={"user": first.public_id})
            continue
        weekly = [
            WeeklyShift(r.weekday, r.start_minute, r.duration_minutes)
            for r in user_rows
            if r.kind == "weekly"
        ]
        dated = [
            DateOverride(r.on_date, OverrideKind(r.kind), r.start_minute, r.duration_minutes)
            for r in user_rows
            if r.kind != "weekly"
        ]
        until = on_call_until(tz, weekly, dated, at)
        if until is None:
            continue
        verified = first.phone_verified_at is not None
        view = (
            presence_view(None, at, phone_verified=verified)
            if first.state is None
            else _view(
                first.state,
                first.voice_capacity,
                first.chat_capacity,
                first.away_until,
                first.away_reason,
                first.state_changed_at,
                at,
                verified,
            )
        )
        found.append(
            OnCall(user_id, first.public_id, first.display_name, languages, first.timezone, until, view)
        )
    far = datetime.max.replace(tzinfo=UTC)
    found.sort(
        key=lambda o: (
            o.presence.state != PresenceState.available,
            o.presence.state_changed_at or far,
            o.public_id,
        )
    )
    return found


async def on_call_now(
    session: AsyncSession, clock: Clock, *, language: str | None = None, available_only: bool = False
) -> list[OnCall]:
    """Who is on call at the application clock's now (see `on_call_at`)."""
    return await on_call_at(session, clock.now(), language=language, available_only=available_only)


# ---------------------------------------------------------------------------------------------
# Coded phone verification call


class TooManyVerificationCalls(DomainError):
    status_code = 429
    code = "too_many_calls"
    message = "Too many verification calls; try again later."

    def __init__(self, retry_after: int) -> None:
        super().__init__()
        self.retry_after = max(1, retry_after)


class VerificationOutcome(StrEnum):
    verified = "verified"
    wrong_code = "wrong_code"
    expired = "expired"
    exhausted = "exhausted"  # all tries used
    no_verification = "no_verification"
    phone_changed = "phone_changed"


def verification_reference(keys: Any, verification_id: uuid.UUID) -> str:
    """What the verification call's URL carries: a keyed, one-way reference (`PV-…`) to the
    verification, so neither the code nor the row id leaves the server."""
    digest = keys.material.keyed_hasher().hash("volunteer.verification.ref", verification_id.bytes)
    return derived_public_id("PV", digest)


async def pending_verification_by_reference(
    session: AsyncSession, clock: Clock, keys: Any, reference: str
) -> PhoneVerification | None:
    """The live (unconfirmed, unexpired) verification a call's reference names; there are few."""
    rows = await session.scalars(
        select(PhoneVerification).where(
            PhoneVerification.confirmed_at.is_(None), PhoneVerification.expires_at > clock.now()
        )
    )
    return next((row for row in rows if verification_reference(keys, row.id) == reference), None)


def verification_code(hasher: KeyedHasher, verification_id: uuid.UUID) -> str:
    """The 6-digit code of one verification, for the call handler that speaks it.

    The code is a keyed PRF of the verification's random id under the keyring's hash key, so it is
    unpredictable without the key, never stored, and never travels in a job payload: the handler
    of `volunteers.verification_call` recomputes it from the id in the payload.
    """
    digest = hasher.hash(_CODE_DOMAIN, verification_id.bytes)
    return f"{int.from_bytes(digest, 'big') % 1_000_000:06d}"


def _code_hash(hasher: KeyedHasher, verification_id: uuid.UUID, code: str) -> str:
    return hasher.hash(_CODE_HASH_DOMAIN, verification_id.bytes + code.encode("ascii")).hex()


def _phone_fingerprint(hasher: KeyedHasher, user: User) -> str | None:
    return None if user.phone is None else hasher.hash(_PHONE_DOMAIN, user.phone.blob).hex()


async def start_phone_verification(
    session: AsyncSession, clock: Clock, hasher: KeyedHasher, user: User, *, actor: Actor
) -> PhoneVerification:
    """Start a coded verification call to the volunteer's phone on file.

    Creates a 6-digit code (valid 10 minutes, 5 tries; any earlier pending code stops working):
    a keyed PRF of the verification's random id (`verification_code`), random to anyone without
    the hash key and never stored; only its keyed hash is kept. Enqueues a
    `volunteers.verification_call` job with payload `{"verification_id": …}` (ids only).

    The handler of that job is NOT here; the voice flow registers it. It must load the
    `PhoneVerification`, do nothing if it is confirmed or expired, open `user.phone` through the
    access broker (purpose `dial_volunteer`), and place a call from the hotline number that speaks
    `verification_code(hasher, verification.id)` digit by digit (twice), idempotently per
    verification id; the volunteer types the code into the console (`confirm_phone_verification`).
    Throttled: one call a minute, five a day.
    """
    fingerprint = _phone_fingerprint(hasher, user)
    if fingerprint is None:
        raise InvalidInput(
            "There is no phone number on file; ask an administrator to add one.", code="no_phone"
        )
    now = clock.now()
    recent = list(
        await session.scalars(
            select(PhoneVerification.created_at)
            .where(
                PhoneVerification.user_id == user.id, PhoneVerification.created_at > now - timedelta(days=1)
            )
            .order_by(PhoneVerification.created_at)
        )
    )
    if recent and now - recent[-1] < VERIFICATION_COOLDOWN:
        raise TooManyVerificationCalls(int((recent[-1] + VERIFICATION_COOLDOWN - now).total_seconds()) + 1)
    if len(recent) >= VERIFICATION_DAILY_CALLS:
        raise TooManyVerificationCalls(int((recent[0] + timedelta(days=1) - now).total_seconds()) + 1)
    await session.execute(
        update(PhoneVerification)
        .where(
            PhoneVerification.user_id == user.id,
            PhoneVerification.confirmed_at.is_(None),
            PhoneVerification.expires_at > now,
        )
        .values(expires_at=now)
        .execution_options(synchronize_session=False)
    )
    verification = PhoneVerification(
        id=new_id(),
        user_id=user.id,
        phone_fingerprint=fingerprint,
        attempts=0,
        created_at=now,
        expires_at=now + VERIFICATION_VALIDITY,
    )
    # The id is random; the code is derived from it under the hash key and only its hash is kept.
    verification.code_hash = _code_hash(hasher, verification.id, verification_code(hasher, verification.id))
    session.add(verification)
    await session.flush()
    await enqueue(
        session,
        clock,
        VERIFICATION_CALL_JOB,
        {"verification_id": str(verification.id)},
        dedup_key=f"{VERIFICATION_CALL_JOB}:{verification.id}",
        max_attempts=3,
    )
    audit.record(
        session,
        clock,
        actor=actor,
        action="volunteer.phone_verification_started",
        object_type="user",
        object_id=user.public_id,
    )
    return verification


async def confirm_phone_verification(
    session: AsyncSession, clock: Clock, hasher: KeyedHasher, user: User, code: str, *, actor: Actor
) -> VerificationOutcome:
    """Check a code against the latest verification; on a match set `users.phone_verified_at`.

    Every check spends one of the 5 tries (a conditional update, so parallel guesses cannot exceed
    it). A failure is returned, not raised: the caller must COMMIT the spent try (and the audit
    entry) before answering, or the limit would roll back with the error.
    """
    now = clock.now()
    latest = await session.scalar(
        select(PhoneVerification)
        .where(PhoneVerification.user_id == user.id, PhoneVerification.confirmed_at.is_(None))
        .order_by(PhoneVerification.created_at.desc())
        .limit(1)
    )
    outcome: VerificationOutcome
    if latest is None:
        outcome = VerificationOutcome.no_verification
    elif latest.expires_at <= now:
        outcome = VerificationOutcome.expired
    else:
        spent = await session.execute(
            update(PhoneVerification)
            .where(PhoneVerification.id == latest.id, PhoneVerification.attempts < VERIFICATION_MAX_ATTEMPTS)
            .values(attempts=PhoneVerification.attempts + 1)
            .returning(PhoneVerification.attempts)
            .execution_options(synchronize_session=False)
        )
        if spent.first() is None:
            outcome = VerificationOutcome.exhausted
        elif not hmac.compare_digest(_code_hash(hasher, latest.id, code), latest.code_hash):
            outcome = VerificationOutcome.wrong_code
        elif _phone_fingerprint(hasher, user) != latest.phone_fingerprint:
            outcome = VerificationOutcome.phone_changed
        else:
            outcome = VerificationOutcome.verified
            latest.confirmed_at = now
            user.phone_verified_at = now
            user.updated_at = now
    await session.flush()
    audit.record(
        session,
        clock,
        actor=actor,
        action="volunteer.phone_verification_checked",
        object_type="user",
        object_id=user.public_id,
        outcome="ok" if outcome == VerificationOutcome.verified else "denied",
        details={"result": outcome.value},
    )
    return outcome
