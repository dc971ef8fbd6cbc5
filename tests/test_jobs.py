from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text

from app.clock import FrozenClock
from app.db.engine import Database
from app.jobs.models import Job, JobState
from app.jobs.runner import JobContext, JobRegistry, JobRunner, PermanentFailure, RetryLater
from app.jobs.service import backlog, enqueue

ROOT = Path(__file__).resolve().parent.parent


async def add_job(database: Database, clock: FrozenClock, kind: str, **kwargs: Any) -> uuid.UUID | None:
    async with database.sessionmaker() as session, session.begin():
        return await enqueue(session, clock, kind, kwargs.pop("payload", {}), **kwargs)


async def load(database: Database, job_id: uuid.UUID | None) -> Job:
    async with database.sessionmaker() as session:
        job = await session.get(Job, job_id)
        assert job is not None
        return job


def make_runner(database: Database, clock: FrozenClock, registry: JobRegistry, **kwargs: Any) -> JobRunner:
    return JobRunner(database, clock, registry=registry, **kwargs)


async def test_job_runs_once_and_its_effects_commit_with_done(database: Database, clock: FrozenClock) -> None:
    registry = JobRegistry()
    seen: list[dict[str, Any]] = []

    @registry.register("test.record")
    async def record(ctx: JobContext, payload: dict[str, Any]) -> None:
        seen.append(payload)
        await enqueue(ctx.session, ctx.clock, "test.followup", {"after": payload["n"]})

    job_id = await add_job(database, clock, "test.record", payload={"n": 7})
    runner = make_runner(database, clock, registry)
    assert await runner.run_until_idle() == 1
    assert seen == [{"n": 7}]
    job = await load(database, job_id)
    assert (job.state, job.attempts, job.finished_at) == (JobState.done, 1, clock.now())
    async with database.sessionmaker() as session:
        followup = (await session.scalars(select(Job).where(Job.kind == "test.followup"))).one()
        assert followup.payload == {"after": 7}
    assert await runner.run_until_idle() == 0  # unknown kinds are left for runners that know them


async def test_failures_back_off_then_succeed(database: Database, clock: FrozenClock) -> None:
    registry = JobRegistry()
    calls = 0

    @registry.register("test.flaky")
    async def flaky(ctx: JobContext, payload: dict[str, Any]) -> None:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise ConnectionError("twilio unreachable")

    job_id = await add_job(database, clock, "test.flaky")
    runner = make_runner(database, clock, registry)
    await runner.run_once()
    job = await load(database, job_id)
    assert (job.state, job.attempts, job.last_error) == (JobState.queued, 1, "ConnectionError")
    assert job.run_at > clock.now()
    assert await runner.run_once() == 0  # not due yet
    clock.advance(60)
    await runner.run_once()
    clock.advance(60)
    await runner.run_once()
    job = await load(database, job_id)
    assert (job.state, job.attempts, calls) == (JobState.done, 3, 3)


async def test_exhausted_and_permanent_failures_are_dead_lettered(
    database: Database, clock: FrozenClock
) -> None:
    registry = JobRegistry()

    @registry.register("test.always_fails")
    async def always(ctx: JobContext, payload: dict[str, Any]) -> None:
        raise RetryLater(1, "busy")

    @registry.register("test.permanent")
    async def permanent(ctx: JobContext, payload: dict[str, Any]) -> None:
        raise PermanentFailure("number opted out")

    exhausted = await add_job(database, clock, "test.always_fails", max_attempts=3)
    doomed = await add_job(database, clock, "test.permanent")
    runner = make_runner(database, clock, registry)
    for _ in range(5):
        await runner.run_once()
        clock.advance(2)
    assert (await load(database, exhausted)).state == JobState.dead
    assert (await load(database, exhausted)).attempts == 3
    assert (await load(database, exhausted)).last_error == "RetryLater:busy"
    assert (await load(database, doomed)).state == JobState.dead
    assert (await load(database, doomed)).attempts == 1
    async with database.sessionmaker() as session:
        assert (await backlog(session, clock))["dead"] == 2


async def test_handler_timeout_counts_as_a_failed_attempt(database: Database, clock: FrozenClock) -> None:
    registry = JobRegistry()

    @registry.register("test.slow", timeout=0.05)
    async def slow(ctx: JobContext, payload: dict[str, Any]) -> None:
        await asyncio.sleep(5)

    job_id = await add_job(database, clock, "test.slow")
    await make_runner(database, clock, registry).run_once()
    job = await load(database, job_id)
    assert (job.state, job.last_error) == (JobState.queued, "Timeout")


async def test_dedup_key_schedules_once(database: Database, clock: FrozenClock) -> None:
    first = await add_job(database, clock, "test.once", dedup_key="offer-timeout:abc")
    second = await add_job(database, clock, "test.once", dedup_key="offer-timeout:abc")
    assert first is not None and second is None


async def test_a_dead_runners_job_is_reclaimed_and_its_late_completion_is_fenced_out(
    database: Database, clock: FrozenClock
) -> None:
    registry = JobRegistry()
    runs: list[str] = []

    @registry.register("test.effect")
    async def effect(ctx: JobContext, payload: dict[str, Any]) -> None:
        runs.append(str(ctx.attempt))

    job_id = await add_job(database, clock, "test.effect")
    crashed = make_runner(database, clock, registry, worker_id="crashed", lease_seconds=30)
    claimed = await crashed.claim()
    assert [c[0] for c in claimed] == [job_id]
    # The first runner "dies" holding the lease; after it expires a restarted runner takes over.
    clock.advance(31)
    survivor = make_runner(database, clock, registry, worker_id="survivor")
    assert await survivor.run_once() == 1
    job = await load(database, job_id)
    assert (job.state, job.attempts) == (JobState.done, 2)
    # The original runner wakes up and tries to finish: the fence rejects it, nothing changes.
    assert await crashed.execute(*claimed[0]) == "lease_lost"
    assert (await load(database, job_id)).state == JobState.done


async def test_runner_loop_survives_errors_and_stops_on_request(
    database: Database, clock: FrozenClock
) -> None:
    registry = JobRegistry()
    done = asyncio.Event()

    @registry.register("test.signal")
    async def signal(ctx: JobContext, payload: dict[str, Any]) -> None:
        done.set()

    runner = make_runner(database, clock, registry, poll_seconds=0.02)
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run_forever(stop))
    await add_job(database, clock, "test.signal")
    await asyncio.wait_for(done.wait(), timeout=10)
    stop.set()
    await asyncio.wait_for(task, timeout=5)


WORKER_SCRIPT = textwrap.dedent(
    """
    import asyncio, sys
    from sqlalchemy import text
    from app.clock import SystemClock
    from app.db.engine import create_database
    from app.jobs.runner import JobRegistry, JobRunner

    url, name = sys.argv[1], sys.argv[2]
    registry = JobRegistry()

    @registry.register("test.exactly_once")
    async def handler(ctx, payload):
        await ctx.session.execute(
            text("INSERT INTO job_effects (job_id, worker) VALUES (:j, :w)"),
            {"j": str(ctx.job_id), "w": name},
        )
        await asyncio.sleep(0.005)

    async def main():
        database = create_database(url)
        runner = JobRunner(database, SystemClock(), registry=registry, worker_id=name, batch_size=3)
        idle = 0
        while idle < 3:
            idle = idle + 1 if not await runner.run_once() else 0
        await database.dispose()

    asyncio.run(main())
    """
)


@pytest.mark.postgres_only
async def test_two_processes_never_run_the_same_job(
    backend: str, database: Database, fresh_database_url: str, tmp_path: Path
) -> None:
    if backend != "postgresql":
        pytest.skip("the multi-process claim test needs PostgreSQL")
    # The worker processes use the system clock, so the jobs must already be due by it.
    clock = FrozenClock(datetime(2020, 1, 1, tzinfo=UTC))
    async with database.engine.begin() as conn:
        await conn.execute(text("CREATE TABLE job_effects (job_id text NOT NULL, worker text NOT NULL)"))
    for _ in range(200):
        await add_job(database, clock, "test.exactly_once")
    script = tmp_path / "worker.py"
    script.write_text(WORKER_SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    workers = [
        subprocess.Popen([sys.executable, str(script), fresh_database_url, f"w{i}"], env=env, cwd=ROOT)
        for i in range(2)
    ]
    for worker in workers:
        assert worker.wait(timeout=120) == 0
    async with database.engine.connect() as conn:
        rows = (await conn.execute(text("SELECT job_id, worker FROM job_effects"))).all()
        states = (await conn.execute(text("SELECT state, count(*) FROM jobs GROUP BY state"))).all()
    assert len(rows) == 200
    assert len({job_id for job_id, _ in rows}) == 200
    assert {worker for _, worker in rows} == {"w0", "w1"}, "both processes should have taken work"
    assert dict(states) == {"done": 200}
