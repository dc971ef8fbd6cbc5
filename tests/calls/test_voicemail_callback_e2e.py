"""Nobody can answer: the caller chooses to leave a message; the audio is fetched, sealed, stored
and only then deleted at Twilio; a callback exactly one volunteer can claim rings that volunteer,
then the caller, from the hotline's number — and a machine is hung up on when a voicemail is not
known to be safe. All through the fake Twilio, on both databases."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import select

from app.accounts.models import User
from app.callers.models import Caller
from app.calls import callbacks
from app.calls.models import Callback, CallbackState, Voicemail
from app.errors import Conflict
from app.routing.models import TaskState
from telephony.fake import CallSimulator, FakeTwilio, Party
from tests.support.voice import HOTLINE, on_call_volunteer, settled_task

CALLER = "+12025550163"
AUDIO = b"RIFF\x24\x00\x00\x00WAVEfmt voicemail-audio-canary"
FIRST, SECOND = "+12125550171", "+12125550172"


@pytest.fixture
def live_overrides() -> dict[str, Any]:
    # The message is offered at once; nobody is on call, so the caller would wait a long time.
    return {"voicemail_offer_seconds": 0, "max_queue_seconds": 600}


async def until(predicate: Any, timeout: float = 10.0) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await predicate()
        if value or asyncio.get_running_loop().time() > deadline:
            return value
        await asyncio.sleep(0.1)


async def leave_message(app: FastAPI, fake: FakeTwilio) -> Any:
    """English (1), not an emergency (silence), then 1 at the voicemail offer, then the message."""
    async with CallSimulator(fake, app=app, time_scale=0.02) as sim:
        call = await sim.call(
            CALLER,
            HOTLINE,
            Party(digits=("1", None, "1"), record_seconds=12, recording_audio=AUDIO, hold_patience=600),
            timeout=60,
        )
        await sim.wait_idle(20)
    return call


async def stored_voicemail(app: FastAPI) -> Voicemail | None:
    async with app.state.database.sessionmaker() as session:
        row = await session.scalar(select(Voicemail))
        return row if row is not None and row.deleted_at_twilio is not None else None


async def test_a_message_is_stored_sealed_then_deleted_at_twilio(live_app: FastAPI, fake: FakeTwilio) -> None:
    call = await leave_message(live_app, fake)
    heard = " ".join(call.said).lower()
    assert "press 1" in heard and "after the tone" in heard and "goodbye" in heard
    assert fake.events.of("recording.")  # Twilio made a recording…
    voicemail = await until(lambda: stored_voicemail(live_app))
    assert voicemail is not None, "the voicemail was not stored and deleted at Twilio"
    assert voicemail.state == "stored" and voicemail.stored_at <= voicemail.deleted_at_twilio
    assert not fake.store.recordings, "…and it is gone from Twilio once our sealed copy is stored"
    async with live_app.state.database.sessionmaker() as session:
        row = await session.get(Voicemail, voicemail.id)
        assert row is not None
        # The test opens the stored ciphertext directly (staff listen through the audited broker).
        opened = live_app.state.sealer.open(
            (await live_app.state.sealer.live_keys(session, {row.audio.key_id}))[row.audio.key_id],
            row,
            "audio",
        )
        assert base64.b64decode(opened) == AUDIO
        callback = await session.scalar(select(Callback))
        assert callback is not None and callback.state == CallbackState.open
        assert callback.voicemail_id == row.id
    assert (await settled_task(live_app, TaskState.overflowed)).state == TaskState.overflowed


async def test_two_volunteers_race_to_claim_one_wins(live_app: FastAPI, fake: FakeTwilio) -> None:
    await leave_message(live_app, fake)
    first = await on_call_volunteer(live_app, FIRST, "en")
    second = await on_call_volunteer(live_app, SECOND, "en")

    async def claim(public_id: str) -> str:
        async with live_app.state.database.sessionmaker() as session:
            try:
                async with session.begin():
                    volunteer = (await session.scalars(select(User).where(User.public_id == public_id))).one()
                    callback = (await session.scalars(select(Callback))).one()
                    await callbacks.claim(session, live_app.state.clock, callback, volunteer)
                return "won"
            except Conflict as exc:
                return exc.code

    results = sorted(await asyncio.gather(claim(first), claim(second)))
    assert results == ["already_claimed", "won"]


@pytest.mark.parametrize(
    ("answered_by", "safe_to_voicemail", "outcome", "state"),
    [
        ("human", None, "answered", CallbackState.completed),
        ("machine", None, "machine", CallbackState.unreached),
        ("machine", True, "answered", CallbackState.completed),
    ],
)
async def test_a_callback_rings_the_volunteer_then_the_caller(
    live_app: FastAPI,
    fake: FakeTwilio,
    answered_by: str,
    safe_to_voicemail: bool | None,
    outcome: str,
    state: CallbackState,
) -> None:
    await leave_message(live_app, fake)
    volunteer = await on_call_volunteer(live_app, FIRST, "es,en")
    async with live_app.state.database.sessionmaker() as session, session.begin():
        caller = (await session.scalars(select(Caller))).one()
        caller.safe_to_voicemail = safe_to_voicemail
    async with CallSimulator(fake, app=live_app, time_scale=0.02) as sim:
        sim.add_party(FIRST, Party(answer_after=1, digits=("1",), talk_seconds=5))
        sim.add_party(CALLER, Party(answer=answered_by, answer_after=2, talk_seconds=5))  # type: ignore[arg-type]
        async with live_app.state.database.sessionmaker() as session, session.begin():
            user = (await session.scalars(select(User).where(User.public_id == volunteer))).one()
            callback = (await session.scalars(select(Callback))).one()
            await callbacks.claim(session, live_app.state.clock, callback, user)

        async def ended() -> Callback | None:
            async with live_app.state.database.sessionmaker() as session:
                row = (await session.scalars(select(Callback))).one()
                return row if row.state != CallbackState.claimed else None

        finished = await until(ended, timeout=20)
        await sim.wait_idle(20)
    assert finished is not None, "the callback never finished"
    assert (finished.state, finished.outcome) == (state, outcome)
    # The volunteer's phone rang first, then the caller's — both from the hotline's number.
    legs = sorted(
        (c for c in fake.store.calls.values() if c.to in (FIRST, CALLER) and c.direction != "inbound"),
        key=lambda c: c.date_created or 0,
    )
    assert [c.to for c in legs] == [FIRST, CALLER]
    assert all(c.from_ == HOTLINE for c in legs)
    bridged = bool(fake.events.of("bridge"))
    assert bridged == (outcome == "answered")


async def test_voicemail_and_callback_leave_no_plaintext(
    live_app: FastAPI, fake: FakeTwilio, captured_logs: Any
) -> None:
    """Canaries in the caller's number, the volunteer's number and the message audio: none of
    them in the database file, the logs, or any TwiML we answered (the callback's <Dial> to the
    caller excepted — it must name the number — and it is stored sealed)."""
    from tests.support.canary import CanaryScan

    scan = CanaryScan(live_app.state.database, captured_logs)
    caller, volunteer_phone = scan.canaries.phone(0), scan.canaries.phone(1)
    audio = b"RIFF....WAVEdata " + scan.canaries.note.encode()
    answered: list[tuple[str, bytes]] = []

    async def recording_app(scope: Any, receive: Any, send: Any) -> None:
        async def capture(message: Any) -> None:
            if message["type"] == "http.response.body":
                answered.append((scope["path"], message.get("body", b"")))
            await send(message)

        await live_app(scope, receive, capture)

    async with CallSimulator(fake, app=recording_app, time_scale=0.02) as sim:
        await sim.call(
            caller,
            HOTLINE,
            Party(digits=("1", None, "1"), record_seconds=5, recording_audio=audio, hold_patience=600),
            timeout=60,
        )
        await sim.wait_idle(20)
    assert await until(lambda: stored_voicemail(live_app)) is not None
    volunteer = await on_call_volunteer(live_app, volunteer_phone, "en")
    async with CallSimulator(fake, app=recording_app, time_scale=0.02) as sim:
        sim.add_party(volunteer_phone, Party(answer_after=1, digits=("1",), talk_seconds=3))
        sim.add_party(caller, Party(answer_after=1, talk_seconds=3))
        async with live_app.state.database.sessionmaker() as session, session.begin():
            user = (await session.scalars(select(User).where(User.public_id == volunteer))).one()
            callback = (await session.scalars(select(Callback))).one()
            await callbacks.claim(session, live_app.state.clock, callback, user)

        async def done() -> bool:
            async with live_app.state.database.sessionmaker() as session:
                return (await session.scalars(select(Callback))).one().state == CallbackState.completed

        assert await until(done, timeout=20)
        await sim.wait_idle(20)
    dials = [body for path, body in answered if path == "/twilio/voice/callback-answer"]
    assert len(dials) == 1 and caller.encode() in dials[0]  # the one document that must name it
    scan.responses = [body for path, body in answered if path != "/twilio/voice/callback-answer"]
    assert len(scan.responses) >= 10
    assert await scan.hits() == []
