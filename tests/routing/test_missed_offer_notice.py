"""A missed offer, end to end: the offer times out on the jobs runner, the volunteer goes away, and
the real Twilio client texts them through the fake Twilio."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi import FastAPI

from app.clock import FrozenClock
from app.db.engine import Database
from app.jobs.runner import JobRunner, registry
from app.main import create_app
from app.routing import service
from app.routing.jobs import MISSED_OFFER_TEXT
from app.volunteers.models import PresenceState
from app.volunteers.service import WeeklyShift, presence_of, replace_shifts, set_availability
from telephony.fake import FakeTwilio
from tests.support.factories import SETUP, Services, make_user

HOTLINE = "+12125550199"
VOLUNTEER_PHONE = "+12125550123"


@pytest.fixture
def fake() -> Iterator[FakeTwilio]:
    with FakeTwilio() as running:
        yield running


async def test_missed_offer_texts_the_volunteer_through_twilio(
    fake: FakeTwilio, make_settings: Any, clock: FrozenClock, database: Database
) -> None:
    settings = make_settings(
        twilio_account_sid=fake.account_sid,
        twilio_auth_token=fake.auth_token,
        twilio_api_url=fake.base_url,
        twilio_number=HOTLINE,
    )
    app: FastAPI = create_app(settings, clock=clock, database=database, run_jobs=False)
    async with app.router.lifespan_context(app):
        services = Services(
            database, clock, app.state.keys.material, app.state.keys, app.state.sealer, app.state.broker
        )
        times = service.RoutingTimes()
        async with database.sessionmaker() as session, session.begin():
            user = await make_user(session, services, languages="es", phone=VOLUNTEER_PHONE)
            user.phone_verified_at = clock.now()
            await replace_shifts(
                session, clock, user, [WeeklyShift(d, 0, 1440) for d in range(7)], actor=SETUP
            )
            await set_availability(session, clock, user, state=PresenceState.available, actor=SETUP)
            task = await service.create_task(session, clock, times, channel="voice", language="es")
            assert await service.route(session, clock, times, task) is not None
        runner = JobRunner(database, clock, registry=registry, services=app.state.services)
        await runner.run_until_idle()  # the dial job rings the volunteer's phone (the fake's)…
        clock.advance(timedelta(seconds=29))
        await runner.run_until_idle()  # …and nobody answers within the offer's time
        async with database.sessionmaker() as session:
            presence = await presence_of(session, user, clock.now())
        assert presence.state == PresenceState.away
        sent = [m for m in fake.store.messages.values() if m.to == VOLUNTEER_PHONE]
        assert len(sent) == 1 and sent[0].body == MISSED_OFFER_TEXT and sent[0].from_ == HOTLINE
