"""Data keys: one per (subject, retention class), wrapped by the keyring, cached briefly.

A :class:`DataKey` is the 32-byte AES-256-GCM key that seals a subject's fields of one
retention class (a case's notes, a caller's identity...).  Only its wrapped form is stored
(in the database, next to its id, subject and retention class); destroying that row
crypto-shreds exactly that class of that subject.
"""

from __future__ import annotations

import hmac
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from typing import NoReturn
from uuid import UUID

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ._encoding import require_bytes
from .keyring import DATA_KEY_LEN, KeyProvider

__all__ = [
    "DataKey",
    "DataKeyCache",
    "create_data_key",
    "rewrap_data_key",
    "unwrap_data_key",
    "wrap_data_key",
]


class DataKey:
    """A data key: a UUID id and 32 bytes of AES-256-GCM key material.

    ``repr``/``str`` show only the id; pickling raises ``TypeError`` so the material cannot
    slip into a cache, a task queue or a crash dump by serialisation.
    """

    __slots__ = ("_aead", "_header", "_id", "_material")

    def __init__(self, key_id: UUID, material: bytes) -> None:
        """Wrap existing material; use :meth:`generate` for a new key."""
        if not isinstance(key_id, UUID):
            raise TypeError("data key id must be a uuid.UUID")
        material = require_bytes(material, "data key material")
        if len(material) != DATA_KEY_LEN:
            raise ValueError(f"data key material must be {DATA_KEY_LEN} bytes")
        self._id = key_id
        self._material = material
        # One AESGCM per key: constructing it costs about as much as a small encryption.
        self._aead = AESGCM(material)
        # version | alg | key id: the authenticated prefix of every value sealed under this key.
        self._header = bytes((0x01, 0x01)) + key_id.bytes

    @classmethod
    def generate(cls) -> DataKey:
        """Return a fresh random data key with a random (version 4) UUID id."""
        return cls(uuid.uuid4(), AESGCM.generate_key(bit_length=256))

    @property
    def id(self) -> UUID:
        """The key id written into every sealed value's header."""
        return self._id

    @property
    def material(self) -> bytes:
        """The raw key bytes (for wrapping; nothing else should need them)."""
        return self._material

    @property
    def sealed_header(self) -> bytes:
        """The 18-byte authenticated header of values sealed under this key (see crypto.field)."""
        return self._header

    @property
    def aead(self) -> AESGCM:
        """The cached AES-256-GCM primitive for this key (used by :mod:`crypto.field`)."""
        return self._aead

    def __repr__(self) -> str:
        return f"<DataKey {self._id}>"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DataKey):
            return NotImplemented
        return self._id == other._id and hmac.compare_digest(self._material, other._material)

    def __hash__(self) -> int:
        return hash(self._id)

    def __reduce_ex__(self, protocol: object) -> NoReturn:
        raise TypeError("DataKey holds key material and cannot be pickled")

    # The object is immutable, so copies can share it; without these, copy() would fall back
    # to __reduce_ex__ and raise.
    def __copy__(self) -> DataKey:
        return self

    def __deepcopy__(self, memo: object) -> DataKey:
        return self


def create_data_key(
    provider: KeyProvider, *, subject_id: str | UUID, retention_class: str
) -> tuple[DataKey, bytes]:
    """Generate a data key for (subject, retention class) and wrap it under the active KEK.

    Returns the key (to seal with now, or to cache) and its wrapped form (to store).
    """
    data_key = DataKey.generate()
    return data_key, wrap_data_key(provider, data_key, subject_id=subject_id, retention_class=retention_class)


def wrap_data_key(
    provider: KeyProvider, data_key: DataKey, *, subject_id: str | UUID, retention_class: str
) -> bytes:
    """Wrap ``data_key`` under the provider's active KEK, bound to its id, subject and class."""
    return provider.wrap(
        data_key.material, data_key_id=data_key.id, subject_id=subject_id, retention_class=retention_class
    )


def unwrap_data_key(
    provider: KeyProvider, wrapped: bytes, *, data_key_id: UUID, subject_id: str | UUID, retention_class: str
) -> DataKey:
    """Unwrap a stored data key (see :meth:`KeyProvider.unwrap` for the errors)."""
    material = provider.unwrap(
        wrapped, data_key_id=data_key_id, subject_id=subject_id, retention_class=retention_class
    )
    return DataKey(data_key_id, material)


def rewrap_data_key(
    provider: KeyProvider, wrapped: bytes, *, data_key_id: UUID, subject_id: str | UUID, retention_class: str
) -> bytes:
    """Unwrap under whatever KEK wrapped it and wrap again under the active KEK.

    The key material and id are unchanged, so no sealed field needs re-encrypting.
    """
    material = provider.unwrap(
        wrapped, data_key_id=data_key_id, subject_id=subject_id, retention_class=retention_class
    )
    return provider.wrap(
        material, data_key_id=data_key_id, subject_id=subject_id, retention_class=retention_class
    )


class DataKeyCache:
    """Small thread-safe in-memory cache of unwrapped data keys, by id.

    Entries expire ``ttl_seconds`` after they were put (reading does not extend them, so the
    exposure window of a key in memory stays bounded); beyond ``max_size`` the least
    recently used entry goes.  ``clock`` returns seconds on a monotonic scale and is
    injected so tests can move time.
    """

    def __init__(
        self, *, ttl_seconds: float, max_size: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        """Create an empty cache."""
        if ttl_seconds <= 0:
            raise ValueError("ttl_seconds must be positive")
        if max_size < 1:
            raise ValueError("max_size must be at least 1")
        self._ttl = float(ttl_seconds)
        self._max_size = max_size
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[UUID, tuple[float, DataKey]] = OrderedDict()

    def get(self, key_id: UUID) -> DataKey | None:
        """Return the cached key, or ``None`` if absent or expired (an expired entry is dropped)."""
        with self._lock:
            entry = self._entries.get(key_id)
            if entry is None:
                return None
            expires_at, data_key = entry
            if self._clock() >= expires_at:
                del self._entries[key_id]
                return None
            self._entries.move_to_end(key_id)
            return data_key

    def put(self, data_key: DataKey) -> None:
        """Cache ``data_key`` for the TTL, replacing any entry with the same id."""
        if not isinstance(data_key, DataKey):
            raise TypeError("only DataKey instances can be cached")
        with self._lock:
            now = self._clock()
            self._entries.pop(data_key.id, None)
            self._entries[data_key.id] = (now + self._ttl, data_key)
            self._purge_expired(now)
            while len(self._entries) > self._max_size:
                self._entries.popitem(last=False)

    def evict(self, key_id: UUID) -> bool:
        """Drop ``key_id`` (e.g. after a shred); returns whether it was cached."""
        with self._lock:
            return self._entries.pop(key_id, None) is not None

    def clear(self) -> None:
        """Drop every entry."""
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        with self._lock:
            self._purge_expired(self._clock())
            return len(self._entries)

    def __repr__(self) -> str:
        return f"<DataKeyCache size={len(self)} max_size={self._max_size} ttl={self._ttl}s>"

    def _purge_expired(self, now: float) -> None:
        expired = [key_id for key_id, (expires_at, _) in self._entries.items() if now >= expires_at]
        for key_id in expired:
            del self._entries[key_id]
