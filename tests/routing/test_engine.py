"""The routing engine on both databases: language, idle order, priority, declines, timeouts, seats."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts.models import User
from app.clock import FrozenClock
from app.db.engine import Database
from app.jobs.models import Job
from app.routing import service
from app.routing.models import Offer, OfferState, Seat, Task, TaskState
from app.volunteers.models import PresenceState
from app.volunteers.service import WeeklyShift, on_call_now, replace_shifts, set_availability
from tests.support.factories import SETUP, Services, make_services, make_user

TIMES = service.RoutingTimes()


@pytest.fixture
def services(database: Database, clock: FrozenClock, tmp_path: Path) -> Services:
    return make_services(database, clock, tmp_path / "keys.json")


async def volunteer(session: AsyncSession, services: Services, languages: str, *, chat: int = 0) -> User:
    user = await make_user(session, services, languages=languages, phone="+12125550100")
    user.phone_verified_at = services.clock.now()
    # On call all week, every day from midnight for 24 hours.
    await replace_shifts(
        session, services.clock, user, [WeeklyShift(d, 0, 1440) for d in range(7)], actor=SETUP
    )
    await set_availability(
        session,
        services.clock,
        user,
        state=PresenceState.available,
        voice_capacity=1,
        chat_capacity=chat,
        actor=SETUP,
    )
    services.clock.advance(1)  # distinct idle-since times: earlier volunteers have waited longer
    return user


async def offer_of(session: AsyncSession, task: Task) -> Offer | None:
    return await session.scalar(
        select(Offer).where(Offer.task_id == task.id, Offer.state == OfferState.pending)
    )


async def test_language_match_longest_idle_first(services: Services) -> None:
    async with services.database.sessionmaker() as session, session.begin():
        english = await volunteer(session, services, "en")
        first_spanish = await volunteer(session, services, "es,en")
        await volunteer(session, services, "es")
        task = await service.create_task(session, services.clock, TIMES, channel="voice", language="es")
        offer = await service.route(session, services.clock, TIMES, task)
        assert offer is not None and offer.volunteer_id == first_spanish.id != english.id
        assert task.state == TaskState.offered
        assert offer.expires_at - offer.created_at == timedelta(seconds=28)


async def test_emergency_overtakes_an_earlier_call(services: Services) -> None:
    async with services.database.sessionmaker() as session, session.begin():
        early = await service.create_task(session, services.clock, TIMES, channel="voice", language="es")
        services.clock.advance(30)
        urgent = await service.create_task(
            session, services.clock, TIMES, channel="voice", language="es", emergency=True
        )
        assert await service.queue_position(session, urgent) == 1
        assert await service.queue_position(session, early) == 2
        await volunteer(session, services, "es")
        offer = await service.next_task_for(session, services.clock, TIMES, "voice")
        assert offer is not None and offer.task_id == urgent.id


async def test_decline_goes_to_the_next_volunteer_and_never_back(services: Services) -> None:
    async with services.database.sessionmaker() as session, session.begin():
        first = await volunteer(session, services, "es")
        second = await volunteer(session, services, "es")
        task = await service.create_task(session, services.clock, TIMES, channel="voice", language="es")
        offer = await service.route(session, services.clock, TIMES, task)
        assert offer is not None and offer.volunteer_id == first.id
        nxt = await service.decline(session, services.clock, TIMES, offer)
        assert nxt is not None and nxt.volunteer_id == second.id
        last = await service.decline(session, services.clock, TIMES, nxt)
        assert last is None and task.state == TaskState.queued  # nobody left who has not declined
        assert await session.scalar(select(func.count()).select_from(Seat)) == 0


async def test_missed_offer_sets_away_schedules_a_notice_and_moves_on(services: Services) -> None:
    async with services.database.sessionmaker() as session, session.begin():
        sleepy = await volunteer(session, services, "es")
        awake = await volunteer(session, services, "es")
        task = await service.create_task(session, services.clock, TIMES, channel="voice", language="es")
        offer = await service.route(session, services.clock, TIMES, task)
        assert offer is not None and offer.volunteer_id == sleepy.id
        await service.offer_rang(session, services.clock, TIMES, offer)  # the dial job rang them
        services.clock.advance(29)
        assert await service.accept(session, services.clock, offer) is None  # too late
        nxt = await service.expire(session, services.clock, TIMES, offer)
        assert nxt is not None and nxt.volunteer_id == awake.id
        kinds = set(await session.scalars(select(Job.kind)))
        assert {"routing.offer_timeout", "routing.missed_offer_notice", "routing.escalate"} <= kinds
        accepted = await service.accept(session, services.clock, nxt)
        assert (
            accepted is not None
            and accepted.state == TaskState.assigned
            and accepted.assigned_to_id == awake.id
        )
        # The sleepy volunteer is away now and gets nothing until the away period ends.
        second = await service.create_task(session, services.clock, TIMES, channel="voice", language="es")
        assert await service.route(session, services.clock, TIMES, second) is None
        services.clock.advance(timedelta(minutes=5, seconds=1))
        later = await service.route(session, services.clock, TIMES, second)
        assert later is not None and later.volunteer_id == sleepy.id


async def test_an_offer_that_never_rang_moves_on_without_blaming_the_volunteer(services: Services) -> None:
    """Our own backlog (the dial job ran late or not at all) must not set a volunteer away; a ring
    that starts late gives the volunteer the offer's full length from the ring."""
    async with services.database.sessionmaker() as session, session.begin():
        late = await volunteer(session, services, "es")
        other = await volunteer(session, services, "es")
        task = await service.create_task(session, services.clock, TIMES, channel="voice", language="es")
        offer = await service.route(session, services.clock, TIMES, task)
        assert offer is not None and offer.volunteer_id == late.id
        services.clock.advance(20)
        await service.offer_rang(session, services.clock, TIMES, offer)  # rang 20 s late
        services.clock.advance(9)  # the original 28 s are over, the ring's are not
        assert await service.expire(session, services.clock, TIMES, offer) is None
        assert await service.accept(session, services.clock, offer) is not None
        # A second task whose offer never rings at all: it moves on, and nobody is set away.
        second = await service.create_task(session, services.clock, TIMES, channel="voice", language="es")
        unrung = await service.route(session, services.clock, TIMES, second)
        assert unrung is not None and unrung.volunteer_id == other.id
        services.clock.advance(29)
        await service.expire(session, services.clock, TIMES, unrung)
        kinds = list(await session.scalars(select(Job.kind)))
        assert "routing.missed_offer_notice" not in kinds
        presence = await on_call_now(session, services.clock)
        assert other.id in {c.user_id for c in presence}


async def test_voice_capacity_one_and_chat_capacity_three(services: Services) -> None:
    async with services.database.sessionmaker() as session, session.begin():
        only = await volunteer(session, services, "es", chat=3)
        calls = [
            await service.create_task(session, services.clock, TIMES, channel="voice", language="es")
            for _ in range(2)
        ]
        assert (await service.route(session, services.clock, TIMES, calls[0])) is not None
        assert (await service.route(session, services.clock, TIMES, calls[1])) is None  # voice seat taken
        chats = [
            await service.create_task(session, services.clock, TIMES, channel="chat", language="es")
            for _ in range(4)
        ]
        offers = [await service.route(session, services.clock, TIMES, t) for t in chats]
        assert [o is not None for o in offers] == [True, True, True, False]
        assert {o.volunteer_id for o in offers if o} == {only.id}


async def test_escalation_flags_an_interpreter_then_overflows(services: Services) -> None:
    async with services.database.sessionmaker() as session, session.begin():
        english = await volunteer(session, services, "en")
        task = await service.create_task(session, services.clock, TIMES, channel="voice", language="ht")
        assert await service.route(session, services.clock, TIMES, task) is None
        offer = await service.escalate(session, services.clock, TIMES, task, 1)
        assert offer is not None and offer.volunteer_id == english.id and task.interpreter_needed
        await service.decline(session, services.clock, TIMES, offer)
        assert await service.escalate(session, services.clock, TIMES, task, 2) is None
        assert task.escalation_step == 2 and await service.route(session, services.clock, TIMES, task) is None


async def test_finishing_withdraws_offers_and_frees_the_seat(services: Services) -> None:
    async with services.database.sessionmaker() as session, session.begin():
        await volunteer(session, services, "es")
        task = await service.create_task(session, services.clock, TIMES, channel="voice", language="es")
        offer = await service.route(session, services.clock, TIMES, task)
        await service.finish(session, services.clock, task, TaskState.abandoned)
        assert offer is not None
        await session.refresh(offer)
        assert offer.state == OfferState.withdrawn and task.state == TaskState.abandoned
        assert await session.scalar(select(func.count()).select_from(Seat)) == 0
