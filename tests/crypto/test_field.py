"""Sealed field format: known answers, tampering, swaps, truncation, nonce freshness."""

from __future__ import annotations

import uuid

import pytest

from crypto import SEALED_OVERHEAD, DataKey, DecryptionError, key_id_of, open_sealed, seal
from crypto.field import _seal_with_nonce

from .helpers import (
    FIELD,
    FIXED_KEY_ID,
    FIXED_NONCE,
    OTHER_FIELD,
    OTHER_ROW_ID,
    OTHER_SUBJECT,
    ROW_ID,
    SUBJECT,
    FieldContext,
    fixed_data_key,
)

# Computed once from the documented format with AESGCM directly (header || nonce ||
# AESGCM(key).encrypt(nonce, pt, header[:18] || LP("hotline.field.v1") || LP(field) ||
# LP(row bytes) || LP(subject))), then checked in.  A change here is a format change.
KAT_JANE = (
    "0101"
    "00112233445566778899aabbccddeeff"
    "000102030405060708090a0b"
    "0d63b87ee5a1ad7e"
    "94a7d5609d3b964e4809799b4aadc3b9"
)
KAT_EMPTY = "010100112233445566778899aabbccddeeff000102030405060708090a0b2c011c2e42b8611374b45034af04cd57"
CONTEXT: FieldContext = {"field_id": FIELD, "row_id": ROW_ID, "subject_id": SUBJECT}


def sealed_jane() -> bytes:
    return bytes.fromhex(KAT_JANE)


def test_known_answer_vector() -> None:
    blob = _seal_with_nonce(fixed_data_key(), b"Jane Doe", FIXED_NONCE, **CONTEXT)
    assert blob.hex() == KAT_JANE
    assert open_sealed(fixed_data_key(), blob, **CONTEXT) == b"Jane Doe"


def test_known_answer_vector_empty_plaintext() -> None:
    blob = _seal_with_nonce(fixed_data_key(), b"", FIXED_NONCE, **CONTEXT)
    assert blob.hex() == KAT_EMPTY
    assert len(blob) == SEALED_OVERHEAD
    assert open_sealed(fixed_data_key(), blob, **CONTEXT) == b""


def test_round_trip_and_layout() -> None:
    key = DataKey.generate()
    plaintext = "Zoë – 📞".encode()
    blob = seal(key, plaintext, **CONTEXT)
    assert blob[0] == 0x01 and blob[1] == 0x01
    assert blob[2:18] == key.id.bytes
    assert len(blob) == len(plaintext) + SEALED_OVERHEAD == len(plaintext) + 46
    assert open_sealed(key, blob, **CONTEXT) == plaintext
    assert key_id_of(blob) == key.id


def test_subject_uuid_and_its_string_form_bind_the_same() -> None:
    key = DataKey.generate()
    subject = uuid.uuid4()
    blob = seal(key, b"x", field_id=FIELD, row_id=ROW_ID, subject_id=subject)
    assert open_sealed(key, blob, field_id=FIELD, row_id=ROW_ID, subject_id=str(subject)) == b"x"


def test_every_single_byte_flip_fails() -> None:
    blob = sealed_jane()
    for position in range(len(blob)):
        for mask in (0x01, 0x80, 0xFF):
            tampered = bytearray(blob)
            tampered[position] ^= mask
            with pytest.raises(DecryptionError) as info:
                open_sealed(fixed_data_key(), bytes(tampered), **CONTEXT)
            assert str(info.value) == "decryption failed"


def test_every_single_byte_flip_fails_with_lookup() -> None:
    # With a lookup, a flipped key-id byte names a key that does not exist: same error.
    keys = {FIXED_KEY_ID: fixed_data_key()}
    blob = sealed_jane()
    for position in range(len(blob)):
        tampered = bytearray(blob)
        tampered[position] ^= 0x01
        with pytest.raises(DecryptionError):
            open_sealed(keys.get, bytes(tampered), **CONTEXT)


@pytest.mark.parametrize(
    "context",
    [
        FieldContext(field_id=OTHER_FIELD, row_id=ROW_ID, subject_id=SUBJECT),
        FieldContext(field_id=FIELD, row_id=OTHER_ROW_ID, subject_id=SUBJECT),
        FieldContext(field_id=FIELD, row_id=ROW_ID, subject_id=OTHER_SUBJECT),
        FieldContext(field_id=FIELD + "x", row_id=ROW_ID, subject_id=SUBJECT),
        FieldContext(field_id=FIELD, row_id=ROW_ID, subject_id=SUBJECT + " "),
    ],
    ids=["other-field", "other-row", "other-subject", "field-suffix", "subject-suffix"],
)
def test_swapped_value_never_opens(context: FieldContext) -> None:
    with pytest.raises(DecryptionError):
        open_sealed(fixed_data_key(), sealed_jane(), **context)


def test_wrong_key_with_same_id_fails() -> None:
    impostor = DataKey(FIXED_KEY_ID, bytes(32))
    with pytest.raises(DecryptionError):
        open_sealed(impostor, sealed_jane(), **CONTEXT)


def test_key_with_other_id_is_refused_before_decrypting() -> None:
    # Same material, other id: the id in the header is authenticated, so this must fail.
    with pytest.raises(DecryptionError):
        open_sealed(DataKey(uuid.uuid4(), bytes(range(32))), sealed_jane(), **CONTEXT)


def test_substituted_valid_key_id_fails() -> None:
    other = DataKey.generate()
    keys = {FIXED_KEY_ID: fixed_data_key(), other.id: other}
    blob = bytearray(sealed_jane())
    blob[2:18] = other.id.bytes
    with pytest.raises(DecryptionError):
        open_sealed(keys.get, bytes(blob), **CONTEXT)


def test_lookup_receives_header_key_id_and_its_errors_propagate() -> None:
    class Shredded(Exception):
        pass

    seen: list[uuid.UUID] = []

    def lookup(key_id: uuid.UUID) -> DataKey:
        seen.append(key_id)
        raise Shredded

    with pytest.raises(Shredded):
        open_sealed(lookup, sealed_jane(), **CONTEXT)
    assert seen == [FIXED_KEY_ID]


def test_lookup_returning_none_is_opaque_failure() -> None:
    with pytest.raises(DecryptionError):
        open_sealed(lambda _key_id: None, sealed_jane(), **CONTEXT)


@pytest.mark.parametrize("length", [0, 1, 2, 17, 18, 29, 30, 45])
def test_truncated_prefix_fails(length: int) -> None:
    with pytest.raises(DecryptionError):
        open_sealed(fixed_data_key(), sealed_jane()[:length], **CONTEXT)


def test_every_truncation_and_extension_fails() -> None:
    blob = sealed_jane()
    for length in range(len(blob)):
        with pytest.raises(DecryptionError):
            open_sealed(fixed_data_key(), blob[:length], **CONTEXT)
    with pytest.raises(DecryptionError):
        open_sealed(fixed_data_key(), blob + b"\x00", **CONTEXT)


@pytest.mark.parametrize("header", [b"\x02\x01", b"\x00\x01", b"\x01\x02", b"\x01\x00"])
def test_unknown_version_or_algorithm_fails(header: bytes) -> None:
    blob = header + sealed_jane()[2:]
    with pytest.raises(DecryptionError):
        open_sealed(fixed_data_key(), blob, **CONTEXT)
    with pytest.raises(DecryptionError):
        key_id_of(blob)


def test_no_repeated_nonce_or_ciphertext_over_100k_seals() -> None:
    key = DataKey.generate()
    nonces: set[bytes] = set()
    blobs: set[bytes] = set()
    count = 100_000
    for _ in range(count):
        blob = seal(key, b"+12025550123", **CONTEXT)
        nonces.add(blob[18:30])
        blobs.add(blob)
    assert len(nonces) == count
    assert len(blobs) == count


def test_equal_values_in_different_rows_give_different_blobs() -> None:
    key = DataKey.generate()
    first = seal(key, b"same", field_id=FIELD, row_id=ROW_ID, subject_id=SUBJECT)
    second = seal(key, b"same", field_id=FIELD, row_id=OTHER_ROW_ID, subject_id=SUBJECT)
    assert first != second
    assert first[30:] != second[30:]


def test_plaintext_must_be_bytes() -> None:
    with pytest.raises(TypeError):
        seal(DataKey.generate(), "Jane", **CONTEXT)  # type: ignore[arg-type]


def test_bytearray_and_memoryview_accepted() -> None:
    key = DataKey.generate()
    blob = seal(key, bytearray(b"abc"), **CONTEXT)  # type: ignore[arg-type]
    assert open_sealed(key, memoryview(blob), **CONTEXT) == b"abc"  # type: ignore[arg-type]


@pytest.mark.parametrize("field_id", ["", "case caller", "Ωmega", ".case", "x" * 129])
def test_malformed_field_id_is_a_caller_bug(field_id: str) -> None:
    with pytest.raises(ValueError, match="field_id"):
        seal(DataKey.generate(), b"x", field_id=field_id, row_id=ROW_ID, subject_id=SUBJECT)


def test_row_id_must_be_uuid() -> None:
    with pytest.raises(TypeError, match="row_id"):
        seal(DataKey.generate(), b"x", field_id=FIELD, row_id=str(ROW_ID), subject_id=SUBJECT)  # type: ignore[arg-type]


def test_empty_subject_refused() -> None:
    with pytest.raises(ValueError, match="subject_id"):
        seal(DataKey.generate(), b"x", field_id=FIELD, row_id=ROW_ID, subject_id="")


def test_explicit_nonce_must_be_12_bytes() -> None:
    with pytest.raises(ValueError, match="nonce"):
        _seal_with_nonce(fixed_data_key(), b"x", b"\x00" * 8, **CONTEXT)


def test_decryption_error_is_opaque() -> None:
    errors = []
    for blob in (b"", sealed_jane()[:-1], b"\x09" + sealed_jane()[1:]):
        with pytest.raises(DecryptionError) as info:
            open_sealed(fixed_data_key(), blob, **CONTEXT)
        errors.append(
            (str(info.value), info.value.args, info.value.__cause__, info.value.__suppress_context__)
        )
    with pytest.raises(DecryptionError) as info:
        open_sealed(fixed_data_key(), sealed_jane(), field_id=OTHER_FIELD, row_id=ROW_ID, subject_id=SUBJECT)
    errors.append((str(info.value), info.value.args, info.value.__cause__, info.value.__suppress_context__))
    assert errors[-1][3] is True  # InvalidTag is not chained into tracebacks
    assert {e[:3] for e in errors} == {("decryption failed", ("decryption failed",), None)}
