"""app.accounts.totp: RFC 4226/6238 vectors, the ±1 step window, code parsing, URI and QR (test plan T11)."""

from __future__ import annotations

import base64
import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta, timezone
from urllib.parse import parse_qs, unquote, urlsplit

import pyotp
import pytest
import qrcode
import qrcode.constants
from hypothesis import given, settings
from hypothesis import strategies as st

from app.accounts import totp
from app.accounts.totp import (
    DIGITS,
    STEP_SECONDS,
    code_at,
    match_step,
    new_secret,
    provisioning_uri,
    qr_svg,
    time_step,
)

RFC_KEY = b"12345678901234567890"  # RFC 6238 appendix B / RFC 4226 appendix D, SHA-1
RFC_SECRET = base64.b32encode(RFC_KEY).decode()
SVG_NS = "{http://www.w3.org/2000/svg}"

# RFC 6238 appendix B, SHA-1 column (8 digits).
RFC6238_SHA1 = [
    (59, 0x0000000000000001, "94287082"),
    (1111111109, 0x00000000023523EC, "07081804"),
    (1111111111, 0x00000000023523ED, "14050471"),
    (1234567890, 0x000000000273EF07, "89005924"),
    (2000000000, 0x0000000003F940AA, "69279037"),
    (20000000000, 0x0000000027BC86AA, "65353130"),
]
# RFC 4226 appendix D: HOTP values for counters 0..9 (6 digits).
RFC4226 = ["755224", "287082", "359152", "969429", "338314", "254676", "287922", "162583", "399871", "520489"]

NOW = datetime(2026, 3, 29, 1, 30, 15, tzinfo=UTC)  # mid-step, on a DST-change night in Europe


def _at(unix: int) -> datetime:
    return datetime.fromtimestamp(unix, UTC)


# --- the core against the RFCs --------------------------------------------------------------------


@pytest.mark.parametrize(("unix", "counter", "expected"), RFC6238_SHA1)
def test_rfc6238_appendix_b_sha1_vectors(unix: int, counter: int, expected: str) -> None:
    assert time_step(_at(unix)) == counter
    assert totp._hotp(RFC_KEY, counter, 8) == expected
    # The public 6-digit path truncates the same 31-bit value, so it yields the vector's last 6 digits.
    assert code_at(RFC_SECRET, at=_at(unix)) == expected[-6:]
    assert match_step(RFC_SECRET, expected[-6:], at=_at(unix)) == counter


@pytest.mark.parametrize(("counter", "expected"), list(enumerate(RFC4226)))
def test_rfc4226_appendix_d_hotp_vectors(counter: int, expected: str) -> None:
    assert totp._hotp(RFC_KEY, counter, 6) == expected


@settings(max_examples=200)
@given(
    key=st.binary(min_size=16, max_size=64),
    unix=st.integers(min_value=60, max_value=2**34),
)
def test_codes_match_pyotp(key: bytes, unix: int) -> None:
    secret = base64.b32encode(key).decode()
    assert code_at(secret, at=_at(unix)) == pyotp.TOTP(secret).at(unix)


def test_time_step_is_exact_at_step_edges() -> None:
    start = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)  # a multiple of 30 s since the epoch
    step = time_step(start)
    assert time_step(start - timedelta(microseconds=1)) == step - 1
    assert time_step(start + timedelta(seconds=29, microseconds=999_999)) == step
    assert time_step(start + timedelta(seconds=30)) == step + 1
    # Any zone gives the same step for the same instant.
    assert time_step(start.astimezone(timezone(timedelta(hours=-5, minutes=-30)))) == step


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        time_step(datetime(2026, 1, 1, 12, 0))
    with pytest.raises(ValueError, match="timezone-aware"):
        match_step(new_secret(), "123456", at=datetime(2026, 1, 1, 12, 0))


# --- secrets --------------------------------------------------------------------------------------


def test_new_secret_is_160_bit_base32_and_unique() -> None:
    secrets_seen = {new_secret() for _ in range(1000)}
    assert len(secrets_seen) == 1000
    for secret in list(secrets_seen)[:50]:
        assert re.fullmatch(r"[A-Z2-7]{32}", secret)
        assert len(base64.b32decode(secret)) == 20


def test_malformed_or_short_secrets_are_refused_without_echoing_them() -> None:
    for bad in ["not base32!", "ABCDEFGH1", "ÄÖÜÄÖÜÄÖ"]:
        with pytest.raises(ValueError) as caught:
            code_at(bad, at=NOW)
        assert bad not in str(caught.value)
    short = base64.b32encode(b"0123456789").decode()  # 80 bits
    with pytest.raises(ValueError, match="at least 128 bits") as caught:
        match_step(short, "123456", at=NOW)
    assert short not in str(caught.value)


def test_secret_spelling_is_lenient_lowercase_and_grouped() -> None:
    secret = new_secret()
    grouped = " ".join(secret[i : i + 4] for i in range(0, len(secret), 4)).lower()
    assert code_at(grouped, at=NOW) == code_at(secret, at=NOW)


# --- match_step: window ---------------------------------------------------------------------------


@pytest.mark.parametrize("offset", [-1, 0, 1])
def test_codes_one_step_either_side_are_accepted_with_their_own_step(offset: int) -> None:
    secret = new_secret()
    code = code_at(secret, at=NOW + offset * timedelta(seconds=STEP_SECONDS))
    assert match_step(secret, code, at=NOW) == time_step(NOW) + offset


@pytest.mark.parametrize("offset", [-3, -2, 2, 3])
def test_codes_two_or_more_steps_away_are_refused(offset: int) -> None:
    secret = new_secret()
    code = code_at(secret, at=NOW + offset * timedelta(seconds=STEP_SECONDS))
    # Guard against the ~1e-6 chance that the far code happens to equal a code inside the window.
    inside = {code_at(secret, at=NOW + k * timedelta(seconds=STEP_SECONDS)) for k in (-1, 0, 1)}
    assert code not in inside
    assert match_step(secret, code, at=NOW) is None


def test_window_zero_accepts_only_the_current_step() -> None:
    secret = new_secret()
    step = timedelta(seconds=STEP_SECONDS)
    assert match_step(secret, code_at(secret, at=NOW), at=NOW, window=0) == time_step(NOW)
    previous = code_at(secret, at=NOW - step)
    if previous != code_at(secret, at=NOW):
        assert match_step(secret, previous, at=NOW, window=0) is None


@pytest.mark.parametrize("window", [-1, 2, 10])
def test_windows_beyond_one_step_are_refused(window: int) -> None:
    with pytest.raises(ValueError, match="window"):
        match_step(new_secret(), "123456", at=NOW, window=window)


def test_the_same_code_always_maps_to_the_same_step_so_the_caller_can_refuse_a_replay() -> None:
    secret = new_secret()
    code = code_at(secret, at=NOW)
    first = match_step(secret, code, at=NOW)
    # Replayed 25 s later (next step): still recognised as the *old* step, which the caller's
    # "step > totp_last_step" compare-and-set refuses.
    replay = match_step(secret, code, at=NOW + timedelta(seconds=25))
    assert first is not None and replay == first


def test_every_step_in_the_window_is_compared_even_after_a_match(monkeypatch: pytest.MonkeyPatch) -> None:
    secret = new_secret()
    calls: list[tuple[bytes, bytes]] = []
    real = totp.hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(totp.hmac, "compare_digest", counting)
    earliest = code_at(secret, at=NOW - timedelta(seconds=STEP_SECONDS))
    assert match_step(secret, earliest, at=NOW) == time_step(NOW) - 1
    assert len(calls) == 3
    calls.clear()
    match_step(secret, earliest, at=NOW, window=0)
    assert len(calls) == 1


def test_a_code_shared_by_two_steps_reports_the_earliest(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(totp, "_hotp", lambda key, counter, digits: "424242")
    assert match_step(new_secret(), "424242", at=NOW) == time_step(NOW) - 1


# --- match_step: code format ----------------------------------------------------------------------


def test_spaced_and_padded_codes_are_accepted() -> None:
    secret = new_secret()
    code = code_at(secret, at=NOW)
    for spelling in [f"{code[:3]} {code[3:]}", f" {code}\n", f"{code[:3]}\u00a0{code[3:]}", f"\t{code} "]:
        assert match_step(secret, spelling, at=NOW) == time_step(NOW), repr(spelling)


def test_malformed_codes_are_refused() -> None:
    secret = new_secret()
    code = code_at(secret, at=NOW)
    arabic_indic = code.translate(str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩"))
    fullwidth = code.translate(str.maketrans("0123456789", "０１２３４５６７８９"))
    malformed = [
        "",
        " ",
        code[:5],
        code + "0",
        code[:5] + "a",
        f"{code[:3]}-{code[3:]}",
        arabic_indic,  # str.isdigit() is True for these; we want ASCII only
        fullwidth,
        "+" + code[1:],
        code + " " * 40,  # too long to be a typed code
        "0x" + code,
    ]
    for bad in malformed:
        assert match_step(secret, bad, at=NOW) is None, repr(bad)
    for wrong_type in [None, int(code), code.encode()]:
        assert match_step(secret, wrong_type, at=NOW) is None  # type: ignore[arg-type]


@settings(max_examples=300)
@given(junk=st.text(max_size=12).filter(lambda s: not re.fullmatch(r"[0-9]{6}", "".join(s.split()))))
def test_anything_but_six_ascii_digits_is_refused(junk: str) -> None:
    # Only whitespace is ever dropped; whatever else is left must be exactly six ASCII digits.
    assert match_step(RFC_SECRET, junk, at=NOW) is None


# --- provisioning URI -----------------------------------------------------------------------------


def test_provisioning_uri_names_issuer_account_and_parameters() -> None:
    secret = new_secret()
    uri = provisioning_uri(secret, account_name="maria.lopez@example.org")
    parts = urlsplit(uri)
    assert (parts.scheme, parts.netloc) == ("otpauth", "totp")
    assert unquote(parts.path) == "/Hotline:maria.lopez@example.org"
    query = parse_qs(parts.query, strict_parsing=True)
    assert query == {
        "secret": [secret],
        "issuer": ["Hotline"],
        "algorithm": ["SHA1"],
        "digits": [str(DIGITS)],
        "period": [str(STEP_SECONDS)],
    }


def test_provisioning_uri_is_understood_by_an_authenticator_library() -> None:
    secret = new_secret()
    uri = provisioning_uri(secret, account_name="Zoë Ng", issuer="Crisis Line (Night)")
    assert "+" not in uri  # spaces as %20: some apps show a literal "+" otherwise
    parsed = pyotp.parse_uri(uri)
    assert isinstance(parsed, pyotp.TOTP)
    assert parsed.issuer == "Crisis Line (Night)"
    assert parsed.name == "Zoë Ng"
    assert parsed.at(NOW) == code_at(secret, at=NOW)


def test_provisioning_uri_canonicalises_the_secret() -> None:
    secret = new_secret()
    uri = provisioning_uri(secret.lower(), account_name="a@example.org")
    assert parse_qs(urlsplit(uri).query)["secret"] == [secret]


@pytest.mark.parametrize(
    ("account_name", "issuer"),
    [("a:b@example.org", "Hotline"), ("a@example.org", "Hot:line"), ("", "Hotline"), ("a@example.org", " ")],
)
def test_provisioning_uri_refuses_ambiguous_labels(account_name: str, issuer: str) -> None:
    with pytest.raises(ValueError):
        provisioning_uri(new_secret(), account_name=account_name, issuer=issuer)


# --- QR code --------------------------------------------------------------------------------------


def _dark_modules_drawn(svg: str) -> set[tuple[int, int]]:
    root = ET.fromstring(svg)
    (path,) = root.iter(f"{SVG_NS}path")
    return {(int(x), int(y)) for x, y in re.findall(r"M(\d+),(\d+)H", path.attrib["d"])}


def test_qr_svg_is_self_contained_inline_svg() -> None:
    uri = provisioning_uri(new_secret(), account_name="maria.lopez@example.org")
    svg = qr_svg(uri)
    assert svg.startswith("<svg") and not svg.startswith("<?xml")  # embeddable in HTML as is
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG_NS}svg"
    assert root.attrib["viewBox"].startswith("0 0 ")
    forbidden_tags = {"image", "script", "foreignObject", "use", "a", "style", "link"}
    for element in root.iter():
        assert element.tag.removeprefix(SVG_NS) not in forbidden_tags, element.tag
        for name, value in element.attrib.items():
            assert not name.endswith("href"), name
            assert "url(" not in value and "://" not in value, name
    # The only URL-looking text is the SVG namespace itself.
    assert re.findall(r"https?://[^\s\"']+", svg) == ["http://www.w3.org/2000/svg"]


def test_qr_svg_draws_exactly_the_modules_of_the_uri() -> None:
    uri = provisioning_uri(new_secret(), account_name="maria.lopez@example.org")
    reference = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, border=4)
    reference.add_data(uri)
    reference.make(fit=True)
    expected = {(x, y) for y, row in enumerate(reference.get_matrix()) for x, dark in enumerate(row) if dark}
    drawn = _dark_modules_drawn(qr_svg(uri))
    assert drawn == expected
    assert drawn != _dark_modules_drawn(qr_svg(uri.replace("maria", "mario")))
