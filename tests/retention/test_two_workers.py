"""Two workers, one database: a worker that already holds a subject's data key in its cache — and
the row's ciphertext in memory — cannot reveal it once another worker has shredded the subject
(each reveal confirms the key is live in its own transaction; the cache cannot revive it)."""

from __future__ import annotations

from typing import Any

from app.access.policy import Principal, Purpose
from app.audit.service import Actor
from app.cases.models import Case
from app.cases.service import create_case
from app.clock import FrozenClock
from app.db.engine import create_database
from app.keys.sealed import RetentionClass
from app.main import create_app
from app.retention import service as retention

SETUP = Actor("cli:test")
DIALLER = Principal.system("callback-dialler")


async def test_a_cached_key_does_not_outlive_a_shred_by_another_worker(
    make_settings: Any, fresh_database_url: str, clock: FrozenClock
) -> None:
    settings = make_settings()
    first_db, second_db = create_database(fresh_database_url), create_database(fresh_database_url)
    first = create_app(settings, clock=clock, database=first_db)
    second = create_app(settings, clock=clock, database=second_db)
    async with first.router.lifespan_context(first), second.router.lifespan_context(second):
        async with first_db.sessionmaker() as session:
            case = await create_case(
                session,
                first.state.sealer,
                clock,
                actor=SETUP,
                language="es",
                fields={"callback_number": "+12025550166"},
            )
            await session.commit()
            case_id = case.id
        # Worker one reads it (its data key is now cached) and keeps the row in memory.
        async with first_db.sessionmaker() as session:
            row = await session.get(Case, case_id)
            assert row is not None
            shown = await first.state.broker.reveal_for_system(
                session,
                DIALLER,
                row,
                "callback_number",
                purpose=Purpose.contact_caller,
                object_type="case",
                object_id=row.public_id,
            )
            assert shown == "+12025550166"
        # Worker two shreds the case's content.
        async with second_db.sessionmaker() as session, session.begin():
            await retention.shred(
                session,
                clock,
                case_id,
                [RetentionClass.case_content],
                actor=retention.RETENTION,
                reason="request",
                object_type="case",
                object_id="test",
            )
        # Worker one, with the key cached and the ciphertext still in hand, gets nothing.
        async with first_db.sessionmaker() as session:
            again = await first.state.broker.reveal_for_system(
                session,
                DIALLER,
                row,
                "callback_number",
                purpose=Purpose.contact_caller,
                object_type="case",
                object_id=row.public_id,
            )
        assert again is None
        async with first_db.sessionmaker() as session:
            fresh = await session.get(Case, case_id)
            assert fresh is not None and fresh.callback_number is None and fresh.erased_reason == "request"
    await first_db.dispose()
    await second_db.dispose()
