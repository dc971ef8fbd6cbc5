"""Group commit: many small independent writes, one transaction.

The first voice webhook of every call is one insert. Run as one transaction per request, a surge
of callers queues on the database's write lock (SQLite has one; its busy handler *sleeps* between
retries, so waiters overshoot) and pays one durable commit each. A `GroupCommitter` instead hands
each write to a single writer task that takes everything submitted since its last commit, writes
it in one transaction and commits once; every submitter's `await submit(…)` returns only after
that commit — or raises its error. No acknowledged write is lost: nobody is answered before the
commit that holds their row, and a failed batch fails every submitter in it.

One committer per kind of write per process. A submitter that gives up (its webhook answered at
the deadline) is skipped if its batch has not started; if it has, the write lands, exactly as an
abandoned request's own transaction would.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.engine import Database

T = TypeVar("T")
log = logging.getLogger("hotline.db")

# Before the batch's transaction, on the event loop: e.g. sealing, which may create a data key in
# this session (committed before the batch is written).
Prepare = Callable[[AsyncSession, list[T]], Awaitable[None]]
# The batch's transaction, on the database's writer thread (one hop for the whole batch).
Write = Callable[[Connection, list[T]], None]


class CommitterClosed(RuntimeError):
    """The committer was closed (the service is stopping); the write was not attempted."""


class GroupCommitter(Generic[T]):
    def __init__(
        self,
        database: Callable[[], Database],
        prepare: Prepare[T],
        write: Write[T],
        *,
        name: str,
        max_batch: int = 256,
    ) -> None:
        # The database is looked up per batch: the app's current one (tests swap it for a dead one).
        self.database = database
        self.prepare = prepare
        self.write = write
        self.name = name
        self.max_batch = max_batch
        self._pending: list[tuple[T, asyncio.Future[None]]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        # Figures for the metrics and the tests: batches committed and the writes they held.
        self.batches = 0
        self.writes = 0

    async def submit(self, item: T) -> None:
        """Write `item`; returns once the transaction holding it has committed."""
        if self._closed:
            raise CommitterClosed(self.name)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name=f"group-commit-{self.name}")
        self._wake.set()
        await future

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                batch, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch :]
                live = [(item, future) for item, future in batch if not future.done()]
                if live:
                    await self._commit(live)
            if self._closed:
                return

    async def _commit(self, batch: list[tuple[T, asyncio.Future[None]]]) -> None:
        try:
            database = self.database()
            items = [item for item, _future in batch]
            async with database.sessionmaker() as session:
                await self.prepare(session, items)
                await session.commit()
            await database.run_in_writer(lambda connection: self.write(connection, items))
        except Exception as exc:
            log.error(
                "group commit failed",
                extra={"committer": self.name, "writes": len(batch), "error": type(exc).__name__},
            )
            for _item, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        self.batches += 1
        self.writes += len(batch)
        for _item, future in batch:
            if not future.done():
                future.set_result(None)

    async def close(self) -> None:
        """Write what was submitted, then refuse new writes (service shutdown)."""
        self._closed = True
        self._wake.set()
        if self._task is not None:
            with contextlib.suppress(Exception):
                await self._task
        for _item, future in self._pending:
            if not future.done():
                future.set_exception(CommitterClosed(self.name))
        self._pending = []
