"""A volunteer's phone is verified by a real (fake Twilio) call: the jobs runner rings the number on
file from the hotline, the answered call speaks the code, and typing it verifies the phone. The code
never appears in a URL, a job payload or the database."""

from __future__ import annotations

import asyncio
import re

from fastapi import FastAPI
from sqlalchemy import select

from app.accounts.models import User
from app.jobs.models import Job
from app.volunteers.service import (
    VerificationOutcome,
    confirm_phone_verification,
    start_phone_verification,
)
from telephony.fake import CallSimulator, FakeTwilio, Party
from tests.support.factories import SETUP, make_user
from tests.support.voice import HOTLINE, services_of

PHONE = "+12125550166"


async def test_the_verification_call_speaks_a_code_that_verifies_the_phone(
    live_app: FastAPI, fake: FakeTwilio
) -> None:
    state = live_app.state
    hasher = state.keys.material.keyed_hasher()
    async with state.database.sessionmaker() as session, session.begin():
        user = await make_user(session, services_of(live_app), languages="en", phone=PHONE)
        await start_phone_verification(session, state.clock, hasher, user, actor=SETUP)
        user_id = user.id
    async with CallSimulator(fake, app=live_app, time_scale=0.02) as sim:
        sim.add_party(PHONE, Party(answer_after=1))
        leg = await sim.wait_for_leg(PHONE, timeout=10)
        for _ in range(100):
            if leg.final_status:
                break
            await asyncio.sleep(0.1)
        await sim.wait_idle(10)
        assert len(sim.legs(PHONE)) == 1
    heard = " ".join(str(h) for h in leg.transcript)
    assert fake.store.calls[leg.sid].from_ == HOTLINE
    match = re.search(r"code is ((?:\d, ){5}\d)", heard)
    assert match, heard
    code = match.group(1).replace(", ", "")
    for record in fake.store.calls.values():
        assert code not in (record.url or "")
    async with state.database.sessionmaker() as session:
        payloads = [str(job.payload) for job in await session.scalars(select(Job))]
        assert not any(code in payload for payload in payloads)
    async with state.database.sessionmaker() as session, session.begin():
        user = (await session.scalars(select(User).where(User.id == user_id))).one()
        wrong = "000000" if code != "000000" else "111111"
        assert await confirm_phone_verification(session, state.clock, hasher, user, wrong, actor=SETUP) == (
            VerificationOutcome.wrong_code
        )
        outcome = await confirm_phone_verification(session, state.clock, hasher, user, code, actor=SETUP)
        assert outcome == VerificationOutcome.verified and user.phone_verified_at is not None
