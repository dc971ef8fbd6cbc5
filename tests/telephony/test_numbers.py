"""Phone-number normalisation: valid numbers in, withheld and invalid numbers out, never a crash."""

from __future__ import annotations

import re

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from telephony.numbers import last_two_digits, mask, normalize_e164, split_address

E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("+14155552671", "+14155552671"),
        ("  +1 (415) 555-2671 ", "+14155552671"),
        ("(415) 555-2671", "+14155552671"),
        ("415.555.2671", "+14155552671"),
        ("14155552671", "+14155552671"),
        ("whatsapp:+14155552671", "+14155552671"),
        ("WhatsApp:+442071838750", "+442071838750"),
        ("tel:+33142685300", "+33142685300"),
        ("+44 20 7183 8750", "+442071838750"),
        ("+86 138 0013 8000", "+8613800138000"),
        (
            "\uff0b\uff11\uff14\uff11\uff15\uff15\uff15\uff15\uff12\uff16\uff17\uff11",
            "+14155552671",
        ),  # full-width
    ],
)
def test_valid_numbers_normalise_to_e164(raw: str, expected: str) -> None:
    assert normalize_e164(raw) == expected


def test_default_region_applies_only_without_plus() -> None:
    assert normalize_e164("020 7183 8750", default_region="GB") == "+442071838750"
    assert normalize_e164("020 7183 8750") is None  # not a US number
    assert normalize_e164("+14155552671", default_region="GB") == "+14155552671"


WITHHELD_WORDS = [
    "anonymous",
    "Anonymous",
    "ANONYMOUS",
    "Restricted",
    "Unknown",
    "Blocked",
    "Unavailable",
    "private",
]
KEYPAD_SPELLINGS = ["266696687", "7378742833", "2562533", "8656696", "86282452253"]


@pytest.mark.parametrize("raw", [None, "", "   ", *WITHHELD_WORDS, "whatsapp:anonymous"])
def test_withheld_words_and_empty_are_none(raw: str | None) -> None:
    assert normalize_e164(raw) is None


@pytest.mark.parametrize("digits", KEYPAD_SPELLINGS)
@pytest.mark.parametrize(
    "form", ["+{d}", "+1{d}", "{d}", "1{d}", "+1 {d}", "whatsapp:+{d}", "whatsapp:+1{d}"]
)
def test_twilio_keypad_spellings_of_withheld_numbers_are_none(digits: str, form: str) -> None:
    assert normalize_e164(form.format(d=digits)) is None


def test_restricted_spelling_is_refused_even_though_it_is_a_valid_us_number() -> None:
    # +1 737-874-2833 is a well-formed Austin number to phonenumbers; only the explicit list
    # keeps "RESTRICTED" out of the blind index.
    import phonenumbers

    assert phonenumbers.is_valid_number(phonenumbers.parse("+17378742833"))
    assert normalize_e164("+17378742833") is None


@pytest.mark.parametrize(
    "raw",
    [
        "client:alice",
        "sip:alice@example.org",
        "messenger:12345",
        "+1800FLOWERS",
        "1-800-FLOWERS",
        "123",
        "+999",
        "+1 415 555 267",  # too short
        "+1 415 555 26711",  # too long
        "+1 415 555 2671 ext. 3",
        "+1 415 555 2671;ext=3",
        "+00 415 555 2671",
        "not a number",
        "+" + "1" * 80,
        "\x00+14155552671",
    ],
)
def test_non_numbers_and_invalid_numbers_are_none(raw: str) -> None:
    assert normalize_e164(raw) is None


def test_non_string_input_is_none() -> None:
    assert normalize_e164(14155552671) is None  # type: ignore[arg-type]


@given(
    st.one_of(st.none(), st.text(), st.text(alphabet="+0123456789 ()-.:whatsapABCDEFGHIJKLMNOPQRSTUVWXYZ"))
)
@example("+17378742833")
@example("whatsapp:")
@example(":+14155552671")
def test_normalize_never_raises_and_is_idempotent(raw: str | None) -> None:
    result = normalize_e164(raw)
    if result is not None:
        assert E164.match(result)
        assert normalize_e164(result) == result
        assert result.lstrip("+").removeprefix("1") not in KEYPAD_SPELLINGS


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("whatsapp:+14155552671", ("whatsapp", "+14155552671")),
        ("WhatsApp:+14155552671", ("whatsapp", "+14155552671")),
        ("client:alice", ("client", "alice")),
        ("+14155552671", (None, "+14155552671")),
        ("anonymous", (None, "anonymous")),
        ("", (None, "")),
    ],
)
def test_split_address(address: str, expected: tuple[str | None, str]) -> None:
    assert split_address(address) == expected


def test_last_two_digits_and_mask() -> None:
    assert last_two_digits("+14155552671") == "71"
    assert mask("+14155552671") == "•••• •• 71"
    # Same shape whatever the country or length.
    assert mask("+8613800138000") == "•••• •• 00"
    assert len(mask("+442071838750")) == len(mask("+14155552671"))


@pytest.mark.parametrize("value", ["14155552671", "+1 415 555 2671", "anonymous", "", "+0123456789", "+1"])
def test_last_two_digits_rejects_non_e164_without_echoing_it(value: str) -> None:
    with pytest.raises(ValueError) as excinfo:
        last_two_digits(value)
    if value:
        assert value not in str(excinfo.value)
    with pytest.raises(ValueError):
        mask(value)
