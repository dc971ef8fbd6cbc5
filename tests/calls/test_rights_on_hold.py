"""Know-your-rights on a call (issue 9, part 2): a queued caller presses 3 and hears a reviewed text
in their language, inside Twilio's queue — no `<Leave/>`, no Enqueue action — keeps their place,
and is bridged to the next free volunteer. Callers who wait long enough hear the texts as hold
content; nothing unreviewed is ever played, and a text with a recording is played, not spoken."""

from __future__ import annotations

import asyncio

from fastapi import FastAPI
from sqlalchemy import select

from app.accounts.models import User
from app.rights.models import RightsTopic
from app.routing.models import TaskState
from app.routing.service import RoutingTimes, offer_waiting_work
from app.volunteers.models import PresenceState
from app.volunteers.service import WeeklyShift, replace_shifts, set_availability
from telephony.fake import CallSimulator, FakeTwilio, Party
from tests.chats.test_rights_by_sms import publish
from tests.support.factories import SETUP, make_user
from tests.support.voice import HOTLINE, services_of, settled_task

CALLER = "+12025550163"
VOLUNTEER = "+12125550188"
AT_THE_DOOR = "No abra la puerta. Pida ver una orden judicial firmada por un juez."
LAWYER = "Usted tiene derecho a hablar con un abogado antes de firmar cualquier documento."


async def off_duty_spanish_volunteer(app: FastAPI) -> str:
    async with app.state.database.sessionmaker() as session, session.begin():
        user = await make_user(session, services_of(app), languages="es", phone=VOLUNTEER)
        user.phone_verified_at = app.state.clock.now()
        await replace_shifts(
            session, app.state.clock, user, [WeeklyShift(d, 0, 1440) for d in range(7)], actor=SETUP
        )
        return user.public_id


async def goes_available(app: FastAPI, public_id: str) -> None:
    async with app.state.database.sessionmaker() as session, session.begin():
        user = await session.scalar(select(User).where(User.public_id == public_id))
        assert user is not None
        await set_availability(session, app.state.clock, user, state=PresenceState.available, actor=SETUP)
        await offer_waiting_work(session, app.state.clock, RoutingTimes.from_settings(app.state.settings))


async def test_a_spanish_caller_hears_their_rights_without_leaving_the_queue(
    live_app: FastAPI, fake: FakeTwilio
) -> None:
    await publish(live_app, RightsTopic.at_the_door, "es", "Si llegan a su puerta", AT_THE_DOOR)
    await publish(live_app, RightsTopic.right_to_lawyer, "es", "Su derecho a un abogado", LAWYER)
    await publish(
        live_app, RightsTopic.at_work, "en", "At work", "An English text a Spanish caller never hears."
    )
    volunteer = await off_duty_spanish_volunteer(live_app)

    async with CallSimulator(fake, app=live_app, time_scale=0.02) as sim:
        sim.add_party(VOLUNTEER, Party(answer_after=1, digits=("1",), talk_seconds=10, hold_patience=600))
        # Spanish (2), no emergency, then in the queue: 3 (a text), 3 again (the next topic).
        call = asyncio.ensure_future(
            sim.call(
                CALLER,
                HOTLINE,
                Party(digits=("2", None, "3", "3", None), talk_seconds=10, hold_patience=600),
                timeout=60,
            )
        )
        for _ in range(400):
            choices = [e for e in fake.events.of("gather.input") if e.data.get("digits") == "3"]
            if len(choices) >= 2 and len(fake.events.of("gather.timeout")) >= 2:
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the caller never got to press 3 twice")
        await asyncio.sleep(0.3)  # the second text, then back to the hold loop
        await goes_available(live_app, volunteer)
        heard = await call

    said = " ".join(heard.said)
    print("\n".join(str(h) for h in heard.transcript))
    assert AT_THE_DOOR in said and LAWYER in said
    assert "English text" not in said
    assert said.index(AT_THE_DOOR) < said.index(LAWYER)
    # Still in the queue all along: no <Leave/>, and the caller left Twilio's queue exactly once,
    # redirected by the REST call that took them to their volunteer (the Enqueue action was
    # requested only then, by Twilio, with QueueResult=redirected).
    caller_sid = heard.sid
    assert not [e for e in fake.events.of("verb", caller_sid) if e.data.get("verb") == "Leave"]
    assert [e.data["result"] for e in fake.events.of("queue.leave", caller_sid)] == ["redirected"]
    left = fake.events.of("queue.leave", caller_sid)[0].seq
    assert [e for e in fake.events.of("gather.input", caller_sid) if e.data.get("digits") == "3"]
    assert all(e.seq < left for e in fake.events.of("gather.input", caller_sid))
    # ...and their place: position announced after the texts, then bridged to the volunteer.
    after_texts = said[said.index(LAWYER) :]
    assert "lugar número 1" in after_texts
    assert fake.events.of("bridge", caller_sid)
    assert (await settled_task(live_app, TaskState.completed)).state == TaskState.completed


async def test_waiting_callers_hear_the_texts_as_hold_content(live_app: FastAPI, fake: FakeTwilio) -> None:
    recording = "https://media.example.org/rights/ht-at-the-door.mp3"
    await publish(live_app, RightsTopic.at_the_door, "es", "Si llegan a su puerta", AT_THE_DOOR)
    async with CallSimulator(fake, app=live_app, time_scale=0.02) as sim:
        heard = await sim.call(CALLER, HOTLINE, Party(digits=("2", None), hang_up_after=150), timeout=60)
    said = " ".join(heard.said)
    assert AT_THE_DOOR in said  # nobody pressed anything: the text came round as hold content
    assert "oprima 3" in said
    assert (await settled_task(live_app, TaskState.abandoned)).state == TaskState.abandoned

    # Haitian Creole has no Twilio voice: a reviewed text with a recording is played, not spoken.
    from app.audit.service import Actor
    from app.rights import service as rights

    async with live_app.state.database.sessionmaker() as session, session.begin():
        author = await make_user(session, services_of(live_app), roles="admin")
        reviewer = await make_user(session, services_of(live_app), roles="admin")
        text = await rights.add_version(
            session,
            live_app.state.clock,
            topic=RightsTopic.at_the_door,
            language="ht",
            title="Lakay ou",
            body="Pa louvri pòt la.",
            audio_url=recording,
            author=author,
            actor=Actor("U-TEST-ADMN", ("admin",)),
        )
        await rights.review(
            session, live_app.state.clock, text, reviewer, None, actor=Actor("U-TEST-ADMN", ("admin",))
        )
        texts = await rights.voice_texts(session, "ht")
        assert [rights.voice_prompt(t).audio_url for t in texts if rights.voice_prompt(t)] == [recording]
