"""The key file: every key the service holds outside the database, in one JSON document.

Format (``"format": "hotline-keys/1"``; all key material is standard padded base64)::

    {
      "format": "hotline-keys/1",
      "development": false,                       # true: made by a development start;
                                                  # production must refuse it
      "created_at": "2026-11-26T06:15:00+00:00",  # ISO 8601 with offset (all timestamps)
      "keks": [                                   # key-encryption keys, exactly one active
        {"id": "kek-20261126-01", "version": 1, "state": "active",
         "created_at": "...", "retired_at": null, "destroyed_at": null,
         "material": "<32 bytes>"}                # null once destroyed
      ],
      "blind_index_key": {"id": "bidx-1", "material": "<32 bytes>"},
      "hash_key":        {"id": "hash-1", "material": "<32 bytes>"},   # generic keyed hashes
      "spool_key":       {"id": "<uuid>", "material": "<32 bytes>"},   # SMS spool, DB outage
      "checkpoint_signing": {
        "current":  {"id": "ed25519:<16 hex>", "private_key": "<32 bytes>",
                     "public_key": "<32 bytes>"},
        "previous": [{"id": "ed25519:<16 hex>", "public_key": "<32 bytes>"}]
      }
    }

KEK states are ``active``, ``decrypt-only``, ``retired`` and ``destroyed``.  The file is
created with ``O_CREAT | O_EXCL`` and mode 0600 (never overwritten), rewritten atomically
(temporary file, fsync, rename, fsync of the directory), and refused on load if group or
others have any access to it.  Error messages name the file and the problem, never a key.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import secrets
import stat
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import NoReturn
from uuid import UUID

from ._encoding import is_label
from .blind_index import DEFAULT_INDEX_LEN, BlindIndexer, KeyedHasher
from .envelope import DataKey
from .errors import KeyFileError, KeyStateError
from .keyring import KekRecord, KekState, LocalKeyring
from .signing import CheckpointSigner, CheckpointVerifier

__all__ = ["KEY_FILE_FORMAT", "KeyMaterial", "create_key_file", "load_key_file", "save_key_file"]

KEY_FILE_FORMAT = "hotline-keys/1"
_SYMMETRIC_KEY_LEN = 32
_ED25519_KEY_LEN = 32
# A real key file is a few kilobytes; refusing big files avoids reading something unexpected.
_MAX_FILE_BYTES = 1 << 20
_OPEN_FLAGS = getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)


def _utc_now() -> datetime:
    return datetime.now(UTC)


class KeyMaterial:
    """Everything loaded from a key file, and the factories for the objects that use it.

    The app asks this object for a keyring, a blind indexer, a keyed hasher, the checkpoint
    signer and verifier and the spool key; it never needs to touch raw key bytes.
    ``repr`` shows no key and the object refuses to be pickled.
    """

    __slots__ = (
        "_bidx_key",
        "_bidx_key_id",
        "_created_at",
        "_development",
        "_hash_key",
        "_hash_key_id",
        "_keyring",
        "_previous_public_keys",
        "_signer",
        "_spool_key",
    )

    def __init__(
        self,
        *,
        keyring: LocalKeyring,
        blind_index_key_id: str,
        blind_index_key: bytes,
        hash_key_id: str,
        hash_key: bytes,
        spool_key: DataKey,
        signer: CheckpointSigner,
        previous_public_keys: Mapping[str, bytes],
        development: bool,
        created_at: datetime,
    ) -> None:
        """Assemble key material; :meth:`generate` and :func:`load_key_file` are the usual ways."""
        for what, key in (("blind index key", blind_index_key), ("hash key", hash_key)):
            if len(key) != _SYMMETRIC_KEY_LEN:
                raise ValueError(f"{what} must be {_SYMMETRIC_KEY_LEN} bytes")
        if blind_index_key == hash_key:
            # The blind index must sit under its own key (rotating one must not touch the other).
            raise ValueError("the blind index key and the hash key must differ")
        if signer.key_id in previous_public_keys:
            raise ValueError("the current signing key id is also listed as a previous key")
        self._keyring = keyring
        self._bidx_key_id = blind_index_key_id
        self._bidx_key = blind_index_key
        self._hash_key_id = hash_key_id
        self._hash_key = hash_key
        self._spool_key = spool_key
        self._signer = signer
        self._previous_public_keys = dict(previous_public_keys)
        self._development = development
        self._created_at = created_at
        # Building these once checks ids and lengths now rather than at first use.
        self.blind_indexer()
        self.keyed_hasher()
        self.checkpoint_verifier()

    @classmethod
    def generate(
        cls, *, development: bool = False, clock: Callable[[], datetime] | None = None
    ) -> KeyMaterial:
        """Generate a complete new set of keys (one active KEK, fresh independent keys)."""
        now = (clock or _utc_now)()
        return cls(
            keyring=LocalKeyring.generate(clock=clock),
            blind_index_key_id="bidx-1",
            blind_index_key=secrets.token_bytes(_SYMMETRIC_KEY_LEN),
            hash_key_id="hash-1",
            hash_key=secrets.token_bytes(_SYMMETRIC_KEY_LEN),
            spool_key=DataKey.generate(),
            signer=CheckpointSigner.generate(),
            previous_public_keys={},
            development=development,
            created_at=now,
        )

    @property
    def keyring(self) -> LocalKeyring:
        """The KEK keyring (a :class:`crypto.keyring.KeyProvider`)."""
        return self._keyring

    @property
    def development(self) -> bool:
        """True if the file was created as a development key file; production must refuse it."""
        return self._development

    @property
    def created_at(self) -> datetime:
        """When the key file was first created."""
        return self._created_at

    @property
    def spool_key(self) -> DataKey:
        """Key for sealing SMS spooled during a database outage (the app binds the AAD)."""
        return self._spool_key

    @property
    def signer(self) -> CheckpointSigner:
        """The current checkpoint signer."""
        return self._signer

    def blind_indexer(self, *, length: int = DEFAULT_INDEX_LEN) -> BlindIndexer:
        """A phone blind indexer under the blind-index key, truncated to ``length`` bytes."""
        return BlindIndexer(self._bidx_key, key_id=self._bidx_key_id, length=length)

    def keyed_hasher(self) -> KeyedHasher:
        """The generic domain-separated keyed hasher (SID lookup hashes, audit hashes)."""
        return KeyedHasher(self._hash_key, key_id=self._hash_key_id)

    def checkpoint_verifier(self) -> CheckpointVerifier:
        """A verifier for the current and every previous checkpoint signing key."""
        return CheckpointVerifier(
            {**self._previous_public_keys, self._signer.key_id: self._signer.public_key_raw}
        )

    def rotate_signing_key(self) -> str:
        """Make a new checkpoint signing key current; the old public key stays for verification."""
        old = self._signer
        self._signer = CheckpointSigner.generate()
        self._previous_public_keys[old.key_id] = old.public_key_raw
        return self._signer.key_id

    def __repr__(self) -> str:
        return f"<KeyMaterial development={self._development} active_kek={self._keyring.active_kek_id!r}>"

    def __reduce_ex__(self, protocol: object) -> NoReturn:
        raise TypeError("KeyMaterial holds key material and cannot be pickled")

    def _to_document(self) -> dict[str, object]:
        return {
            "format": KEY_FILE_FORMAT,
            "development": self._development,
            "created_at": _iso(self._created_at),
            "keks": [
                {
                    "id": r.id,
                    "version": r.version,
                    "state": r.state.value,
                    "created_at": _iso(r.created_at),
                    "retired_at": _iso(r.retired_at) if r.retired_at else None,
                    "destroyed_at": _iso(r.destroyed_at) if r.destroyed_at else None,
                    "material": _b64(r.material) if r.material is not None else None,
                }
                for r in self._keyring.export_records()
            ],
            "blind_index_key": {"id": self._bidx_key_id, "material": _b64(self._bidx_key)},
            "hash_key": {"id": self._hash_key_id, "material": _b64(self._hash_key)},
            "spool_key": {"id": str(self._spool_key.id), "material": _b64(self._spool_key.material)},
            "checkpoint_signing": {
                "current": {
                    "id": self._signer.key_id,
                    "private_key": _b64(self._signer.export_private_key_raw()),
                    "public_key": self._signer.public_key_b64(),
                },
                "previous": [
                    {"id": key_id, "public_key": _b64(raw)}
                    for key_id, raw in self._previous_public_keys.items()
                ],
            },
        }


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()


def _serialise(material: KeyMaterial) -> bytes:
    return (json.dumps(material._to_document(), indent=2) + "\n").encode("utf-8")


# --- writing -------------------------------------------------------------------------------


def create_key_file(
    path: str | os.PathLike[str], *, development: bool = False, clock: Callable[[], datetime] | None = None
) -> KeyMaterial:
    """Generate a new key set and write it to ``path`` (mode 0600); return it.

    Never overwrites: an existing file (or symlink) at ``path`` raises :class:`KeyFileError`.
    The file and its directory are fsynced before returning.
    """
    target = Path(path)
    material = KeyMaterial.generate(development=development, clock=clock)
    _write_exclusive(target, _serialise(material), what="key file")
    _fsync_directory(target.parent)
    return material


def save_key_file(path: str | os.PathLike[str], material: KeyMaterial) -> None:
    """Atomically replace the key file at ``path`` with ``material`` (after rotate/destroy).

    Writes a 0600 temporary file in the same directory, fsyncs it, renames it over ``path``
    and fsyncs the directory, so a crash leaves either the old or the new file, never half.
    """
    if not isinstance(material, KeyMaterial):
        raise TypeError("material must be a KeyMaterial")
    target = Path(path)
    temporary = target.parent / f".{target.name}.{secrets.token_hex(8)}.tmp"
    _write_exclusive(temporary, _serialise(material), what="temporary key file")
    try:
        os.replace(temporary, target)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise KeyFileError(f"cannot replace key file {target}: {exc.strerror}") from None
    _fsync_directory(target.parent)


def _write_exclusive(path: Path, data: bytes, *, what: str) -> None:
    """Create ``path`` with O_EXCL and mode 0600, write ``data`` and fsync it."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _OPEN_FLAGS, 0o600)
    except FileExistsError:
        raise KeyFileError(f"{what} {path} already exists; refusing to overwrite it") from None
    except FileNotFoundError:
        raise KeyFileError(f"directory of {what} {path} does not exist") from None
    except OSError as exc:
        raise KeyFileError(f"cannot create {what} {path}: {exc.strerror}") from None
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    except OSError as exc:
        os.close(fd)
        path.unlink(missing_ok=True)
        raise KeyFileError(f"cannot write {what} {path}: {exc.strerror}") from None
    except BaseException:
        os.close(fd)
        path.unlink(missing_ok=True)
        raise
    os.close(fd)


def _fsync_directory(directory: Path) -> None:
    """Persist the directory entry of a newly created or renamed file."""
    if os.name != "posix":
        return  # Windows cannot open directories for fsync; NTFS journals the rename.
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise KeyFileError(f"cannot open directory {directory} to fsync it: {exc.strerror}") from None
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --- reading -------------------------------------------------------------------------------


def load_key_file(
    path: str | os.PathLike[str], *, clock: Callable[[], datetime] | None = None
) -> KeyMaterial:
    """Read, check and return the key material in ``path``.

    Refuses (with :class:`KeyFileError`) a missing file, a file group or others can access
    (POSIX), malformed JSON, an unknown format, bad base64, wrong key lengths and anything
    but exactly one active KEK.  ``clock`` stamps later KEK state changes.
    """
    target = Path(path)
    raw = _read_private_file(target)
    try:
        document = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise KeyFileError(f"key file {target} is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        # exc.msg/lineno/colno locate the problem without quoting the file's content.
        raise KeyFileError(
            f"key file {target} is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
        ) from None
    return _Parser(target).material(document, clock)


def _read_private_file(path: Path) -> bytes:
    # O_NONBLOCK so a FIFO planted at the path cannot hang startup; fstat then rejects it.
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise KeyFileError(f"key file {path} does not exist") from None
    except PermissionError:
        raise KeyFileError(f"key file {path} is not readable by this user") from None
    except OSError as exc:
        raise KeyFileError(f"cannot open key file {path}: {exc.strerror}") from None
    try:
        # fstat on the open descriptor checks the file actually read, not a swapped path.
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise KeyFileError(f"key file {path} is not a regular file")
        if os.name == "posix" and info.st_mode & 0o077:
            raise KeyFileError(
                f"key file {path} is accessible by group or others (mode {stat.S_IMODE(info.st_mode):04o}); "
                "it must be 0600"
            )
        if info.st_size > _MAX_FILE_BYTES:
            raise KeyFileError(f"key file {path} is larger than {_MAX_FILE_BYTES} bytes")
        chunks: list[bytes] = []
        total = 0
        while chunk := os.read(fd, 65536):
            total += len(chunk)
            if total > _MAX_FILE_BYTES:
                raise KeyFileError(f"key file {path} is larger than {_MAX_FILE_BYTES} bytes")
            chunks.append(chunk)
        return b"".join(chunks)
    except OSError as exc:
        raise KeyFileError(f"cannot read key file {path}: {exc.strerror}") from None
    finally:
        os.close(fd)


class _Parser:
    """Checks a decoded key-file document; every problem becomes one KeyFileError line."""

    def __init__(self, path: Path) -> None:
        self._path = path

    def fail(self, problem: str) -> NoReturn:
        raise KeyFileError(f"key file {self._path}: {problem}")

    def material(self, document: object, clock: Callable[[], datetime] | None) -> KeyMaterial:
        top = self.fields(
            document,
            "top level",
            required=(
                "format",
                "development",
                "created_at",
                "keks",
                "blind_index_key",
                "hash_key",
                "spool_key",
                "checkpoint_signing",
            ),
        )
        if top["format"] != KEY_FILE_FORMAT:
            shown = repr(top["format"]) if isinstance(top["format"], str) and len(top["format"]) < 40 else "?"
            self.fail(f"unsupported format {shown} (expected {KEY_FILE_FORMAT!r})")
        development = top["development"]
        if not isinstance(development, bool):
            self.fail("development must be true or false")
        keyring = self.keyring(top["keks"], clock)
        bidx_id, bidx_key = self.named_key(top["blind_index_key"], "blind_index_key")
        hash_id, hash_key = self.named_key(top["hash_key"], "hash_key")
        if bidx_key == hash_key:
            self.fail("blind_index_key and hash_key hold the same key; they must be independent")
        signer, previous = self.signing(top["checkpoint_signing"])
        return KeyMaterial(
            keyring=keyring,
            blind_index_key_id=bidx_id,
            blind_index_key=bidx_key,
            hash_key_id=hash_id,
            hash_key=hash_key,
            spool_key=self.spool_key(top["spool_key"]),
            signer=signer,
            previous_public_keys=previous,
            development=development,
            created_at=self.timestamp(top["created_at"], "created_at"),
        )

    def keyring(self, value: object, clock: Callable[[], datetime] | None) -> LocalKeyring:
        if not isinstance(value, list) or not value:
            self.fail("keks must be a non-empty list")
        records: list[KekRecord] = []
        for index, item in enumerate(value):
            where = f"keks[{index}]"
            entry = self.fields(
                item,
                where,
                required=("id", "version", "state", "created_at", "material"),
                optional=("retired_at", "destroyed_at"),
            )
            kek_id = self.label(entry["id"], f"{where}.id")
            version = entry["version"]
            if not isinstance(version, int) or isinstance(version, bool) or version < 1:
                self.fail(f"{where}.version must be a positive integer")
            states = {s.value: s for s in KekState}
            raw_state = entry["state"]
            if not isinstance(raw_state, str) or raw_state not in states:
                self.fail(f"{where}.state must be one of {', '.join(states)}")
            state = states[raw_state]
            if state is KekState.DESTROYED:
                if entry["material"] is not None:
                    self.fail(f"{where} is destroyed but still has material")
                material = None
            else:
                material = self.key_bytes(entry["material"], f"{where}.material", _SYMMETRIC_KEY_LEN)
            records.append(
                KekRecord(
                    id=kek_id,
                    version=version,
                    state=state,
                    created_at=self.timestamp(entry["created_at"], f"{where}.created_at"),
                    material=material,
                    retired_at=self.optional_timestamp(entry.get("retired_at"), f"{where}.retired_at"),
                    destroyed_at=self.optional_timestamp(entry.get("destroyed_at"), f"{where}.destroyed_at"),
                )
            )
        ids = [r.id for r in records]
        if len(set(ids)) != len(ids):
            self.fail("keks contains the same id twice")
        active = sum(1 for r in records if r.state is KekState.ACTIVE)
        if active != 1:
            self.fail(f"keks must contain exactly one active KEK, found {active}")
        try:
            return LocalKeyring(records, clock=clock)
        except (KeyStateError, ValueError) as exc:
            self.fail(f"keks: {exc}")

    def named_key(self, value: object, where: str) -> tuple[str, bytes]:
        entry = self.fields(value, where, required=("id", "material"))
        return (
            self.label(entry["id"], f"{where}.id"),
            self.key_bytes(entry["material"], f"{where}.material", _SYMMETRIC_KEY_LEN),
        )

    def spool_key(self, value: object) -> DataKey:
        entry = self.fields(value, "spool_key", required=("id", "material"))
        key_id = entry["id"]
        try:
            uuid = UUID(key_id) if isinstance(key_id, str) else None
        except ValueError:
            uuid = None
        if uuid is None:
            self.fail("spool_key.id must be a UUID")
        return DataKey(uuid, self.key_bytes(entry["material"], "spool_key.material", _SYMMETRIC_KEY_LEN))

    def signing(self, value: object) -> tuple[CheckpointSigner, dict[str, bytes]]:
        block = self.fields(value, "checkpoint_signing", required=("current", "previous"))
        where = "checkpoint_signing.current"
        current = self.fields(block["current"], where, required=("id", "private_key", "public_key"))
        signer = CheckpointSigner.from_private_bytes(
            self.label(current["id"], f"{where}.id"),
            self.key_bytes(current["private_key"], f"{where}.private_key", _ED25519_KEY_LEN),
        )
        if (
            self.key_bytes(current["public_key"], f"{where}.public_key", _ED25519_KEY_LEN)
            != signer.public_key_raw
        ):
            self.fail(f"{where}.public_key does not match its private_key")
        previous_list = block["previous"]
        if not isinstance(previous_list, list):
            self.fail("checkpoint_signing.previous must be a list")
        previous: dict[str, bytes] = {}
        for index, item in enumerate(previous_list):
            where = f"checkpoint_signing.previous[{index}]"
            entry = self.fields(item, where, required=("id", "public_key"))
            key_id = self.label(entry["id"], f"{where}.id")
            if key_id in previous or key_id == signer.key_id:
                self.fail(f"{where}.id repeats another signing key id")
            previous[key_id] = self.key_bytes(entry["public_key"], f"{where}.public_key", _ED25519_KEY_LEN)
        return signer, previous

    # --- primitives ---

    def fields(
        self, value: object, where: str, *, required: tuple[str, ...], optional: tuple[str, ...] = ()
    ) -> dict[str, object]:
        if not isinstance(value, dict):
            self.fail(f"{where} must be a JSON object")
        missing = [name for name in required if name not in value]
        if missing:
            self.fail(f"{where} lacks {', '.join(missing)}")
        unknown = sorted(str(name) for name in value if name not in required and name not in optional)
        if unknown:
            # Names only: a stray field's value could be anything, including a key.
            self.fail(f"{where} has unexpected field(s) {', '.join(repr(n[:40]) for n in unknown)}")
        return value

    def label(self, value: object, where: str) -> str:
        if not isinstance(value, str) or len(value) > 64 or not is_label(value):
            self.fail(f"{where} must be 1-64 characters of [A-Za-z0-9._:-]")
        return value

    def key_bytes(self, value: object, where: str, length: int) -> bytes:
        if not isinstance(value, str):
            self.fail(f"{where} must be a base64 string")
        try:
            data = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            self.fail(f"{where} is not valid base64")
        if len(data) != length:
            self.fail(f"{where} must be {length} bytes, got {len(data)}")
        return data

    def timestamp(self, value: object, where: str) -> datetime:
        moment: datetime | None = None
        if isinstance(value, str):
            try:
                moment = datetime.fromisoformat(value)
            except ValueError:
                moment = None
        if moment is None or moment.tzinfo is None:
            self.fail(f"{where} must be an ISO 8601 timestamp with a UTC offset")
        return moment

    def optional_timestamp(self, value: object, where: str) -> datetime | None:
        return None if value is None else self.timestamp(value, where)
