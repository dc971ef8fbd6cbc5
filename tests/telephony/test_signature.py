"""Webhook signatures: Twilio's published vectors, rotation, URL rebuilding, fail-closed inputs."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from multidict import MultiDict
from starlette.datastructures import FormData
from twilio.request_validator import RequestValidator

from telephony.signature import (
    InvalidSignature,
    form_values,
    rebuild_url,
    require_valid_signature,
    sign,
    verify,
)

# Vectors from twilio-python tests/unit/test_request_validator.py (also twilio-node and
# twilio-php); see shared/reference/twilio-contracts.md section 1.5.
TOKEN = "12345"
URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
PARAMS = {
    "CallSid": "CA1234567890ABCDE",
    "Caller": "+14158675309",
    "Digits": "1234",
    "From": "+14158675309",
    "To": "+18005551212",
}
SIGNATURE = "RSOYDt4T1cUTdK1PDd93/VVr8B8="
BODY = '{"property": "value", "boolean": true}'
BODY_HASH = "0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620"


# --- positive vectors -------------------------------------------------------------------------


def test_published_vector_signs_and_verifies() -> None:
    assert sign(URL, PARAMS, TOKEN) == SIGNATURE
    assert verify(URL, PARAMS, SIGNATURE, [TOKEN])


def test_non_default_port_in_request_url_still_matches_signature_without_port() -> None:
    # Vector 2: the validator also tries the URL with its port removed.
    assert verify("https://mycompany.com:1234/myapp.php?foo=1&bar=2", PARAMS, SIGNATURE, [TOKEN])


def test_signature_made_with_default_https_port_verifies_without_it() -> None:
    # Vector 3: Twilio sometimes signs https://host:443/...; the validator tries both forms.
    with_port = "kvajT1Ptam85bY51eRf/AJRuM3w="
    assert sign("https://mycompany.com:443/myapp.php?foo=1&bar=2", PARAMS, TOKEN) == with_port
    assert verify(URL, PARAMS, with_port, [TOKEN])


def test_signature_made_with_default_http_port_verifies_without_it() -> None:
    # Vector 4.
    http_url = "http://mycompany.com/myapp.php?foo=1&bar=2"
    with_port = "0ZXoZLH/DfblKGATFgpif+LLRf4="
    assert sign("http://mycompany.com:80/myapp.php?foo=1&bar=2", PARAMS, TOKEN) == with_port
    assert verify(http_url, PARAMS, with_port, [TOKEN])


def test_non_default_port_is_signed_as_given() -> None:
    # Vector 5.
    url = "http://mycompany.com:1234/myapp.php?foo=1&bar=2"
    assert sign(url, PARAMS, TOKEN) == "Zmvh+3yNM1Phv2jhDCwEM3q5ebU="
    assert verify(url, PARAMS, "Zmvh+3yNM1Phv2jhDCwEM3q5ebU=", [TOKEN])


MULTI_SIGNATURE = "IK+Dwps556ElfBT0I3Rgjkr1wJU="


@pytest.mark.parametrize(
    "params",
    [
        {"Sid": "CA123", "SidAccount": "AC123", "Digits": ["5678", "1234", "1234"]},
        {"Sid": ["CA123"], "SidAccount": ("AC123",), "Digits": ("1234", "5678")},
        MultiDict([("Sid", "CA123"), ("SidAccount", "AC123"), ("Digits", "5678"), ("Digits", "1234")]),
        FormData([("Digits", "1234"), ("Sid", "CA123"), ("Digits", "5678"), ("SidAccount", "AC123")]),
    ],
    ids=["dict-of-lists", "tuples", "multidict", "starlette-formdata"],
)
def test_repeated_keys_sign_all_values_sorted_and_deduplicated(params: object) -> None:
    # Vector 6: every value of a repeated key counts, in sorted order, duplicates once.
    assert sign(URL, params, TOKEN) == MULTI_SIGNATURE  # type: ignore[arg-type]
    assert verify(URL, params, MULTI_SIGNATURE, [TOKEN])  # type: ignore[arg-type]


def test_repeated_key_with_missing_value_does_not_verify() -> None:
    params = MultiDict([("Sid", "CA123"), ("SidAccount", "AC123"), ("Digits", "5678")])
    assert not verify(URL, params, MULTI_SIGNATURE, [TOKEN])


def test_json_body_vectors() -> None:
    # Vectors 8 and 9: the body hash rides in the query and the signature covers the URL only.
    url = f"{URL}&bodySHA256={BODY_HASH}"
    assert verify(url, BODY, "a9nBmqA0ju/hNViExpshrM61xv4=", [TOKEN])
    url_only_hash = f"https://mycompany.com/myapp.php?bodySHA256={BODY_HASH}"
    assert verify(url_only_hash, BODY, "y77kIzt2vzLz71DgmJGsen2scGs=", [TOKEN])


def test_json_body_tampered_does_not_verify() -> None:
    url = f"{URL}&bodySHA256={BODY_HASH}"
    assert not verify(url, BODY.replace("value", "other"), "a9nBmqA0ju/hNViExpshrM61xv4=", [TOKEN])


def test_json_body_without_hash_in_url_does_not_verify() -> None:
    # php/node negative vector; python's helper would otherwise sign the string's characters.
    assert not verify(URL, BODY, sign(URL, {}, TOKEN), [TOKEN])


def test_form_params_with_body_hash_in_url_do_not_verify() -> None:
    # twilio-python skips the body check unless the body is a str; we refuse that combination.
    url = f"{URL}&bodySHA256={BODY_HASH}"
    assert not verify(url, {}, "a9nBmqA0ju/hNViExpshrM61xv4=", [TOKEN])


def test_credentials_in_url_are_part_of_the_signed_string() -> None:
    # Vectors 11 and 12 (node/php), pinned against the python helper we delegate to.
    assert verify(
        "https://user:pass@mycompany.com/myapp.php?foo=1&bar=2",
        PARAMS,
        "CukzLTc1tT5dXEDIHm/tKBanW10=",
        [TOKEN],
    )
    assert sign("https://user@mycompany.com/myapp.php?foo=1&bar=2", PARAMS, TOKEN) == (
        "2YRLlVAflCqxaNicjMpJcSTgzSs="
    )


def test_query_encoding_is_signed_byte_for_byte() -> None:
    # Vector 13: "It%27s" and "It's" are different URLs to the signature.
    encoded = f"{URL}&Body=It%27s+amazing"
    assert verify(encoded, PARAMS, "TfZzewPq8wqrGlMfyAud8+/IvJ0=", [TOKEN])
    assert not verify(f"{URL}&Body=It's+amazing", PARAMS, "TfZzewPq8wqrGlMfyAud8+/IvJ0=", [TOKEN])
    assert sign(f"{URL}&Body=It's+amazing", PARAMS, TOKEN) == "dsq4Ehbj6cs+KdTkpF5sSSplOWw="


def test_dotted_repeated_key_any_order() -> None:
    # Vector 14.
    for order in (["+1325xxxxxxx", "+1415xxxxxxx"], ["+1415xxxxxxx", "+1325xxxxxxx"]):
        params = MultiDict([("MessagingBinding.Address", value) for value in order])
        assert verify(URL, params, "83O6e2vORAoJHUNzJjDWN1jz+BA=", [TOKEN])


def test_keys_sort_by_code_point() -> None:
    # Vector 15: "Reason" sorts before "ReasonConferenceEnded".
    params = {**PARAMS, "ReasonConferenceEnded": "test", "Reason": "Participant"}
    assert sign(URL, params, TOKEN) == "vOEb5UThFn24KEfnOFLQY2AE5FY="
    assert not verify(URL, params, "95+Bu0JVPi0r/SsESZCVf0dWAjw=", [TOKEN])


def test_http_with_and_without_port_and_extra_params() -> None:
    # Vector 16.
    params = {**PARAMS, "ReasonConferenceEnded": "test", "Reason": "Participant"}
    for url in (
        "http://mycompany.com/myapp.php?foo=1&bar=2",
        "http://mycompany.com:1234/myapp.php?foo=1&bar=2",
    ):
        assert verify(url, params, "n2xBNyzSW7rfYStDtOFiFMv7qNo=", [TOKEN])


def test_form_body_vector() -> None:
    # Vector 17.
    assert verify(URL, {"property": "value", "boolean": "true"}, "NBdBDr/T/lgjI+tlgpXjKZQZs/k=", [TOKEN])


def test_unicode_and_empty_values() -> None:
    url = "https://hotline.example.org/sms"
    assert (
        sign(url, {"Body": "¿Dónde? 你好 🙂", "From": "+15551230000"}, TOKEN)
        == "iLg5GiaOVknhqihmpYYWQHp+w5w="
    )
    assert (
        sign(url, {"Body": "", "MediaUrl0": "https://api.twilio.com/x"}, TOKEN)
        == "VMrGLjv36N3qrtjqTssUG1SxeBA="
    )


# --- negative vectors ---------------------------------------------------------------------------


def test_wrong_token_fails() -> None:
    assert not verify(URL, PARAMS, SIGNATURE, ["54321"])


@pytest.mark.parametrize(
    "change",
    [
        {"Digits": "1235"},
        {"To": "+18005551213"},
        {"Extra": "x"},
        {"Digits": ""},
    ],
)
def test_changed_param_fails(change: dict[str, str]) -> None:
    assert not verify(URL, {**PARAMS, **change}, SIGNATURE, [TOKEN])


def test_removed_param_fails() -> None:
    params = dict(PARAMS)
    del params["Caller"]
    assert not verify(URL, params, SIGNATURE, [TOKEN])


@pytest.mark.parametrize(
    "url",
    [
        "https://mycompany.com/myapp.php?foo=1&bar=3",
        "https://mycompany.com/myapp.php?bar=2&foo=1",  # re-ordered query
        "https://mycompany.com/myapp.php",
        "https://mycompany.com/other.php?foo=1&bar=2",
        "https://evil.example/myapp.php?foo=1&bar=2",
        "http://mycompany.com/myapp.php?foo=1&bar=2",  # scheme lost behind a proxy
        "https://mycompany.com/myapp.php/?foo=1&bar=2",  # trailing-slash rewrite
    ],
)
def test_changed_url_fails(url: str) -> None:
    assert not verify(url, PARAMS, SIGNATURE, [TOKEN])


@pytest.mark.parametrize("signature", [None, "", SIGNATURE[:-1], SIGNATURE.lower(), " " + SIGNATURE])
def test_missing_or_malformed_signature_fails(signature: str | None) -> None:
    assert not verify(URL, PARAMS, signature, [TOKEN])


def test_empty_token_list_fails_closed() -> None:
    assert not verify(URL, PARAMS, SIGNATURE, [])


def test_empty_token_is_never_a_key() -> None:
    # Anyone can compute an HMAC under an empty key; an unset token must not make that valid.
    forged = RequestValidator("").compute_signature(URL, PARAMS)
    assert not verify(URL, PARAMS, forged, [""])
    assert not verify(URL, PARAMS, forged, ["", "other"])


def test_previous_token_accepted_during_rotation() -> None:
    assert verify(URL, PARAMS, SIGNATURE, ["new-token", TOKEN])
    assert verify(URL, PARAMS, SIGNATURE, [TOKEN, "new-token"])
    assert not verify(URL, PARAMS, SIGNATURE, ["new-token"])


def test_non_text_form_value_fails_instead_of_raising() -> None:
    class Upload:
        pass

    assert not verify(URL, {**PARAMS, "File": Upload()}, SIGNATURE, [TOKEN])


def test_malformed_port_fails_instead_of_raising() -> None:
    assert not verify("https://mycompany.com:notaport/myapp.php", PARAMS, SIGNATURE, [TOKEN])


def test_require_valid_signature_raises_opaque_error() -> None:
    require_valid_signature(URL, PARAMS, SIGNATURE, [TOKEN])
    with pytest.raises(InvalidSignature) as excinfo:
        require_valid_signature(URL, PARAMS, "bogus", [TOKEN])
    assert str(excinfo.value) == "invalid Twilio request signature"
    with pytest.raises(InvalidSignature):
        require_valid_signature(URL, PARAMS, None, [TOKEN])


def test_sign_refuses_empty_token() -> None:
    with pytest.raises(ValueError):
        sign(URL, PARAMS, "")


# --- URL rebuilding -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("base", "path", "query", "expected"),
    [
        (
            "https://hotline.example.org",
            "/twilio/voice/incoming",
            "",
            "https://hotline.example.org/twilio/voice/incoming",
        ),
        (
            "https://hotline.example.org/",
            "/twilio/voice/incoming",
            "",
            "https://hotline.example.org/twilio/voice/incoming",
        ),
        ("https://hotline.example.org", "twilio/sms", "", "https://hotline.example.org/twilio/sms"),
        (
            "https://example.org/hotline",
            "/twilio/voice/status",
            "",
            "https://example.org/hotline/twilio/voice/status",
        ),
        (
            "https://example.org/hotline/",
            "/twilio/voice/status",
            "",
            "https://example.org/hotline/twilio/voice/status",
        ),
        ("https://hotline.example.org", "/", "", "https://hotline.example.org/"),
        (
            "http://127.0.0.1:8000",
            "/twilio/voice/incoming",
            "",
            "http://127.0.0.1:8000/twilio/voice/incoming",
        ),
        ("https://hotline.example.org:8443", "/x", "a=1", "https://hotline.example.org:8443/x?a=1"),
        (
            "https://hotline.example.org",
            "/twilio/voice/step/gather%20menu",
            "b=2&a=It%27s+x&a=1",
            "https://hotline.example.org/twilio/voice/step/gather%20menu?b=2&a=It%27s+x&a=1",
        ),
    ],
)
def test_rebuild_url(base: str, path: str, query: str, expected: str) -> None:
    assert rebuild_url(base, path, query) == expected


@pytest.mark.parametrize(
    ("base", "path", "query"),
    [
        ("hotline.example.org", "/x", ""),
        ("ftp://hotline.example.org", "/x", ""),
        ("https://", "/x", ""),
        ("https://user:pass@hotline.example.org", "/x", ""),
        ("https://hotline.example.org?x=1", "/x", ""),
        ("https://hotline.example.org#frag", "/x", ""),
        ("https://hotline.example.org", "/x?a=1", ""),
        ("https://hotline.example.org", "/x", "?a=1"),
        ("https://hotline.example.org", "/x", "a=1#rc=2"),
    ],
)
def test_rebuild_url_rejects_ambiguous_input(base: str, path: str, query: str) -> None:
    with pytest.raises(ValueError):
        rebuild_url(base, path, query)


def test_rebuilt_url_verifies_what_twilio_signed_behind_a_tls_proxy() -> None:
    # Twilio requested https://hotline.example.org/...; the app sees http://app:8000/... behind
    # the proxy, but the signature must be checked against the public URL.
    public = "https://hotline.example.org/twilio/voice/gather?attempt=2&step=menu"
    params = {"CallSid": "CA" + "0" * 32, "Digits": "1"}
    signature = sign(public, params, "tok")
    url = rebuild_url("https://hotline.example.org/", "/twilio/voice/gather", "attempt=2&step=menu")
    assert verify(url, params, signature, ["tok"])
    assert not verify("http://app:8000/twilio/voice/gather?attempt=2&step=menu", params, signature, ["tok"])


def test_rebuilt_url_verifies_signature_made_with_default_port() -> None:
    signature = sign("https://hotline.example.org:443/twilio/sms", {"Body": "hi"}, "tok")
    assert verify(
        rebuild_url("https://hotline.example.org", "/twilio/sms", ""), {"Body": "hi"}, signature, ["tok"]
    )


def test_form_values_keeps_every_value_in_order() -> None:
    form = FormData([("a", "2"), ("b", "x"), ("a", "1")])
    assert form_values(form) == {"a": ["2", "1"], "b": ["x"]}
    assert form_values(MultiDict([("a", "2"), ("a", "1")])) == {"a": ["2", "1"]}
    assert form_values({"a": "1", "b": ["x", "y"]}) == {"a": ["1"], "b": ["x", "y"]}
    assert form_values(None) == {}
    with pytest.raises(TypeError):
        form_values({"a": 1})


# --- properties ---------------------------------------------------------------------------------

_keys = st.text(min_size=1, max_size=20)
_values = st.text(max_size=40)
_form = st.dictionaries(_keys, st.one_of(_values, st.lists(_values, min_size=1, max_size=3)), max_size=6)


@given(params=_form, token=st.text(min_size=1, max_size=20))
def test_sign_then_verify_round_trips(params: dict[str, str | list[str]], token: str) -> None:
    signature = sign(URL, params, token)
    assert verify(URL, params, signature, [token])
    assert not verify(URL, {**params, "\x00added": "1"}, signature, [token])


@given(params=_form, signature=st.one_of(st.none(), st.text(max_size=40)), url=st.text(max_size=80))
def test_verify_never_raises(params: dict[str, str | list[str]], signature: str | None, url: str) -> None:
    assert verify(url, params, signature, [TOKEN]) in (True, False)
