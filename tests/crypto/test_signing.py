"""Ed25519 checkpoint signing: RFC 8032 vector, verification, forgery, key rotation."""

from __future__ import annotations

import base64
import hashlib
import pickle

import pytest

from crypto import CheckpointSigner, CheckpointVerifier, KeyNotFound, SignatureError, public_key_fingerprint

# RFC 8032 section 7.1, TEST 1 (empty message).
RFC_SECRET = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
RFC_PUBLIC = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
RFC_SIGNATURE = bytes.fromhex(
    "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
)
CHECKPOINT = b"hotline.example.org/access-log\n1204331\nq3KZ0w5S0BZh6XyPpgJm0ZbD2Xq7iDmTt5H0s7LrWIE=\n"


def test_rfc8032_known_answer() -> None:
    signer = CheckpointSigner.from_private_bytes("rfc8032-1", RFC_SECRET)
    assert signer.public_key_raw == RFC_PUBLIC
    assert signer.sign(b"") == RFC_SIGNATURE
    CheckpointVerifier({"rfc8032-1": RFC_PUBLIC}).verify("rfc8032-1", b"", RFC_SIGNATURE)


def test_sign_and_verify_with_public_key_only() -> None:
    signer = CheckpointSigner.generate()
    signature = signer.sign(CHECKPOINT)
    assert len(signature) == 64
    # An outside witness gets only the id and the base64 public key.
    witness = CheckpointVerifier.from_b64({signer.key_id: signer.public_key_b64()})
    witness.verify(signer.key_id, CHECKPOINT, signature)
    signer.verifier().verify(signer.key_id, CHECKPOINT, signature)


def test_default_key_id_is_the_public_key_fingerprint() -> None:
    signer = CheckpointSigner.generate()
    expected = "ed25519:" + hashlib.sha256(signer.public_key_raw).hexdigest()[:16]
    assert signer.key_id == expected == public_key_fingerprint(signer.public_key_raw)


def test_tampered_message_or_signature_is_refused() -> None:
    signer = CheckpointSigner.generate()
    verifier = signer.verifier()
    signature = signer.sign(CHECKPOINT)
    with pytest.raises(SignatureError):
        verifier.verify(signer.key_id, CHECKPOINT.replace(b"1204331", b"1204330"), signature)
    for position in range(len(signature)):
        forged = bytearray(signature)
        forged[position] ^= 0x01
        with pytest.raises(SignatureError):
            verifier.verify(signer.key_id, CHECKPOINT, bytes(forged))
    with pytest.raises(SignatureError):
        verifier.verify(signer.key_id, CHECKPOINT, signature[:-1])


def test_signature_by_another_key_is_refused() -> None:
    genuine = CheckpointSigner.generate()
    attacker = CheckpointSigner.generate(genuine.key_id)  # claims the genuine id
    with pytest.raises(SignatureError):
        genuine.verifier().verify(genuine.key_id, CHECKPOINT, attacker.sign(CHECKPOINT))


def test_unknown_key_id_is_key_not_found() -> None:
    signer = CheckpointSigner.generate()
    with pytest.raises(KeyNotFound, match="public key not found"):
        signer.verifier().verify("ed25519:0000000000000000", CHECKPOINT, signer.sign(CHECKPOINT))


def test_previous_keys_still_verify_after_rotation() -> None:
    old = CheckpointSigner.generate()
    old_signature = old.sign(CHECKPOINT)
    new = CheckpointSigner.generate()
    verifier = CheckpointVerifier({old.key_id: old.public_key_raw, new.key_id: new.public_key_raw})
    verifier.verify(old.key_id, CHECKPOINT, old_signature)
    verifier.verify(new.key_id, CHECKPOINT, new.sign(CHECKPOINT))
    with pytest.raises(SignatureError):
        verifier.verify(new.key_id, CHECKPOINT, old_signature)
    assert set(verifier.key_ids()) == {old.key_id, new.key_id}
    exported = verifier.public_keys_b64()
    assert base64.b64decode(exported[old.key_id]) == old.public_key_raw


def test_bad_public_keys_refused() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        CheckpointVerifier({"k": b"\x00" * 31})
    with pytest.raises(ValueError, match="base64"):
        CheckpointVerifier.from_b64({"k": "not base64!"})
    with pytest.raises(ValueError, match="signing key id"):
        CheckpointVerifier({"bad id": RFC_PUBLIC})
    with pytest.raises(ValueError, match="32 bytes"):
        CheckpointSigner.from_private_bytes("k", b"\x00" * 16)


def test_signer_hides_and_refuses_to_pickle_private_key() -> None:
    signer = CheckpointSigner.from_private_bytes("rfc8032-1", RFC_SECRET)
    assert RFC_SECRET.hex() not in repr(signer)
    with pytest.raises(TypeError):
        pickle.dumps(signer)
    assert signer.export_private_key_raw() == RFC_SECRET
