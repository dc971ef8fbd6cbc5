from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text

from app.audit import service as audit
from app.clock import FrozenClock
from app.db.engine import Database
from app.publicid import ALPHABET
from crypto.keyfile import KeyMaterial, create_key_file

TAMPER_TRIGGERS = {
    "sqlite": [
        "audit_entries_no_update",
        "audit_entries_no_delete",
        "audit_checkpoints_no_update",
        "audit_checkpoints_no_delete",
    ],
}


@pytest.fixture
def keys(tmp_path: Path) -> KeyMaterial:
    return create_key_file(tmp_path / "keys.json", development=True)


def numbered_public_id(n: int) -> str:
    """A valid public id that differs per `n` (the access log refuses anything else)."""
    digits = ""
    for _ in range(4):
        n, index = divmod(n, len(ALPHABET))
        digits = ALPHABET[index] + digits
    return f"CS-2222-{digits}"


async def append(database: Database, clock: FrozenClock, count: int, *, action: str = "case.reveal") -> None:
    """`count` committed entries, one transaction each, one second apart."""
    for n in range(count):
        async with database.sessionmaker() as session, session.begin():
            audit.record(
                session,
                clock,
                actor=audit.Actor("U-TEST", ("volunteer",)),
                action=action,
                object_type="case",
                object_id=numbered_public_id(n),
                fields=["caller_name"],
                purpose="intake",
            )
        clock.advance(1)


async def checkpoint(database: Database, clock: FrozenClock, keys: KeyMaterial) -> int:
    async with database.sessionmaker() as session, session.begin():
        made = await audit.sign_checkpoint(
            session, clock, keys.signer, every_entries=1, every_seconds=1, force=True
        )
        assert made is not None
        return made.seq


class Tamperer:
    """Edits the audit tables the way someone with direct database access would (triggers off)."""

    def __init__(self, database: Database) -> None:
        self.database = database

    async def __call__(self, *statements: str, **params: object) -> None:
        async with self.database.engine.begin() as conn:
            if self.database.dialect == "sqlite":
                for trigger in TAMPER_TRIGGERS["sqlite"]:
                    await conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {trigger}")
            else:
                for table in ("audit_entries", "audit_checkpoints"):
                    await conn.exec_driver_sql(f"ALTER TABLE {table} DISABLE TRIGGER {table}_no_change")
            for statement in statements:
                await conn.execute(text(statement), params)
            if self.database.dialect == "postgresql":
                for table in ("audit_entries", "audit_checkpoints"):
                    await conn.exec_driver_sql(f"ALTER TABLE {table} ENABLE ALWAYS TRIGGER {table}_no_change")


@pytest.fixture
async def tamper(database: Database) -> AsyncIterator[Tamperer]:
    yield Tamperer(database)
