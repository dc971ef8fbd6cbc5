"""Cryptography for the hotline: sealed fields, envelope keys, blind indexes, signatures.

Depends only on the standard library and ``cryptography``; keys always come in as
arguments (or from :func:`load_key_file`), never from the environment.

Typical use::

    keys = load_key_file(path)
    data_key, wrapped = create_data_key(keys.keyring, subject_id=case_id, retention_class="case.notes")
    blob = seal(data_key, b"...", field_id="case.notes", row_id=note_id, subject_id=case_id)
    open_sealed(lookup, blob, field_id="case.notes", row_id=note_id, subject_id=case_id)
"""

from .blind_index import BlindIndexer, KeyedHasher, keyed_hash
from .envelope import DataKey, DataKeyCache, create_data_key, rewrap_data_key, unwrap_data_key, wrap_data_key
from .errors import CryptoError, DecryptionError, KeyFileError, KeyNotFound, KeyStateError, SignatureError
from .field import SEALED_OVERHEAD, DataKeyLookup, key_id_of, open_sealed, seal
from .keyfile import KEY_FILE_FORMAT, KeyMaterial, create_key_file, load_key_file, save_key_file
from .keyring import KekInfo, KekRecord, KekState, KeyProvider, LocalKeyring, wrapped_kek_id
from .signing import CheckpointSigner, CheckpointVerifier, public_key_fingerprint

__all__ = [
    "KEY_FILE_FORMAT",
    "SEALED_OVERHEAD",
    "BlindIndexer",
    "CheckpointSigner",
    "CheckpointVerifier",
    "CryptoError",
    "DataKey",
    "DataKeyCache",
    "DataKeyLookup",
    "DecryptionError",
    "KekInfo",
    "KekRecord",
    "KekState",
    "KeyFileError",
    "KeyMaterial",
    "KeyNotFound",
    "KeyProvider",
    "KeyStateError",
    "KeyedHasher",
    "LocalKeyring",
    "SignatureError",
    "create_data_key",
    "create_key_file",
    "key_id_of",
    "keyed_hash",
    "load_key_file",
    "open_sealed",
    "public_key_fingerprint",
    "rewrap_data_key",
    "save_key_file",
    "seal",
    "unwrap_data_key",
    "wrap_data_key",
    "wrapped_kek_id",
]
