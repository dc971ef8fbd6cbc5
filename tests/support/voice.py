"""A live app wired to the fake Twilio, and helpers for whole-call tests."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from fastapi import FastAPI
from sqlalchemy import select

from app.accounts.models import User
from app.routing.models import Offer, Task, TaskState
from app.volunteers.models import PresenceState
from app.volunteers.service import WeeklyShift, replace_shifts, set_availability
from tests.support.factories import SETUP, Services, make_user

HOTLINE = "+12125550199"
PUBLIC_URL = "https://hotline.test"


def services_of(app: FastAPI) -> Services:
    state = app.state
    return Services(state.database, state.clock, state.keys.material, state.keys, state.sealer, state.broker)


async def settled_task(app: FastAPI, state: TaskState, timeout: float = 10.0) -> Task:
    """The single task once it reaches `state` (status callbacks may land just after the call)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        async with app.state.database.sessionmaker() as session:
            task = (await session.scalars(select(Task))).one()
        if task.state == state or asyncio.get_running_loop().time() > deadline:
            return task
        await asyncio.sleep(0.1)


async def on_call_volunteer(app: FastAPI, phone: str, languages: str) -> str:
    async with app.state.database.sessionmaker() as session, session.begin():
        user = await make_user(session, services_of(app), languages=languages, phone=phone)
        user.phone_verified_at = datetime.now(UTC)
        await replace_shifts(
            session, app.state.clock, user, [WeeklyShift(d, 0, 1440) for d in range(7)], actor=SETUP
        )
        await set_availability(session, app.state.clock, user, state=PresenceState.available, actor=SETUP)
        return user.public_id


async def offers(app: FastAPI) -> list[tuple[str, str]]:
    """(volunteer public id, offer state) in offer order."""
    async with app.state.database.sessionmaker() as session:
        rows = await session.execute(
            select(User.public_id, Offer.state)
            .join(User, User.id == Offer.volunteer_id)
            .order_by(Offer.created_at)
        )
        return [(row[0], row[1]) for row in rows]
