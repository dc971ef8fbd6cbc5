"""The durable jobs runner.

Lifecycle of a job: `queued` → claimed (`running`, with a lease and `attempts + 1`) → the handler runs
in its own transaction which also marks the job `done`, so a handler's database effects and its
completion commit together → on failure a separate transaction puts it back to `queued` with
exponential backoff, or `dead` once attempts are exhausted.

Claims are exclusive on both databases: PostgreSQL `SELECT … FOR UPDATE SKIP LOCKED`; SQLite takes
the write lock (`BEGIN IMMEDIATE`) and updates conditionally. Every later write is fenced on
(`locked_by`, `attempts`), so a runner whose lease expired and was re-claimed elsewhere cannot mark
the job done: its transaction rolls back. Effects outside the database (Twilio REST) are therefore
at-least-once and handlers make them idempotent.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, and_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.clock import Clock
from app.db.engine import Database
from app.jobs.models import Job, JobState
from app.jobs.service import enqueue

log = logging.getLogger("hotline.jobs")


class RetryLater(Exception):
    """Raised by a handler to be tried again after `delay` seconds (counts as an attempt)."""

    def __init__(self, delay: float, code: str = "retry_later") -> None:
        super().__init__(code)
        self.delay = delay
        self.code = code


class PermanentFailure(Exception):
    """Raised by a handler when retrying cannot help; the job goes straight to `dead`."""


class LeaseLost(Exception):
    """This runner no longer holds the job (lease expired and someone else claimed it)."""


@dataclass
class JobContext:
    session: AsyncSession
    clock: Clock
    job_id: uuid.UUID
    attempt: int
    services: dict[str, Any]


Handler = Callable[[JobContext, dict[str, Any]], Awaitable[None]]


@dataclass
class HandlerSpec:
    handler: Handler
    timeout: float


@dataclass
class JobRegistry:
    handlers: dict[str, HandlerSpec] = field(default_factory=dict)
    # kind -> period in seconds, for jobs the runner schedules itself (checkpoints, clean-up).
    periodic: dict[str, Callable[[dict[str, Any]], float]] = field(default_factory=dict)

    def every(self, kind: str, period: Callable[[dict[str, Any]], float]) -> None:
        """Run `kind` periodically; `period(services)` gives the seconds between runs."""
        self.periodic[kind] = period

    def register(self, kind: str, *, timeout: float = 30.0) -> Callable[[Handler], Handler]:
        def decorate(handler: Handler) -> Handler:
            if kind in self.handlers:
                raise ValueError(f"job kind {kind!r} registered twice")
            self.handlers[kind] = HandlerSpec(handler, timeout)
            return handler

        return decorate


registry = JobRegistry()


def backoff_seconds(attempt: int, base: float = 2.0, cap: float = 600.0) -> float:
    """Exponential backoff with ±20 % jitter so retries from many jobs do not arrive together."""
    delay = min(cap, base * (2 ** max(0, attempt - 1)))
    return delay * random.uniform(0.8, 1.2)  # noqa: S311 — jitter, not security


def default_worker_id() -> str:
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


@dataclass
class JobRunner:
    database: Database
    clock: Clock
    registry: JobRegistry = field(default_factory=lambda: registry)
    worker_id: str = field(default_factory=default_worker_id)
    lease_seconds: float = 60.0
    poll_seconds: float = 1.0
    batch_size: int = 10
    services: dict[str, Any] = field(default_factory=dict)

    async def claim(self, limit: int | None = None) -> list[tuple[uuid.UUID, str, dict[str, Any], int]]:
        """Claim due jobs for this runner; also returns expired leases to the queue."""
        limit = limit or self.batch_size
        now = self.clock.now()
        lease_until = now + timedelta(seconds=self.lease_seconds)
        kinds = list(self.registry.handlers)
        async with self.database.sessionmaker() as session, session.begin():
            # Leases that ran out belong to a runner that died or hung; their attempt is spent.
            await session.execute(
                update(Job)
                .where(Job.state == JobState.running, Job.lease_expires_at < now)
                .values(
                    state=JobState.queued,
                    locked_by=None,
                    lease_expires_at=None,
                    last_error="LeaseExpired",
                    updated_at=now,
                )
            )
            query = (
                select(Job.id)
                .where(Job.state == JobState.queued, Job.run_at <= now, Job.kind.in_(kinds))
                .order_by(Job.priority.desc(), Job.run_at)
                .limit(limit)
            )
            if self.database.dialect == "postgresql":
                query = query.with_for_update(skip_locked=True)
            ids = list((await session.scalars(query)).all())
            if not ids:
                return []
            # Conditional on still being queued: on SQLite the write lock already serialises us, on
            # PostgreSQL the row locks do; the condition keeps the claim honest on both.
            result = await session.execute(
                update(Job)
                .where(Job.id.in_(ids), Job.state == JobState.queued)
                .values(
                    state=JobState.running,
                    locked_by=self.worker_id,
                    lease_expires_at=lease_until,
                    attempts=Job.attempts + 1,
                    updated_at=now,
                )
                .returning(Job.id, Job.kind, Job.payload, Job.attempts)
            )
            return [(row.id, row.kind, row.payload, row.attempts) for row in result]

    def _fence(self, job_id: uuid.UUID, attempt: int) -> Any:
        return and_(
            Job.id == job_id,
            Job.state == JobState.running,
            Job.locked_by == self.worker_id,
            Job.attempts == attempt,
        )

    async def execute(self, job_id: uuid.UUID, kind: str, payload: dict[str, Any], attempt: int) -> str:
        """Run one claimed job; returns the state it ended in."""
        spec = self.registry.handlers[kind]
        try:
            # Not `session.begin()`: a handler that reveals a sealed field (to dial a number, fetch
            # a recording) goes through the access broker, which commits its audit entry before
            # decrypting; the work after it continues in a new transaction, committed here.
            async with self.database.sessionmaker() as session:
                context = JobContext(session, self.clock, job_id, attempt, self.services)
                async with asyncio.timeout(spec.timeout):
                    await spec.handler(context, payload)
                now = self.clock.now()
                done = await session.execute(
                    update(Job)
                    .where(self._fence(job_id, attempt))
                    .values(state=JobState.done, finished_at=now, updated_at=now, lease_expires_at=None)
                )
                if cast(CursorResult[Any], done).rowcount != 1:
                    await session.rollback()
                    raise LeaseLost()
                await session.commit()
            log.info("job done", extra={"job_id": str(job_id), "kind": kind, "attempt": attempt})
            return JobState.done
        except LeaseLost:
            log.warning("job lease lost", extra={"job_id": str(job_id), "kind": kind})
            return "lease_lost"
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            return await self._record_failure(job_id, kind, attempt, exc)

    async def _record_failure(self, job_id: uuid.UUID, kind: str, attempt: int, exc: Exception) -> str:
        now = self.clock.now()
        if isinstance(exc, TimeoutError):
            code = "Timeout"
        elif isinstance(exc, RetryLater):
            code = f"RetryLater:{exc.code}"[:200]
        else:
            code = type(exc).__name__[:200]
        async with self.database.sessionmaker() as session, session.begin():
            job = (await session.execute(select(Job.max_attempts).where(Job.id == job_id))).one()
            give_up = isinstance(exc, PermanentFailure) or attempt >= job.max_attempts
            delay = exc.delay if isinstance(exc, RetryLater) else backoff_seconds(attempt)
            state = JobState.dead if give_up else JobState.queued
            await session.execute(
                update(Job)
                .where(self._fence(job_id, attempt))
                .values(
                    state=state,
                    locked_by=None,
                    lease_expires_at=None,
                    last_error=code,
                    run_at=now + timedelta(seconds=delay),
                    finished_at=now if give_up else None,
                    updated_at=now,
                )
            )
        level = logging.ERROR if give_up else logging.WARNING
        log.log(
            level,
            "job failed",
            extra={"job_id": str(job_id), "kind": kind, "attempt": attempt, "error": code, "state": state},
        )
        return state

    async def schedule_periodic(self) -> None:
        """Enqueue the current slot of every periodic job; the dedup key makes workers agree."""
        if not self.registry.periodic:
            return
        now = self.clock.now()
        async with self.database.sessionmaker() as session, session.begin():
            for kind, period in self.registry.periodic.items():
                seconds = max(1.0, float(period(self.services)))
                slot = int(now.timestamp() // seconds)
                await enqueue(session, self.clock, kind, {}, dedup_key=f"every:{kind}:{slot}", max_attempts=1)

    async def run_once(self, limit: int | None = None) -> int:
        """Claim and run one batch; returns how many jobs were run."""
        await self.schedule_periodic()
        claimed = await self.claim(limit)
        # The batch runs concurrently: under a surge one slow REST call must not hold up the dial
        # of every volunteer behind it. Each job has its own session and transaction.
        await asyncio.gather(
            *(self.execute(job_id, kind, payload, attempt) for job_id, kind, payload, attempt in claimed)
        )
        return len(claimed)

    async def run_until_idle(self, max_rounds: int = 1000) -> int:
        """Run batches until nothing is due (tests, CLI drains)."""
        total = 0
        for _ in range(max_rounds):
            ran = await self.run_once()
            if not ran:
                break
            total += ran
        return total

    async def run_forever(self, stop: asyncio.Event) -> None:
        """The in-service loop: keeps going through database errors, stops promptly on `stop`."""
        log.info("jobs runner started", extra={"worker": self.worker_id})
        while not stop.is_set():
            ran = 0
            try:
                ran = await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("jobs runner round failed")
            if not ran:
                try:
                    await asyncio.wait_for(stop.wait(), timeout=self.poll_seconds)
                except TimeoutError:
                    pass
        log.info("jobs runner stopped", extra={"worker": self.worker_id})
