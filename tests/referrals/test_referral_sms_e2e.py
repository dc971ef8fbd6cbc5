"""A referral texted through the running service: the jobs runner sends it to the fake Twilio, the
simulated phone receives it, and Twilio's (fake's) delivery callbacks update the case's referral."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import select

from app.accounts.models import User
from app.audit.service import Actor
from app.cases.models import Case, Referral
from app.clock import SystemClock
from app.db.engine import Database
from app.main import create_app
from app.publicid import new_public_id
from app.referrals import service
from app.referrals.models import Organisation
from telephony.fake import CallSimulator, FakeTwilio, NumberConfig
from tests.referrals.support import GOOD_ORGANISATION, case_for
from tests.support.voice import HOTLINE, PUBLIC_URL, on_call_volunteer

CALLER = "+12025550177"
ADMIN = Actor("U-TEST-ADMN", ("admin",))
VOLUNTEER = Actor("U-TEST-VOLN", ("volunteer",))


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
    app = create_app(settings, clock=SystemClock(), database=database, run_jobs=True)
    async with app.router.lifespan_context(app):
        yield app


async def status_of(app: FastAPI, public_id: str) -> str | None:
    async with app.state.database.sessionmaker() as session:
        return (
            await session.scalars(select(Referral.sms_status).where(Referral.public_id == public_id))
        ).one()


async def test_the_caller_receives_the_public_details_and_delivery_is_recorded(
    live_app: FastAPI, fake: FakeTwilio
) -> None:
    app = live_app
    volunteer = await on_call_volunteer(app, "+12125550135", "es,en")
    case_id = await case_for(app, volunteer, phone=CALLER, fields={"caller_name": "Rosa Private"})
    async with app.state.database.sessionmaker() as session, session.begin():
        user = (await session.scalars(select(User).where(User.public_id == volunteer))).one()
        values = GOOD_ORGANISATION | {"opening_hours": [], "open_24_7": True}
        organisation = await service.create(session, app.state.clock, values, actor=ADMIN)
        await service.verify(session, app.state.clock, organisation, user, actor=ADMIN)
        case = (await session.scalars(select(Case).where(Case.public_id == case_id))).one()
        referral = Referral(
            public_id=new_public_id("RF"),
            case_id=case.id,
            organisation_id=organisation.id,
            created_by_id=user.id,
            created_at=app.state.clock.now(),
        )
        session.add(referral)
        await session.flush()
        row = await session.get(Organisation, organisation.id)
        assert row is not None
        await service.request_sms(
            session,
            app.state.clock,
            case=case,
            referral=referral,
            organisation=row,
            requested_by=user,
            actor=VOLUNTEER,
        )
    async with CallSimulator(fake, app=app, time_scale=0.02) as sim:
        deadline = asyncio.get_running_loop().time() + 10
        while await status_of(app, referral.public_id) != "delivered":
            assert asyncio.get_running_loop().time() < deadline, "the referral text was not delivered"
            await asyncio.sleep(0.05)
        await sim.wait_idle(5)
    assert sim.inbox(CALLER) == [
        "Referral from the hotline: Brooklyn Defenders Test\n"
        "Phone: +17185550100\nWeb: https://example.org/intake\nHours: 24/7"
    ]
    assert all("Rosa" not in m.body and case_id not in m.body for m in fake.store.messages.values())
