"""Key file: creation (0600, never overwrite), strict loading, atomic save, round trips."""

from __future__ import annotations

import base64
import json
import os
import pickle
import re
import stat
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest

from crypto import (
    KEY_FILE_FORMAT,
    KekState,
    KeyFileError,
    KeyStateError,
    create_data_key,
    create_key_file,
    load_key_file,
    open_sealed,
    save_key_file,
    seal,
    unwrap_data_key,
)

from .helpers import RETENTION, ROW_ID, SUBJECT, T0, KeyBinding

posix_only = pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")


def key_path(tmp_path: Path) -> Path:
    return tmp_path / "hotline-keys.json"


def read_document(path: Path) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(path.read_text())
    return document


def write_document(path: Path, document: object) -> None:
    """Write a (possibly broken) document with the right mode, bypassing the writer."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(document if isinstance(document, str) else json.dumps(document))


def key_strings(document: dict[str, Any]) -> list[str]:
    """Every base64 key string in a document (to check error messages never echo one)."""
    found = [k["material"] for k in document["keks"] if k["material"]]
    found += [document[name]["material"] for name in ("blind_index_key", "hash_key", "spool_key")]
    current = document["checkpoint_signing"]["current"]
    return [*found, current["private_key"]]


@posix_only
def test_create_writes_0600_and_records_every_key(tmp_path: Path) -> None:
    path = key_path(tmp_path)
    material = create_key_file(path, clock=lambda: T0)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    document = read_document(path)
    assert document["format"] == KEY_FILE_FORMAT
    assert document["development"] is False
    assert [k["state"] for k in document["keks"]] == ["active"]
    assert document["keks"][0]["id"] == material.keyring.active_kek_id
    assert re.fullmatch(r"kek-20261126-01-[0-9a-f]{8}", material.keyring.active_kek_id)
    for name in ("blind_index_key", "hash_key", "spool_key"):
        assert len(base64.b64decode(document[name]["material"])) == 32
    assert document["checkpoint_signing"]["current"]["id"] == material.signer.key_id
    assert document["checkpoint_signing"]["previous"] == []
    # Independent keys: no two are equal.
    assert len(set(key_strings(document))) == len(key_strings(document))


def test_create_never_overwrites(tmp_path: Path) -> None:
    path = key_path(tmp_path)
    create_key_file(path)
    before = path.read_bytes()
    with pytest.raises(KeyFileError, match="already exists; refusing to overwrite"):
        create_key_file(path)
    assert path.read_bytes() == before


@posix_only
def test_create_refuses_a_symlink_at_the_path(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("precious")
    path = key_path(tmp_path)
    path.symlink_to(victim)
    with pytest.raises(KeyFileError, match="already exists"):
        create_key_file(path)
    assert victim.read_text() == "precious"


def test_create_in_missing_directory_is_clear(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="does not exist"):
        create_key_file(tmp_path / "missing" / "keys.json")


def test_development_flag_round_trips(tmp_path: Path) -> None:
    path = key_path(tmp_path)
    assert create_key_file(path, development=True).development is True
    assert read_document(path)["development"] is True
    assert load_key_file(path).development is True


def test_round_trip_everything_still_works(tmp_path: Path) -> None:
    path = key_path(tmp_path)
    created = create_key_file(path)
    data_key, wrapped = create_data_key(created.keyring, subject_id=SUBJECT, retention_class=RETENTION)
    blob = seal(data_key, b"secret", field_id="case.notes", row_id=ROW_ID, subject_id=SUBJECT)
    index = created.blind_indexer().phone("+12025550123")
    digest = created.keyed_hasher().hash("twilio.call_sid", b"CA1")
    signature = created.signer.sign(b"checkpoint")
    spooled = seal(created.spool_key, b"sms", field_id="spool.sms", row_id=ROW_ID, subject_id="spool:w1")

    loaded = load_key_file(path)
    restored = unwrap_data_key(
        loaded.keyring, wrapped, data_key_id=data_key.id, subject_id=SUBJECT, retention_class=RETENTION
    )
    assert open_sealed(restored, blob, field_id="case.notes", row_id=ROW_ID, subject_id=SUBJECT) == b"secret"
    assert loaded.blind_indexer().phone("+12025550123") == index
    assert loaded.keyed_hasher().hash("twilio.call_sid", b"CA1") == digest
    loaded.checkpoint_verifier().verify(created.signer.key_id, b"checkpoint", signature)
    assert (
        open_sealed(loaded.spool_key, spooled, field_id="spool.sms", row_id=ROW_ID, subject_id="spool:w1")
        == b"sms"
    )
    assert loaded.created_at == created.created_at
    # Saving what was loaded gives back the same document.
    save_key_file(path, loaded)
    assert read_document(path) == json.loads(json.dumps(loaded._to_document()))


@posix_only
def test_rotate_retire_destroy_persist_atomically(tmp_path: Path) -> None:
    path = key_path(tmp_path)
    material = create_key_file(path)
    old_kek = material.keyring.active_kek_id
    data_key, wrapped = create_data_key(material.keyring, subject_id=SUBJECT, retention_class=RETENTION)
    new_kek = material.keyring.rotate()
    old_signer = material.signer.key_id
    old_signature = material.signer.sign(b"checkpoint 1")
    material.rotate_signing_key()
    save_key_file(path, material)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # no temporary file left

    reloaded = load_key_file(path)
    assert reloaded.keyring.active_kek_id == new_kek
    assert reloaded.keyring.state_of(old_kek) is KekState.DECRYPT_ONLY
    binding = KeyBinding(data_key_id=data_key.id, subject_id=SUBJECT, retention_class=RETENTION)
    assert unwrap_data_key(reloaded.keyring, wrapped, **binding) == data_key
    reloaded.checkpoint_verifier().verify(old_signer, b"checkpoint 1", old_signature)
    assert reloaded.signer.key_id != old_signer

    reloaded.keyring.retire(old_kek)
    reloaded.keyring.destroy(old_kek)
    save_key_file(path, reloaded)
    document = read_document(path)
    destroyed = next(k for k in document["keks"] if k["id"] == old_kek)
    assert destroyed["state"] == "destroyed" and destroyed["material"] is None
    assert destroyed["retired_at"] is not None and destroyed["destroyed_at"] is not None
    final = load_key_file(path)
    with pytest.raises(KeyStateError):
        unwrap_data_key(final.keyring, wrapped, **binding)


@posix_only
@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o606, 0o610])
def test_load_refuses_group_or_other_access(tmp_path: Path, mode: int) -> None:
    path = key_path(tmp_path)
    create_key_file(path)
    path.chmod(mode)
    with pytest.raises(KeyFileError, match=f"mode {mode:04o}"):
        load_key_file(path)
    path.chmod(0o400)
    assert load_key_file(path).keyring.active_kek_id


def test_load_missing_file(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="does not exist"):
        load_key_file(key_path(tmp_path))


def test_load_refuses_a_directory(tmp_path: Path) -> None:
    directory = tmp_path / "keys"
    directory.mkdir(mode=0o700)
    with pytest.raises(KeyFileError, match="not a regular file"):
        load_key_file(directory)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "not valid JSON"),
        ("{", "not valid JSON"),
        ("[]", "top level must be a JSON object"),
        ('{"format": "hotline-keys/1"}', "top level lacks development"),
    ],
)
def test_load_refuses_malformed_json(tmp_path: Path, content: str, message: str) -> None:
    path = key_path(tmp_path)
    write_document(path, content)
    with pytest.raises(KeyFileError, match=message):
        load_key_file(path)


def test_load_refuses_non_utf8(tmp_path: Path) -> None:
    path = key_path(tmp_path)
    write_document(path, "")
    path.write_bytes(b"\xff\xfe{}")
    with pytest.raises(KeyFileError, match="not UTF-8"):
        load_key_file(path)


def _break(document: dict[str, Any], change: str) -> None:
    """Apply one named corruption to a valid document."""
    kek = document["keks"][0]
    signing = document["checkpoint_signing"]
    if change == "format":
        document["format"] = "hotline-keys/2"
    elif change == "development":
        document["development"] = "yes"
    elif change == "kek-short":
        kek["material"] = base64.b64encode(base64.b64decode(kek["material"])[:16]).decode()
    elif change == "kek-base64":
        kek["material"] = kek["material"][:-2] + "!!"
    elif change == "kek-state":
        kek["state"] = "paused"
    elif change == "no-active":
        kek["state"] = "decrypt-only"
    elif change == "two-active":
        document["keks"].append({**kek, "id": "kek-20261126-09", "version": 9})
    elif change == "duplicate-id":
        document["keks"].append({**kek, "state": "decrypt-only", "version": 9})
    elif change == "destroyed-with-material":
        document["keks"].append({**kek, "id": "kek-old", "version": 9, "state": "destroyed"})
    elif change == "bidx-long":
        document["blind_index_key"]["material"] = base64.b64encode(bytes(64)).decode()
    elif change == "hash-missing":
        del document["hash_key"]
    elif change == "same-bidx-hash":
        document["hash_key"]["material"] = document["blind_index_key"]["material"]
    elif change == "spool-id":
        document["spool_key"]["id"] = "spool"
    elif change == "public-mismatch":
        signing["current"]["public_key"] = base64.b64encode(bytes(32)).decode()
    elif change == "private-short":
        signing["current"]["private_key"] = base64.b64encode(bytes(31)).decode()
    elif change == "unexpected-field":
        document["comment"] = "hello"
    elif change == "timestamp":
        kek["created_at"] = "yesterday"
    elif change == "naive-timestamp":
        document["created_at"] = "2026-11-26T06:15:00"
    elif change == "kek-id":
        kek["id"] = "kek 1"
    elif change == "version":
        kek["version"] = True
    else:  # pragma: no cover - a typo in the parametrisation
        raise AssertionError(change)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("format", "unsupported format 'hotline-keys/2'"),
        ("development", "development must be true or false"),
        ("kek-short", r"keks\[0\].material must be 32 bytes, got 16"),
        ("kek-base64", r"keks\[0\].material is not valid base64"),
        ("kek-state", r"keks\[0\].state must be one of"),
        ("no-active", "exactly one active KEK, found 0"),
        ("two-active", "exactly one active KEK, found 2"),
        ("duplicate-id", "same id twice"),
        ("destroyed-with-material", r"keks\[1\] is destroyed but still has material"),
        ("bidx-long", "blind_index_key.material must be 32 bytes, got 64"),
        ("hash-missing", "top level lacks hash_key"),
        ("same-bidx-hash", "must be independent"),
        ("spool-id", "spool_key.id must be a UUID"),
        ("public-mismatch", "public_key does not match its private_key"),
        ("private-short", "private_key must be 32 bytes, got 31"),
        ("unexpected-field", "unexpected field"),
        ("timestamp", r"keks\[0\].created_at must be an ISO 8601 timestamp"),
        ("naive-timestamp", "created_at must be an ISO 8601 timestamp with a UTC offset"),
        ("kek-id", r"keks\[0\].id must be"),
        ("version", r"keks\[0\].version must be a positive integer"),
    ],
)
def test_load_refuses_invalid_content_with_one_clear_line(tmp_path: Path, change: str, message: str) -> None:
    path = key_path(tmp_path)
    create_key_file(path)
    document = read_document(path)
    secrets_in_file = key_strings(document)
    _break(document, change)
    write_document(path, document)
    with pytest.raises(KeyFileError, match=message) as info:
        load_key_file(path)
    text = str(info.value)
    assert text.startswith(f"key file {path}")
    assert "\n" not in text
    for secret in secrets_in_file:
        assert secret not in text
        assert base64.b64decode(secret).hex() not in text


def test_save_refuses_non_material(tmp_path: Path) -> None:
    with pytest.raises(TypeError):
        save_key_file(key_path(tmp_path), {"format": KEY_FILE_FORMAT})  # type: ignore[arg-type]


def test_key_material_hides_keys_and_refuses_pickling(tmp_path: Path) -> None:
    path = key_path(tmp_path)
    material = create_key_file(path)
    text = repr(material)
    for secret in key_strings(read_document(path)):
        assert secret not in text
    with pytest.raises(TypeError):
        pickle.dumps(material)


def test_independent_files_hold_independent_keys(tmp_path: Path) -> None:
    first = create_key_file(tmp_path / "a.json")
    second = create_key_file(tmp_path / "b.json")
    assert first.blind_indexer().phone("+12025550123") != second.blind_indexer().phone("+12025550123")
    assert first.spool_key.id != second.spool_key.id != uuid4()
