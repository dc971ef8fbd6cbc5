"""Idle sign-out: a volunteer holding a call or chat is not idle; live refreshes are not activity."""

from __future__ import annotations

from datetime import timedelta

from fastapi import FastAPI

from app.clock import FrozenClock
from app.routing import service as routing
from app.routing.models import TaskState
from tests.support.staff import sign_in, user_row


async def test_holding_a_contact_suspends_the_idle_timer(app: FastAPI) -> None:
    on_a_call = await sign_in(app, roles="volunteer")
    idle = await sign_in(app, roles="volunteer")
    user = await user_row(app, on_a_call.user_public_id)
    async with app.state.database.sessionmaker() as session, session.begin():
        task = await routing.create_task(
            session, app.state.clock, routing.RoutingTimes(), channel="voice", language="es"
        )
        task.state, task.assigned_to_id = TaskState.assigned, user.id
    clock: FrozenClock = app.state.clock
    clock.advance(timedelta(minutes=app.state.settings.session_idle_minutes + 1))
    assert (await on_a_call.http.get("/api/v1/auth/me")).status_code == 200
    assert (await idle.http.get("/api/v1/auth/me")).status_code == 401
    page = await on_a_call.http.get("/console")
    assert 'data-holding="1"' in page.text
    for staff in (on_a_call, idle):
        await staff.http.aclose()


async def test_live_refreshes_do_not_keep_a_session_alive(app: FastAPI) -> None:
    volunteer = await sign_in(app, roles="volunteer")
    page = await volunteer.http.get("/console")
    limit = app.state.settings.session_idle_minutes
    assert f'data-idle-seconds="{int(limit * 60)}"' in page.text and 'data-holding=""' in page.text
    clock: FrozenClock = app.state.clock
    clock.advance(timedelta(minutes=limit - 2))
    assert (await volunteer.http.get("/console/fragments/offers")).status_code == 200
    clock.advance(timedelta(minutes=3))
    assert (await volunteer.http.get("/api/v1/auth/me")).status_code == 401
    await volunteer.http.aclose()
