"""A whole call through the fake Twilio: signed webhooks, TwiML followed like Twilio, REST calls
from the jobs runner, a volunteer who presses 1, and the caller bridged in the task's conference."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import select

from app.clock import SystemClock
from app.db.engine import Database
from app.main import create_app
from app.routing.models import Offer, Task, TaskState
from app.volunteers.models import PresenceState
from app.volunteers.service import WeeklyShift, replace_shifts, set_availability
from telephony.fake import CallSimulator, FakeTwilio, NumberConfig, Party
from tests.support.factories import SETUP, Services, make_user

HOTLINE = "+12125550199"
PUBLIC_URL = "https://hotline.test"
CALLER = "+12025550147"


@pytest.fixture
def fake() -> Iterator[FakeTwilio]:
    with FakeTwilio() as running:
        running.configure_number(NumberConfig.hotline(HOTLINE, PUBLIC_URL))
        yield running


@pytest.fixture
async def live_app(fake: FakeTwilio, make_settings: Any, database: Database) -> AsyncIterator[FastAPI]:
    settings = make_settings(
        public_url=PUBLIC_URL,
        twilio_account_sid=fake.account_sid,
        twilio_auth_token=fake.auth_token,
        twilio_api_url=fake.base_url,
        twilio_number=HOTLINE,
        jobs_enabled=True,
        jobs_poll_seconds=0.05,
    )
    # Real time: the simulator's calls ring and wait in (scaled) real time.
    app = create_app(settings, clock=SystemClock(), database=database, run_jobs=True)
    async with app.router.lifespan_context(app):
        yield app


async def settled_task(app: FastAPI, state: TaskState, timeout: float = 10.0) -> Task:
    """The single task once it reaches `state` (status callbacks may land just after the call)."""
    import asyncio

    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        async with app.state.database.sessionmaker() as session:
            task = (await session.scalars(select(Task))).one()
        if task.state == state or asyncio.get_running_loop().time() > deadline:
            return task
        await asyncio.sleep(0.1)


async def on_call_volunteer(app: FastAPI, phone: str, languages: str) -> str:
    services = Services(
        app.state.database,
        app.state.clock,
        app.state.keys.material,
        app.state.keys,
        app.state.sealer,
        app.state.broker,
    )
    async with app.state.database.sessionmaker() as session, session.begin():
        user = await make_user(session, services, languages=languages, phone=phone)
        user.phone_verified_at = datetime.now(UTC)
        await replace_shifts(
            session, app.state.clock, user, [WeeklyShift(d, 0, 1440) for d in range(7)], actor=SETUP
        )
        await set_availability(session, app.state.clock, user, state=PresenceState.available, actor=SETUP)
        return user.public_id


async def test_a_spanish_caller_reaches_a_spanish_speaking_volunteer(
    live_app: FastAPI, fake: FakeTwilio
) -> None:
    await on_call_volunteer(live_app, "+12125550111", "en")
    await on_call_volunteer(live_app, "+12125550122", "es,en")
    async with CallSimulator(fake, app=live_app, time_scale=0.02) as sim:
        sim.add_party(
            "+12125550122", Party(answer_after=2, digits=("1",), talk_seconds=20, hold_patience=600)
        )
        sim.add_party("+12125550111", Party(answer="no-answer"))
        call = await sim.call(
            CALLER, HOTLINE, Party(digits=("2", None), talk_seconds=20, hold_patience=600), timeout=60
        )
    said = call.said
    print("\n".join(str(h) for h in call.transcript))
    assert any("español" in line.lower() or "espanol" in line.lower() for line in said)
    volunteer_legs = [c for c in fake.store.calls.values() if c.to == "+12125550122"]
    assert len(volunteer_legs) == 1
    assert not [c for c in fake.store.calls.values() if c.to == "+12125550111"]
    assert fake.events.of("bridge"), "caller and volunteer never met"
    task = await settled_task(live_app, TaskState.completed)
    assert task.language == "es" and task.state == TaskState.completed
    assert [state for _, state in await offers(live_app)] == ["accepted"]


async def offers(app: FastAPI) -> list[tuple[str, str]]:
    """(volunteer public id, offer state) in offer order."""
    from app.accounts.models import User

    async with app.state.database.sessionmaker() as session:
        rows = await session.execute(
            select(User.public_id, Offer.state)
            .join(User, User.id == Offer.volunteer_id)
            .order_by(Offer.created_at)
        )
        return [(row[0], row[1]) for row in rows]


@pytest.mark.parametrize("first_answer", ["voicemail", "declines"])
async def test_a_volunteer_who_does_not_press_1_passes_the_call_on(
    live_app: FastAPI, fake: FakeTwilio, first_answer: str
) -> None:
    first = await on_call_volunteer(live_app, "+12125550133", "es")
    second = await on_call_volunteer(live_app, "+12125550144", "es")
    async with CallSimulator(fake, app=live_app, time_scale=0.02) as sim:
        # A voicemail box "answers" and presses nothing; a busy volunteer presses 2.
        digits: tuple[str | None, ...] = (None,) if first_answer == "voicemail" else ("2",)
        sim.add_party("+12125550133", Party(answer_after=1, digits=digits))
        sim.add_party(
            "+12125550144", Party(answer_after=1, digits=("1",), talk_seconds=10, hold_patience=600)
        )
        await sim.call(
            CALLER, HOTLINE, Party(digits=("2", None), talk_seconds=10, hold_patience=600), timeout=60
        )
    assert await offers(live_app) == [(first, "declined"), (second, "accepted")]
    assert fake.events.of("bridge")


async def test_a_caller_who_hangs_up_in_the_queue_is_abandoned(live_app: FastAPI, fake: FakeTwilio) -> None:
    async with CallSimulator(fake, app=live_app, time_scale=0.02) as sim:
        call = await sim.call(CALLER, HOTLINE, Party(digits=("1", None), hang_up_after=40), timeout=60)
    assert any("line" in line.lower() or "queue" in line.lower() for line in call.said)
    assert (await settled_task(live_app, TaskState.abandoned)).state == TaskState.abandoned


async def test_a_withheld_number_is_served_but_never_stored_as_a_caller(
    live_app: FastAPI, fake: FakeTwilio
) -> None:
    from app.callers.models import Caller

    await on_call_volunteer(live_app, "+12125550155", "en")
    async with CallSimulator(fake, app=live_app, time_scale=0.02) as sim:
        sim.add_party(
            "+12125550155", Party(answer_after=1, digits=("1",), talk_seconds=10, hold_patience=600)
        )
        await sim.call(
            "+266696687", HOTLINE, Party(digits=("1", None), talk_seconds=10, hold_patience=600), timeout=60
        )
    assert fake.events.of("bridge")
    async with live_app.state.database.sessionmaker() as session:
        assert list(await session.scalars(select(Caller))) == []
    assert (await settled_task(live_app, TaskState.completed)).state == TaskState.completed


async def test_a_whole_call_leaves_no_plaintext(
    live_app: FastAPI, fake: FakeTwilio, captured_logs: Any
) -> None:
    from tests.support.canary import CanaryScan

    scan = CanaryScan(live_app.state.database, captured_logs)
    caller, volunteer = scan.canaries.phone(0), scan.canaries.phone(1)
    await on_call_volunteer(live_app, volunteer, "en")
    answered: list[bytes] = []

    async def recording_app(scope: Any, receive: Any, send: Any) -> None:
        # Every TwiML document the app answers Twilio, captured on its way out.
        async def capture(message: Any) -> None:
            if message["type"] == "http.response.body":
                answered.append(message.get("body", b""))
            await send(message)

        await live_app(scope, receive, capture)

    async with CallSimulator(fake, app=recording_app, time_scale=0.02) as sim:
        sim.add_party(volunteer, Party(answer_after=1, digits=("1",), talk_seconds=5, hold_patience=600))
        await sim.call(
            caller, HOTLINE, Party(digits=("1", "9"), talk_seconds=5, hold_patience=600), timeout=60
        )
    await settled_task(live_app, TaskState.completed)
    assert fake.events.of("bridge") and len(answered) >= 8
    scan.responses = answered
    assert await scan.hits() == []
