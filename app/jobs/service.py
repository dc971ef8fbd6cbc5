"""Enqueueing jobs inside the caller's transaction, so work is scheduled exactly when the change lands."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from app.clock import Clock
from app.db.base import new_id
from app.jobs.models import Job, JobState

DEFAULT_MAX_ATTEMPTS = 8


async def enqueue(
    session: AsyncSession,
    clock: Clock,
    kind: str,
    payload: dict[str, Any] | None = None,
    *,
    delay: timedelta | None = None,
    run_at: datetime | None = None,
    dedup_key: str | None = None,
    priority: int = 0,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
) -> uuid.UUID | None:
    """Add a job in the caller's transaction. Returns its id, or None when `dedup_key` already exists.

    The payload must hold ids and flags only: it is stored in the clear.
    """
    now = clock.now()
    values = {
        "id": new_id(),
        "kind": kind,
        "payload": payload or {},
        "state": JobState.queued.value,
        "priority": priority,
        "attempts": 0,
        "max_attempts": max_attempts,
        "run_at": run_at or (now + delay if delay else now),
        "created_at": now,
        "updated_at": now,
    }
    if dedup_key is not None:
        values["dedup_key"] = dedup_key
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(Job).values(**values)
    if dedup_key is not None:
        statement = statement.on_conflict_do_nothing(index_elements=["dedup_key"])
    result = await session.execute(statement.returning(Job.id))
    return result.scalar_one_or_none()


async def backlog(session: AsyncSession, clock: Clock) -> dict[str, int]:
    """Counts for health and metrics: due-and-waiting, running, dead."""
    now = clock.now()
    due = await session.scalar(select(func.count()).where(Job.state == JobState.queued, Job.run_at <= now))
    running = await session.scalar(select(func.count()).where(Job.state == JobState.running))
    dead = await session.scalar(select(func.count()).where(Job.state == JobState.dead))
    return {"due": due or 0, "running": running or 0, "dead": dead or 0}
