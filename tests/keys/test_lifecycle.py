"""Backup erasure horizon: scheduled rotate and destroy on the jobs runner; the date keys status promises."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from app.access.policy import Purpose
from app.audit.models import AuditEntry
from app.cases.models import Case
from app.clock import FrozenClock
from app.db.engine import Database
from app.jobs.runner import JobRunner, registry
from app.keys.lifecycle import KeyFileBusy, erasure_horizon, key_file_lock, run_key_lifecycle
from app.keys.models import DataKeyRecord
from app.keys.rotation import live_keys_by_kek
from app.keys.store import KeyStore, Sealer
from app.settings import Settings
from crypto.keyfile import load_key_file
from crypto.keyring import KekState
from tests.support.cli import hotline as run_cli
from tests.support.factories import make_case, make_services, make_user, principal_of, staff_reveal

ROTATE, RETAIN = 90, 35


async def shred(database: Database, clock: FrozenClock, subject: object) -> None:
    """What the retention purge does to a data key (built elsewhere): wrapped cleared, destroyed_at set."""
    async with database.sessionmaker() as session, session.begin():
        await session.execute(
            update(DataKeyRecord)
            .where(DataKeyRecord.subject_id == subject)
            .values(wrapped=None, destroyed_at=clock.now())
        )


async def test_scheduled_rotation_and_destruction_with_two_workers(
    database: Database, tmp_path: Path
) -> None:
    clock = FrozenClock(datetime.now(UTC) - timedelta(seconds=1))
    key_path = tmp_path / "keys.json"
    services = make_services(database, clock, key_path, cache_ttl=0)
    first = services.material.keyring.active_kek_id
    async with database.sessionmaker() as session, session.begin():
        volunteer = await make_user(session, services)
        case = await make_case(session, services, assignee=volunteer, fields={"caller_name": "Ana"})
        gone = await make_case(session, services, assignee=volunteer, fields={"caller_name": "Bo"})
    # A second worker: its own key store over the same file, never told about the rotation.
    other = KeyStore(load_key_file(key_path), str(key_path))
    other_sealer = Sealer(other, clock, cache_ttl=0)
    settings = Settings(
        keyring_file=str(key_path),
        kek_rotate_days=ROTATE,
        backup_retention_days=RETAIN,
        jobs_lease_seconds=60,
    )
    runner = JobRunner(
        database,
        clock,
        services={"settings": settings, "database": database, "keys": services.keys},
        registry=registry,
    )

    async def lifecycle_jobs() -> None:
        await runner.schedule_periodic()
        for job_id, kind, payload, attempt in await runner.claim(50):
            if kind == "keys.lifecycle":
                assert await runner.execute(job_id, kind, payload, attempt) == "done"

    await lifecycle_jobs()
    assert load_key_file(key_path).keyring.active_kek_id == first  # not due yet

    clock.advance(timedelta(days=ROTATE, minutes=1))
    await shred(database, clock, gone.id)
    clock.advance(1)
    await lifecycle_jobs()
    rotated = load_key_file(key_path)
    second = rotated.keyring.active_kek_id
    assert second != first and rotated.keyring.state_of(first) is KekState.RETIRED
    assert set(await live_keys_by_kek(database)) == {second}
    assert services.keys.keyring.active_kek_id == second  # this worker followed at once

    # The other worker's stale key store unwraps the rewrapped key by re-reading the file.
    principal = principal_of(volunteer)
    from app.access.broker import AccessBroker

    async with database.sessionmaker() as session:
        row = (await session.scalars(select(Case).where(Case.id == case.id))).one()
        got = await staff_reveal(
            AccessBroker(other_sealer, clock), session, principal, row, ["caller_name"], Purpose.intake
        )
        assert got.values["caller_name"] == "Ana"
    assert other.keyring.active_kek_id == second

    horizon = await erasure_horizon(
        database, rotated, now=clock.now(), rotate_days=ROTATE, backup_retention_days=RETAIN
    )
    assert horizon.subjects == 1 and horizon.complete == 0
    (day,) = horizon.by_date
    retired_at = rotated.keyring.kek_info(first).retired_at
    assert retired_at is not None
    # `gone` was wrapped by the first KEK only (shredded before the rotation): retired + retention.
    due = retired_at + timedelta(days=RETAIN, minutes=10)
    assert day == (due.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)).strftime(
        "%Y-%m-%d"
    )

    clock.advance(timedelta(days=RETAIN - 1))
    await lifecycle_jobs()
    assert load_key_file(key_path).keyring.state_of(first) is KekState.RETIRED  # backups may still need it
    clock.advance(timedelta(days=1, minutes=1))
    await lifecycle_jobs()
    final = load_key_file(key_path)
    assert final.keyring.state_of(first) is KekState.DESTROYED
    assert final.keyring.active_kek_id == second
    horizon = await erasure_horizon(
        database, final, now=clock.now(), rotate_days=ROTATE, backup_retention_days=RETAIN
    )
    assert horizon.subjects == 1 and horizon.complete == 1 and horizon.by_date == {}
    async with database.sessionmaker() as session:
        actions = [
            (e.actor_id, e.action, e.object_id)
            for e in await session.scalars(select(AuditEntry).where(AuditEntry.action.like("keys.%")))
        ]
    assert ("system:keys", "keys.rotated", second) in actions
    assert ("system:keys", "keys.destroyed", first) in actions


async def test_one_process_changes_the_key_file_at_a_time(
    database: Database, clock: FrozenClock, tmp_path: Path
) -> None:
    key_path = tmp_path / "keys.json"
    make_services(database, clock, key_path)
    with key_file_lock(str(key_path)):
        with pytest.raises(KeyFileBusy):
            await run_key_lifecycle(
                database, None, str(key_path), clock, rotate_days=0, backup_retention_days=RETAIN
            )
    report = await run_key_lifecycle(
        database, None, str(key_path), clock, rotate_days=0, backup_retention_days=1
    )
    assert report.rotated_to is None and report.destroyed == []


async def test_horizon_spans_every_kek_that_wrapped_the_key(database: Database, tmp_path: Path) -> None:
    clock = FrozenClock(datetime.now(UTC) - timedelta(seconds=1))
    key_path = tmp_path / "keys.json"
    services = make_services(database, clock, key_path)
    async with database.sessionmaker() as session, session.begin():
        case = await make_case(session, services, fields={"caller_name": "x"})
    first = services.material.keyring.active_kek_id
    clock.advance(timedelta(days=ROTATE, minutes=1))
    await run_key_lifecycle(
        database, None, str(key_path), clock, rotate_days=ROTATE, backup_retention_days=RETAIN
    )
    clock.advance(timedelta(days=10))
    await shred(database, clock, case.id)  # wrapped first by `first`, then by the second KEK
    material = load_key_file(key_path)
    second = material.keyring.active_kek_id
    assert second != first
    now = clock.now()
    horizon = await erasure_horizon(
        database, material, now=now, rotate_days=ROTATE, backup_retention_days=RETAIN
    )
    # The later of the two: the second KEK, rotated out ROTATE days after its creation.
    created = material.keyring.kek_info(second).created_at
    expected = created + timedelta(days=ROTATE + RETAIN, minutes=20)
    assert list(horizon.by_date) == [
        (expected.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)).strftime("%Y-%m-%d")
    ]
    never = await erasure_horizon(database, material, now=now, rotate_days=0, backup_retention_days=RETAIN)
    assert never.by_date == {"never": 1}


async def test_keys_status_reports_the_erasure_horizon(
    database: Database, fresh_database_url: str, clock: FrozenClock, tmp_path: Path
) -> None:
    key_path = tmp_path / "keys.json"
    services = make_services(database, clock, key_path)
    async with database.sessionmaker() as session, session.begin():
        case = await make_case(session, services, fields={"caller_name": "x"})
        await make_case(session, services, fields={"caller_name": "y"})
    await shred(database, clock, case.id)
    env = {
        "HOTLINE_DATABASE_URL": fresh_database_url,
        "HOTLINE_KEYRING_FILE": str(key_path),
        "HOTLINE_KEK_ROTATE_DAYS": "30",
        "HOTLINE_BACKUP_RETENTION_DAYS": "14",
    }
    status = run_cli("keys", "status", env=env, cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    created = services.material.keyring.kek_info(services.material.keyring.active_kek_id).created_at
    due = (created + timedelta(days=44, minutes=20)).replace(hour=0, minute=0, second=0, microsecond=0)
    day = (due + timedelta(days=1)).strftime("%Y-%m-%d")
    assert f"destroy due {day}" in status.stdout
    assert "shredded subjects: 1; backup erasure complete for 0" in status.stdout
    assert f"1 more: backups cannot revive them by {day}" in status.stdout
    assert "Expire database and key-file backups on the same horizon" in status.stdout
    # The operator's rotate waits for the key-file lock instead of overwriting a scheduled change.
    with key_file_lock(str(key_path)):
        waiting = asyncio.create_task(asyncio.to_thread(run_cli, "keys", "rotate", env=env, cwd=tmp_path))
        await asyncio.sleep(1.5)
        assert not waiting.done()
    rotated = await waiting
    assert rotated.returncode == 0, rotated.stderr
