"""The first webhook's write, group-committed: one row per call with the caller's number sealed.

Every call's first webhook used to be its own transaction; under a surge they queued on the write
lock one commit each. They now go through one `GroupCommitter` per process: each webhook still
answers only after the commit holding its row (so a caller who hears the menu has a row), but
the rows that arrive together share a transaction and a durable commit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

from sqlalchemy import Connection, Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from app.calls.models import Call
from app.db.batch import GroupCommitter
from app.db.engine import Database
from app.keys.store import Sealer

CALLS = cast(Table, Call.__table__)


@dataclass(frozen=True, slots=True)
class NewCall:
    row: Call
    from_number: str | None


def call_intake(database: Callable[[], Database], sealer: Sealer) -> GroupCommitter[NewCall]:
    async def prepare(session: AsyncSession, calls: list[NewCall]) -> None:
        for call in calls:
            await sealer.seal(session, call.row, "from_number", call.from_number)

    def write(connection: Connection, calls: list[NewCall]) -> None:
        insert = postgresql.insert if connection.dialect.name == "postgresql" else sqlite.insert
        connection.execute(
            insert(CALLS).on_conflict_do_nothing(index_elements=["call_sid_hash"]),
            [
                {
                    "id": call.row.id,
                    "call_sid_hash": call.row.call_sid_hash,
                    "key_subject": call.row.key_subject,
                    "from_number": call.row.from_number,
                    "drill": call.row.drill,
                    "emergency": False,
                    "state": "menu",
                    "created_at": call.row.created_at,
                    "updated_at": call.row.updated_at,
                }
                for call in calls
            ],
        )

    return GroupCommitter(database, prepare, write, name="calls")
