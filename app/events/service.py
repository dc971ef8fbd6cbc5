"""Publishing live events from services, in the caller's transaction (see `app.events.hub`)."""

from __future__ import annotations

import json
import uuid
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts.models import User
from app.events.hub import CHANNEL, PENDING_KEY, SESSION_ENDED, SUPERVISORS, user_audience

__all__ = ["board_changed", "publish", "session_ended", "to_user", "user_audience"]


async def publish(session: AsyncSession, audience: str, kind: str, **fields: str | None) -> None:
    """Queue one event (public ids and states only) for delivery when this transaction commits."""
    payload = json.dumps({"to": audience, "type": kind, **fields}, separators=(",", ":"))
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(select(func.pg_notify(CHANNEL, payload)))
    else:
        # Joined to the transaction (begun now if need be), so its commit or rollback decides.
        await session.connection()
        session.info.setdefault(PENDING_KEY, []).append(payload)


async def to_user(session: AsyncSession, user_id: uuid.UUID | None, kind: str, **fields: str | None) -> None:
    if user_id is None:
        return
    public_id = await session.scalar(select(User.public_id).where(User.id == user_id))
    if public_id is not None:
        await publish(session, user_audience(public_id), kind, **fields)


async def board_changed(session: AsyncSession, **fields: Any) -> None:
    """The queue or who is on call changed: supervisors' boards refresh."""
    await publish(session, SUPERVISORS, "board", **fields)


async def session_ended(
    session: AsyncSession, user_public_id: str, staff_session_id: uuid.UUID | None = None
) -> None:
    """A staff session (or, without an id, every session of the user) was revoked: once this
    transaction commits, every worker's streams of it end at once (`app.events.router`). The
    session id only travels between workers; the stream never writes it to the browser."""
    await publish(
        session,
        user_audience(user_public_id),
        SESSION_ENDED,
        staff_session=str(staff_session_id) if staff_session_id is not None else None,
    )
