"""KEK keyring: wrap format, binding, rotation, state transitions, destroyed/unknown KEKs."""

from __future__ import annotations

import pickle
import threading
import uuid
from datetime import timedelta

import pytest

from crypto import (
    DecryptionError,
    KekRecord,
    KekState,
    KeyNotFound,
    KeyProvider,
    KeyStateError,
    LocalKeyring,
    wrapped_kek_id,
)

from .helpers import FIXED_KEK, FIXED_KEK_ID, FIXED_KEY_ID, RETENTION, SUBJECT, T0, KeyBinding, fixed_keyring

DATA_KEY = bytes(range(64, 96))
WRAP_NONCE = bytes.fromhex("0c0d0e0f1011121314151617")
BINDING: KeyBinding = {"data_key_id": FIXED_KEY_ID, "subject_id": SUBJECT, "retention_class": RETENTION}

# version | alg | len(15) | "kek-20261126-01" | nonce | AESGCM(kek).encrypt(nonce, dek, header ||
# LP("hotline.dek.v1") || LP(dek id bytes) || LP(subject) || LP(retention class)); computed
# independently with AESGCM, then checked in.
KAT_WRAPPED = (
    "01010f"
    "6b656b2d32303236313132362d3031"
    "0c0d0e0f1011121314151617"
    "a27b0c76707846f8961caebfbe98ad88fec779e49ff9cf13ff81e5477753d618"
    "d20c4dde31f95ccd0abf7d9447f7e9a2"
)


def test_local_keyring_satisfies_protocol() -> None:
    assert isinstance(fixed_keyring(), KeyProvider)


def test_wrap_known_answer_vector() -> None:
    keyring = fixed_keyring()
    wrapped = keyring._wrap(DATA_KEY, WRAP_NONCE, **BINDING)
    assert wrapped.hex() == KAT_WRAPPED
    assert keyring.unwrap(wrapped, **BINDING) == DATA_KEY
    assert wrapped_kek_id(wrapped) == FIXED_KEK_ID


def test_wrap_round_trip_uses_fresh_nonces() -> None:
    keyring = LocalKeyring.generate()
    first = keyring.wrap(DATA_KEY, **BINDING)
    second = keyring.wrap(DATA_KEY, **BINDING)
    assert first != second
    assert keyring.unwrap(first, **BINDING) == keyring.unwrap(second, **BINDING) == DATA_KEY


def test_every_byte_flip_of_wrapped_key_is_refused() -> None:
    keyring = fixed_keyring()
    wrapped = bytes.fromhex(KAT_WRAPPED)
    kek_id_span = range(3, 3 + len(FIXED_KEK_ID))
    for position in range(len(wrapped)):
        tampered = bytearray(wrapped)
        tampered[position] ^= 0x01
        if position in kek_id_span:
            # A flipped KEK-id byte names another KEK, which this keyring does not hold (or an
            # id that is not even well-formed): refused either way, never unwrapped.
            with pytest.raises((KeyNotFound, DecryptionError)):
                keyring.unwrap(bytes(tampered), **BINDING)
        else:
            with pytest.raises(DecryptionError):
                keyring.unwrap(bytes(tampered), **BINDING)


def test_truncated_wrapped_key_is_refused() -> None:
    keyring = fixed_keyring()
    wrapped = bytes.fromhex(KAT_WRAPPED)
    for length in range(len(wrapped)):
        with pytest.raises(DecryptionError):
            keyring.unwrap(wrapped[:length], **BINDING)
    with pytest.raises(DecryptionError):
        keyring.unwrap(wrapped + b"\x00", **BINDING)


@pytest.mark.parametrize(
    "binding",
    [
        KeyBinding(data_key_id=uuid.uuid4(), subject_id=SUBJECT, retention_class=RETENTION),
        KeyBinding(data_key_id=FIXED_KEY_ID, subject_id="case:other", retention_class=RETENTION),
        KeyBinding(data_key_id=FIXED_KEY_ID, subject_id=SUBJECT, retention_class="case.messages"),
    ],
    ids=["other-data-key-id", "other-subject", "other-retention-class"],
)
def test_wrapped_key_moved_to_other_binding_is_refused(binding: KeyBinding) -> None:
    with pytest.raises(DecryptionError):
        fixed_keyring().unwrap(bytes.fromhex(KAT_WRAPPED), **binding)


def test_wrapped_key_under_an_unrelated_keyring_is_unknown() -> None:
    unrelated = LocalKeyring.generate(clock=lambda: T0 - timedelta(days=400))
    assert unrelated.active_kek_id.startswith("kek-20251022-01-")
    with pytest.raises(KeyNotFound, match="unknown KEK id 'kek-20261126-01'"):
        unrelated.unwrap(bytes.fromhex(KAT_WRAPPED), **BINDING)


def test_same_kek_id_other_material_fails_opaquely() -> None:
    impostor = LocalKeyring(
        [KekRecord(id=FIXED_KEK_ID, version=1, state=KekState.ACTIVE, created_at=T0, material=bytes(32))]
    )
    with pytest.raises(DecryptionError):
        impostor.unwrap(bytes.fromhex(KAT_WRAPPED), **BINDING)


def test_rotation_keeps_old_wraps_readable_and_wraps_new_under_new_kek() -> None:
    keyring = fixed_keyring()
    old_wrapped = keyring.wrap(DATA_KEY, **BINDING)
    new_id = keyring.rotate()
    assert new_id.startswith("kek-20261126-02-")
    assert keyring.active_kek_id == new_id
    assert keyring.state_of(FIXED_KEK_ID) is KekState.DECRYPT_ONLY
    assert keyring.state_of(new_id) is KekState.ACTIVE
    assert keyring.kek_ids() == (FIXED_KEK_ID, new_id)
    assert keyring.kek_info(new_id).version == 2
    # Old data keys still unwrap under the decrypt-only KEK.
    assert keyring.unwrap(old_wrapped, **BINDING) == DATA_KEY
    # New wraps use the new active KEK.
    new_wrapped = keyring.wrap(DATA_KEY, **BINDING)
    assert wrapped_kek_id(new_wrapped) == new_id
    assert keyring.unwrap(new_wrapped, **BINDING) == DATA_KEY


def test_retire_then_destroy_refuses_unwrap_but_keeps_the_id() -> None:
    times = iter([T0 + timedelta(days=1), T0 + timedelta(days=2), T0 + timedelta(days=3)])
    record = KekRecord(id=FIXED_KEK_ID, version=1, state=KekState.ACTIVE, created_at=T0, material=FIXED_KEK)
    keyring = LocalKeyring([record], clock=lambda: next(times))
    wrapped = keyring.wrap(DATA_KEY, **BINDING)
    keyring.rotate()
    keyring.retire(FIXED_KEK_ID)
    assert keyring.state_of(FIXED_KEK_ID) is KekState.RETIRED
    # Retired still unwraps: backups from before the rewrap stay readable until destroy.
    assert keyring.unwrap(wrapped, **BINDING) == DATA_KEY
    keyring.destroy(FIXED_KEK_ID)
    info = keyring.kek_info(FIXED_KEK_ID)
    assert info.state is KekState.DESTROYED
    assert info.retired_at == T0 + timedelta(days=2)
    assert info.destroyed_at == T0 + timedelta(days=3)
    assert FIXED_KEK_ID in keyring.kek_ids()
    with pytest.raises(KeyStateError, match="destroyed"):
        keyring.unwrap(wrapped, **BINDING)
    destroyed = next(r for r in keyring.export_records() if r.id == FIXED_KEK_ID)
    assert destroyed.material is None
    keyring.destroy(FIXED_KEK_ID)  # idempotent


def test_state_transitions_are_enforced() -> None:
    keyring = fixed_keyring()
    with pytest.raises(KeyStateError, match="active"):
        keyring.retire(FIXED_KEK_ID)
    with pytest.raises(KeyStateError, match="active"):
        keyring.destroy(FIXED_KEK_ID)
    keyring.rotate()
    with pytest.raises(KeyStateError, match="decrypt-only"):
        keyring.destroy(FIXED_KEK_ID)  # must be retired first
    keyring.retire(FIXED_KEK_ID)
    keyring.retire(FIXED_KEK_ID)  # idempotent
    keyring.destroy(FIXED_KEK_ID)
    with pytest.raises(KeyStateError, match="destroyed"):
        keyring.retire(FIXED_KEK_ID)


def test_unknown_kek_id_raises_key_not_found() -> None:
    keyring = fixed_keyring()
    for operation in (keyring.state_of, keyring.kek_info, keyring.retire, keyring.destroy):
        with pytest.raises(KeyNotFound):
            operation("kek-19990101-01")


def test_repeated_rotation_same_day_gets_distinct_ids_and_one_active() -> None:
    keyring = fixed_keyring()
    ids = [keyring.rotate() for _ in range(3)]
    assert [kek_id[:15] for kek_id in ids] == ["kek-20261126-02", "kek-20261126-03", "kek-20261126-04"]
    assert len(set(ids)) == 3
    states = [keyring.state_of(kek_id) for kek_id in keyring.kek_ids()]
    assert states.count(KekState.ACTIVE) == 1


@pytest.mark.parametrize("active_count", [0, 2])
def test_keyring_needs_exactly_one_active(active_count: int) -> None:
    records = [
        KekRecord(
            id=f"kek-20261126-0{i}",
            version=i,
            state=KekState.ACTIVE if i <= active_count else KekState.DECRYPT_ONLY,
            created_at=T0,
            material=bytes([i]) * 32,
        )
        for i in range(1, 4)
    ]
    with pytest.raises(KeyStateError, match="exactly one active"):
        LocalKeyring(records)


def test_kek_record_validation_and_masking() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        KekRecord(id="kek-1", version=1, state=KekState.ACTIVE, created_at=T0, material=b"short")
    with pytest.raises(ValueError, match="must not carry material"):
        KekRecord(id="kek-1", version=1, state=KekState.DESTROYED, created_at=T0, material=FIXED_KEK)
    with pytest.raises(ValueError, match="KEK id"):
        KekRecord(id="kek 1", version=1, state=KekState.ACTIVE, created_at=T0, material=FIXED_KEK)
    record = KekRecord(id="kek-1", version=1, state=KekState.ACTIVE, created_at=T0, material=FIXED_KEK)
    assert FIXED_KEK.hex() not in repr(record) and repr(FIXED_KEK) not in repr(record)
    with pytest.raises(TypeError):
        pickle.dumps(record)
    with pytest.raises(TypeError):
        pickle.dumps(fixed_keyring())


def test_wrap_refuses_wrong_length_material() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        fixed_keyring().wrap(b"\x00" * 16, **BINDING)


def test_wrapped_kek_id_of_garbage_is_opaque() -> None:
    for blob in (b"", b"\x01\x01", b"\x01\x01\x00" + bytes(60), b"\x01\x01\x03k\xffk" + bytes(60)):
        with pytest.raises(DecryptionError):
            wrapped_kek_id(blob)


def test_wrap_and_unwrap_stay_correct_while_rotating_concurrently() -> None:
    keyring = LocalKeyring.generate()
    failures: list[BaseException] = []
    results: list[bytes] = []
    stop = threading.Event()

    def wrapper() -> None:
        try:
            while not stop.is_set():
                wrapped = keyring.wrap(DATA_KEY, **BINDING)
                assert keyring.unwrap(wrapped, **BINDING) == DATA_KEY
                results.append(wrapped)
        except BaseException as exc:  # collected and checked in the main thread
            failures.append(exc)

    threads = [threading.Thread(target=wrapper) for _ in range(4)]
    for thread in threads:
        thread.start()
    for _ in range(20):
        keyring.rotate()
    stop.set()
    for thread in threads:
        thread.join()
    assert failures == []
    assert results
    assert all(keyring.unwrap(w, **BINDING) == DATA_KEY for w in results)


def test_two_keyrings_made_the_same_day_never_share_a_kek_id() -> None:
    first = LocalKeyring.generate(clock=lambda: T0)
    second = LocalKeyring.generate(clock=lambda: T0)
    assert first.active_kek_id != second.active_kek_id
