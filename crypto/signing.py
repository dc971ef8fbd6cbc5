"""Ed25519 signatures for audit-log checkpoints.

The service signs checkpoints with a :class:`CheckpointSigner`; anyone holding only the
public keys (an outside witness, a supervisor's laptop) verifies them with a
:class:`CheckpointVerifier`.  Key ids travel with each checkpoint so that signatures made
before a signing-key rotation still verify against the previous public key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Mapping
from types import MappingProxyType
from typing import NoReturn

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ._encoding import encode_label, require_bytes
from .errors import KeyNotFound, SignatureError

__all__ = ["CheckpointSigner", "CheckpointVerifier", "public_key_fingerprint"]

PUBLIC_KEY_LEN = 32
PRIVATE_KEY_LEN = 32
SIGNATURE_LEN = 64


def public_key_fingerprint(public_key_raw: bytes) -> str:
    """Return ``"ed25519:" + the first 16 hex digits of SHA-256(public key)``.

    The default signing key id, so an id can be checked against the key it names.
    """
    raw = require_bytes(public_key_raw, "public key")
    if len(raw) != PUBLIC_KEY_LEN:
        raise ValueError(f"Ed25519 public key must be {PUBLIC_KEY_LEN} bytes")
    return "ed25519:" + hashlib.sha256(raw).hexdigest()[:16]


def _raw_public(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


class CheckpointSigner:
    """An Ed25519 private key with its key id."""

    __slots__ = ("_key_id", "_private", "_public_raw")

    def __init__(self, key_id: str, private_key: Ed25519PrivateKey) -> None:
        """Bind ``private_key`` to ``key_id`` (a label such as ``ed25519:3f2a...``)."""
        encode_label(key_id, "signing key id")
        if not isinstance(private_key, Ed25519PrivateKey):
            raise TypeError("private_key must be an Ed25519PrivateKey")
        self._key_id = key_id
        self._private = private_key
        self._public_raw = _raw_public(private_key.public_key())

    @classmethod
    def generate(cls, key_id: str | None = None) -> CheckpointSigner:
        """Return a signer with a fresh key; the id defaults to the key's fingerprint."""
        private = Ed25519PrivateKey.generate()
        return cls(key_id or public_key_fingerprint(_raw_public(private.public_key())), private)

    @classmethod
    def from_private_bytes(cls, key_id: str, raw: bytes) -> CheckpointSigner:
        """Load a signer from the 32-byte raw private key (the key file's form)."""
        data = require_bytes(raw, "private key")
        if len(data) != PRIVATE_KEY_LEN:
            raise ValueError(f"Ed25519 private key must be {PRIVATE_KEY_LEN} bytes")
        return cls(key_id, Ed25519PrivateKey.from_private_bytes(data))

    @property
    def key_id(self) -> str:
        """Id recorded with every checkpoint this signer signs."""
        return self._key_id

    @property
    def public_key_raw(self) -> bytes:
        """The 32-byte raw public key."""
        return self._public_raw

    def public_key_b64(self) -> str:
        """The public key in standard base64, for export to witnesses."""
        return base64.b64encode(self._public_raw).decode("ascii")

    def export_private_key_raw(self) -> bytes:
        """The 32-byte raw private key; for writing the key file only."""
        return self._private.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
        )

    def sign(self, message: bytes) -> bytes:
        """Return the 64-byte Ed25519 signature of ``message``."""
        return self._private.sign(require_bytes(message, "message"))

    def verifier(self) -> CheckpointVerifier:
        """A verifier holding only this signer's public key."""
        return CheckpointVerifier({self._key_id: self._public_raw})

    def __repr__(self) -> str:
        return f"<CheckpointSigner {self._key_id}>"

    def __reduce_ex__(self, protocol: object) -> NoReturn:
        raise TypeError("CheckpointSigner holds a private key and cannot be pickled")


class CheckpointVerifier:
    """Ed25519 public keys by key id; verifies checkpoint signatures.

    ``verify`` raises rather than returning a bool, so a forgotten check cannot pass.
    """

    __slots__ = ("_keys",)

    def __init__(self, public_keys: Mapping[str, bytes]) -> None:
        """``public_keys`` maps key id to the 32-byte raw public key."""
        keys: dict[str, Ed25519PublicKey] = {}
        for key_id, raw in public_keys.items():
            encode_label(key_id, "signing key id")
            data = require_bytes(raw, "public key")
            if len(data) != PUBLIC_KEY_LEN:
                raise ValueError(f"Ed25519 public key {key_id!r} must be {PUBLIC_KEY_LEN} bytes")
            keys[key_id] = Ed25519PublicKey.from_public_bytes(data)
        self._keys: Mapping[str, Ed25519PublicKey] = MappingProxyType(keys)

    @classmethod
    def from_b64(cls, public_keys: Mapping[str, str]) -> CheckpointVerifier:
        """Build from base64 public keys (as exported by :meth:`CheckpointSigner.public_key_b64`)."""
        decoded: dict[str, bytes] = {}
        for key_id, text in public_keys.items():
            try:
                decoded[key_id] = base64.b64decode(text, validate=True)
            except (binascii.Error, ValueError):
                raise ValueError(f"public key {key_id!r} is not valid base64") from None
        return cls(decoded)

    def key_ids(self) -> tuple[str, ...]:
        """Ids of the public keys this verifier holds."""
        return tuple(self._keys)

    def public_keys_b64(self) -> dict[str, str]:
        """Every public key in base64, by id (what an outside witness needs)."""
        return {
            key_id: base64.b64encode(_raw_public(key)).decode("ascii") for key_id, key in self._keys.items()
        }

    def verify(self, key_id: str, message: bytes, signature: bytes) -> None:
        """Return if ``signature`` is a valid signature of ``message`` by ``key_id``.

        Raises :class:`KeyNotFound` for an unknown key id and :class:`SignatureError` for a
        bad signature.
        """
        key = self._keys.get(key_id)
        if key is None:
            raise KeyNotFound("public key not found for this signing key id")
        try:
            key.verify(require_bytes(signature, "signature"), require_bytes(message, "message"))
        except InvalidSignature:
            raise SignatureError("checkpoint signature does not verify") from None

    def __repr__(self) -> str:
        return f"<CheckpointVerifier keys={list(self._keys)}>"
