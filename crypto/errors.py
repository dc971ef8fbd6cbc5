"""Errors raised by the ``crypto`` package.

Every failure to open a sealed value (wrong key, tampered bytes, a value moved to another
row, column or subject, a truncated blob, an unknown format version) raises the same
:class:`DecryptionError` with the same message, so neither logs nor error bodies tell an
attacker which check failed.  Key-management problems are different: they are operator
errors that need a clear message, so they get their own types.
"""

from __future__ import annotations

__all__ = [
    "CryptoError",
    "DecryptionError",
    "KeyFileError",
    "KeyNotFound",
    "KeyStateError",
    "SignatureError",
]


class CryptoError(Exception):
    """Base class of every error raised by ``crypto``."""


class DecryptionError(CryptoError):
    """A sealed value could not be opened.

    Deliberately opaque: it takes no arguments and always carries the same message.
    """

    _MESSAGE = "decryption failed"

    def __init__(self) -> None:
        super().__init__(self._MESSAGE)


class KeyNotFound(CryptoError):
    """The keyring (or verifier) holds no key with the requested id."""


class KeyStateError(CryptoError):
    """The key exists but its state forbids the operation (e.g. unwrapping under a destroyed KEK)."""


class KeyFileError(CryptoError):
    """The key file is missing, malformed, insecurely readable or would be overwritten.

    Messages are one line, name the file and the problem, and never contain key material.
    """


class SignatureError(CryptoError):
    """A checkpoint signature does not verify under the named public key."""
