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
