"""Canonical byte encodings shared by the sealing formats (private to ``crypto``).

Associated data must be canonical: the same logical context must always give the same
bytes, and two different contexts must never give the same bytes.  Every variable-length
part is therefore length-prefixed (``u32_be(len) || bytes``) and parts come in a fixed
order, as CipherSweet's ``AAD.php`` does.
"""

from __future__ import annotations

import re
import struct
from uuid import UUID

_U32 = struct.Struct(">I")

# Stable logical ids (field ids, retention classes, key ids) are short ASCII labels.  Keeping
# them to a narrow alphabet means they can be echoed in operator messages without escaping.
_LABEL_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
_MAX_SUBJECT_LEN = 256

BytesLike = bytes | bytearray | memoryview


def length_prefixed(part: bytes) -> bytes:
    """Return ``u32_be(len(part)) || part``."""
    return _U32.pack(len(part)) + part


def encode_label(value: str, what: str) -> bytes:
    """Encode a stable logical label (field id, retention class, key id) as ASCII.

    Raises ``ValueError`` for anything outside the label alphabet; the message names what
    was wrong, never the value (a caller might have passed plaintext by mistake).
    """
    if not isinstance(value, str) or _LABEL_RE.fullmatch(value) is None:
        raise ValueError(f"{what} must be 1-128 characters of [A-Za-z0-9._:-], starting alphanumeric")
    return value.encode("ascii")


def is_label(value: str) -> bool:
    """Tell whether ``value`` is a valid label (see :func:`encode_label`)."""
    return _LABEL_RE.fullmatch(value) is not None


def encode_subject(subject_id: str | UUID) -> bytes:
    """Encode a subject id.  A ``UUID`` is rendered in its canonical string form.

    Rendering UUIDs as text means ``subject_id=u`` and ``subject_id=str(u)`` bind the same
    value, so callers cannot accidentally make a value unreadable by changing the type.
    """
    if isinstance(subject_id, UUID):
        return str(subject_id).encode("ascii")
    if isinstance(subject_id, str) and 0 < len(subject_id) <= _MAX_SUBJECT_LEN:
        return subject_id.encode("utf-8")
    raise ValueError(f"subject_id must be a UUID or a non-empty string of at most {_MAX_SUBJECT_LEN} chars")


def encode_uuid(value: UUID, what: str) -> bytes:
    """Encode a UUID (row id, data key id) as its 16 raw bytes."""
    if not isinstance(value, UUID):
        raise TypeError(f"{what} must be a uuid.UUID")
    return value.bytes


def require_bytes(value: object, what: str) -> bytes:
    """Return ``value`` as ``bytes``; refuse ``str`` and other non-binary types.

    Refusing ``str`` keeps the API bytes-in/bytes-out: the caller chooses the text encoding.
    """
    if isinstance(value, bytes):
        return value
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    raise TypeError(f"{what} must be bytes")
