"""Time-based one-time passwords (RFC 6238) for staff MFA, plus the enrolment URI and QR code.

Parameters are the ones every authenticator app assumes when a URI omits them: HMAC-SHA-1, 6 digits,
30-second steps counted from the Unix epoch.  A code is accepted for its own step and one step either
side (RFC 6238 section 5.2 recommends at most one step of drift), so at most three steps are tried.

Replay (RFC 6238 section 5.2, ASVS v5 6.5.1): :func:`match_step` returns the *time-step counter* that
matched instead of a bare bool.  The caller stores it and accepts a login only if a compare-and-set
such as ``UPDATE users SET totp_last_step = :s WHERE id = :u AND (totp_last_step IS NULL OR
totp_last_step < :s)`` changes one row; that refuses the same code twice, an older step after a newer
one, and the second of two concurrent submissions.

Time comes only from the ``at`` argument (the application clock), never from the client.

Secrets and codes are never logged and never appear in exception messages.  The provisioning URI and
its QR code contain the secret: they go to the enrolling user once and nowhere else.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import struct
from datetime import UTC, datetime, timedelta
from urllib.parse import quote, urlencode

import qrcode
import qrcode.constants
from qrcode.image.svg import SvgPathFillImage

__all__ = [
    "DIGITS",
    "STEP_SECONDS",
    "code_at",
    "match_step",
    "new_secret",
    "provisioning_uri",
    "qr_svg",
    "time_step",
]

STEP_SECONDS = 30
DIGITS = 6
#: Largest accepted drift in steps either side; RFC 6238 section 5.2 recommends no more than one.
MAX_WINDOW = 1
SECRET_BYTES = 20  # 160 bits: RFC 4226 section 4 recommends it (and requires at least 128)
_MIN_SECRET_BYTES = 16
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_STEP = timedelta(seconds=STEP_SECONDS)
# Anything longer than this cannot be "123 456" with a bit of stray whitespace; refuse before doing work.
_MAX_RAW_CODE_LEN = 32
_ASCII_DIGITS = frozenset("0123456789")


def new_secret() -> str:
    """Return a fresh 160-bit secret from the OS CSPRNG as 32 base32 characters (no padding)."""
    return base64.b32encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")


def _decode_secret(secret: str) -> bytes:
    if not isinstance(secret, str):
        raise TypeError("TOTP secret must be a base32 str")
    compact = "".join(secret.split()).upper()
    try:
        key = base64.b32decode(compact + "=" * (-len(compact) % 8))
    except (binascii.Error, ValueError):
        raise ValueError("TOTP secret is not valid base32") from None
    if len(key) < _MIN_SECRET_BYTES:
        raise ValueError(f"TOTP secret must be at least {_MIN_SECRET_BYTES * 8} bits")
    return key


def _hotp(key: bytes, counter: int, digits: int) -> str:
    """RFC 4226 HOTP with HMAC-SHA-1 and dynamic truncation (also the core of RFC 6238 TOTP)."""
    mac = hmac.new(key, struct.pack(">Q", counter), hashlib.sha1).digest()
    offset = mac[-1] & 0x0F
    value = struct.unpack(">I", mac[offset : offset + 4])[0] & 0x7FFFFFFF
    return str(value % 10**digits).zfill(digits)


def time_step(at: datetime) -> int:
    """The RFC 6238 counter ``T = floor((unix time) / 30)`` for a timezone-aware ``at``."""
    if at.tzinfo is None or at.utcoffset() is None:
        # A naive datetime would be read as local time by .timestamp(): refuse rather than guess.
        raise ValueError("at must be timezone-aware")
    # timedelta floor division is exact integer arithmetic (no float rounding at step edges).
    return (at - _EPOCH) // _STEP


def code_at(secret: str, *, at: datetime) -> str:
    """The 6-digit code for ``secret`` at ``at`` (test fixtures, drills and the fake console)."""
    return _hotp(_decode_secret(secret), time_step(at), DIGITS)


def _normalise_code(code: object) -> str | None:
    """Accept exactly 6 ASCII digits, ignoring whitespace anywhere ("123 456", " 123456\\n").

    Apps display codes as "123 456" and users paste them that way; whitespace adds nothing to the
    code space, so dropping it costs no security.  Anything else (letters, "123-456", Arabic-Indic or
    full-width digits that ``str.isdigit`` would accept, 5 or 7 digits) is refused.
    """
    if not isinstance(code, str) or len(code) > _MAX_RAW_CODE_LEN:
        return None
    digits = "".join(code.split())
    if len(digits) != DIGITS or not set(digits) <= _ASCII_DIGITS:
        return None
    return digits


def match_step(secret: str, code: str, *, at: datetime, window: int = 1) -> int | None:
    """Return the time-step counter whose code equals ``code``, or None.

    Steps ``T - window`` .. ``T + window`` around ``at`` are tried, each compared in constant time
    and all of them every time, so the timing tells nothing about which step (if any) matched.
    Should two steps of the window share the same code (about one chance in a million), the
    *earliest* is returned: that errs towards the caller's replay check refusing, never towards
    accepting a code already used.

    The caller must still refuse a step that is not greater than the last one it accepted.
    Raises ValueError for a malformed secret, a naive ``at`` or a window outside 0..1.
    """
    if not 0 <= window <= MAX_WINDOW:
        raise ValueError(f"window must be between 0 and {MAX_WINDOW}")
    key = _decode_secret(secret)
    current = time_step(at)
    candidate = _normalise_code(code)
    if candidate is None:
        return None
    given = candidate.encode("ascii")
    matched: int | None = None
    for step in range(current - window, current + window + 1):
        if step < 0:
            continue
        expected = _hotp(key, step, DIGITS).encode("ascii")
        if hmac.compare_digest(expected, given) and matched is None:
            matched = step
    return matched


def provisioning_uri(secret: str, *, account_name: str, issuer: str = "Hotline") -> str:
    """The ``otpauth://totp/ISSUER:ACCOUNT?secret=...`` URI of Google's Key URI Format.

    The issuer appears both as the label prefix and as the ``issuer`` parameter (what current apps
    read), and algorithm, digits and period are spelt out even though they are the defaults, so an
    app with other defaults still computes our codes.  Colons are refused in both names because the
    label uses one as its separator.
    """
    key = _decode_secret(secret)
    for what, value in (("account_name", account_name), ("issuer", issuer)):
        if not value or not value.strip():
            raise ValueError(f"{what} must not be empty")
        if ":" in value:
            raise ValueError(f"{what} must not contain ':'")
    label = f"{quote(issuer, safe='')}:{quote(account_name, safe='')}"
    query = urlencode(
        {
            # Re-encoded from the key so the URI always carries the canonical form (upper, unpadded).
            "secret": base64.b32encode(key).decode("ascii").rstrip("="),
            "issuer": issuer,
            "algorithm": "SHA1",
            "digits": str(DIGITS),
            "period": str(STEP_SECONDS),
        },
        quote_via=quote,
    )
    return f"otpauth://totp/{label}?{query}"


def qr_svg(uri: str) -> str:
    """Render ``uri`` as a self-contained inline SVG QR code (one ``<path>`` on a white square).

    No XML declaration (so it can be embedded in HTML as is), no external references, no PIL.  The
    white background keeps it scannable on a dark console theme; the viewBox lets CSS size it.
    """
    qr = qrcode.QRCode(
        error_correction=qrcode.constants.ERROR_CORRECT_M,
        border=4,  # the quiet zone the QR specification requires
        image_factory=SvgPathFillImage,
    )
    qr.add_data(uri)
    qr.make(fit=True)
    image = qr.make_image()
    svg: str = image.to_string(encoding="unicode")
    return svg
