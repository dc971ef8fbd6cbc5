"""One transaction per request, committed in one place before the response is sent.

FastAPI (>= 0.118) runs the code after a dependency's `yield` once the response has gone out, unless
the dependency is declared with `scope="function"`. `DbSession` uses that scope, so the commit happens
after the endpoint returns and before anything is sent: a failed commit becomes an error response,
never a 2xx for a write that did not land. Services `flush()`, they never commit. An
`AuditedRefusal` raised anywhere in the request is recorded here (rollback → audit → commit).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.engine import Database


def get_database(request: Request) -> Database:
    database: Database = request.app.state.database
    return database


async def request_session(request: Request) -> AsyncIterator[AsyncSession]:
    from app.access.content import AuditedRefusal, record_refusal

    database = get_database(request)
    async with database.sessionmaker() as session:
        try:
            yield session
        except AuditedRefusal as refusal:
            # The one path for refused accesses: the request's work is undone, the refusal alone
            # is recorded and committed, then answered (404: forbidden looks like missing).
            await record_refusal(session, request.app.state.clock, refusal)
            raise refusal.error from None
        except BaseException:
            await session.rollback()
            raise
        await session.commit()


DbSession = Annotated[AsyncSession, Depends(request_session, scope="function")]
