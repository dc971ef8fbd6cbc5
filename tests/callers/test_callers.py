from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from app.callers.models import Caller
from app.callers.service import find_or_create_caller
from app.clock import FrozenClock
from app.db.engine import Database
from app.keys.models import DataKeyRecord
from tests.support.factories import make_services

WITHHELD = [
    None,
    "",
    "anonymous",
    "Anonymous",
    "+266696687",
    "+1266696687",
    "+7378742833",
    "+17378742833",
    "+2562533",
    "+12562533",
    "+8656696",
    "+18656696",
    "+86282452253",
    "+186282452253",
    "restricted",
    "not a number",
    "12",
]


@pytest.mark.parametrize("raw", WITHHELD)
async def test_withheld_and_invalid_numbers_are_never_indexed_or_stored(
    database: Database, clock: FrozenClock, tmp_path: Path, raw: str | None
) -> None:
    services = make_services(database, clock, tmp_path / "keys.json")
    async with database.sessionmaker() as session, session.begin():
        caller, seen = await find_or_create_caller(session, services.sealer, services.broker, clock, raw)
    assert caller is None and seen is False
    async with database.sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(Caller)) == 0
        assert await session.scalar(select(func.count()).select_from(DataKeyRecord)) == 0


async def test_repeat_caller_is_recognised_in_any_spelling(
    database: Database, clock: FrozenClock, tmp_path: Path
) -> None:
    services = make_services(database, clock, tmp_path / "keys.json")
    # Matching reveals through the broker, which commits: sessions here are request-style (no begin block).
    async with database.sessionmaker() as session:
        first, seen_first = await find_or_create_caller(
            session, services.sealer, services.broker, clock, "+1 (212) 555-0142"
        )
        other, _ = await find_or_create_caller(
            session, services.sealer, services.broker, clock, "+12125550143"
        )
        await session.commit()
    async with database.sessionmaker() as session:
        again, seen_again = await find_or_create_caller(
            session, services.sealer, services.broker, clock, "whatsapp:+12125550142"
        )
        await session.commit()
    assert first is not None and other is not None and again is not None
    assert (seen_first, seen_again) == (False, True)
    assert again.id == first.id != other.id
    assert first.phone_last2 == "42" and first.phone_index != other.phone_index
