"""Shared helpers of the referral tests: directory rows, a caller's case assigned to a volunteer."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from sqlalchemy import select

from app.accounts.models import User
from app.audit.service import Actor
from app.callers.models import Caller
from app.callers.service import find_or_create_caller
from app.cases.models import Case
from app.cases.service import create_case
from app.referrals.models import Organisation

SETUP = Actor("cli:test")

GOOD_ORGANISATION: dict[str, Any] = {
    "name": "Brooklyn Defenders Test",
    "services": ["legal_defense", "immigration_court_representation"],
    "languages": ["en", "es"],
    "timezone": "America/New_York",
    "opening_hours": [
        {"day": d, "open": "09:00", "close": "17:00"} for d in ("mon", "tue", "wed", "thu", "fri")
    ],
    "service_areas": ["brooklyn"],
    "intake_phone": "+17185550100",
    "intake_url": "https://example.org/intake",
}


async def directory(app: FastAPI) -> list[tuple[Any, ...]]:
    """Every organisation row, every column: to prove a refused request wrote nothing."""
    async with app.state.database.sessionmaker() as session:
        rows = await session.scalars(select(Organisation).order_by(Organisation.public_id))
        return [tuple(getattr(row, column.key) for column in Organisation.__table__.columns) for row in rows]


async def case_for(
    app: FastAPI,
    volunteer_public_id: str | None,
    *,
    phone: str | None = "+12025550171",
    category: str | None = "detention",
    language: str = "es",
    fields: dict[str, str] | None = None,
    safe_to_text: bool | None = True,
) -> str:
    """A case with a caller (by number, or none: withheld) assigned to the volunteer."""
    state = app.state
    caller = None
    if phone is not None:
        async with state.database.sessionmaker() as session:
            caller, _ = await find_or_create_caller(session, state.sealer, state.broker, state.clock, phone)
            await session.commit()
    async with state.database.sessionmaker() as session, session.begin():
        assignee = None
        if volunteer_public_id is not None:
            assignee = (
                await session.scalars(select(User).where(User.public_id == volunteer_public_id))
            ).one()
        if caller is not None:
            caller = await session.get(Caller, caller.id)
            assert caller is not None
            caller.safe_to_text = safe_to_text
        case = await create_case(
            session,
            state.sealer,
            state.clock,
            actor=SETUP,
            language=language,
            category=category,
            caller=caller,
            assignee=assignee,
            fields=fields,
        )
        return case.public_id


async def case_row(app: FastAPI, public_id: str) -> Case:
    async with app.state.database.sessionmaker() as session:
        return (await session.scalars(select(Case).where(Case.public_id == public_id))).one()
