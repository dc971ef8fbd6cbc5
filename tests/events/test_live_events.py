"""`GET /api/v1/events`: each staff member hears only their own events, only after the commit that
caused them, ids and states only; on PostgreSQL an event raised by one worker reaches another."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select, update

from app.accounts.models import StaffSession, User
from app.clock import FrozenClock
from app.db.engine import Database, create_database
from app.events import service as live
from app.events.hub import SUPERVISORS, LiveHub, listen_postgres, user_audience
from app.main import create_app
from app.routing import service as routing
from app.volunteers.models import PresenceState
from app.volunteers.service import WeeklyShift, replace_shifts, set_availability
from tests.support.factories import SETUP
from tests.support.staff import SignedInClient, sign_in

CONTENT_KEYS = {"body", "name", "number", "phone", "text", "caller_name"}


@pytest.fixture
async def live_app(make_settings: Any, clock: FrozenClock, database: Database) -> AsyncIterator[FastAPI]:
    # Streams last 5 s here: long enough to publish into them on a loaded machine (the tests wait
    # until every stream has subscribed first), then httpx returns the body.
    settings = make_settings(events_keepalive_seconds=0.1, events_max_seconds=5)
    application = create_app(settings, clock=clock, database=database, run_jobs=False)
    async with application.router.lifespan_context(application):
        yield application


def events_in(body: str) -> list[dict[str, Any]]:
    return [json.loads(line[6:]) for line in body.splitlines() if line.startswith("data: ")]


async def make_available_for_chat(app: FastAPI, public_id: str) -> None:
    async with app.state.database.sessionmaker() as session, session.begin():
        user = (await session.scalars(select(User).where(User.public_id == public_id))).one()
        await replace_shifts(
            session, app.state.clock, user, [WeeklyShift(d, 0, 1440) for d in range(7)], actor=SETUP
        )
        await set_availability(
            session,
            app.state.clock,
            user,
            state=PresenceState.available,
            voice_capacity=0,
            chat_capacity=2,
            actor=SETUP,
        )


async def stream_of(staff: SignedInClient) -> str:
    response = await staff.http.get("/api/v1/events")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["cache-control"] == "no-store"
    return response.text


async def test_an_offer_reaches_only_its_volunteer_and_supervisors_see_the_board(live_app: FastAPI) -> None:
    app = live_app
    chosen = await sign_in(app, roles="volunteer")
    other = await sign_in(app, roles="volunteer")
    supervisor = await sign_in(app, roles="supervisor")
    await make_available_for_chat(app, chosen.user_public_id)
    streams = [asyncio.create_task(stream_of(c)) for c in (chosen, other, supervisor)]
    await stream_open(app, streams=3)  # a fixed 0.3 s sleep raced a loaded machine
    times = routing.RoutingTimes()
    async with app.state.database.sessionmaker() as session, session.begin():
        task = await routing.create_task(
            session, app.state.clock, times, channel="chat", language="es", emergency=True
        )
        offer = await routing.route(session, app.state.clock, times, task)
        assert offer is not None
        offer_id, task_id = offer.public_id, task.public_id
    mine, others, board = [events_in(text) for text in await asyncio.gather(*streams)]
    assert mine[0] == {"type": "hello"}
    assert {"type": "offer", "id": offer_id, "state": "pending"} in mine
    assert [e for e in others if e["type"] != "hello"] == []
    assert {"type": "board", "task": task_id, "state": "offered"} in board
    assert all(e.get("type") != "offer" for e in board)  # supervisors do not get volunteers' offers
    for event in mine + others + board:
        assert not CONTENT_KEYS & set(event), event
    for staff in (chosen, other, supervisor):
        await staff.http.aclose()


async def test_nothing_is_delivered_before_commit_or_after_rollback(live_app: FastAPI) -> None:
    hub: LiveHub = live_app.state.database.hub
    with hub.subscribe(frozenset({user_audience("U-AAAA-AAAA")})) as subscription:
        async with live_app.state.database.sessionmaker() as session:
            await live.publish(session, user_audience("U-AAAA-AAAA"), "offer", id="OF-1111-1111")
            await asyncio.sleep(0.2)
            assert subscription.queue.empty()  # not before the commit
            await session.rollback()
            await live.publish(session, user_audience("U-AAAA-AAAA"), "offer", id="OF-2222-2222")
            await session.commit()
        delivered = await asyncio.wait_for(subscription.queue.get(), timeout=3)
        assert delivered == {"type": "offer", "id": "OF-2222-2222"}
        await asyncio.sleep(0.3)
        assert subscription.queue.empty()  # the rolled-back one never arrives


async def test_a_signed_out_session_ends_its_stream(live_app: FastAPI) -> None:
    staff = await sign_in(live_app, roles="volunteer")
    reading = asyncio.create_task(stream_of(staff))
    await stream_open(live_app)
    signed_out = await staff.http.post("/api/v1/auth/logout", headers=staff.headers())
    assert signed_out.status_code == 200
    events = events_in(await asyncio.wait_for(reading, timeout=5))
    assert events[-1] == {"type": "signed_out"}
    assert (await staff.http.get("/api/v1/events")).status_code == 401
    await staff.http.aclose()


async def test_an_event_raised_in_one_worker_reaches_another(backend: str, fresh_database_url: str) -> None:
    """Two engines with their own hubs stand for two worker processes (the browser tests use two
    real uvicorn processes)."""
    if backend != "postgresql":
        pytest.skip("LISTEN/NOTIFY across workers is PostgreSQL's; SQLite serves one process")
    raising, hearing = create_database(fresh_database_url), create_database(fresh_database_url)
    stop = asyncio.Event()
    listener = asyncio.create_task(listen_postgres(hearing.hub, hearing.listen_conninfo(), stop))
    try:
        await asyncio.wait_for(hearing.hub.listening.wait(), timeout=5)
        with hearing.hub.subscribe(frozenset({SUPERVISORS})) as subscription:
            async with raising.sessionmaker() as session:
                await live.board_changed(session, task="TK-1111-1111", state="queued")
                await asyncio.sleep(0.3)
                assert subscription.queue.empty()  # NOTIFY waits for COMMIT
                await session.commit()
            got = await asyncio.wait_for(subscription.queue.get(), timeout=2)
            assert got == {"type": "board", "task": "TK-1111-1111", "state": "queued"}
            assert raising.hub.subscribers == 0
    finally:
        stop.set()
        listener.cancel()
        await asyncio.gather(listener, return_exceptions=True)
        await raising.dispose()
        await hearing.dispose()


async def test_the_stream_needs_a_session(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/events")
    assert response.status_code == 401
    assert "text/event-stream" not in response.headers.get("content-type", "")


async def keep_publishing(app: FastAPI, audience: str, stop: asyncio.Event) -> int:
    """A busy board: an event for `audience` every 50 ms, each committed on its own."""
    sent = 0
    while not stop.is_set():
        async with app.state.database.sessionmaker() as session, session.begin():
            await live.publish(session, audience, "offer", id=f"OF-{sent:04d}-0000", state="pending")
        sent += 1
        await asyncio.sleep(0.05)
    return sent


@pytest.fixture
async def busy_app(make_settings: Any, clock: FrozenClock, database: Database) -> AsyncIterator[FastAPI]:
    # Keep-alive far longer than the gap between events: a stream never goes quiet here.
    settings = make_settings(events_keepalive_seconds=15, events_max_seconds=120)
    application = create_app(settings, clock=clock, database=database, run_jobs=False)
    async with application.router.lifespan_context(application):
        yield application


async def stream_open(app: FastAPI, timeout: float = 10.0, *, streams: int = 1) -> None:
    """Wait until `streams` streams have subscribed (a fixed sleep raced a slow start: a stream
    that opened after the sign-out was rightly refused with 401)."""
    hub: LiveHub = app.state.database.hub
    deadline = asyncio.get_running_loop().time() + timeout
    while hub.subscribers < streams:
        assert asyncio.get_running_loop().time() < deadline, "the stream never opened"
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.2)  # and has read a few of the events


async def ended_within(reading: asyncio.Task[str], seconds: float) -> list[dict[str, Any]]:
    events = events_in(await asyncio.wait_for(reading, timeout=seconds))
    assert events[-1] == {"type": "signed_out"}
    assert all(e["type"] != "session_ended" and "staff_session" not in e for e in events)  # internal only
    return events


@pytest.mark.parametrize("how", ["logout", "end_sessions"])
async def test_a_busy_stream_ends_at_once_on_sign_out(
    how: str, busy_app: FastAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The session-ended event ends the stream, not the periodic re-check (pushed out of reach)."""
    monkeypatch.setattr("app.events.router.RECHECK_SECONDS", 60.0)
    app = busy_app
    staff = await sign_in(app, roles="volunteer")
    admin = await sign_in(app, roles="admin")
    stop = asyncio.Event()
    publisher = asyncio.create_task(keep_publishing(app, user_audience(staff.user_public_id), stop))
    reading = asyncio.create_task(stream_of(staff))
    try:
        await stream_open(app)
        if how == "logout":
            ended = await staff.http.post("/api/v1/auth/logout", headers=staff.headers())
        else:
            ended = await admin.http.post(
                f"/api/v1/users/{staff.user_public_id}/end-sessions", headers=admin.headers()
            )
        assert ended.status_code == 200, ended.text
        events = await ended_within(reading, 5)
        assert sum(e["type"] == "offer" for e in events) >= 3  # it was busy until the end
    finally:
        stop.set()
        await publisher
        reading.cancel()
        await asyncio.gather(reading, return_exceptions=True)
        for client in (staff, admin):
            await client.http.aclose()


async def test_a_busy_stream_rechecks_its_session_every_few_seconds(busy_app: FastAPI) -> None:
    """A revocation whose event was missed (say, a listener reconnecting) still ends the stream."""
    app = busy_app
    staff = await sign_in(app, roles="volunteer")
    stop = asyncio.Event()
    publisher = asyncio.create_task(keep_publishing(app, user_audience(staff.user_public_id), stop))
    reading = asyncio.create_task(stream_of(staff))
    try:
        await stream_open(app)
        async with app.state.database.sessionmaker() as session, session.begin():
            user = (await session.scalars(select(User).where(User.public_id == staff.user_public_id))).one()
            await session.execute(
                update(StaffSession)
                .where(StaffSession.user_id == user.id)
                .values(revoked_at=app.state.clock.now())
            )
        await ended_within(reading, 2 + 4)  # RECHECK_SECONDS and some slack on a loaded machine
    finally:
        stop.set()
        await publisher
        reading.cancel()
        await asyncio.gather(reading, return_exceptions=True)
        await staff.http.aclose()


async def test_signing_out_on_one_worker_ends_the_stream_on_another(
    backend: str, busy_app: FastAPI, fresh_database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if backend != "postgresql":
        pytest.skip("LISTEN/NOTIFY across workers is PostgreSQL's; SQLite serves one process")
    monkeypatch.setattr("app.events.router.RECHECK_SECONDS", 60.0)
    holding = busy_app
    other_database = create_database(fresh_database_url)
    other = create_app(
        holding.state.settings, clock=holding.state.clock, database=other_database, run_jobs=False
    )
    staff = await sign_in(holding, roles="volunteer")
    stop = asyncio.Event()
    publisher = asyncio.create_task(keep_publishing(holding, user_audience(staff.user_public_id), stop))
    reading = asyncio.create_task(stream_of(staff))
    try:
        async with other.router.lifespan_context(other):
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app=other),
                base_url="https://hotline.test",
                cookies=staff.http.cookies,
            ) as elsewhere:
                await stream_open(holding)
                ended = await elsewhere.post("/api/v1/auth/logout", headers=staff.headers())
                assert ended.status_code == 200, ended.text
            await ended_within(reading, 5)
    finally:
        stop.set()
        await publisher
        reading.cancel()
        await asyncio.gather(reading, return_exceptions=True)
        await staff.http.aclose()
        await other_database.dispose()
