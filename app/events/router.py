"""`GET /api/v1/events`: the signed-in staff member's live events as server-sent events.

Ids and states only (offers made or ended for them, a message arrived in their conversation;
supervisors also hear that the queue or the board changed) — the console fetches what it may see
through the ordinary routes. The stream re-checks the session at every keep-alive and ends when it
is signed out or expired; it never extends the idle timer by itself (`current_staff`). It also ends
when the process stops, and after `max_seconds`, so an EventSource reconnects (possibly to another
worker) instead of holding a worker's shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from app.access.permissions import Permission
from app.accounts.auth import SESSION_COOKIE
from app.accounts.deps import Auth, Staff, require
from app.db.engine import Database
from app.events.hub import SUPERVISORS, LiveHub, user_audience

router = APIRouter(tags=["events"])
Listener = Annotated[Staff, require(Permission.signed_in)]


def audiences_of(staff: Staff) -> frozenset[str]:
    audiences = {user_audience(staff.user.public_id)}
    if Permission.on_call_read in staff.permissions:
        audiences.add(SUPERVISORS)
    return frozenset(audiences)


def frame(message: dict[str, object]) -> bytes:
    return f"data: {json.dumps(message, separators=(',', ':'))}\n\n".encode()


async def still_signed_in(database: Database, auth: Auth, token: str | None) -> bool:
    async with database.sessionmaker() as session:
        return await auth.resolve(session, token, touch=False) is not None


@router.get(
    "/events",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "Server-sent events."}},
)
async def live_events(request: Request, staff: Listener, auth: Auth) -> StreamingResponse:
    """Server-sent events for the console: `data: {"type": …, "id": …, "state": …}` lines."""
    database: Database = request.app.state.database
    hub: LiveHub = database.hub
    settings = auth.settings
    token = request.cookies.get(SESSION_COOKIE)
    audiences = audiences_of(staff)

    async def stream() -> AsyncIterator[bytes]:
        started = time.monotonic()
        with hub.subscribe(audiences) as subscription:
            yield b"retry: 3000\n\n" + frame({"type": "hello"})
            while not hub.closing.is_set():
                getter = asyncio.ensure_future(subscription.queue.get())
                closing = asyncio.ensure_future(hub.closing.wait())
                try:
                    done, _ = await asyncio.wait(
                        {getter, closing},
                        timeout=settings.events_keepalive_seconds,
                        return_when=asyncio.FIRST_COMPLETED,
                    )
                finally:
                    for future in (getter, closing):
                        if not future.done():
                            future.cancel()
                            with contextlib.suppress(asyncio.CancelledError):
                                await future
                if getter in done:
                    message = getter.result()
                    if subscription.overflowed:
                        subscription.overflowed = False
                        message = {"type": "resync"}
                    yield frame(message)
                    if time.monotonic() - started > settings.events_max_seconds:
                        return
                    continue
                if closing in done:
                    break
                # Quiet for a while: is the session still alive? Then a comment keeps proxies open.
                if not await still_signed_in(database, auth, token):
                    yield frame({"type": "signed_out"})
                    return
                if time.monotonic() - started > settings.events_max_seconds:
                    return
                yield b": keep-alive\n\n"

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
