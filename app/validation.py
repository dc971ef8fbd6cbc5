"""Checks for public text stored in the clear (directory entries, know-your-rights texts).

PostgreSQL refuses NUL in text and lone surrogates cannot be encoded, so both would otherwise
become a 500 at INSERT time; they are refused as invalid input instead (422).
"""

from __future__ import annotations

import re

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def printable(value: str) -> str:
    """No control characters other than line breaks and tabs, and valid Unicode."""
    if _CONTROL.search(value):
        raise ValueError("must not contain control characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid text (no lone surrogates)") from None
    return value


def one_line(value: str) -> str:
    """`printable`, and no line breaks or tabs either."""
    if "\n" in value or "\r" in value or "\t" in value:
        raise ValueError("must be one line")
    return printable(value)
