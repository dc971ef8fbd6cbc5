"""Key-encryption-key rotation without downtime, retirement and destruction.

Rotation adds a KEK (the old active one becomes decrypt-only), writes the key file atomically,
then rewraps every data key in small batches: only the wrapped data keys change, never a sealed
field, so nothing is re-encrypted and serving continues. Each batch is one short transaction
(on SQLite it holds the write lock for a few milliseconds). Serving processes pick up the new
key file on their own (`KeyStore.refresh`). Interrupted? Run it again: it resumes rewrapping
instead of adding yet another KEK.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import func, select, update

from app.audit import service as audit
from app.audit.service import Actor
from app.clock import Clock
from app.db.engine import Database
from app.keys.models import DataKeyRecord
from crypto.envelope import rewrap_data_key
from crypto.keyfile import KeyMaterial, save_key_file
from crypto.keyring import KekState, wrapped_kek_id


class KeyOperationRefused(RuntimeError):
    """The operation would lose data (e.g. destroying a KEK that still wraps a live data key)."""


@dataclass
class RotationReport:
    new_kek: str | None
    resumed: bool
    rewrapped: int = 0
    batches: int = 0
    longest_batch_ms: float = 0.0
    retired: list[str] = field(default_factory=list)


async def live_keys_by_kek(database: Database) -> dict[str, int]:
    async with database.sessionmaker() as session:
        rows = await session.execute(
            select(DataKeyRecord.kek_id, func.count())
            .where(DataKeyRecord.wrapped.is_not(None))
            .group_by(DataKeyRecord.kek_id)
        )
        return {kek: count for kek, count in rows.all() if kek is not None}


async def unknown_keks(database: Database, material: KeyMaterial) -> list[str]:
    """KEK ids the database's live data keys reference but the keyring cannot use."""
    usable = {
        kek for kek in material.keyring.kek_ids() if material.keyring.state_of(kek) is not KekState.DESTROYED
    }
    return sorted(set(await live_keys_by_kek(database)) - usable)


async def rewrap_all(
    database: Database,
    material: KeyMaterial,
    clock: Clock,
    *,
    batch_size: int = 200,
    progress: Callable[[int, int], None] | None = None,
    pause_seconds: float = 0.0,
    max_seconds: float | None = None,
) -> tuple[int, int, float]:
    """Rewrap every live data key not under the active KEK. Returns (count, batches, longest ms).

    With `max_seconds`, stops after the batch that crosses that budget (a scheduled job that must
    finish within its lease); what is left is rewrapped by the next run.
    """
    budget_end = None if max_seconds is None else time.monotonic() + max_seconds
    active = material.keyring.active_kek_id
    total = sum(count for kek, count in (await live_keys_by_kek(database)).items() if kek != active)
    done = batches = 0
    longest = 0.0
    started = time.perf_counter()
    while True:
        async with database.sessionmaker() as session, session.begin():
            await session.connection()  # BEGIN (IMMEDIATE on SQLite): from here we hold the lock
            started = time.perf_counter()
            rows = (
                (
                    await session.execute(
                        select(DataKeyRecord)
                        .where(DataKeyRecord.wrapped.is_not(None), DataKeyRecord.kek_id != active)
                        .limit(batch_size)
                    )
                )
                .scalars()
                .all()
            )
            if not rows:
                break
            now = clock.now()
            for row in rows:
                assert row.wrapped is not None
                rewrapped = rewrap_data_key(
                    material.keyring,
                    row.wrapped,
                    data_key_id=row.id,
                    subject_id=row.subject_id,
                    retention_class=row.retention_class,
                )
                # Conditional on the stored value: a key destroyed meanwhile stays destroyed.
                await session.execute(
                    update(DataKeyRecord)
                    .where(DataKeyRecord.id == row.id, DataKeyRecord.wrapped == row.wrapped)
                    .values(wrapped=rewrapped, kek_id=wrapped_kek_id(rewrapped), rewrapped_at=now)
                    .execution_options(synchronize_session=False)
                )
            done += len(rows)
        batches += 1
        longest = max(longest, (time.perf_counter() - started) * 1000)  # lock held, commit included
        if progress:
            progress(done, max(total, done))
        if budget_end is not None and time.monotonic() >= budget_end:
            break
        # Throttle: leave the database to the live service between batches.
        await asyncio.sleep(pause_seconds)
    return done, batches, longest


async def rotate(
    database: Database,
    material: KeyMaterial,
    path: str,
    clock: Clock,
    *,
    actor: Actor,
    batch_size: int = 200,
    progress: Callable[[int, int], None] | None = None,
    pause_seconds: float = 0.0,
) -> RotationReport:
    active = material.keyring.active_kek_id
    pending = {kek for kek in await live_keys_by_kek(database) if kek != active}
    report = RotationReport(new_kek=None, resumed=bool(pending))
    if not pending:
        report.new_kek = material.keyring.rotate()
        save_key_file(path, material)
        async with database.sessionmaker() as session, session.begin():
            audit.record(
                session,
                clock,
                actor=actor,
                action="keys.rotated",
                object_type="kek",
                object_id=report.new_kek,
            )
    report.rewrapped, report.batches, report.longest_batch_ms = await rewrap_all(
        database, material, clock, batch_size=batch_size, progress=progress, pause_seconds=pause_seconds
    )
    report.retired = await retire_drained(database, material, path)
    async with database.sessionmaker() as session, session.begin():
        audit.record(
            session,
            clock,
            actor=actor,
            action="keys.rewrapped",
            object_type="kek",
            object_id=material.keyring.active_kek_id,
            details={"rewrapped": report.rewrapped, "retired": len(report.retired)},
        )
    return report


async def retire_drained(database: Database, material: KeyMaterial, path: str) -> list[str]:
    """Retire every decrypt-only KEK that no live data key uses any more; saves the file if any."""
    remaining = await live_keys_by_kek(database)
    retired = []
    for kek in material.keyring.kek_ids():
        if material.keyring.state_of(kek) is KekState.DECRYPT_ONLY and not remaining.get(kek):
            material.keyring.retire(kek)
            retired.append(kek)
    if retired:
        save_key_file(path, material)
    return retired


async def destroy_retired(
    database: Database, material: KeyMaterial, path: str, clock: Clock, *, before: datetime, actor: Actor
) -> list[str]:
    """Destroy KEKs retired before `before`; refuses any that still wraps a live data key."""
    live = await live_keys_by_kek(database)
    candidates = []
    for kek in material.keyring.kek_ids():
        info = material.keyring.kek_info(kek)
        if info.state is KekState.RETIRED and info.retired_at is not None and info.retired_at < before:
            if live.get(kek):
                raise KeyOperationRefused(
                    f"{kek} still wraps {live[kek]} live data keys: run `hotline keys rotate` first"
                )
            candidates.append(kek)
    for kek in candidates:
        material.keyring.destroy(kek)
    if candidates:
        save_key_file(path, material)
        async with database.sessionmaker() as session, session.begin():
            for kek in candidates:
                audit.record(
                    session, clock, actor=actor, action="keys.destroyed", object_type="kek", object_id=kek
                )
    return candidates
