"""Blind index and keyed hash: known answers, determinism, key and domain separation."""

from __future__ import annotations

import hashlib
import hmac
import pickle
import struct

import pytest

from crypto import BlindIndexer, KeyedHasher, keyed_hash
from crypto.blind_index import PHONE_INDEX_DOMAIN, WITHHELD_NUMBERS

KEY = bytes(range(100, 132))
OTHER_KEY = bytes(range(132, 164))
PHONE = "+12025550123"

# HMAC-SHA256(KEY, LP("hotline.keyed-hash.v1") || LP(domain) || value), LP = u32_be length
# prefix; computed independently with hmac, then checked in.
KAT_KEYED_HASH = "315096f52c17fdd8c735443443421d0fa2bcfa9118a35559fe17a6d4bef49086"
KAT_PHONE_INDEX_16 = "b30be3c7c99bba3ee9b2ebb2a4b9868e"


def test_keyed_hash_known_answer() -> None:
    assert keyed_hash(KEY, "twilio.call_sid", b"CA0123").hex() == KAT_KEYED_HASH


def test_keyed_hash_matches_its_documented_construction() -> None:
    def lp(part: bytes) -> bytes:
        return struct.pack(">I", len(part)) + part

    message = lp(b"hotline.keyed-hash.v1") + lp(b"audit.query") + b"value"
    expected = hmac.new(KEY, message, hashlib.sha256).digest()
    assert keyed_hash(KEY, "audit.query", b"value") == expected


def test_keyed_hash_domain_and_key_separation() -> None:
    base = keyed_hash(KEY, "twilio.call_sid", b"CA0123")
    assert keyed_hash(KEY, "twilio.message_sid", b"CA0123") != base
    assert keyed_hash(OTHER_KEY, "twilio.call_sid", b"CA0123") != base
    # Length prefixes stop a domain/value boundary shift from colliding.
    assert keyed_hash(KEY, "ab", b"c") != keyed_hash(KEY, "a", b"bc")


def test_keyed_hash_refuses_short_keys_bad_domains_and_text() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        keyed_hash(b"short", "d", b"v")
    with pytest.raises(ValueError, match="domain"):
        keyed_hash(KEY, "", b"v")
    with pytest.raises(TypeError):
        keyed_hash(KEY, "d", "text")  # type: ignore[arg-type]


def test_keyed_hasher_binds_key() -> None:
    hasher = KeyedHasher(KEY, key_id="hash-1")
    assert hasher.hash("twilio.call_sid", b"CA0123").hex() == KAT_KEYED_HASH
    assert hasher.key_id == "hash-1"
    assert KEY.hex() not in repr(hasher)
    with pytest.raises(TypeError):
        pickle.dumps(hasher)


def test_phone_index_known_answer_and_determinism() -> None:
    indexer = BlindIndexer(KEY, key_id="bidx-1")
    assert indexer.phone(PHONE).hex() == KAT_PHONE_INDEX_16
    assert indexer.phone(PHONE) == BlindIndexer(KEY, key_id="bidx-1").phone(PHONE)
    assert indexer.phone(PHONE) == keyed_hash(KEY, PHONE_INDEX_DOMAIN, PHONE.encode())[:16]


def test_phone_index_is_key_separated() -> None:
    assert BlindIndexer(KEY, key_id="bidx-1").phone(PHONE) != BlindIndexer(OTHER_KEY, key_id="bidx-1").phone(
        PHONE
    )
    # The same key used as a generic hash key in another domain never gives the index value.
    assert keyed_hash(KEY, "twilio.call_sid", PHONE.encode())[:16] != BlindIndexer(KEY, key_id="b").phone(
        PHONE
    )


def test_different_numbers_get_different_indexes() -> None:
    indexer = BlindIndexer(KEY, key_id="bidx-1")
    values = {indexer.phone(f"+1202555{n:04d}") for n in range(1000)}
    assert len(values) == 1000


@pytest.mark.parametrize("length", [8, 12, 16, 32])
def test_truncation_length(length: int) -> None:
    index = BlindIndexer(KEY, key_id="bidx-1", length=length).phone(PHONE)
    assert len(index) == length
    # Truncation keeps a prefix of the full HMAC, so every length agrees with the 16-byte vector.
    common = min(length, 16)
    assert index[:common].hex() == KAT_PHONE_INDEX_16[: 2 * common]


@pytest.mark.parametrize("length", [0, 7, 33, 16.0])
def test_length_bounds(length: int) -> None:
    with pytest.raises(ValueError, match="length"):
        BlindIndexer(KEY, key_id="bidx-1", length=length)


@pytest.mark.parametrize(
    "value",
    [
        "",
        "anonymous",
        "2025550123",
        "+0123456789",
        "+1 202 555 0123",
        "+1202555012345678",
        "+12025550123\n",
        "+",
    ],
)
def test_non_e164_input_refused_without_echoing_it(value: str) -> None:
    with pytest.raises(ValueError) as info:
        BlindIndexer(KEY, key_id="bidx-1").phone(value)
    if len(value.strip()) >= 3:
        assert value.strip() not in str(info.value)


@pytest.mark.parametrize("value", sorted(WITHHELD_NUMBERS))
def test_withheld_spellings_never_indexed(value: str) -> None:
    with pytest.raises(ValueError, match="never blind-indexed"):
        BlindIndexer(KEY, key_id="bidx-1").phone(value)


def test_withheld_list_covers_twilio_spellings_with_and_without_plus_one() -> None:
    for digits in ("266696687", "7378742833", "2562533", "8656696", "86282452253"):
        assert f"+{digits}" in WITHHELD_NUMBERS
        assert f"+1{digits}" in WITHHELD_NUMBERS


def test_indexer_refuses_short_key_and_hides_key() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        BlindIndexer(b"\x00" * 16, key_id="bidx-1")
    indexer = BlindIndexer(KEY, key_id="bidx-1")
    assert KEY.hex() not in repr(indexer)
    with pytest.raises(TypeError):
        pickle.dumps(indexer)
