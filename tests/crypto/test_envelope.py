"""Data keys (masking, no pickling), envelope wrap/unwrap/rewrap, and the TTL cache."""

from __future__ import annotations

import copy
import pickle
import threading
import uuid

import pytest

from crypto import (
    DataKey,
    DataKeyCache,
    DecryptionError,
    KekState,
    KeyStateError,
    LocalKeyring,
    create_data_key,
    open_sealed,
    rewrap_data_key,
    seal,
    unwrap_data_key,
    wrap_data_key,
    wrapped_kek_id,
)

from .helpers import (
    FIXED_KEY,
    FIXED_KEY_ID,
    RETENTION,
    ROW_ID,
    SUBJECT,
    KeyBinding,
    ManualClock,
    fixed_data_key,
)


def test_data_key_repr_and_str_hide_material() -> None:
    key = fixed_data_key()
    for text in (repr(key), str(key), f"{key}", f"{key!r}", repr([key]), repr({"k": key})):
        assert str(FIXED_KEY_ID) in text
        assert FIXED_KEY.hex() not in text
        assert repr(FIXED_KEY) not in text
        assert "material" not in text


def test_data_key_refuses_pickling_at_every_protocol() -> None:
    key = DataKey.generate()
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        with pytest.raises(TypeError, match="cannot be pickled"):
            pickle.dumps(key, protocol=protocol)
    with pytest.raises(TypeError):
        pickle.dumps({"nested": [key]})


def test_data_key_copy_shares_the_immutable_object() -> None:
    key = DataKey.generate()
    assert copy.copy(key) is key
    assert copy.deepcopy({"k": key})["k"] is key


def test_data_key_validation_and_equality() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        DataKey(uuid.uuid4(), b"\x00" * 16)
    with pytest.raises(TypeError):
        DataKey(str(uuid.uuid4()), FIXED_KEY)  # type: ignore[arg-type]
    assert DataKey(FIXED_KEY_ID, FIXED_KEY) == fixed_data_key()
    assert DataKey(FIXED_KEY_ID, bytes(32)) != fixed_data_key()
    assert DataKey.generate() != DataKey.generate()
    assert len({fixed_data_key(), fixed_data_key()}) == 1


def test_create_wrap_unwrap_round_trip_opens_sealed_fields() -> None:
    keyring = LocalKeyring.generate()
    data_key, wrapped = create_data_key(keyring, subject_id=SUBJECT, retention_class=RETENTION)
    blob = seal(data_key, b"notes", field_id="case.notes", row_id=ROW_ID, subject_id=SUBJECT)
    restored = unwrap_data_key(
        keyring, wrapped, data_key_id=data_key.id, subject_id=SUBJECT, retention_class=RETENTION
    )
    assert restored == data_key
    assert open_sealed(restored, blob, field_id="case.notes", row_id=ROW_ID, subject_id=SUBJECT) == b"notes"


def test_wrapped_key_bound_to_subject_and_retention_class() -> None:
    keyring = LocalKeyring.generate()
    data_key, wrapped = create_data_key(keyring, subject_id=SUBJECT, retention_class=RETENTION)
    with pytest.raises(DecryptionError):
        unwrap_data_key(
            keyring, wrapped, data_key_id=data_key.id, subject_id="case:x", retention_class=RETENTION
        )
    with pytest.raises(DecryptionError):
        unwrap_data_key(
            keyring, wrapped, data_key_id=data_key.id, subject_id=SUBJECT, retention_class="voicemail"
        )
    with pytest.raises(DecryptionError):
        unwrap_data_key(
            keyring, wrapped, data_key_id=uuid.uuid4(), subject_id=SUBJECT, retention_class=RETENTION
        )


def test_rewrap_across_rotation_keeps_material_and_moves_to_new_kek() -> None:
    keyring = LocalKeyring.generate()
    old_kek = keyring.active_kek_id
    data_key, wrapped = create_data_key(keyring, subject_id=SUBJECT, retention_class=RETENTION)
    blob = seal(data_key, b"kept", field_id="case.notes", row_id=ROW_ID, subject_id=SUBJECT)
    new_kek = keyring.rotate()
    binding = KeyBinding(data_key_id=data_key.id, subject_id=SUBJECT, retention_class=RETENTION)

    rewrapped = rewrap_data_key(keyring, wrapped, **binding)
    assert wrapped_kek_id(wrapped) == old_kek
    assert wrapped_kek_id(rewrapped) == new_kek
    assert unwrap_data_key(keyring, rewrapped, **binding) == data_key

    # Once the old KEK is retired and destroyed, only the rewrapped copy still opens the field.
    keyring.retire(old_kek)
    keyring.destroy(old_kek)
    assert keyring.state_of(old_kek) is KekState.DESTROYED
    with pytest.raises(KeyStateError):
        unwrap_data_key(keyring, wrapped, **binding)
    restored = unwrap_data_key(keyring, rewrapped, **binding)
    assert open_sealed(restored, blob, field_id="case.notes", row_id=ROW_ID, subject_id=SUBJECT) == b"kept"


def test_wrap_data_key_uses_active_kek() -> None:
    keyring = LocalKeyring.generate()
    keyring.rotate()
    wrapped = wrap_data_key(keyring, DataKey.generate(), subject_id=SUBJECT, retention_class=RETENTION)
    assert wrapped_kek_id(wrapped) == keyring.active_kek_id


def test_cache_hit_then_ttl_expiry_with_injected_clock() -> None:
    clock = ManualClock()
    cache = DataKeyCache(ttl_seconds=60, max_size=10, clock=clock)
    key = DataKey.generate()
    cache.put(key)
    assert cache.get(key.id) is key
    clock.advance(59.9)
    assert cache.get(key.id) is key  # reading does not extend the TTL...
    clock.advance(0.1)
    assert cache.get(key.id) is None  # ...so it expires 60 s after put
    assert len(cache) == 0


def test_cache_put_refreshes_ttl() -> None:
    clock = ManualClock()
    cache = DataKeyCache(ttl_seconds=10, max_size=10, clock=clock)
    key = DataKey.generate()
    cache.put(key)
    clock.advance(8)
    cache.put(key)
    clock.advance(8)
    assert cache.get(key.id) is key


def test_cache_expired_entries_are_purged_on_put_and_len() -> None:
    clock = ManualClock()
    cache = DataKeyCache(ttl_seconds=10, max_size=10, clock=clock)
    for _ in range(5):
        cache.put(DataKey.generate())
    clock.advance(10)
    assert len(cache) == 0
    cache.put(DataKey.generate())
    assert len(cache) == 1


def test_cache_max_size_evicts_least_recently_used() -> None:
    clock = ManualClock()
    cache = DataKeyCache(ttl_seconds=300, max_size=2, clock=clock)
    first, second, third = DataKey.generate(), DataKey.generate(), DataKey.generate()
    cache.put(first)
    cache.put(second)
    assert cache.get(first.id) is first  # first is now the most recently used
    cache.put(third)
    assert cache.get(second.id) is None
    assert cache.get(first.id) is first
    assert cache.get(third.id) is third
    assert len(cache) == 2


def test_cache_evict_and_clear() -> None:
    cache = DataKeyCache(ttl_seconds=300, max_size=10, clock=ManualClock())
    first, second = DataKey.generate(), DataKey.generate()
    cache.put(first)
    cache.put(second)
    assert cache.evict(first.id) is True
    assert cache.evict(first.id) is False
    assert cache.get(first.id) is None
    assert cache.get(second.id) is second
    cache.clear()
    assert cache.get(second.id) is None
    assert len(cache) == 0


def test_cache_refuses_bad_configuration_and_non_keys() -> None:
    with pytest.raises(ValueError):
        DataKeyCache(ttl_seconds=0, max_size=1)
    with pytest.raises(ValueError):
        DataKeyCache(ttl_seconds=1, max_size=0)
    cache = DataKeyCache(ttl_seconds=1, max_size=1)
    with pytest.raises(TypeError):
        cache.put(b"\x00" * 32)  # type: ignore[arg-type]


def test_cache_repr_hides_keys() -> None:
    cache = DataKeyCache(ttl_seconds=5, max_size=3, clock=ManualClock())
    cache.put(fixed_data_key())
    assert FIXED_KEY.hex() not in repr(cache) and "size=1" in repr(cache)


def test_cache_is_consistent_under_concurrent_use() -> None:
    cache = DataKeyCache(ttl_seconds=300, max_size=50, clock=ManualClock())
    keys = [DataKey.generate() for _ in range(200)]
    failures: list[BaseException] = []

    def worker(offset: int) -> None:
        try:
            for i in range(2_000):
                key = keys[(i + offset) % len(keys)]
                cache.put(key)
                found = cache.get(key.id)
                assert found is None or found is key
                if i % 7 == 0:
                    cache.evict(key.id)
        except BaseException as exc:  # collected and re-raised in the main thread
            failures.append(exc)

    threads = [threading.Thread(target=worker, args=(n * 13,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert len(cache) <= 50
