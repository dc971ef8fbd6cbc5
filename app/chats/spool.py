"""The outage spool: an SMS that arrives while the database is down is not lost.

`/twilio/messaging/incoming` (when its database work fails) and `/twilio/messaging/fallback` (no
database at all) append the message to a per-worker file in `HOTLINE_SPOOL_DIR`, sealed under the
keyring file's spool key with AAD = the spool file's name + the keyed hash of the MessageSid, and
fsync it before answering Twilio 200. Once the database is back, a job ingests every spool file
exactly once: each message goes through the ordinary chat flow (deduplicated by MessageSid, so a
message ingested before a crash, or also delivered normally, is stored once) and is re-sealed
under its case's key; the file is removed only after all its lines are in.

Concurrency: a writer opens, locks (`flock`), appends, fsyncs and closes per message; the
ingester first renames a file aside (new messages start a new file), then takes the same lock, so
a line being written is never half-read, and a writer whose file was renamed away writes again.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crypto.field import open_sealed, seal

SUFFIX = ".spool"
INGESTING = ".ingesting"
FIELD_ID = "spool.message"


@dataclass(frozen=True)
class SpooledMessage:
    message_sid: str
    from_address: str
    body: str
    media_count: int
    opt_out_type: str | None
    drill: bool
    received_at: str  # ISO 8601, when we took it


class Spool:
    def __init__(self, directory: str | os.PathLike[str], keys: Any) -> None:
        self.directory = Path(directory)
        self.keys = keys
        self.name = f"{socket.gethostname()[:32]}-{os.getpid()}-{uuid.uuid4().hex[:8]}{SUFFIX}"

    @property
    def path(self) -> Path:
        return self.directory / self.name

    def _row_id(self, message_sid: str) -> tuple[str, uuid.UUID]:
        digest = self.keys.material.keyed_hasher().hash("spool.message_sid", message_sid.encode())
        return digest.hex(), uuid.UUID(bytes=digest[:16])

    def append(self, message: SpooledMessage) -> None:
        """Seal and append one message, fsynced before returning (blocking: run in a thread)."""
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        sid_hash, row_id = self._row_id(message.message_sid)
        plaintext = json.dumps(message.__dict__, ensure_ascii=False).encode()
        blob = seal(
            self.keys.material.spool_key, plaintext, field_id=FIELD_ID, row_id=row_id, subject_id=self.name
        )
        line = json.dumps({"h": sid_hash, "b": base64.b64encode(blob).decode("ascii")}).encode() + b"\n"
        for _ in range(5):
            created = not self.path.exists()
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                # Renamed aside for ingestion while we waited? Then write to a fresh file instead.
                try:
                    same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
                except FileNotFoundError:
                    same = False
                if not same:
                    continue
                os.write(fd, line)
                os.fsync(fd)
            finally:
                os.close(fd)
            if created:
                _fsync_directory(self.directory)
            return
        raise OSError("could not append to the spool")

    def files(self) -> list[Path]:
        """Spool files waiting to be ingested (every worker's, also from before a restart), oldest first."""
        if not self.directory.exists():
            return []
        found = [p for p in self.directory.iterdir() if p.name.endswith((SUFFIX, SUFFIX + INGESTING))]
        return sorted(found, key=lambda p: p.stat().st_mtime)

    def claim(self, path: Path) -> Path:
        """Rename a file aside for ingestion (idempotent) and wait for any writer still on it."""
        if path.name.endswith(INGESTING):
            target = path
        else:
            target = path.with_name(path.name + INGESTING)
            os.rename(path, target)
            _fsync_directory(self.directory)
        fd = os.open(target, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        finally:
            os.close(fd)
        return target

    def read(self, path: Path) -> Iterator[tuple[str, SpooledMessage]]:
        """Open every line of a claimed file: (keyed MessageSid hash, message)."""
        original = path.name.removesuffix(INGESTING)
        for raw in path.read_bytes().splitlines():
            if not raw.strip():
                continue
            entry = json.loads(raw)
            sid_hash = entry["h"]
            row_id = uuid.UUID(bytes=bytes.fromhex(sid_hash)[:16])
            plaintext = open_sealed(
                self.keys.material.spool_key,
                base64.b64decode(entry["b"]),
                field_id=FIELD_ID,
                row_id=row_id,
                subject_id=original,
            )
            yield sid_hash, SpooledMessage(**json.loads(plaintext))

    def remove(self, path: Path) -> None:
        path.unlink(missing_ok=True)
        _fsync_directory(self.directory)


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
