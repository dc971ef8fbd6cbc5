"""The backup erasure horizon: scheduled KEK rotation and destruction, and the date it promises.

Crypto-shredding a data key (clearing `data_keys.wrapped`) erases the live database at once, but a
database backup taken earlier still holds the wrapped key. It stays unreadable only while no copy
of the KEK that wrapped it survives. So the service rotates the active KEK every
`HOTLINE_KEK_ROTATE_DAYS` (rewrapping every live data key, after which the old KEK is retired) and
destroys a retired KEK once `HOTLINE_BACKUP_RETENTION_DAYS` have passed since its retirement: by
then every database backup taken while it still wrapped something has expired.

Several workers run the jobs runner. The periodic job's dedup key gives each slot to one worker;
an exclusive lock on `<key file>.lock` also keeps it apart from an operator's `hotline keys
rotate|destroy` running at the same moment. Under the lock the key file is re-read (never the
worker's in-memory copy, which may be stale), changed, and replaced atomically
(`save_key_file`: temporary file, fsync, rename). Other workers' `KeyStore` notices the new file
on its own within a second, and at once when they meet a data key wrapped under a KEK they do not
know yet (`Sealer._unwrap`).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import math
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from app.audit import service as audit
from app.audit.service import Actor
from app.clock import Clock
from app.db.engine import Database
from app.keys.models import DataKeyRecord
from app.keys.rotation import (
    KeyOperationRefused,
    destroy_retired,
    live_keys_by_kek,
    retire_drained,
    rewrap_all,
)
from app.keys.store import KeyStore
from crypto.keyfile import KeyMaterial, load_key_file, save_key_file
from crypto.keyring import KekInfo, KekState

log = logging.getLogger("hotline.keys")

KEYS_JOB = Actor("system:keys")
# The scheduled job looks every this many seconds; the horizon it reports allows for that delay.
LIFECYCLE_PERIOD_SECONDS = 600.0


class KeyFileBusy(RuntimeError):
    """Another process is changing the key file right now."""


@contextlib.contextmanager
def key_file_lock(path: str, *, wait: bool = True) -> Iterator[None]:
    """Hold the exclusive lock that serialises changes to the key file at `path`.

    `wait=False` raises `KeyFileBusy` instead of waiting (a scheduled job simply skips its turn).
    """
    lock_path = f"{path}.lock"
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            raise KeyFileBusy(f"the key file {path} is being changed by another process") from None
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


@dataclass
class LifecycleReport:
    rotated_to: str | None = None
    rewrapped: int = 0
    rewrap_pending: bool = False
    retired: list[str] = field(default_factory=list)
    destroyed: list[str] = field(default_factory=list)
    refused: str | None = None


async def run_key_lifecycle(
    database: Database,
    keystore: KeyStore | None,
    path: str,
    clock: Clock,
    *,
    rotate_days: float,
    backup_retention_days: float,
    max_seconds: float = 20.0,
    batch_size: int = 200,
) -> LifecycleReport:
    """One turn of the scheduled rotate-and-destroy: rotate when the active KEK is due, rewrap
    (within `max_seconds`; the next turn resumes), retire drained KEKs, destroy those retired more
    than `backup_retention_days` ago. Raises `KeyFileBusy` when an operator holds the lock."""
    report = LifecycleReport()
    with key_file_lock(path, wait=False):
        material = load_key_file(path, clock=clock.now)
        now = clock.now()
        active = material.keyring.active_kek_id
        pending = {kek for kek in await live_keys_by_kek(database) if kek != active}
        created = material.keyring.kek_info(active).created_at
        if not pending and rotate_days > 0 and now - created >= timedelta(days=rotate_days):
            report.rotated_to = material.keyring.rotate()
            save_key_file(path, material)
            async with database.sessionmaker() as session, session.begin():
                audit.record(
                    session,
                    clock,
                    actor=KEYS_JOB,
                    action="keys.rotated",
                    object_type="kek",
                    object_id=report.rotated_to,
                    details={"scheduled": True},
                )
            _follow(keystore)
        report.rewrapped, _batches, _longest = await rewrap_all(
            database, material, clock, batch_size=batch_size, max_seconds=max_seconds
        )
        active = material.keyring.active_kek_id
        report.rewrap_pending = any(kek != active for kek in await live_keys_by_kek(database))
        if not report.rewrap_pending:
            report.retired = await retire_drained(database, material, path)
        if report.rewrapped or report.retired:
            async with database.sessionmaker() as session, session.begin():
                audit.record(
                    session,
                    clock,
                    actor=KEYS_JOB,
                    action="keys.rewrapped",
                    object_type="kek",
                    object_id=active,
                    details={"rewrapped": report.rewrapped, "retired": len(report.retired)},
                )
        try:
            report.destroyed = await destroy_retired(
                database,
                material,
                path,
                clock,
                before=now - timedelta(days=backup_retention_days),
                actor=KEYS_JOB,
            )
        except KeyOperationRefused as exc:
            # A retired KEK wrapping a live key (a restored row?): never destroy it; say so loudly.
            report.refused = str(exc)
            log.error("scheduled KEK destruction refused", extra={"reason": str(exc)})
        _follow(keystore)
    return report


def _follow(keystore: KeyStore | None) -> None:
    if keystore is not None:
        keystore.refresh(force=True)


# --- the erasure horizon -----------------------------------------------------------------------


def kek_destruction_date(
    info: KekInfo, *, now: datetime, rotate_days: float, backup_retention_days: float
) -> datetime | None:
    """When this KEK is (or, on the current schedule, will be) destroyed; None if never scheduled.

    destroyed → when it was; retired → retirement + backup retention; decrypt-only (rewrap under
    way) → now + backup retention; active → its rotation date + backup retention, or None when
    scheduled rotation is off (`HOTLINE_KEK_ROTATE_DAYS=0`). Projected dates allow one job period.
    """
    retention = timedelta(days=backup_retention_days)
    slack = timedelta(seconds=LIFECYCLE_PERIOD_SECONDS)
    if info.state is KekState.DESTROYED:
        return info.destroyed_at or now
    if info.state is KekState.RETIRED and info.retired_at is not None:
        return max(info.retired_at + retention, now) + slack
    if info.state is KekState.DECRYPT_ONLY or info.state is KekState.RETIRED:
        return now + retention + 2 * slack
    if rotate_days <= 0:
        return None
    return max(info.created_at + timedelta(days=rotate_days), now) + retention + 2 * slack


def wrapped_by(infos: list[KekInfo], created_at: datetime, destroyed_at: datetime) -> list[KekInfo]:
    """The KEKs that can have wrapped a data key alive from `created_at` to `destroyed_at`.

    `data_keys` keeps only the current `kek_id`, so the history is reasoned from KEK dates rather
    than recorded per data key: a KEK wraps data keys only from its creation (it is active, then
    decrypt-only while the rewrap runs) until its retirement, which by definition happens once no
    live data key is wrapped under it. Any KEK whose [created, retired] interval overlaps the data
    key's life may have wrapped it, and may therefore sit in a backup next to it; none outside it
    can. This is a superset (a KEK active for a day of the key's life counts), which only moves the
    date later — the safe direction — and needs no extra writes on every seal and rewrap, nor a
    per-subject history table that would itself outlive the shred.
    """
    return [
        info
        for info in infos
        if info.created_at <= destroyed_at and (info.retired_at is None or info.retired_at >= created_at)
    ]


@dataclass
class ErasureHorizon:
    """Shredded subjects, grouped by the day after which no backup can revive them."""

    by_date: dict[str, int] = field(default_factory=dict)  # YYYY-MM-DD (or "never") -> subjects
    complete: int = 0  # subjects whose every wrapping KEK is destroyed already
    subjects: int = 0


def day_after(moment: datetime) -> str:
    """The first midnight (UTC) at or after `moment`: a date an operator can rely on."""
    moment = moment.astimezone(UTC)
    midnight = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    days = math.ceil((moment - midnight).total_seconds() / 86400)
    return (midnight + timedelta(days=days)).strftime("%Y-%m-%d")


async def erasure_horizon(
    database: Database,
    material: KeyMaterial,
    *,
    now: datetime,
    rotate_days: float,
    backup_retention_days: float,
) -> ErasureHorizon:
    """For every shredded subject, the date by which every KEK that once wrapped its keys is destroyed."""
    infos = [material.keyring.kek_info(kek) for kek in material.keyring.kek_ids()]
    by_id = {info.id: info for info in infos}
    dates = {
        info.id: kek_destruction_date(
            info, now=now, rotate_days=rotate_days, backup_retention_days=backup_retention_days
        )
        for info in infos
    }
    latest: dict[uuid.UUID, datetime | None] = {}
    async with database.sessionmaker() as session:
        rows = await session.execute(
            select(
                DataKeyRecord.subject_id,
                DataKeyRecord.created_at,
                DataKeyRecord.destroyed_at,
                DataKeyRecord.kek_id,
            ).where(DataKeyRecord.destroyed_at.is_not(None))
        )
        for subject, created_at, destroyed_at, kek_id in rows.all():
            assert destroyed_at is not None
            keks = wrapped_by(infos, created_at, destroyed_at)
            if kek_id in by_id and by_id[kek_id] not in keks:
                keks.append(by_id[kek_id])
            horizon: datetime | None = destroyed_at
            for info in keks:
                date = dates[info.id]
                horizon = None if date is None or horizon is None else max(horizon, date)
            if subject in latest:
                previous = latest[subject]
                horizon = None if previous is None or horizon is None else max(previous, horizon)
            latest[subject] = horizon
    result = ErasureHorizon(subjects=len(latest))
    for horizon in latest.values():
        if horizon is not None and horizon <= now:
            result.complete += 1
            continue
        day = "never" if horizon is None else day_after(horizon)
        result.by_date[day] = result.by_date.get(day, 0) + 1
    result.by_date = dict(sorted(result.by_date.items()))
    return result
