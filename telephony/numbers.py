"""Phone-number normalisation for indexing, call-backs and display.

Everything that might later be blind-indexed, linked to a case, called back or texted goes
through :func:`normalize_e164` first. It answers ``None`` for every number that must never be
used that way: withheld or unknown caller IDs (in all the spellings Twilio and carriers use) and
anything ``phonenumbers`` does not accept as a valid number. ``None`` is the safe answer; the
function never raises.
"""

from __future__ import annotations

import re
from typing import Final

import phonenumbers

__all__ = [
    "WITHHELD_KEYPAD_DIGITS",
    "last_two_digits",
    "mask",
    "normalize_e164",
    "split_address",
]

# Twilio reports a withheld caller ID as these words spelled on a phone keypad
# (ANONYMOUS, RESTRICTED, BLOCKED, UNKNOWN, UNAVAILABLE), with or without a leading +1.
# "+1 737 874 2833" (RESTRICTED) is a *valid* Austin number to phonenumbers, so the list has to
# be checked explicitly rather than left to validation.
WITHHELD_KEYPAD_DIGITS: Final[frozenset[str]] = frozenset(
    {"266696687", "7378742833", "2562533", "8656696", "86282452253"}
)

# Channel prefixes that may wrap a phone number in Twilio's From/To ("whatsapp:+1415...").
_PHONE_CHANNELS: Final[frozenset[str]] = frozenset({"whatsapp", "tel"})

# "scheme:rest" where scheme looks like a URI scheme (whatsapp, client, sip, messenger, rcs ...).
_CHANNEL_RE: Final = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]{0,31}):(.*)\Z", re.DOTALL)

# Longer than any phone number with formatting; also keeps phonenumbers' work bounded.
_MAX_RAW_LENGTH: Final = 64

_E164_RE: Final = re.compile(r"^\+[1-9][0-9]{6,14}\Z")

# What a written phone number may contain: digits of any script (phonenumbers maps them),
# plus signs (ASCII and full-width), spaces and the usual separators. Anything else (letters,
# controls, ";ext=", "#", "*") means it is not a plain number.
_NUMBER_CHARS_RE: Final = re.compile(r"^[+\uff0b\d \u00a0().\-/]+\Z")


def split_address(address: str) -> tuple[str | None, str]:
    """Split a Twilio address into ``(channel, address)``.

    ``"whatsapp:+14155550123"`` → ``("whatsapp", "+14155550123")``; ``"client:alice"`` →
    ``("client", "alice")``; a bare number or word such as ``"+14155550123"`` or ``"anonymous"``
    → ``(None, ...)``. The channel is lower-cased; the address is returned unchanged.
    """
    match = _CHANNEL_RE.match(address)
    if match is None:
        return None, address
    return match.group(1).lower(), match.group(2)


def _is_withheld_digits(digits: str) -> bool:
    if digits in WITHHELD_KEYPAD_DIGITS:
        return True
    return digits.startswith("1") and digits[1:] in WITHHELD_KEYPAD_DIGITS


def normalize_e164(raw: str | None, default_region: str = "US") -> str | None:
    """Return ``raw`` as an E.164 string (``+14155550123``) or ``None``.

    ``None`` means "never index, link, call back or text this": empty input, withheld or unknown
    caller IDs (``anonymous``, ``Restricted``, ``Unknown``, ``Blocked``, ``Unavailable`` and
    Twilio's keypad spellings such as ``+266696687`` or ``+1266696687``), addresses on
    non-phone channels (``client:``, ``sip:``), numbers with letters (vanity spellings are how
    withheld IDs are encoded) or an extension, and anything ``phonenumbers`` rejects as not
    possible or not valid. ``whatsapp:+...`` addresses are accepted; the channel is dropped.

    ``default_region`` applies only to numbers written without a leading ``+``.
    Never raises, whatever the input.
    """
    if not isinstance(raw, str):
        return None
    text = raw.strip()
    if not text or len(text) > _MAX_RAW_LENGTH:
        return None

    channel, text = split_address(text)
    if channel is not None:
        if channel not in _PHONE_CHANNELS:
            return None
        text = text.strip()

    # A letter means a word ("anonymous", "Restricted") or a vanity spelling; phonenumbers
    # would happily turn "RESTRICTED" into keypad digits, so only number characters pass.
    if not _NUMBER_CHARS_RE.match(text):
        return None

    # int() maps every script's decimal digits to 0-9, as phonenumbers does when parsing.
    digits = "".join(str(int(ch)) for ch in text if ch.isdecimal())
    if not digits or _is_withheld_digits(digits):
        return None

    try:
        parsed = phonenumbers.parse(text, default_region)
    except phonenumbers.NumberParseException:
        return None
    except Exception:
        # phonenumbers is a large parser fed untrusted text; a bug there must not turn a
        # withheld number into a crash on the webhook path.
        return None

    if parsed.extension:
        return None
    if not phonenumbers.is_possible_number(parsed) or not phonenumbers.is_valid_number(parsed):
        return None

    e164 = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    if _is_withheld_digits(e164[1:]) or not _E164_RE.match(e164):
        return None
    return e164


def _require_e164(e164: str) -> str:
    if not isinstance(e164, str) or not _E164_RE.match(e164):
        # The value itself is not echoed: it may be a real phone number.
        raise ValueError("expected an E.164 number: a plus sign and 7 to 15 digits")
    return e164


def last_two_digits(e164: str) -> str:
    """The last two digits of an E.164 number, the only part that is display-safe.

    Raises ``ValueError`` if ``e164`` is not in E.164 form (pass the output of
    :func:`normalize_e164`).
    """
    return _require_e164(e164)[-2:]


def mask(e164: str) -> str:
    """A display mask that shows only the last two digits: ``"•••• •• 12"``.

    The mask has the same shape for every number, so it reveals neither the country code nor
    the length. Raises ``ValueError`` if ``e164`` is not in E.164 form.
    """
    return f"•••• •• {last_two_digits(e164)}"
