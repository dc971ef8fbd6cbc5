"""PostgreSQL: the service role can only append, and triggers hold even for replication sessions."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import make_url

from app.audit.verify import verify_chain
from app.clock import FrozenClock
from app.db.engine import Database, create_database
from app.db.grants import apply_grants, service_role_problems
from crypto.keyfile import KeyMaterial
from tests.audit.conftest import append

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def postgres(backend: str) -> None:
    if backend != "postgresql":
        pytest.skip("PostgreSQL role split")


def libpq(url: str, user: str | None = None) -> str:
    parsed = make_url(url).set(drivername="postgresql")
    if user:
        parsed = parsed.set(username=user, password=None)
    return parsed.render_as_string(hide_password=False)


@pytest.fixture
def service_role(postgres: None, fresh_database_url: str) -> Iterator[str]:
    role = f"hotline_svc_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(libpq(fresh_database_url), autocommit=True) as conn:
        conn.execute(f'CREATE ROLE "{role}" LOGIN')
    yield role
    with psycopg.connect(libpq(fresh_database_url), autocommit=True) as conn:
        conn.execute(f'DROP OWNED BY "{role}"')
        conn.execute(f'DROP ROLE "{role}"')


async def test_service_role_can_append_but_never_change(
    database: Database, clock: FrozenClock, fresh_database_url: str, service_role: str
) -> None:
    await apply_grants(database, service_role)
    await append(database, clock, 2)
    as_service = create_database(libpq(fresh_database_url, service_role))
    try:
        assert await service_role_problems(as_service) == []
        await append(as_service, clock, 1)  # INSERT + SELECT are enough to extend the chain
        for statement in (
            "UPDATE audit_entries SET purpose = 'x'",
            "DELETE FROM audit_entries",
            "TRUNCATE audit_entries",
            "UPDATE audit_checkpoints SET key_id = 'x'",
            "ALTER TABLE audit_entries DISABLE TRIGGER audit_entries_no_change",
            "DROP TABLE audit_entries",
        ):
            with pytest.raises(Exception, match=r"permission denied|must be owner"):
                async with as_service.engine.begin() as conn:
                    await conn.exec_driver_sql(statement)
    finally:
        await as_service.dispose()
    async with database.engine.connect() as conn:
        assert (await conn.exec_driver_sql("SELECT count(*) FROM audit_entries")).scalar() == 3


async def test_replication_role_does_not_switch_the_triggers_off(
    postgres: None, database: Database, clock: FrozenClock
) -> None:
    await append(database, clock, 2)
    for statement in (
        "DELETE FROM audit_entries",
        "TRUNCATE audit_entries",
        "UPDATE audit_entries SET purpose='x'",
    ):
        with pytest.raises(Exception, match="append-only"):
            async with database.engine.begin() as conn:
                await conn.exec_driver_sql("SET session_replication_role = replica")
                await conn.exec_driver_sql(statement)
    async with database.engine.connect() as conn:
        assert (await conn.exec_driver_sql("SELECT count(*) FROM audit_entries")).scalar() == 2


async def test_superuser_and_owner_are_named_as_problems(postgres: None, database: Database) -> None:
    problems = await service_role_problems(database)
    assert any("superuser" in p for p in problems) and any("owns the tables" in p for p in problems)


APPENDER = textwrap.dedent(
    """
    import asyncio, sys
    from app.audit import service as audit
    from app.clock import SystemClock
    from app.db.engine import create_database

    url, worker, count = sys.argv[1], sys.argv[2], int(sys.argv[3])

    async def main():
        database = create_database(url)
        clock = SystemClock()
        for n in range(count):
            try:
                async with database.sessionmaker() as session, session.begin():
                    audit.record(session, clock, actor=audit.Actor(f"W-{worker}"), action="test.append",
                                 object_id=f"w{worker}-n{n}")
                    if n % 7 == 3:
                        raise RuntimeError("roll this one back")
            except RuntimeError:
                pass
        await database.dispose()

    asyncio.run(main())
    """
)


async def test_eight_processes_append_without_gap_or_fork(
    postgres: None, database: Database, fresh_database_url: str, keys: KeyMaterial, tmp_path: Path
) -> None:
    script = tmp_path / "appender.py"
    script.write_text(APPENDER)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    per_worker = 60
    processes = [
        subprocess.Popen([sys.executable, str(script), fresh_database_url, str(i), str(per_worker)], env=env)
        for i in range(8)
    ]
    for process in processes:
        assert await asyncio.to_thread(process.wait, 180) == 0
    committed_per_worker = sum(1 for n in range(per_worker) if n % 7 != 3)
    async with database.engine.connect() as conn:
        report = await verify_chain(conn, keys.checkpoint_verifier())
        distinct = (
            await conn.exec_driver_sql("SELECT count(DISTINCT object_id) FROM audit_entries")
        ).scalar()
    assert report.ok, report.problems
    assert report.entries == distinct == 8 * committed_per_worker
    assert (report.first_seq, report.last_seq) == (1, 8 * committed_per_worker)
