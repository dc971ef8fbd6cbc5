"""The safety net for lost status callbacks: a voice contact still open at our end whose call Twilio
reports as over is ended by the periodic reconcile job, freeing the volunteer's seat."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from app.calls import flow
from app.calls.models import Call, daily_key_subject
from app.clock import FrozenClock
from app.contacts.service import sid_hash
from app.db.engine import Database
from app.jobs.runner import JobRunner, registry
from app.jobs.service import enqueue
from app.main import create_app
from app.routing import service as routing
from app.routing.models import Offer, Seat, Task, TaskState
from app.volunteers.models import PresenceState
from app.volunteers.service import WeeklyShift, replace_shifts, set_availability
from telephony.fake import FakeTwilio
from tests.support.factories import SETUP, Services, make_user

HOTLINE = "+12125550199"


@pytest.fixture
def fake() -> Iterator[FakeTwilio]:
    with FakeTwilio() as running:
        yield running


@pytest.mark.parametrize("twilio_status", ["completed", "in-progress"])
async def test_a_lost_final_status_callback_is_reconciled(
    fake: FakeTwilio, make_settings: Any, clock: FrozenClock, database: Database, twilio_status: str
) -> None:
    settings = make_settings(
        twilio_account_sid=fake.account_sid,
        twilio_auth_token=fake.auth_token,
        twilio_api_url=fake.base_url,
        twilio_number=HOTLINE,
    )
    app = create_app(settings, clock=clock, database=database, run_jobs=False)
    async with app.router.lifespan_context(app):
        state = app.state
        services = Services(database, clock, state.keys.material, state.keys, state.sealer, state.broker)
        # A caller's call at Twilio, in the state Twilio would report.
        record = fake.store.create_call(
            to=HOTLINE, from_="+12025550177", direction="inbound", status=twilio_status
        )
        async with database.sessionmaker() as session, session.begin():
            volunteer = await make_user(session, services, languages="en", phone="+12125550188")
            volunteer.phone_verified_at = clock.now()
            await replace_shifts(
                session, clock, volunteer, [WeeklyShift(d, 0, 1440) for d in range(7)], actor=SETUP
            )
            await set_availability(session, clock, volunteer, state=PresenceState.available, actor=SETUP)
        async with database.sessionmaker() as session:
            call = Call(
                call_sid_hash=sid_hash(state.keys, record.sid),
                key_subject=daily_key_subject("calls", clock.now().date()),
                created_at=clock.now(),
                updated_at=clock.now(),
            )
            await state.sealer.seal(session, call, "from_number", "+12025550177")
            session.add(call)
            await session.commit()
            call = (await session.scalars(select(Call))).one()
            task = await flow.start_contact(
                app,
                session,
                call,
                language="en",
                emergency=False,
                call_sid=record.sid,
                from_number="+12025550177",
            )
            offer = (await session.scalars(select(Offer))).one()
            assert await routing.accept(session, clock, offer) is not None
            call.state = "connected"
            await session.commit()
        # The caller hung up, but that status callback never reached us. Later, the reconcile job:
        clock.advance(timedelta(minutes=3))
        runner = JobRunner(database, clock, registry=registry, services=state.services)
        async with database.sessionmaker() as session, session.begin():
            await enqueue(session, clock, "calls.reconcile", {})
        await runner.run_until_idle()
        async with database.sessionmaker() as session:
            task = (await session.scalars(select(Task))).one()
            seats = await session.scalar(select(func.count()).select_from(Seat))
        if twilio_status == "completed":
            assert task.state == TaskState.completed and seats == 0
        else:
            assert task.state == TaskState.assigned and seats == 1  # still talking: left alone
