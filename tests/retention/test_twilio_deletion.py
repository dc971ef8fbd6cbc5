"""Deletion at Twilio through the fake: call records go once the call has ended, 20009 ("not
complete yet") and 429 are retried, and a restart between scheduling and deleting loses nothing
(the pending deletion is a row and a durable job). `hotline retention twilio-report` says what is
still there and why."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import select

from app.clock import SystemClock
from app.db.engine import Database
from app.main import create_app
from app.reports import service as reports
from app.reports.models import TwilioCleanup
from app.retention.service import twilio_report
from telephony.fake import CallSimulator, FakeTwilio, Party
from telephony.fake.store import Fault
from tests.support.voice import HOTLINE, PUBLIC_URL, on_call_volunteer


@pytest.fixture
def live_overrides() -> dict[str, Any]:
    return {"delete_calls_at_twilio": True}


async def until(predicate: Any, timeout: float = 30.0) -> bool:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        if await predicate():
            return True
        await asyncio.sleep(0.05)
    return False


async def cleanups(app: FastAPI) -> list[TwilioCleanup]:
    async with app.state.database.sessionmaker() as session:
        return list(await session.scalars(select(TwilioCleanup)))


async def test_call_records_are_deleted_once_ended_despite_20009_and_429(
    live_app: FastAPI, fake: FakeTwilio
) -> None:
    await on_call_volunteer(live_app, "+12125550191", "en")
    fake.faults.inject("calls.delete", Fault.not_complete(), times=2)
    fake.faults.inject("calls.delete", Fault.rate_limited(), times=1)
    async with CallSimulator(fake, app=live_app, time_scale=0.02) as sim:
        sim.add_party("+12125550191", Party(answer_after=1, digits=("1",), talk_seconds=5, hold_patience=600))
        call = await sim.call(
            "+12025550192", HOTLINE, Party(digits=("1", None), talk_seconds=5, hold_patience=600), timeout=60
        )
        await sim.wait_idle(10)

    async def all_done() -> bool:
        rows = await cleanups(live_app)
        return len(rows) >= 2 and all(r.state == "done" for r in rows)

    assert await until(all_done), [(r.kind, r.state) for r in await cleanups(live_app)]
    assert call.sid not in fake.store.calls  # the caller's record
    assert not [c for c in fake.store.calls.values() if c.to == "+12125550191"]  # the volunteer's leg
    assert fake.faults.pending("calls.delete") == 0  # every injected refusal was met, and retried
    async with live_app.state.database.sessionmaker() as session:
        assert await twilio_report(session, live_app.state.settings) == []


@pytest.fixture
async def stopped_then_started(
    fake: FakeTwilio, make_settings: Any, database: Database
) -> AsyncIterator[tuple[FastAPI, Any]]:
    settings = make_settings(
        public_url=PUBLIC_URL,
        twilio_account_sid=fake.account_sid,
        twilio_auth_token=fake.auth_token,
        twilio_api_url=fake.base_url,
        twilio_number=HOTLINE,
        jobs_enabled=True,
        jobs_poll_seconds=0.05,
        delete_calls_at_twilio=True,
    )

    def build(run_jobs: bool) -> FastAPI:
        return create_app(settings, clock=SystemClock(), database=database, run_jobs=run_jobs)

    yield build(False), build


async def test_a_restart_loses_no_pending_deletion(fake: FakeTwilio, stopped_then_started: Any) -> None:
    first, build = stopped_then_started
    record = fake.store.create_call(
        to="+12025550193", from_=HOTLINE, direction="outbound-api", twiml="<Response><Hangup/></Response>"
    )
    fake.store.set_call_status(record.sid, "completed")
    # The first process schedules the deletion and stops before any job runs (a crash, a deploy).
    async with first.router.lifespan_context(first):
        async with first.state.database.sessionmaker() as session:
            await reports.delete_at_twilio(session, first.state, "call", record.sid)
            await session.commit()
        async with first.state.database.sessionmaker() as session:
            rows = await twilio_report(session, first.state.settings)
        assert rows == [("calls", 1, "deletion queued (retried while Twilio refuses)")]
    assert record.sid in fake.store.calls
    second = build(True)
    async with second.router.lifespan_context(second):
        assert await until(lambda: _all_done(second)), "the pending deletion was lost"
    assert record.sid not in fake.store.calls


async def _all_done(app: FastAPI) -> bool:
    rows = await cleanups(app)
    return bool(rows) and all(r.state == "done" for r in rows)
