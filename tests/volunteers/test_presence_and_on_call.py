"""Presence rules and "who is on call now" against the database (tier 1, rolled back)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import event, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts.models import UserStatus
from app.audit.service import PENDING_KEY, Actor
from app.clock import FrozenClock
from app.errors import InvalidInput
from app.volunteers import service
from app.volunteers.models import AwayReason, OverrideKind, Presence, PresenceState
from app.volunteers.service import WeeklyShift
from tests.support.factories import Services, make_user

ME = Actor("U-TEST-TEST")
SAT, SUN, WED = 5, 6, 2


def queued_actions(session: AsyncSession) -> list[str]:
    return [e["action"] for e in session.sync_session.info.get(PENDING_KEY, [])]


async def test_cannot_go_available_for_voice_without_a_verified_phone(
    session: AsyncSession, services: Services, clock: FrozenClock
) -> None:
    user = await make_user(session, services, phone="+12025550123")
    with pytest.raises(InvalidInput) as raised:
        await service.set_availability(session, clock, user, state=PresenceState.available, actor=ME)
    assert raised.value.code == "phone_not_verified"
    # Chat only is fine without a verified phone.
    view = await service.set_availability(
        session, clock, user, state=PresenceState.available, voice_capacity=0, actor=ME
    )
    assert view.state == PresenceState.available and view.takes_chat and not view.takes_voice
    assert (view.voice_capacity, view.chat_capacity) == (0, 3)
    user.phone_verified_at = clock.now()
    view = await service.set_availability(
        session, clock, user, state=PresenceState.available, voice_capacity=1, actor=ME
    )
    assert view.takes_voice and view.phone_verified
    assert queued_actions(session).count("availability.changed") == 2


async def test_capacity_limits_and_defaults(
    session: AsyncSession, services: Services, clock: FrozenClock
) -> None:
    user = await make_user(session, services)
    fresh = await service.presence_of(session, user, clock.now())
    assert (fresh.state, fresh.voice_capacity, fresh.chat_capacity) == (PresenceState.offline, 1, 3)
    for voice, chat in ((2, None), (None, 7), (-1, None)):
        with pytest.raises(InvalidInput) as raised:
            await service.set_availability(
                session,
                clock,
                user,
                state=PresenceState.away,
                voice_capacity=voice,
                chat_capacity=chat,
                actor=ME,
            )
        assert raised.value.code == "invalid_capacity"
    with pytest.raises(InvalidInput) as raised:
        await service.set_availability(
            session, clock, user, state=PresenceState.available, voice_capacity=0, chat_capacity=0, actor=ME
        )
    assert raised.value.code == "no_capacity"
    view = await service.set_availability(
        session, clock, user, state=PresenceState.offline, chat_capacity=6, actor=ME
    )
    assert (view.voice_capacity, view.chat_capacity) == (1, 6)


async def test_state_changed_at_moves_only_with_the_state(
    session: AsyncSession, services: Services, clock: FrozenClock
) -> None:
    user = await make_user(session, services)
    first = await service.set_availability(
        session, clock, user, state=PresenceState.available, voice_capacity=0, actor=ME
    )
    clock.advance(60)
    same = await service.set_availability(
        session, clock, user, state=PresenceState.available, chat_capacity=2, actor=ME
    )
    assert same.state_changed_at == first.state_changed_at
    clock.advance(60)
    away = await service.set_availability(session, clock, user, state=PresenceState.away, actor=ME)
    assert away.state_changed_at == clock.now() and away.away_reason == AwayReason.manual
    assert away.away_until is None  # a manual away lasts until changed


async def test_missed_offer_away_expires_by_itself(
    session: AsyncSession, services: Services, clock: FrozenClock
) -> None:
    user = await make_user(session, services)
    other = await make_user(session, services)
    await service.set_availability(
        session, clock, user, state=PresenceState.available, voice_capacity=0, actor=ME
    )
    await service.set_availability(session, clock, other, state=PresenceState.offline, actor=ME)
    until = clock.now() + timedelta(minutes=3)
    assert await service.mark_away(session, clock, user, until=until)
    assert not await service.mark_away(session, clock, other, until=until)  # offline stays offline
    view = await service.presence_of(session, user, clock.now())
    assert (view.state, view.away_until, view.away_reason) == (PresenceState.away, until, "missed_offer")
    assert await session.scalar(select(Presence.id).where(service.available_clause(clock.now()))) is None
    clock.advance(timedelta(minutes=3))
    view = await service.presence_of(session, user, clock.now())
    assert view.state == PresenceState.available and view.state_changed_at == until
    assert (
        await session.scalar(select(Presence.user_id).where(service.available_clause(clock.now()))) == user.id
    )
    offline = await service.presence_of(session, other, clock.now())
    assert offline.state == PresenceState.offline


async def test_on_call_now_with_languages_presence_zones_and_overrides(
    session: AsyncSession, services: Services, clock: FrozenClock
) -> None:
    # Wed 2026-12-02 15:00 UTC = 10:00 New York = 16:00 Madrid = 00:00 Thu Tokyo.
    clock.set(datetime(2026, 12, 2, 15, tzinfo=UTC))
    ny = await make_user(session, services, languages="en,es")
    madrid = await make_user(session, services, languages="es")
    tokyo = await make_user(session, services, languages="en")
    off_today = await make_user(session, services, languages="en")
    extra_now = await make_user(session, services, languages="en")
    disabled = await make_user(session, services, languages="en")
    supervisor = await make_user(session, services, roles="supervisor", languages="en")
    madrid.timezone, tokyo.timezone = "Europe/Madrid", "Asia/Tokyo"
    await session.flush()
    nine_to_five = [WeeklyShift(WED, 9 * 60, 8 * 60)]
    for user in (ny, madrid, off_today, disabled):
        await service.replace_shifts(session, clock, user, nine_to_five, actor=ME)
    await service.replace_shifts(session, clock, tokyo, [WeeklyShift(WED, 20 * 60, 6 * 60)], actor=ME)
    await service.replace_shifts(session, clock, extra_now, [WeeklyShift(WED, 11 * 60, 60)], actor=ME)
    await service.add_override(
        session, clock, off_today, on_date=date(2026, 12, 2), kind=OverrideKind.off, actor=ME
    )
    await service.add_override(
        session,
        clock,
        extra_now,
        on_date=date(2026, 12, 2),
        kind=OverrideKind.extra,
        start_minute=9 * 60 + 30,
        duration_minutes=60,
        actor=ME,
    )
    # The supervisor has no volunteer role; a shift row for them must not put them on call.
    session.add(
        service.Shift(
            user_id=supervisor.id, weekday=WED, start_minute=0, duration_minutes=1440, created_at=clock.now()
        )
    )
    ny.phone_verified_at = clock.now()
    disabled.status = UserStatus.disabled  # after their shifts were set: a disabled account is never on call
    await session.flush()
    await service.set_availability(
        session, clock, madrid, state=PresenceState.available, voice_capacity=0, actor=ME
    )
    clock.advance(60)
    await service.set_availability(session, clock, ny, state=PresenceState.available, actor=ME)

    found = await service.on_call_now(session, clock)
    by_id = {o.public_id: o for o in found}
    assert set(by_id) == {ny.public_id, madrid.public_id, tokyo.public_id, extra_now.public_id}
    # available first, longest idle first; then the others
    assert [o.public_id for o in found[:2]] == [madrid.public_id, ny.public_id]
    assert by_id[ny.public_id].presence.takes_voice
    assert by_id[madrid.public_id].presence.takes_chat and not by_id[madrid.public_id].presence.takes_voice
    assert by_id[tokyo.public_id].presence.state == PresenceState.offline  # never set: offline
    assert by_id[ny.public_id].languages == ["en", "es"]
    assert by_id[ny.public_id].on_call_until == datetime(2026, 12, 2, 22, tzinfo=UTC)
    assert by_id[madrid.public_id].on_call_until == datetime(2026, 12, 2, 16, tzinfo=UTC)
    assert by_id[tokyo.public_id].on_call_until == datetime(2026, 12, 2, 17, tzinfo=UTC)  # Thu 02:00
    assert by_id[extra_now.public_id].on_call_until == datetime(2026, 12, 2, 15, 30, tzinfo=UTC)
    spanish = await service.on_call_now(session, clock, language="es")
    assert {o.public_id for o in spanish} == {ny.public_id, madrid.public_id}
    later = await service.on_call_at(session, datetime(2026, 12, 2, 16, tzinfo=UTC))
    assert madrid.public_id not in {o.public_id for o in later}


async def test_on_call_is_one_query_for_a_thousand_volunteers(
    session: AsyncSession, services: Services, clock: FrozenClock
) -> None:
    from app.accounts.models import User
    from app.publicid import new_public_id
    from app.volunteers.models import Shift

    clock.set(datetime(2026, 12, 2, 15, tzinfo=UTC))
    now = clock.now()
    users = [
        User(
            public_id=new_public_id("U"),
            email=f"bulk{i}@example.org",
            display_name="Bulk",
            roles="volunteer",
            languages="en",
            timezone=("America/New_York", "Europe/Madrid")[i % 2],
            status=UserStatus.active,
            created_at=now,
            updated_at=now,
        )
        for i in range(1000)
    ]
    session.add_all(users)
    await session.flush()
    session.add_all(
        Shift(user_id=u.id, weekday=day, start_minute=9 * 60, duration_minutes=8 * 60, created_at=now)
        for u in users
        for day in (0, 2, 4)
    )
    await session.flush()
    statements: list[str] = []
    connection = await session.connection()

    def count(*args: object) -> None:
        statements.append(str(args[2]))

    event.listen(connection.sync_connection, "before_cursor_execute", count)
    try:
        found = await service.on_call_now(session, clock)
    finally:
        event.remove(connection.sync_connection, "before_cursor_execute", count)
    assert len(statements) == 1
    # 10:00 in New York and 16:00 in Madrid: both halves are within 09:00–17:00.
    assert len([o for o in found if o.name == "Bulk"]) == 1000


async def test_on_call_query_across_both_dst_changes_and_replacing_shifts(
    session: AsyncSession, services: Services, clock: FrozenClock
) -> None:
    user = await make_user(session, services)  # America/New_York
    await service.replace_shifts(session, clock, user, [WeeklyShift(WED, 9 * 60, 60)], actor=ME)
    await service.replace_shifts(session, clock, user, [WeeklyShift(SAT, 22 * 60, 8 * 60)], actor=ME)
    shifts = await service.shifts_by_user(session, [user.id])
    assert [(s.weekday, s.start_minute) for s in shifts[user.id]] == [(SAT, 22 * 60)]

    async def on_call(*at: int) -> bool:
        found = await service.on_call_at(session, datetime(*at, tzinfo=UTC))
        return user.public_id in {o.public_id for o in found}

    # Spring forward (Sun 2026-03-08): 22:00 EST → 06:00 EDT = 03:00Z → 10:00Z.
    assert not await on_call(2026, 3, 8, 2, 59)
    assert (
        await on_call(2026, 3, 8, 3, 0)
        and await on_call(2026, 3, 8, 7, 0)
        and await on_call(2026, 3, 8, 9, 59)
    )
    assert not await on_call(2026, 3, 8, 10, 0)
    # Fall back (Sun 2026-11-01): 22:00 EDT → 06:00 EST = 02:00Z → 11:00Z.
    assert await on_call(2026, 11, 1, 2, 0) and await on_call(2026, 11, 1, 10, 59)
    assert not await on_call(2026, 11, 1, 11, 0)
    await service.replace_shifts(session, clock, user, [], actor=ME)
    assert not await on_call(2026, 11, 8, 5, 0)
