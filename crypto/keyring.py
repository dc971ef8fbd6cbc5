"""Key-encryption keys (KEKs) and the keyring protocol that wraps data keys.

A KEK has a string id (``kek-20261126-01-3f2a9c1b``), a version, a creation time and a state:

* ``active``: the one KEK that wraps new data keys (exactly one at any time);
* ``decrypt-only``: a former active KEK; it still unwraps, and background jobs rewrap
  what it wraps under the active KEK;
* ``retired``: no live data key is wrapped under it any more; kept so backups taken before
  the rewrap stay readable until the backup-retention window has passed;
* ``destroyed``: the id stays known (so a wrapped key under it is reported as shredded,
  not as unknown) but the material is gone.

:class:`KeyProvider` is the protocol callers depend on; :class:`LocalKeyring` implements it
with KEK material held in memory (loaded from the key file).  A KMS or Vault provider can
implement the same protocol without touching callers.

Wrapped data key format (raw bytes)::

    version (1 byte, 0x01) | alg (1 byte, 0x01 = AES-256-GCM)
    | KEK id length (1 byte) | KEK id (ASCII) | nonce (12 bytes) | ciphertext+tag (32+16 bytes)

AAD = ``version | alg | len | KEK id`` || LP("hotline.dek.v1") || LP(data key id, 16 bytes)
|| LP(subject id) || LP(retention class), with ``LP(x) = u32_be(len x) || x``.  So a wrapped
key moved to another data-key row, subject or retention class fails to unwrap.
"""

from __future__ import annotations

import os
import secrets
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import NoReturn, Protocol, runtime_checkable
from uuid import UUID

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ._encoding import (
    encode_label,
    encode_subject,
    encode_uuid,
    is_label,
    length_prefixed,
    require_bytes,
)
from .errors import DecryptionError, KeyNotFound, KeyStateError

__all__ = [
    "KekInfo",
    "KekRecord",
    "KekState",
    "KeyProvider",
    "LocalKeyring",
    "wrapped_kek_id",
]

WRAP_VERSION = 0x01
ALG_AES_256_GCM = 0x01
KEK_LEN = 32
DATA_KEY_LEN = 32
NONCE_LEN = 12
TAG_LEN = 16
_MAX_KEK_ID_LEN = 64
_DOMAIN = length_prefixed(b"hotline.dek.v1")
_WRAPPED_BODY_LEN = DATA_KEY_LEN + TAG_LEN


class KekState(StrEnum):
    """Lifecycle state of a key-encryption key."""

    ACTIVE = "active"
    DECRYPT_ONLY = "decrypt-only"
    RETIRED = "retired"
    DESTROYED = "destroyed"


@dataclass(frozen=True)
class KekInfo:
    """What may be shown about a KEK (status commands, startup checks): never its material."""

    id: str
    version: int
    state: KekState
    created_at: datetime
    retired_at: datetime | None = None
    destroyed_at: datetime | None = None


@dataclass(frozen=True, repr=False)
class KekRecord:
    """A KEK with its material, as stored in the key file.

    ``material`` is 32 bytes, or ``None`` once the KEK is destroyed.  ``repr`` never shows
    the material and the record refuses to be pickled.
    """

    id: str
    version: int
    state: KekState
    created_at: datetime
    material: bytes | None = field(default=None)
    retired_at: datetime | None = None
    destroyed_at: datetime | None = None

    def __post_init__(self) -> None:
        for moment in (self.created_at, self.retired_at, self.destroyed_at):
            if moment is not None and (not isinstance(moment, datetime) or moment.tzinfo is None):
                raise ValueError("KEK timestamps must be timezone-aware datetimes")
        if not _valid_kek_id(self.id):
            raise ValueError(f"KEK id must be 1-{_MAX_KEK_ID_LEN} characters of [A-Za-z0-9._:-]")
        if not isinstance(self.state, KekState):
            raise ValueError("KEK state must be a KekState")
        if self.state is KekState.DESTROYED:
            if self.material is not None:
                raise ValueError(f"destroyed KEK {self.id!r} must not carry material")
        elif not isinstance(self.material, bytes) or len(self.material) != KEK_LEN:
            raise ValueError(f"KEK {self.id!r} material must be {KEK_LEN} bytes")

    def info(self) -> KekInfo:
        """Return the material-free description of this KEK."""
        return KekInfo(
            id=self.id,
            version=self.version,
            state=self.state,
            created_at=self.created_at,
            retired_at=self.retired_at,
            destroyed_at=self.destroyed_at,
        )

    def __repr__(self) -> str:
        return f"KekRecord(id={self.id!r}, version={self.version}, state={self.state.value!r})"

    def __reduce_ex__(self, protocol: object) -> NoReturn:
        raise TypeError("KekRecord holds key material and cannot be pickled")


@runtime_checkable
class KeyProvider(Protocol):
    """Wraps and unwraps data keys under key-encryption keys.

    Callers depend on this protocol only.  ``wrap`` always uses the active KEK; ``unwrap``
    reads the KEK id from the wrapped blob's header (never trial decryption).
    """

    @property
    def active_kek_id(self) -> str:
        """Id of the KEK that wraps new data keys."""
        ...

    def kek_ids(self) -> tuple[str, ...]:
        """Ids of every KEK known to the provider (destroyed ones included), oldest first."""
        ...

    def state_of(self, kek_id: str) -> KekState:
        """State of ``kek_id``; raises :class:`KeyNotFound` for an unknown id."""
        ...

    def kek_info(self, kek_id: str) -> KekInfo:
        """Material-free description of ``kek_id``; raises :class:`KeyNotFound` if unknown."""
        ...

    def wrap(
        self, data_key_material: bytes, *, data_key_id: UUID, subject_id: str | UUID, retention_class: str
    ) -> bytes:
        """Wrap a 32-byte data key under the active KEK, bound to its id, subject and class."""
        ...

    def unwrap(
        self, wrapped: bytes, *, data_key_id: UUID, subject_id: str | UUID, retention_class: str
    ) -> bytes:
        """Return the data key material.

        Raises :class:`KeyNotFound` (unknown KEK), :class:`KeyStateError` (destroyed KEK) or
        :class:`DecryptionError` (anything else: tampered, moved, truncated).
        """
        ...

    def rotate(self) -> str:
        """Add a new active KEK; the previous active KEK becomes decrypt-only.  Returns the new id."""
        ...

    def retire(self, kek_id: str) -> None:
        """Mark a decrypt-only KEK retired (call once nothing live is wrapped under it)."""
        ...

    def destroy(self, kek_id: str) -> None:
        """Forget a retired KEK's material; its id stays known as destroyed."""
        ...


def _valid_kek_id(kek_id: object) -> bool:
    return isinstance(kek_id, str) and len(kek_id) <= _MAX_KEK_ID_LEN and is_label(kek_id)


def _wrap_header(kek_id: str) -> bytes:
    kek_id_bytes = kek_id.encode("ascii")
    return bytes((WRAP_VERSION, ALG_AES_256_GCM, len(kek_id_bytes))) + kek_id_bytes


def _wrap_context(data_key_id: UUID, subject_id: str | UUID, retention_class: str) -> bytes:
    """The AAD after the header: what a wrapped key is bound to."""
    return b"".join(
        (
            _DOMAIN,
            length_prefixed(encode_uuid(data_key_id, "data_key_id")),
            length_prefixed(encode_subject(subject_id)),
            length_prefixed(encode_label(retention_class, "retention_class")),
        )
    )


def _parse_wrapped(wrapped: bytes) -> tuple[bytes, str, bytes, bytes]:
    """Split a wrapped key into (header, KEK id, nonce, ciphertext); DecryptionError if malformed."""
    if len(wrapped) < 3 or wrapped[0] != WRAP_VERSION or wrapped[1] != ALG_AES_256_GCM:
        raise DecryptionError()
    id_len = wrapped[2]
    header_len = 3 + id_len
    if id_len == 0 or len(wrapped) != header_len + NONCE_LEN + _WRAPPED_BODY_LEN:
        raise DecryptionError()
    try:
        kek_id = wrapped[3:header_len].decode("ascii")
    except UnicodeDecodeError:
        raise DecryptionError() from None
    if not _valid_kek_id(kek_id):
        raise DecryptionError()
    nonce = wrapped[header_len : header_len + NONCE_LEN]
    return wrapped[:header_len], kek_id, nonce, wrapped[header_len + NONCE_LEN :]


def wrapped_kek_id(wrapped: bytes) -> str:
    """Return the KEK id named in a wrapped data key's header.

    Unauthenticated until :meth:`KeyProvider.unwrap` succeeds; use it to find what needs
    rewrapping, never as proof of anything.  Raises :class:`DecryptionError` if malformed.
    """
    return _parse_wrapped(require_bytes(wrapped, "wrapped"))[1]


def _utc_now() -> datetime:
    return datetime.now(UTC)


class _Kek:
    """A KEK record plus its cached AESGCM (building one costs about 2 us).

    Never mutated: a state change replaces the whole entry under the keyring's lock, so a
    reader holding an entry always sees a record and a primitive that belong together.
    """

    __slots__ = ("aead", "record")

    def __init__(self, record: KekRecord, aead: AESGCM | None = None) -> None:
        self.record = record
        if record.material is None:
            self.aead = None
        else:
            self.aead = aead or AESGCM(record.material)


class LocalKeyring:
    """:class:`KeyProvider` backed by KEKs held in process memory (from the key file).

    Thread-safe.  State changes (``rotate``, ``retire``, ``destroy``) change only this
    object; persist them with :func:`crypto.keyfile.save_key_file`.
    """

    def __init__(self, keks: Iterable[KekRecord], *, clock: Callable[[], datetime] | None = None) -> None:
        """Build a keyring from KEK records; exactly one must be active."""
        self._clock = clock or _utc_now
        self._lock = threading.RLock()
        self._keks: dict[str, _Kek] = {}
        for record in keks:
            if not isinstance(record, KekRecord):
                raise TypeError("keks must be KekRecord instances")
            if record.id in self._keks:
                raise KeyStateError(f"duplicate KEK id {record.id!r}")
            self._keks[record.id] = _Kek(record)
        active = [k for k in self._keks.values() if k.record.state is KekState.ACTIVE]
        if len(active) != 1:
            raise KeyStateError(f"a keyring needs exactly one active KEK, found {len(active)}")
        versions = [k.record.version for k in self._keks.values()]
        if len(set(versions)) != len(versions):
            raise KeyStateError("KEK versions must be unique")
        self._active_id = active[0].record.id

    @classmethod
    def generate(cls, *, clock: Callable[[], datetime] | None = None) -> LocalKeyring:
        """Return a keyring with one freshly generated active KEK."""
        now = (clock or _utc_now)()
        record = KekRecord(
            id=_kek_id_for(now, ()),
            version=1,
            state=KekState.ACTIVE,
            created_at=now,
            material=AESGCM.generate_key(bit_length=256),
        )
        return cls([record], clock=clock)

    @property
    def active_kek_id(self) -> str:
        """Id of the KEK that wraps new data keys."""
        with self._lock:
            return self._active_id

    def kek_ids(self) -> tuple[str, ...]:
        """Ids of every known KEK (destroyed ones included), ordered by version."""
        with self._lock:
            return tuple(k.record.id for k in sorted(self._keks.values(), key=lambda k: k.record.version))

    def state_of(self, kek_id: str) -> KekState:
        """State of ``kek_id``; :class:`KeyNotFound` for an unknown id."""
        return self._get(kek_id).record.state

    def kek_info(self, kek_id: str) -> KekInfo:
        """Material-free description of ``kek_id``; :class:`KeyNotFound` for an unknown id."""
        return self._get(kek_id).record.info()

    def export_records(self) -> tuple[KekRecord, ...]:
        """Every KEK record, material included, ordered by version.

        For persisting the keyring to the key file only; nothing else needs KEK material.
        """
        with self._lock:
            return tuple(k.record for k in sorted(self._keks.values(), key=lambda k: k.record.version))

    def wrap(
        self, data_key_material: bytes, *, data_key_id: UUID, subject_id: str | UUID, retention_class: str
    ) -> bytes:
        """Wrap ``data_key_material`` (32 bytes) under the active KEK."""
        return self._wrap(
            data_key_material,
            os.urandom(NONCE_LEN),
            data_key_id=data_key_id,
            subject_id=subject_id,
            retention_class=retention_class,
        )

    def _wrap(
        self,
        data_key_material: bytes,
        nonce: bytes,
        *,
        data_key_id: UUID,
        subject_id: str | UUID,
        retention_class: str,
    ) -> bytes:
        # Explicit nonce only for known-answer tests; production callers go through wrap().
        material = require_bytes(data_key_material, "data_key_material")
        if len(material) != DATA_KEY_LEN:
            raise ValueError(f"data key material must be {DATA_KEY_LEN} bytes")
        if len(nonce) != NONCE_LEN:
            raise ValueError(f"nonce must be {NONCE_LEN} bytes")
        with self._lock:
            kek = self._keks[self._active_id]
        if kek.record.state is not KekState.ACTIVE or kek.aead is None:
            # Unreachable while the one-active invariant holds; refuse rather than wrap badly.
            raise KeyStateError(f"KEK {kek.record.id!r} is {kek.record.state.value}, not active")
        header = _wrap_header(kek.record.id)
        context = _wrap_context(data_key_id, subject_id, retention_class)
        return header + nonce + kek.aead.encrypt(nonce, material, header + context)

    def unwrap(
        self, wrapped: bytes, *, data_key_id: UUID, subject_id: str | UUID, retention_class: str
    ) -> bytes:
        """Unwrap a data key under the KEK its header names.

        :class:`KeyNotFound` for an unknown KEK, :class:`KeyStateError` for a destroyed one,
        :class:`DecryptionError` for anything tampered, moved or truncated.
        """
        blob = require_bytes(wrapped, "wrapped")
        # Encode the binding arguments first: a bad argument is a caller bug, not tampering.
        context = _wrap_context(data_key_id, subject_id, retention_class)
        header, kek_id, nonce, ciphertext = _parse_wrapped(blob)
        kek = self._get(kek_id)
        if kek.record.state is KekState.DESTROYED or kek.aead is None:
            raise KeyStateError(f"KEK {kek_id!r} is destroyed; data keys wrapped under it are shredded")
        try:
            material = kek.aead.decrypt(nonce, ciphertext, header + context)
        except InvalidTag:
            raise DecryptionError() from None
        if len(material) != DATA_KEY_LEN:
            raise DecryptionError()
        return material

    def rotate(self) -> str:
        """Add a new active KEK; the previous active one becomes decrypt-only.  Returns the new id."""
        with self._lock:
            now = self._clock()
            old = self._keks[self._active_id]
            new_id = _kek_id_for(now, self._keks.keys())
            new = KekRecord(
                id=new_id,
                version=max(k.record.version for k in self._keks.values()) + 1,
                state=KekState.ACTIVE,
                created_at=now,
                material=AESGCM.generate_key(bit_length=256),
            )
            self._keks[old.record.id] = _Kek(replace(old.record, state=KekState.DECRYPT_ONLY), old.aead)
            self._keks[new_id] = _Kek(new)
            self._active_id = new_id
            return new_id

    def retire(self, kek_id: str) -> None:
        """Mark a decrypt-only KEK retired; it still unwraps (for restored backups).

        Idempotent for a retired KEK; refuses the active KEK (rotate first) and a destroyed one.
        """
        with self._lock:
            kek = self._get(kek_id)
            state = kek.record.state
            if state is KekState.RETIRED:
                return
            if state is not KekState.DECRYPT_ONLY:
                raise KeyStateError(
                    f"cannot retire KEK {kek_id!r}: it is {state.value} (must be decrypt-only)"
                )
            self._keks[kek_id] = _Kek(
                replace(kek.record, state=KekState.RETIRED, retired_at=self._clock()), kek.aead
            )

    def destroy(self, kek_id: str) -> None:
        """Forget a retired KEK's material; the id stays known as destroyed.

        Idempotent for a destroyed KEK; refuses any KEK that is not retired, so the order
        rotate -> rewrap -> retire -> destroy cannot be skipped by accident.  Python cannot
        wipe memory reliably; dropping the last references is the best it can do.
        """
        with self._lock:
            kek = self._get(kek_id)
            state = kek.record.state
            if state is KekState.DESTROYED:
                return
            if state is not KekState.RETIRED:
                raise KeyStateError(f"cannot destroy KEK {kek_id!r}: it is {state.value} (retire it first)")
            self._keks[kek_id] = _Kek(
                replace(kek.record, state=KekState.DESTROYED, material=None, destroyed_at=self._clock())
            )

    def _get(self, kek_id: str) -> _Kek:
        with self._lock:
            kek = self._keks.get(kek_id)
        if kek is None:
            shown = repr(kek_id) if isinstance(kek_id, str) and _valid_kek_id(kek_id) else "(invalid id)"
            raise KeyNotFound(f"unknown KEK id {shown}")
        return kek

    def __repr__(self) -> str:
        return f"<LocalKeyring active={self.active_kek_id!r} keks={len(self._keks)}>"

    def __reduce_ex__(self, protocol: object) -> NoReturn:
        raise TypeError("LocalKeyring holds key material and cannot be pickled")


def _kek_id_for(now: datetime, existing: Iterable[str]) -> str:
    """Return ``kek-YYYYMMDD-NN-xxxxxxxx``: readable date and sequence, plus a random suffix.

    The random part keeps ids unique across key files: two files made the same day must never
    share a KEK id, or a database could point at a key that only looks present.
    """
    taken = set(existing)
    day = now.astimezone(UTC).strftime("%Y%m%d")
    seq = 1
    while any(kek.startswith(f"kek-{day}-{seq:02d}") for kek in taken):
        seq += 1
    return f"kek-{day}-{seq:02d}-{secrets.token_hex(4)}"
