"""AES-256-GCM sealing of one field value, bound to its field, row and subject.

Sealed value format (raw bytes, stored in a BYTEA/BLOB column)::

    offset  length  content
    0       1       format version, 0x01
    1       1       algorithm, 0x01 = AES-256-GCM (96-bit nonce, 128-bit tag)
    2       16      data key id (the DataKey's UUID bytes)
    18      12      nonce, random per seal
    30      n+16    ciphertext || tag

AAD = ``bytes[0:18]`` (version | alg | key id) || LP("hotline.field.v1") || LP(field id)
|| LP(row id, 16 bytes) || LP(subject id), with ``LP(x) = u32_be(len x) || x``.

The key id is inside the AAD, so it is authenticated: opening looks the key up by that id
(never trial decryption) and a substituted id fails.  The nonce is not repeated in the AAD
because GCM already authenticates it.  The field id, row id and subject id make a value
copied to another column, row or subject fail to open.  AAD binding does not stop a
rollback of the same cell to an older value of that cell.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from uuid import UUID

from cryptography.exceptions import InvalidTag

from ._encoding import encode_label, encode_subject, encode_uuid, length_prefixed, require_bytes
from .envelope import DataKey
from .errors import DecryptionError

__all__ = ["SEALED_OVERHEAD", "DataKeyLookup", "key_id_of", "open_sealed", "seal"]

FORMAT_VERSION = 0x01
ALG_AES_256_GCM = 0x01
KEY_ID_LEN = 16
NONCE_LEN = 12
TAG_LEN = 16
_AUTH_HEADER_LEN = 2 + KEY_ID_LEN
HEADER_LEN = _AUTH_HEADER_LEN + NONCE_LEN
#: Bytes a sealed value adds to its plaintext.
SEALED_OVERHEAD = HEADER_LEN + TAG_LEN
_DOMAIN = length_prefixed(b"hotline.field.v1")

#: Resolves a data key id (read from a sealed value's header) to the key.  Return ``None``
#: only when no such key exists (this then opens as :class:`DecryptionError`, like any other
#: bad value); raise your own error for a known but unusable key (e.g. shredded), and
#: resolve cache misses before answering.
DataKeyLookup = Callable[[UUID], DataKey | None]


@functools.lru_cache(maxsize=4096)
def _context(field_id: str, row_id: UUID, subject_id: str | UUID) -> bytes:
    """The AAD after the authenticated header; also validates the arguments.

    Cached: a reveal opens several fields of one row, a batch many rows of one subject, and
    building the canonical encoding costs more than encrypting a short value.
    """
    return b"".join(
        (
            _DOMAIN,
            length_prefixed(encode_label(field_id, "field_id")),
            length_prefixed(encode_uuid(row_id, "row_id")),
            length_prefixed(encode_subject(subject_id)),
        )
    )


def seal(
    data_key: DataKey, plaintext: bytes, *, field_id: str, row_id: UUID, subject_id: str | UUID
) -> bytes:
    """Encrypt ``plaintext`` under ``data_key`` for one field of one row of one subject.

    ``field_id`` is the stable logical field id (``"case.caller_name"``), not the column
    name, so renaming a column does not make values unreadable.  A fresh random nonce is
    drawn for every call.
    """
    return _seal_with_nonce(
        data_key, plaintext, os.urandom(NONCE_LEN), field_id=field_id, row_id=row_id, subject_id=subject_id
    )


def _seal_with_nonce(
    data_key: DataKey,
    plaintext: bytes,
    nonce: bytes,
    *,
    field_id: str,
    row_id: UUID,
    subject_id: str | UUID,
) -> bytes:
    # Explicit nonce for known-answer tests only: reusing a nonce under one key breaks GCM.
    if not isinstance(data_key, DataKey):
        raise TypeError("data_key must be a DataKey")
    data = require_bytes(plaintext, "plaintext")
    if len(nonce) != NONCE_LEN:
        raise ValueError(f"nonce must be {NONCE_LEN} bytes")
    context = _context(field_id, row_id, subject_id)
    auth_header = data_key.sealed_header
    return b"".join((auth_header, nonce, data_key.aead.encrypt(nonce, data, auth_header + context)))


def key_id_of(blob: bytes) -> UUID:
    """Return the data key id in a sealed value's header.

    Use it to resolve the data key (and confirm it is live) before opening.  It is not
    authenticated until :func:`open_sealed` succeeds.  Raises :class:`DecryptionError` for
    a blob that is not a well-formed sealed value.
    """
    data = require_bytes(blob, "blob")
    _check_shape(data)
    return UUID(bytes=data[2:_AUTH_HEADER_LEN])


def open_sealed(
    key: DataKey | DataKeyLookup,
    blob: bytes,
    *,
    field_id: str,
    row_id: UUID,
    subject_id: str | UUID,
) -> bytes:
    """Decrypt a sealed value; the field id, row id and subject id must match the seal.

    ``key`` is either the data key itself or a :data:`DataKeyLookup` called with the id from
    the header.  Every failure to open (wrong key, unknown key id, tampered, moved to another
    field/row/subject, truncated, unknown version) raises the same :class:`DecryptionError`;
    exceptions raised by the lookup propagate unchanged.  Invalid arguments (a malformed
    ``field_id``, a non-UUID ``row_id``) raise ``ValueError``/``TypeError``: those are bugs.
    """
    data = require_bytes(blob, "blob")
    context = _context(field_id, row_id, subject_id)
    _check_shape(data)
    if isinstance(key, DataKey):
        data_key: DataKey | None = key
    else:
        data_key = key(UUID(bytes=data[2:_AUTH_HEADER_LEN]))
    if not isinstance(data_key, DataKey) or data_key.sealed_header != data[:_AUTH_HEADER_LEN]:
        raise DecryptionError()
    view = memoryview(data)  # slices without copying the ciphertext
    try:
        return data_key.aead.decrypt(
            view[_AUTH_HEADER_LEN:HEADER_LEN], view[HEADER_LEN:], data[:_AUTH_HEADER_LEN] + context
        )
    except InvalidTag:
        raise DecryptionError() from None


def _check_shape(data: bytes) -> None:
    if len(data) < SEALED_OVERHEAD or data[0] != FORMAT_VERSION or data[1] != ALG_AES_256_GCM:
        raise DecryptionError()
