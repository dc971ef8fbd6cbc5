"""The process's view of the key file, and the data keys sealed values are encrypted under.

`KeyStore` holds the loaded key material and notices when `hotline keys rotate` (another process)
replaced the file: it re-reads it when the file's identity changes, checked at most once a second
and immediately when an unknown KEK id turns up. So a serving process learns the new active KEK
without a restart, and can unwrap data keys already rewrapped under it.

`Sealer` seals plaintext for a column of a row, creating the subject's data key for that retention
class on first use, and opens sealed values for the access broker. Unwrapped data keys sit in a
small TTL cache; the broker still confirms in its own transaction that the key is live before
every reveal, so correctness never depends on cache eviction.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from app.clock import Clock
from app.db.base import new_id
from app.keys.models import DataKeyRecord
from app.keys.sealed import RetentionClass, Sealed, SealedType, sealed_columns
from crypto.envelope import DataKey, DataKeyCache, create_data_key, unwrap_data_key
from crypto.errors import KeyNotFound
from crypto.field import open_sealed, seal
from crypto.keyfile import KeyMaterial, load_key_file
from crypto.keyring import KeyProvider, wrapped_kek_id


class KeyStore:
    """The key material of this process, refreshed when the key file is replaced."""

    def __init__(self, material: KeyMaterial, path: str | None = None, *, check_every: float = 1.0) -> None:
        self._material = material
        self._path = path
        self._check_every = check_every
        self._checked = time.monotonic()
        self._identity = self._stat()
        self._lock = threading.Lock()

    def _stat(self) -> tuple[int, int, int] | None:
        if self._path is None:
            return None
        try:
            info = os.stat(self._path)
        except OSError:
            return None
        return (info.st_ino, info.st_mtime_ns, info.st_size)

    def refresh(self, *, force: bool = False) -> bool:
        """Re-read the key file if it changed. Returns True when new material was loaded."""
        if self._path is None:
            return False
        now = time.monotonic()
        if not force and now - self._checked < self._check_every:
            return False
        with self._lock:
            self._checked = now
            identity = self._stat()
            if identity is None or identity == self._identity:
                return False
            self._material = load_key_file(self._path)
            self._identity = identity
            return True

    @property
    def material(self) -> KeyMaterial:
        self.refresh()
        return self._material

    @property
    def keyring(self) -> KeyProvider:
        return self.material.keyring


@dataclass(frozen=True)
class SealTarget:
    """Where a value lives: its field id, row and subject — all bound into the ciphertext."""

    field_id: str
    retention_class: RetentionClass
    row_id: uuid.UUID
    subject_id: uuid.UUID


def seal_target(row: Any, attribute: str) -> SealTarget:
    """The field id, retention class, row id and subject of a sealed attribute of an ORM row.

    A model's subject is its `id` unless it names another attribute in `__sealed_subject__`
    (a note is sealed under its case's key). Row ids are set here if the row has none yet: the
    id must exist before INSERT because it is bound into the ciphertext.
    """
    column_type = sealed_columns(type(row)).get(attribute)
    if not isinstance(column_type, SealedType):
        raise AttributeError(f"{type(row).__name__}.{attribute} is not a sealed column")
    if getattr(row, "id", None) is None:
        row.id = new_id()
    subject = getattr(row, getattr(type(row), "__sealed_subject__", "id"))
    if subject is None:
        raise ValueError(f"{type(row).__name__} needs its subject set before sealing")
    return SealTarget(column_type.field_id, column_type.retention_class, row.id, subject)


# Data keys a session created (session.info): never remembered for sealing, because a rollback
# would leave them unrecorded, and a value sealed under them later would be unreadable for good.
_CREATED_KEYS = "hotline.created_data_keys"


class Sealer:
    def __init__(
        self, keys: KeyStore, clock: Clock, *, cache_ttl: float = 300.0, cache_size: int = 1024
    ) -> None:
        self.keys = keys
        self.clock = clock
        self.cache = DataKeyCache(ttl_seconds=cache_ttl, max_size=cache_size) if cache_ttl > 0 else None
        # Sealing only: (subject, class) → (key, monotonic expiry). Reveals never use this — they
        # confirm the key is live in their own transaction. A value sealed within the TTL after
        # its key was destroyed is shredded along with its class, which is what destruction means.
        self.seal_ttl = min(cache_ttl, 60.0)
        self._sealing: dict[tuple[uuid.UUID, str], tuple[DataKey, float]] = {}

    async def data_key(
        self, session: AsyncSession, subject_id: uuid.UUID, retention_class: RetentionClass
    ) -> DataKey:
        """The live data key of (subject, class), created (and wrapped) on first use.

        Never flushes the session: the caller is often midway through building the row it seals
        for (added, not yet complete), and an autoflush here would insert it half-built."""
        with session.no_autoflush:
            return await self._data_key(session, subject_id, retention_class)

    async def _data_key(
        self, session: AsyncSession, subject_id: uuid.UUID, retention_class: RetentionClass
    ) -> DataKey:
        record = await self._record(session, subject_id, retention_class)
        if record is None:
            key, wrapped = create_data_key(
                self.keys.keyring, subject_id=subject_id, retention_class=retention_class.value
            )
            insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
            await session.execute(
                insert(DataKeyRecord)
                .values(
                    id=key.id,
                    subject_id=subject_id,
                    retention_class=retention_class.value,
                    wrapped=wrapped,
                    kek_id=wrapped_kek_id(wrapped),
                    created_at=self.clock.now(),
                )
                .on_conflict_do_nothing(index_elements=["subject_id", "retention_class"])
            )
            record = await self._record(session, subject_id, retention_class)
            assert record is not None
            if record.id == key.id:
                # Created in this session's transaction, which may yet roll back: not for sealing
                # from memory until another transaction has found it committed.
                session.info.setdefault(_CREATED_KEYS, set()).add(key.id)
                self._remember(key)
                return key
        if record.wrapped is None:
            raise KeyDestroyed()
        return self._unwrap(record)

    async def _record(
        self, session: AsyncSession, subject_id: uuid.UUID, retention_class: RetentionClass
    ) -> DataKeyRecord | None:
        return (
            await session.execute(
                select(DataKeyRecord)
                .where(
                    DataKeyRecord.subject_id == subject_id,
                    DataKeyRecord.retention_class == retention_class.value,
                )
                .execution_options(populate_existing=True)
            )
        ).scalar_one_or_none()

    def _remember(self, key: DataKey) -> None:
        if self.cache is not None:
            self.cache.put(key)

    def _unwrap(self, record: DataKeyRecord) -> DataKey:
        cached = self.cache.get(record.id) if self.cache is not None else None
        if cached is not None:
            return cached
        assert record.wrapped is not None
        try:
            key = self._unwrap_with(record)
        except KeyNotFound:
            # Wrapped under a KEK this process has not seen: a rotation replaced the key file.
            if not self.keys.refresh(force=True):
                raise
            key = self._unwrap_with(record)
        self._remember(key)
        return key

    def _unwrap_with(self, record: DataKeyRecord) -> DataKey:
        assert record.wrapped is not None
        return unwrap_data_key(
            self.keys.keyring,
            record.wrapped,
            data_key_id=record.id,
            subject_id=record.subject_id,
            retention_class=record.retention_class,
        )

    async def seal(self, session: AsyncSession, row: Any, attribute: str, plaintext: str | None) -> None:
        """Encrypt `plaintext` for `row.attribute` and assign it (None clears the field)."""
        if plaintext is None:
            setattr(row, attribute, None)
            return
        target = seal_target(row, attribute)
        key = await self._sealing_key(session, target.subject_id, target.retention_class)
        blob = seal(
            key,
            plaintext.encode("utf-8"),
            field_id=target.field_id,
            row_id=target.row_id,
            subject_id=target.subject_id,
        )
        setattr(row, attribute, Sealed(blob))

    async def _sealing_key(
        self, session: AsyncSession, subject_id: uuid.UUID, retention_class: RetentionClass
    ) -> DataKey:
        """A data key to seal with: from memory for a subject sealed to moments ago (hot shared
        subjects such as a day's calls), else from the database."""
        slot = (subject_id, retention_class.value)
        remembered = self._sealing.get(slot)
        now = time.monotonic()
        if remembered is not None and remembered[1] > now:
            return remembered[0]
        key = await self.data_key(session, subject_id, retention_class)
        if self.seal_ttl > 0 and key.id not in session.info.get(_CREATED_KEYS, ()):
            if len(self._sealing) > 4096:
                self._sealing.clear()
            self._sealing[slot] = (key, now + self.seal_ttl)
        return key

    async def live_keys(
        self, session: AsyncSession, key_ids: set[uuid.UUID]
    ) -> dict[uuid.UUID, DataKeyRecord]:
        """The data keys among `key_ids` that are live, read in the caller's transaction."""
        if not key_ids:
            return {}
        rows = await session.scalars(
            select(DataKeyRecord)
            .where(DataKeyRecord.id.in_(key_ids), DataKeyRecord.destroyed_at.is_(None))
            .execution_options(populate_existing=True)
        )
        return {row.id: row for row in rows if row.wrapped is not None}

    def open(self, record: DataKeyRecord, row: Any, attribute: str) -> str:
        """Decrypt one value. Only the access broker calls this, after its audit entry committed."""
        value = getattr(row, attribute)
        if not isinstance(value, Sealed):
            raise TypeError("not a sealed value")
        target = seal_target(row, attribute)
        key = self._unwrap(record)
        plaintext = open_sealed(
            key, value.blob, field_id=target.field_id, row_id=target.row_id, subject_id=target.subject_id
        )
        return plaintext.decode("utf-8")


class KeyDestroyed(Exception):
    """The data key was destroyed (retention or erasure): the value is gone for good."""
