"""The first webhook's rows are group-committed (app/db/batch.py): calls arriving together share a
transaction, each webhook answers only after the commit holding its row, a failed batch fails
every webhook in it (static TwiML, nothing half-written), and shutdown writes what was accepted."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import Connection, func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from app.calls.models import Call
from app.db.batch import CommitterClosed, GroupCommitter
from app.settings import Settings
from tests.calls.test_voice_webhooks import call_params, new_sid, post, rows, verbs


async def test_concurrent_first_webhooks_share_commits_and_each_has_its_row(
    app: FastAPI, client: httpx.AsyncClient, settings: Settings
) -> None:
    committer = app.state.call_intake
    sids = [new_sid() for _ in range(40)]
    # Each CallSid delivered twice at once (Twilio's retry racing the first delivery).
    deliveries = [sid for sid in sids for _ in range(2)]
    responses = await asyncio.gather(
        *(post(client, settings, "/twilio/voice/incoming", call_params(sid)) for sid in deliveries)
    )
    assert all(r.status_code == 200 and verbs(r.text)[0] == "Gather" for r in responses)
    assert len({r.text for r in responses}) == 1  # every caller (and replay) heard the same menu
    assert await rows(app, Call) == len(sids)
    assert committer.writes == len(deliveries)
    # Group commit happened: far fewer transactions than webhooks.
    assert 1 <= committer.batches < len(deliveries) // 4
    async with app.state.database.sessionmaker() as session:
        sealed = await session.scalar(select(func.count()).where(Call.from_number.is_not(None)))
    assert sealed == len(sids)


async def test_a_failed_batch_fails_every_submitter_and_writes_nothing(app: FastAPI) -> None:
    database = app.state.database
    await _scratch_table(database)

    async def prepare(_session: AsyncSession, _items: list[int]) -> None:
        return None

    def write(connection: Connection, items: list[int]) -> None:
        connection.execute(
            text("INSERT INTO group_commit_scratch (n) VALUES (:n)"), [{"n": n} for n in items]
        )
        if 13 in items:
            raise RuntimeError("disk on fire")

    committer: GroupCommitter[int] = GroupCommitter(lambda: database, prepare, write, name="scratch")
    results = await asyncio.gather(*(committer.submit(n) for n in range(10, 20)), return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in results)  # one batch, all told
    assert await _scratch_count(database) == 0  # rolled back: no acknowledged-looking half batch
    await committer.submit(1)  # the committer carries on after a failed batch
    assert await _scratch_count(database) == 1
    await committer.close()


async def test_a_submitter_gone_before_its_batch_is_skipped_and_close_flushes(app: FastAPI) -> None:
    database = app.state.database
    await _scratch_table(database)
    written: list[int] = []

    async def prepare(_session: AsyncSession, _items: list[int]) -> None:
        return None

    def write(connection: Connection, items: list[int]) -> None:
        written.extend(items)
        connection.execute(
            text("INSERT INTO group_commit_scratch (n) VALUES (:n)"), [{"n": n} for n in items]
        )

    committer: GroupCommitter[int] = GroupCommitter(lambda: database, prepare, write, name="scratch")
    gone = asyncio.ensure_future(committer.submit(1))
    kept = asyncio.ensure_future(committer.submit(2))
    gone.cancel()  # its webhook was answered at the deadline before the writer got to it
    await kept
    assert written == [2]
    later = asyncio.ensure_future(committer.submit(3))
    await asyncio.sleep(0)
    await committer.close()  # shutdown: what was accepted is written first
    await later
    assert written == [2, 3] and await _scratch_count(database) == 2
    with pytest.raises(CommitterClosed):
        await committer.submit(4)


async def _scratch_table(database: Any) -> None:
    async with database.engine.begin() as connection:
        await connection.execute(text("CREATE TABLE IF NOT EXISTS group_commit_scratch (n INTEGER NOT NULL)"))
        await connection.execute(text("DELETE FROM group_commit_scratch"))


async def _scratch_count(database: Any) -> int:
    async with database.engine.connect() as connection:
        return int((await connection.execute(text("SELECT count(*) FROM group_commit_scratch"))).scalar_one())
