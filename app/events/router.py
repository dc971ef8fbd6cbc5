"""`GET /api/v1/events`: the signed-in staff member's live events as server-sent events.

Ids and states only (offers made or ended for them, a message arrived in their conversation;
supervisors also hear that the queue or the board changed) — the console fetches what it may see
through the ordinary routes. The stream ends when its session is signed out, revoked or expired:
at once on a `session_ended` event (published with the revocation, so it reaches every worker's
streams), and in any case within `RECHECK_SECONDS`, busy or quiet, by re-reading the session; it
never extends the idle timer by itself (`current_staff`). It also ends when the process stops, and
after `max_seconds`, so an EventSource reconnects (possibly to another worker) instead of holding a
worker's shutdown.
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
from app.events.hub import SESSION_ENDED, SUPERVISORS, LiveHub, user_audience

router = APIRouter(tags=["events"])
Listener = Annotated[Staff, require(Permission.signed_in)]
# However busy the stream, the session is read again at least this often (seconds): the backstop
# for a `session_ended` event that was missed (a listener reconnecting) and for expiry.
RECHECK_SECONDS = 2.0


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
    session_id = str(staff.session.id)
    audiences = audiences_of(staff)

    async def stream() -> AsyncIterator[bytes]:
        started = checked = written = time.monotonic()
        keepalive = settings.events_keepalive_seconds
        recheck = min(RECHECK_SECONDS, keepalive)
        with hub.subscribe(audiences) as subscription:
            yield b"retry: 3000\n\n" + frame({"type": "hello"})
            while not hub.closing.is_set():
                getter = asyncio.ensure_future(subscription.queue.get())
                closing = asyncio.ensure_future(hub.closing.wait())
                try:
                    done, _ = await asyncio.wait(
                        {getter, closing},
                        timeout=max(0.0, min(written + keepalive, checked + recheck) - time.monotonic()),
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
                    if message.get("type") == SESSION_ENDED:
                        # Never sent on; another session of the same person keeps this one open.
                        if message.get("staff_session") in (None, session_id):
                            yield frame({"type": "signed_out"})
                            return
                    else:
                        if subscription.overflowed:
                            subscription.overflowed = False
                            message = {"type": "resync"}
                        yield frame(message)
                        written = time.monotonic()
                if closing in done:
                    break
                # Busy or quiet, the session is read again every `recheck` seconds.
                if time.monotonic() - checked >= recheck:
                    if not await still_signed_in(database, auth, token):
                        yield frame({"type": "signed_out"})
                        return
                    checked = time.monotonic()
                if time.monotonic() - started > settings.events_max_seconds:
                    return
                if time.monotonic() - written >= keepalive:
                    yield b": keep-alive\n\n"  # a comment keeps proxies open
                    written = time.monotonic()

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
