"""Benchmark: revealing 20 sealed fields of a case vs reading the same page unencrypted.

    python bench/reveal.py [--rounds 200] [--database-url URL]

A. the same 20 values (9 intake fields + 11 notes, ~200 bytes each) stored in plain text columns
   of a scratch table, read with one SELECT in a transaction: the floor;
B. the access broker's reveal of the case's 9 sealed fields and its 11 notes, as
   `POST /api/v1/cases/{id}/reveal` does it: policy check, data keys confirmed live in the
   transaction, one audit entry each for the fields and the notes batch, COMMIT, then decrypt.
Prints B/A. Medians of per-round times; the database is the embedded SQLite default unless given.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import text

from app.access.broker import AccessBroker
from app.access.policy import Principal, Purpose
from app.accounts.models import Role, UserStatus
from app.accounts.service import create_user
from app.audit.service import Actor
from app.cases.models import CASE_SEALED_FIELDS, CaseNote
from app.cases.service import add_note, create_case
from app.clock import SystemClock
from app.db.engine import create_database
from app.db.migrate import upgrade
from app.keys.store import KeyStore, Sealer
from crypto.keyfile import create_key_file

SETUP = Actor("cli:bench")
VALUE = "x" * 200


async def main() -> None:
    scratch = Path(tempfile.mkdtemp())
    url = args.database_url or f"sqlite:///{scratch}/reveal.db"
    database = create_database(url)
    await upgrade(database)
    clock = SystemClock()
    sealer = Sealer(KeyStore(create_key_file(scratch / "keys.json")), clock)
    broker = AccessBroker(sealer, clock)
    async with database.sessionmaker() as session:
        user, _ = await create_user(
            session,
            sealer,
            clock,
            actor=SETUP,
            email=f"{uuid.uuid4().hex[:10]}@example.org",
            name="Volunteer",
            roles="volunteer",
        )
        user.status = UserStatus.active
        case = await create_case(
            session,
            sealer,
            clock,
            actor=SETUP,
            language="es",
            assignee=user,
            fields={name: VALUE for name in CASE_SEALED_FIELDS},
        )
        for _ in range(11):
            await add_note(session, sealer, clock, case, author=user, actor=SETUP, body=VALUE)
        await session.execute(text("CREATE TABLE bench_plain (id INTEGER PRIMARY KEY, value TEXT)"))
        for n in range(20):
            await session.execute(
                text("INSERT INTO bench_plain (id, value) VALUES (:n, :v)"), {"n": n, "v": VALUE}
            )
        await session.commit()
    principal = Principal(id=user.public_id, roles=frozenset({Role.volunteer}), user_id=user.id)
    from sqlalchemy import select

    async def plain() -> None:
        async with database.sessionmaker() as session, session.begin():
            values = (await session.execute(text("SELECT value FROM bench_plain"))).scalars().all()
            assert len(values) == 20

    async def sealed() -> None:
        async with database.sessionmaker() as session:
            row = await session.get(type(case), case.id)
            assert row is not None
            fields = await broker.reveal_case(
                session, principal, row, list(CASE_SEALED_FIELDS), Purpose.intake
            )
            notes = list(await session.scalars(select(CaseNote).where(CaseNote.case_id == case.id)))
            bodies = await broker.reveal_rows(
                session,
                principal,
                notes,
                "body",
                purpose=Purpose.intake,
                action="case.notes_reveal",
                object_type="case",
                object_id=row.public_id,
            )
            assert len(fields.values) + len(bodies) == 20 and not fields.erased

    async def timed(work: object) -> float:
        samples = []
        for _ in range(args.rounds):
            started = time.perf_counter()
            await work()  # type: ignore[operator]
            samples.append((time.perf_counter() - started) * 1000)
        return statistics.median(samples)

    await plain()
    await sealed()  # warm the data-key cache, as a running worker's is
    floor = await timed(plain)
    ours = await timed(sealed)
    floor_after = await timed(plain)
    await database.dispose()
    base = (floor + floor_after) / 2
    print(
        f"A. 20 plain values, one SELECT:            {base:7.2f} ms "
        f"(before {floor:.2f}, after {floor_after:.2f})"
    )
    print(f"B. reveal of 20 sealed values (2 audited): {ours:7.2f} ms")
    print(f"B/A: {ours / base:.1f}x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    asyncio.run(main())
