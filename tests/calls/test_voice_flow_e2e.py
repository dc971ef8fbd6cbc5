"""A whole call through the fake Twilio: signed webhooks, TwiML followed like Twilio, REST calls
from the jobs runner, a volunteer who presses 1, and the caller bridged in the task's conference."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import select

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
