"""Keyed hashes: a generic domain-separated HMAC and the caller-phone blind index.

``keyed_hash`` computes ``HMAC-SHA256(key, LP("hotline.keyed-hash.v1") || LP(domain) || value)``
with ``LP(x) = u32_be(len x) || x``.  The domain string separates uses that share a key
(Twilio SID lookup hashes, audit query hashes...), so a hash computed for one purpose is
never valid for another.

The blind index of a phone number is a truncated keyed hash of its E.164 form under a key
used for nothing else, so the number is recognisable on a repeat call without being stored
in the clear; holding the encryption keys alone does not let anyone compute it.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from typing import NoReturn

from ._encoding import encode_label, length_prefixed, require_bytes

__all__ = ["PHONE_INDEX_DOMAIN", "WITHHELD_NUMBERS", "BlindIndexer", "KeyedHasher", "keyed_hash"]

MIN_KEY_LEN = 32
MIN_INDEX_LEN = 8
MAX_INDEX_LEN = 32
DEFAULT_INDEX_LEN = 16
_PREFIX = length_prefixed(b"hotline.keyed-hash.v1")
_E164_RE = re.compile(r"\+[1-9][0-9]{1,14}")

#: Domain of the caller phone blind index; a change of key or length gets a new version.
PHONE_INDEX_DOMAIN = "bidx:caller.phone:e164:v1"

# Twilio's keypad spellings of withheld numbers (ANONYMOUS, RESTRICTED, BLOCKED, UNKNOWN,
# UNAVAILABLE), with and without a +1.  Indexing one would link every withheld caller to
# every other, so they are refused here even though the app filters them first.
_WITHHELD_DIGITS = ("266696687", "7378742833", "2562533", "8656696", "86282452253")
#: E.164-looking values that stand for a withheld or unknown number and are never indexed.
WITHHELD_NUMBERS: frozenset[str] = frozenset(
    [f"+{d}" for d in _WITHHELD_DIGITS] + [f"+1{d}" for d in _WITHHELD_DIGITS]
)


def _check_key(key: bytes, what: str) -> bytes:
    data = require_bytes(key, what)
    if len(data) < MIN_KEY_LEN:
        raise ValueError(f"{what} must be at least {MIN_KEY_LEN} bytes")
    return data


def keyed_hash(key: bytes, domain: str, value: bytes) -> bytes:
    """Return the 32-byte domain-separated HMAC-SHA256 of ``value`` under ``key``."""
    data = require_bytes(value, "value")
    message = _PREFIX + length_prefixed(encode_label(domain, "domain")) + data
    return hmac.new(_check_key(key, "key"), message, hashlib.sha256).digest()


class KeyedHasher:
    """:func:`keyed_hash` bound to one key, for callers that should not handle the key."""

    __slots__ = ("_key", "_key_id")

    def __init__(self, key: bytes, *, key_id: str) -> None:
        """Bind ``key`` (at least 32 bytes); ``key_id`` names it in stored metadata."""
        self._key = _check_key(key, "hash key")
        encode_label(key_id, "key_id")
        self._key_id = key_id

    @property
    def key_id(self) -> str:
        """Id of the key, for recording which key produced a stored hash."""
        return self._key_id

    def hash(self, domain: str, value: bytes) -> bytes:
        """Return ``keyed_hash(key, domain, value)``."""
        return keyed_hash(self._key, domain, value)

    def __repr__(self) -> str:
        return f"<KeyedHasher {self._key_id}>"

    def __reduce_ex__(self, protocol: object) -> NoReturn:
        raise TypeError("KeyedHasher holds key material and cannot be pickled")


class BlindIndexer:
    """Truncated keyed-hash blind index of an E.164 phone number.

    ``length`` is in bytes (8..32, default 16).  Shorter indexes leak less (more numbers
    share a value) but return more candidates; candidates are confirmed by decrypting.
    """

    __slots__ = ("_key", "_key_id", "_length")

    def __init__(self, key: bytes, *, key_id: str, length: int = DEFAULT_INDEX_LEN) -> None:
        """Bind the blind-index key (at least 32 bytes, separate from every other key)."""
        if not isinstance(length, int) or not MIN_INDEX_LEN <= length <= MAX_INDEX_LEN:
            raise ValueError(f"blind index length must be {MIN_INDEX_LEN}..{MAX_INDEX_LEN} bytes")
        self._key = _check_key(key, "blind index key")
        encode_label(key_id, "key_id")
        self._key_id = key_id
        self._length = length

    @property
    def key_id(self) -> str:
        """Id of the blind-index key (stored beside the index column's version)."""
        return self._key_id

    @property
    def length(self) -> int:
        """Index length in bytes."""
        return self._length

    def phone(self, e164: str) -> bytes:
        """Return the blind index of an already-normalised E.164 number (``+`` and digits).

        Raises ``ValueError`` (without echoing the value) for anything not in E.164 form and
        for Twilio's withheld-number spellings, which must never be indexed.
        """
        if not isinstance(e164, str) or _E164_RE.fullmatch(e164) is None:
            raise ValueError("phone number must be E.164 (+ then 2-15 digits) before blind indexing")
        if e164 in WITHHELD_NUMBERS:
            raise ValueError("withheld or unknown caller numbers are never blind-indexed")
        return keyed_hash(self._key, PHONE_INDEX_DOMAIN, e164.encode("ascii"))[: self._length]

    def __repr__(self) -> str:
        return f"<BlindIndexer {self._key_id} length={self._length}>"

    def __reduce_ex__(self, protocol: object) -> NoReturn:
        raise TypeError("BlindIndexer holds key material and cannot be pickled")
