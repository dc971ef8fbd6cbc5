"""Public ids: what the API, console and logs show instead of row UUIDs.

Random, not sequential (no counting of cases), in an alphabet without look-alike characters so a
volunteer can read one over the phone: `HX-7K2M-9QDF`.
"""

from __future__ import annotations

import re
import secrets

ALPHABET = "23456789ABCDEFGHJKMNPQRSTVWXYZ"  # no 0/O, 1/I/L, U


def new_public_id(prefix: str) -> str:
    body = "".join(secrets.choice(ALPHABET) for _ in range(8))
    return f"{prefix}-{body[:4]}-{body[4:]}"


def public_id_pattern(prefix: str) -> re.Pattern[str]:
    return re.compile(rf"^{prefix}-[{ALPHABET}]{{4}}-[{ALPHABET}]{{4}}$")


def derived_public_id(prefix: str, secret_digest: bytes) -> str:
    """A public id fixed by a keyed digest (e.g. a CallSid's keyed hash), so every replay of a
    webhook names the same record before the record exists. Reveals nothing the digest does not."""
    if len(secret_digest) < 8:
        raise ValueError("need at least 8 bytes of digest")
    number = int.from_bytes(secret_digest[:16], "big")  # 2^128 ≫ 30^8: no visible bias
    chars = []
    for _ in range(8):
        number, index = divmod(number, len(ALPHABET))
        chars.append(ALPHABET[index])
    body = "".join(chars)
    return f"{prefix}-{body[:4]}-{body[4:]}"
