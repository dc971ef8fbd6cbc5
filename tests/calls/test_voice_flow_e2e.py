"""A whole call through the fake Twilio: signed webhooks, TwiML followed like Twilio, REST calls
from the jobs runner, a volunteer who presses 1, and the caller bridged in the task's conference."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import select

from app.accounts.models import User
from app.routing.models import TaskState
from telephony.fake import CallSimulator, FakeTwilio, Party
from tests.support.voice import HOTLINE, offers, on_call_volunteer, settled_task

CALLER = "+12025550147"


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
        call = await sim.call(CALLER, HOTLINE, Party(digits=("1", None), hang_up_after=70), timeout=60)
    assert any("line" in line.lower() or "queue" in line.lower() for line in call.said)
    assert (await settled_task(live_app, TaskState.abandoned)).state == TaskState.abandoned


async def test_a_volunteer_whose_answer_arrives_after_the_caller_left_is_hung_up(
    live_app: FastAPI, fake: FakeTwilio
) -> None:
    """The race the 200-call surge found: the volunteer presses 1, the acceptance commits, the
    caller is dequeued into the conference and hangs up there, and only then does Twilio get the
    volunteer's answer and join them to a fresh, empty conference. They must not wait there."""
    import asyncio

    volunteer = "+12125550166"
    await on_call_volunteer(live_app, volunteer, "en")

    def caller_done() -> bool:
        return any(c.from_ == CALLER and c.status == "completed" for c in fake.store.calls.values())

    async def late_answers(scope: Any, receive: Any, send: Any) -> None:
        # The volunteer's answer to pressing 1 is held back until the caller's call is over.
        async def hold_back(message: Any) -> None:
            if (
                scope.get("path") == "/twilio/voice/whisper-answer"
                and message["type"] == "http.response.start"
            ):
                for _ in range(400):
                    if caller_done():
                        break
                    await asyncio.sleep(0.05)
            await send(message)

        await live_app(scope, receive, hold_back)

    async with CallSimulator(fake, app=late_answers, time_scale=0.02) as sim:
        sim.add_party(volunteer, Party(answer_after=1, digits=("1",), talk_seconds=5, hold_patience=3000))
        await sim.call(
            CALLER, HOTLINE, Party(digits=("1", None), talk_seconds=5, hold_patience=5), timeout=60
        )
        await sim.wait_idle(20)  # without the fix the volunteer waits alone for 60 s
    assert caller_done()
    legs = [c for c in fake.store.calls.values() if c.to == volunteer]
    assert len(legs) == 1 and legs[0].status == "completed"
    assert (await settled_task(live_app, TaskState.completed)).state == TaskState.completed


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


async def test_an_emergency_overtakes_an_earlier_caller(live_app: FastAPI, fake: FakeTwilio) -> None:
    """Caller A queues first; caller B presses 9 (someone detained now). When a volunteer comes on,
    B is offered first, and A hears their position go from 1 to 2."""
    import asyncio

    from app.routing.models import Task
    from app.routing.service import RoutingTimes, offer_waiting_work
    from app.volunteers.models import PresenceState
    from app.volunteers.service import WeeklyShift, replace_shifts, set_availability
    from tests.support.factories import SETUP, make_user
    from tests.support.voice import services_of

    volunteer_phone = "+12125550177"
    async with live_app.state.database.sessionmaker() as session, session.begin():
        user = await make_user(session, services_of(live_app), languages="en", phone=volunteer_phone)
        user.phone_verified_at = live_app.state.clock.now()
        await replace_shifts(
            session, live_app.state.clock, user, [WeeklyShift(d, 0, 1440) for d in range(7)], actor=SETUP
        )
        user_id = user.id

    async def queued() -> list[Task]:
        async with live_app.state.database.sessionmaker() as session:
            return list(await session.scalars(select(Task).order_by(Task.enqueued_at)))

    async def until_queued(count: int) -> None:
        for _ in range(200):
            if len(await queued()) >= count:
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"{count} calls never queued")

    async with CallSimulator(fake, app=live_app, time_scale=0.02) as sim:
        sim.add_party(volunteer_phone, Party(answer_after=1, digits=("1", "1"), talk_seconds=5))
        first = asyncio.ensure_future(
            sim.call(
                CALLER, HOTLINE, Party(digits=("1", None), talk_seconds=5, hold_patience=600), timeout=60
            )
        )
        await until_queued(1)
        await asyncio.sleep(0.5)  # A hears "number 1" at least once
        second = asyncio.ensure_future(
            sim.call(
                "+12025550148",
                HOTLINE,
                Party(digits=("1", "9"), talk_seconds=5, hold_patience=600),
                timeout=60,
            )
        )
        await until_queued(2)
        await asyncio.sleep(0.5)  # A hears "number 2"
        async with live_app.state.database.sessionmaker() as session, session.begin():
            volunteer = await session.get(User, user_id)
            assert volunteer is not None
            await set_availability(
                session, live_app.state.clock, volunteer, state=PresenceState.available, actor=SETUP
            )
            await offer_waiting_work(
                session, live_app.state.clock, RoutingTimes.from_settings(live_app.state.settings)
            )
        call_a, call_b = await asyncio.gather(first, second)
    tasks = await queued()
    normal, urgent = tasks
    assert urgent.emergency and not normal.emergency
    assert urgent.assigned_at is not None and normal.assigned_at is not None
    assert urgent.assigned_at < normal.assigned_at, "the emergency was not taken first"
    heard_a = " ".join(call_a.said)
    assert "number 1 in line" in heard_a and "number 2 in line" in heard_a
    assert "number 1 in line" in " ".join(call_b.said)
