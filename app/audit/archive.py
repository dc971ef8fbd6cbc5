"""`hotline audit archive`: old entries leave the database as signed segment files, then are pruned.

A segment file (`segment-<first seq>-<last seq>.jsonl`, UTF-8 JSON lines) holds, in order:

* one `{"entry": {...}}` line per entry: every body column (`ts` in canonical form), plus
  `prev_hash` and `entry_hash` (base64), so each hash can be recomputed from the line alone;
* one `{"checkpoint": {...}}` line per signed checkpoint whose `seq` falls in the segment;
* a last `{"segment": {...}}` line: range, count, the hash before the first entry, the last
  entry's hash, the SHA-256 of every byte before this line, the time, and an Ed25519 signature
  with the checkpoint key over `segment_note(...)`.

So a segment verifies on its own (`verify_segment_file`, `hotline audit verify-segment`): every
link, every hash, the checkpoints inside it and the signature; consecutive segments link by hash.

Archiving runs in batches. Each batch: read and check the entries (a broken chain is never
archived), write the file to a temporary name, fsync, rename, fsync the directory; only then one
transaction inserts the `audit_segments` row and deletes the batch's entries. The DELETE trigger
refuses any `seq` above the highest archived `last_seq`, so the database itself will not prune
what no exported segment holds. Interrupted between the file and the commit? The next run finds
the file, checks it against the database and uses it; nothing is lost or archived twice.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import os
import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import delete, func, insert, select

from app.audit import service as audit
from app.audit.chain import BODY_COLUMNS, GENESIS, canonical_body, canonical_time, checkpoint_note, entry_hash
from app.audit.models import AuditCheckpoint, AuditEntry, AuditSegment
from app.audit.service import Actor
from app.clock import Clock
from app.db.engine import Database
from crypto.errors import KeyNotFound, SignatureError
from crypto.signing import CheckpointSigner, CheckpointVerifier

SEGMENT_ORIGIN = "hotline/audit-segment"
SEGMENT_FORMAT = "hotline.audit.segment.v1"


class ArchiveRefused(RuntimeError):
    """Archiving would lose or misstate something; one line for the operator."""


def segment_name(first_seq: int, last_seq: int) -> str:
    return f"segment-{first_seq:012d}-{last_seq:012d}.jsonl"


def segment_note(
    first_seq: int,
    last_seq: int,
    entries: int,
    prev_hash: bytes,
    last_hash: bytes,
    body_sha256: bytes,
    archived_at: datetime,
) -> bytes:
    """The signed text of a segment (in the file's trailer and in its `audit_segments` row)."""
    return (
        f"{SEGMENT_ORIGIN}\n{first_seq}\n{last_seq}\nentries {entries}\n"
        f"prev {_b64(prev_hash)}\nlast {_b64(last_hash)}\nbody {body_sha256.hex()}\n"
        f"time {canonical_time(archived_at)}\n"
    ).encode()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(text: Any) -> bytes:
    if not isinstance(text, str):
        raise ValueError("not base64")
    return base64.b64decode(text, validate=True)


def _parse_time(text: Any) -> datetime:
    if not isinstance(text, str):
        raise ValueError("not a time")
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def _line(obj: Mapping[Any, Any]) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode() + b"\n"


def entry_line(row: Mapping[Any, Any]) -> bytes:
    body = {column: row[column] for column in BODY_COLUMNS}
    body["ts"] = canonical_time(row["ts"])
    body["prev_hash"] = _b64(row["prev_hash"])
    body["entry_hash"] = _b64(row["entry_hash"])
    return _line({"entry": body})


def checkpoint_line(checkpoint: Any) -> bytes:
    return _line(
        {
            "checkpoint": {
                "seq": checkpoint.seq,
                "head_hash": _b64(checkpoint.head_hash),
                "prev_checkpoint_seq": checkpoint.prev_checkpoint_seq,
                "ts": canonical_time(checkpoint.ts),
                "key_id": checkpoint.key_id,
                "signature": _b64(checkpoint.signature),
            }
        }
    )


@dataclass(frozen=True)
class SegmentTrailer:
    first_seq: int
    last_seq: int
    entries: int
    prev_hash: bytes
    last_hash: bytes
    body_sha256: bytes
    archived_at: datetime
    key_id: str
    signature: bytes

    def note(self) -> bytes:
        return segment_note(
            self.first_seq,
            self.last_seq,
            self.entries,
            self.prev_hash,
            self.last_hash,
            self.body_sha256,
            self.archived_at,
        )


def build_segment(
    rows: Sequence[Mapping[Any, Any]],
    checkpoints: Iterable[Any],
    signer: CheckpointSigner,
    archived_at: datetime,
) -> tuple[bytes, SegmentTrailer]:
    body = b"".join(entry_line(row) for row in rows) + b"".join(checkpoint_line(c) for c in checkpoints)
    digest = hashlib.sha256(body).digest()
    first, last = rows[0], rows[-1]
    unsigned = SegmentTrailer(
        first["seq"],
        last["seq"],
        len(rows),
        first["prev_hash"],
        last["entry_hash"],
        digest,
        archived_at,
        "",
        b"",
    )
    trailer = SegmentTrailer(
        **{**unsigned.__dict__, "key_id": signer.key_id, "signature": signer.sign(unsigned.note())}
    )
    return body + _line({"segment": _trailer_json(trailer)}), trailer


def _trailer_json(trailer: SegmentTrailer) -> dict[str, Any]:
    return {
        "format": SEGMENT_FORMAT,
        "first_seq": trailer.first_seq,
        "last_seq": trailer.last_seq,
        "entries": trailer.entries,
        "prev_hash": _b64(trailer.prev_hash),
        "last_hash": _b64(trailer.last_hash),
        "body_sha256": trailer.body_sha256.hex(),
        "archived_at": canonical_time(trailer.archived_at),
        "key_id": trailer.key_id,
        "signature": _b64(trailer.signature),
    }


# --- verifying a segment file ------------------------------------------------------------------


@dataclass
class SegmentReport:
    path: str
    trailer: SegmentTrailer | None = None
    entries: int = 0
    checkpoints: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _signature_problem(
    verifier: CheckpointVerifier, key_id: str, note: bytes, signature: bytes
) -> str | None:
    try:
        verifier.verify(key_id, note, signature)
    except KeyNotFound:
        return f"signed with unknown key {key_id}"
    except SignatureError:
        return "signature invalid (forged or altered)"
    return None


def verify_segment_bytes(
    data: bytes, verifier: CheckpointVerifier, *, path: str = "segment"
) -> SegmentReport:
    """Check one segment on its own: links, hashes, checkpoints, body digest and signature."""
    report = SegmentReport(path)
    lines = data.splitlines(keepends=True)
    if not lines or not lines[-1].endswith(b"\n"):
        report.problems.append("not a segment file (empty or truncated)")
        return report
    try:
        trailer_doc = json.loads(lines[-1])["segment"]
        if trailer_doc.get("format") != SEGMENT_FORMAT:
            raise ValueError("format")
        trailer = SegmentTrailer(
            first_seq=int(trailer_doc["first_seq"]),
            last_seq=int(trailer_doc["last_seq"]),
            entries=int(trailer_doc["entries"]),
            prev_hash=_unb64(trailer_doc["prev_hash"]),
            last_hash=_unb64(trailer_doc["last_hash"]),
            body_sha256=bytes.fromhex(trailer_doc["body_sha256"]),
            archived_at=_parse_time(trailer_doc["archived_at"]),
            key_id=str(trailer_doc["key_id"]),
            signature=_unb64(trailer_doc["signature"]),
        )
    except (ValueError, KeyError, TypeError):
        report.problems.append("not a segment file (no valid trailer line)")
        return report
    report.trailer = trailer
    problem = _signature_problem(verifier, trailer.key_id, trailer.note(), trailer.signature)
    if problem:
        report.problems.append(f"segment {problem}")
    if hashlib.sha256(b"".join(lines[:-1])).digest() != trailer.body_sha256:
        report.problems.append("segment body differs from its signed digest (file edited)")
    prev = trailer.prev_hash
    expected = trailer.first_seq
    hashes: dict[int, bytes] = {}
    for number, raw in enumerate(lines[:-1], start=1):
        try:
            document = json.loads(raw)
            if "entry" in document:
                item = dict(document["entry"])
                item["ts"] = _parse_time(item["ts"])
                stored_prev, stored_hash = _unb64(item["prev_hash"]), _unb64(item["entry_hash"])
                seq = int(item["seq"])
                body = canonical_body(item)
            elif "checkpoint" in document:
                c = document["checkpoint"]
                note = checkpoint_note(
                    int(c["seq"]), _unb64(c["head_hash"]), c["prev_checkpoint_seq"], _parse_time(c["ts"])
                )
                problem = _signature_problem(verifier, str(c["key_id"]), note, _unb64(c["signature"]))
                if problem:
                    report.problems.append(f"line {number}: checkpoint seq={c['seq']} {problem}")
                elif hashes.get(int(c["seq"])) != _unb64(c["head_hash"]):
                    report.problems.append(
                        f"line {number}: checkpoint seq={c['seq']} differs from the entries"
                    )
                report.checkpoints += 1
                continue
            else:
                raise ValueError("unknown line")
        except (ValueError, KeyError, TypeError):
            report.problems.append(f"line {number}: not a segment line")
            continue
        if seq != expected:
            report.problems.append(f"seq={seq}: expected seq={expected} (entries missing or reordered)")
        if stored_prev != prev:
            report.problems.append(f"seq={seq}: prev_hash mismatch (chain broken before this entry)")
        if entry_hash(stored_prev, body) != stored_hash:
            report.problems.append(f"seq={seq}: entry hash mismatch (entry modified)")
        hashes[seq] = stored_hash
        prev = stored_hash
        expected = seq + 1
        report.entries += 1
    if report.entries != trailer.entries or expected - 1 != trailer.last_seq:
        report.problems.append(
            f"segment says seq {trailer.first_seq}..{trailer.last_seq} ({trailer.entries} entries) "
            f"but holds {report.entries}"
        )
    if prev != trailer.last_hash:
        report.problems.append("last entry's hash differs from the signed last hash")
    if trailer.first_seq == 1 and trailer.prev_hash != GENESIS:
        report.problems.append("the first segment does not start at the chain's genesis")
    return report


def verify_segment_files(paths: Iterable[Path], verifier: CheckpointVerifier) -> list[SegmentReport]:
    """Verify each file, then that consecutive segments link (by seq and by hash)."""
    reports = [verify_segment_bytes(path.read_bytes(), verifier, path=path.name) for path in paths]
    ordered = sorted((r for r in reports if r.trailer), key=lambda r: r.trailer.first_seq if r.trailer else 0)
    for before, after in itertools.pairwise(ordered):
        assert before.trailer is not None and after.trailer is not None
        if after.trailer.first_seq != before.trailer.last_seq + 1:
            after.problems.append(
                f"does not follow {before.path}: seq {before.trailer.last_seq + 1}.."
                f"{after.trailer.first_seq - 1} missing or overlapping"
            )
        elif after.trailer.prev_hash != before.trailer.last_hash:
            after.problems.append(f"does not link to {before.path} (hash differs)")
    return reports


# --- archiving ---------------------------------------------------------------------------------


@dataclass
class ArchiveReport:
    archived: int = 0
    segments: list[str] = field(default_factory=list)
    through_seq: int = 0
    target_seq: int = 0


ENTRY_COLUMNS = [getattr(AuditEntry, name) for name in AuditEntry.__table__.columns.keys()]


async def archive_anchor(database: Database) -> tuple[int, bytes]:
    """(last archived seq, its entry hash), or (0, GENESIS) before any archive."""
    async with database.sessionmaker() as session:
        row = (
            await session.execute(
                select(AuditSegment.last_seq, AuditSegment.last_hash)
                .order_by(AuditSegment.last_seq.desc())
                .limit(1)
            )
        ).first()
    return (0, GENESIS) if row is None else (row.last_seq, row.last_hash)


async def archivable_through(database: Database, before: datetime) -> int:
    """The last seq of the prefix of the chain older than `before`; never the head itself."""
    async with database.sessionmaker() as session:
        head = await session.scalar(select(func.max(AuditEntry.seq))) or 0
        newer = await session.scalar(select(func.min(AuditEntry.seq)).where(AuditEntry.ts >= before))
    through = head if newer is None else newer - 1
    return max(0, min(through, head - 1))


def _write_durably(path: Path, data: bytes) -> None:
    temporary = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, path)
    directory = os.open(path.parent, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def _existing_segment(
    directory: Path, start: int, limit: int, verifier: CheckpointVerifier
) -> tuple[Path, SegmentTrailer] | None:
    """A segment starting at `start` left by an interrupted run, if it verifies and fits."""
    for path in sorted(directory.glob(f"segment-{start:012d}-*.jsonl")):
        report = verify_segment_bytes(path.read_bytes(), verifier, path=path.name)
        if not report.ok or report.trailer is None:
            raise ArchiveRefused(f"{path} exists but does not verify ({report.problems[0]}): move it aside")
        if report.trailer.last_seq <= limit:
            return path, report.trailer
    return None


def _check_rows(rows: Sequence[Mapping[Any, Any]], start: int, prev: bytes) -> None:
    expected = start
    for row in rows:
        if row["seq"] != expected or row["prev_hash"] != prev:
            raise ArchiveRefused(
                f"the chain is broken at seq={expected}: run `hotline audit verify`; "
                "nothing archived from there"
            )
        if entry_hash(prev, canonical_body(row)) != row["entry_hash"]:
            raise ArchiveRefused(
                f"entry seq={row['seq']} does not match its hash: run `hotline audit verify`; "
                "nothing archived from there"
            )
        prev = row["entry_hash"]
        expected += 1


async def archive(
    database: Database,
    signer: CheckpointSigner,
    clock: Clock,
    *,
    before: datetime,
    directory: Path,
    actor: Actor,
    batch_size: int = 5000,
    progress: Callable[[ArchiveReport, str], None] | None = None,
    verifier: CheckpointVerifier | None = None,
) -> ArchiveReport:
    """Export the entries older than `before` as signed segments, then prune them, batch by batch.

    `verifier` (every known checkpoint key) checks a segment file left by an interrupted run,
    which may have been signed before a signing-key rotation; defaults to `signer`'s key only.
    """
    verifier = verifier or signer.verifier()
    report = ArchiveReport()
    directory.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 — once, on the operator's host
    anchor_seq, anchor_hash = await archive_anchor(database)
    report.through_seq = anchor_seq
    report.target_seq = await archivable_through(database, before)
    while anchor_seq < report.target_seq:
        start = anchor_seq + 1
        end = min(anchor_seq + batch_size, report.target_seq)
        reused = _existing_segment(directory, start, report.target_seq, verifier)
        if reused is not None:
            end = reused[1].last_seq
        async with database.sessionmaker() as session:
            rows = [
                row._mapping
                for row in await session.execute(
                    select(*ENTRY_COLUMNS)
                    .where(AuditEntry.seq >= start, AuditEntry.seq <= end)
                    .order_by(AuditEntry.seq)
                )
            ]
            checkpoints = list(
                await session.scalars(
                    select(AuditCheckpoint)
                    .where(AuditCheckpoint.seq >= start, AuditCheckpoint.seq <= end)
                    .order_by(AuditCheckpoint.seq)
                )
            )
        _check_rows(rows, start, anchor_hash)
        if len(rows) != end - start + 1:
            raise ArchiveRefused(f"entries {start}..{end} are not all present: run `hotline audit verify`")
        if reused is not None:
            path, trailer = reused
            if trailer.prev_hash != anchor_hash or trailer.last_hash != rows[-1]["entry_hash"]:
                raise ArchiveRefused(f"{path} differs from the database: move it aside (kept as evidence)")
        else:
            data, trailer = build_segment(rows, checkpoints, signer, clock.now())
            path = directory / segment_name(start, end)
            _write_durably(path, data)  # exported and fsynced before any row is deleted
        async with database.sessionmaker() as session, session.begin():
            await session.execute(
                insert(AuditSegment).values(
                    last_seq=trailer.last_seq,
                    first_seq=trailer.first_seq,
                    entries=trailer.entries,
                    prev_hash=trailer.prev_hash,
                    last_hash=trailer.last_hash,
                    body_sha256=trailer.body_sha256,
                    first_ts=rows[0]["ts"],
                    last_ts=rows[-1]["ts"],
                    archived_at=trailer.archived_at,
                    file_name=path.name,
                    key_id=trailer.key_id,
                    signature=trailer.signature,
                )
            )
            await session.execute(delete(AuditEntry).where(AuditEntry.seq >= start, AuditEntry.seq <= end))
            audit.record(
                session,
                clock,
                actor=actor,
                action="audit.archived",
                object_type="audit_segment",
                object_id=f"seq:{end}",
                details={"first_seq": start, "last_seq": end, "entries": len(rows)},
            )
        anchor_seq, anchor_hash = end, trailer.last_hash
        report.archived += len(rows)
        report.through_seq = end
        report.segments.append(path.name)
        if progress:
            progress(report, path.name)
    return report


async def segments(connection: Any) -> list[Any]:
    return list((await connection.execute(select(AuditSegment).order_by(AuditSegment.last_seq))).all())
