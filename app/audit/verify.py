"""`hotline audit verify`: stream the chain, check every link and every checkpoint.

Per entry (local checks, so a problem is pinned to its row): `seq` continues without a gap, the
stored `prev_hash` is the previous row's `entry_hash`, and `entry_hash` equals the hash recomputed
from the row's columns. Per checkpoint: the signature verifies under a known public key, the
checkpoint chain (`prev_checkpoint_seq`) has no missing link, and the chain's entry at that `seq`
has exactly the signed head hash — which catches a chain rewritten consistently after the fact.
Finally the head must not be older than the latest checkpoint (entries cut off the end), nor
than any checkpoint held by an outside witness (`--witness DIR`, a whole-database rollback).

After `hotline audit archive` the chain starts after the last archived segment: each
`audit_segments` row must carry a valid signature and follow the previous one (seq and hash),
and the first remaining entry must continue from the last segment's `last_hash`. Checkpoints
inside archived segments are checked in the segment files (`hotline audit verify-segment`); here
only those at a segment's end are compared with its signed last hash.
"""

from __future__ import annotations

import base64
import re
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from app.audit.archive import segment_note, segments
from app.audit.chain import GENESIS, canonical_body, checkpoint_note, entry_hash
from app.audit.models import AuditCheckpoint, AuditEntry
from crypto.errors import KeyNotFound, SignatureError
from crypto.signing import CheckpointVerifier

ENTRY_COLUMNS = [getattr(AuditEntry, name) for name in AuditEntry.__table__.columns.keys()]
_LINK_WINDOW = 4096  # recent entry hashes kept to recognise reordered rows


@dataclass(frozen=True)
class Problem:
    kind: str  # "entry" | "checkpoint" | "chain" | "witness" | "segment"
    seq: int | None
    reason: str

    def line(self) -> str:
        where = f"seq={self.seq}" if self.seq is not None else ""
        return f"{self.kind.capitalize():<10} {where:<12} INVALID: {self.reason}"


@dataclass
class Report:
    entries: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    checkpoints: int = 0
    checkpoints_valid: int = 0
    witnessed: int = 0
    unanchored_tail: int = 0
    segments: int = 0
    archived_through: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        return {
            "result": "ok" if self.ok else "invalid",
            "entries": self.entries,
            "first_seq": self.first_seq,
            "last_seq": self.last_seq,
            "checkpoints": self.checkpoints,
            "checkpoints_valid": self.checkpoints_valid,
            "witnessed_checkpoints": self.witnessed,
            "unanchored_tail": self.unanchored_tail,
            "archived_segments": self.segments,
            "archived_through": self.archived_through,
            "problems": [{"kind": p.kind, "seq": p.seq, "reason": p.reason} for p in self.problems],
        }


@dataclass(frozen=True)
class WitnessCheckpoint:
    seq: int
    head_hash: bytes
    prev_checkpoint_seq: int | None
    note: bytes
    key_id: str
    signature: bytes


def checkpoint_file_text(checkpoint: AuditCheckpoint) -> str:
    """A checkpoint as a witness keeps it: the signed note, then a signature line."""
    note = checkpoint_note(
        checkpoint.seq, checkpoint.head_hash, checkpoint.prev_checkpoint_seq, checkpoint.ts
    )
    return note.decode() + f"\n— {checkpoint.key_id} {base64.b64encode(checkpoint.signature).decode()}\n"


_NOTE = re.compile(
    r"^(?P<origin>[^\n]+)\n(?P<seq>\d+)\n(?P<head>[A-Za-z0-9+/=]+)\nprev (?P<prev>none|\d+)\ntime [^\n]+\n"
    r"\n— (?P<key>\S+) (?P<sig>[A-Za-z0-9+/=]+)\n$"
)


def parse_checkpoint_file(text: str) -> WitnessCheckpoint | None:
    match = _NOTE.match(text)
    if not match:
        return None
    note_end = text.index("\n\n— ") + 1
    try:
        return WitnessCheckpoint(
            seq=int(match["seq"]),
            head_hash=base64.b64decode(match["head"], validate=True),
            prev_checkpoint_seq=None if match["prev"] == "none" else int(match["prev"]),
            note=text[:note_end].encode(),
            key_id=match["key"],
            signature=base64.b64decode(match["sig"], validate=True),
        )
    except ValueError:
        return None


def _signature_problem(
    verifier: CheckpointVerifier, key_id: str, note: bytes, signature: bytes
) -> str | None:
    try:
        verifier.verify(key_id, note, signature)
    except KeyNotFound:
        return f"checkpoint signed with unknown key {key_id}"
    except SignatureError:
        return "checkpoint signature invalid (forged or altered)"
    return None


async def verify_chain(
    connection: AsyncConnection,
    verifier: CheckpointVerifier,
    *,
    witness_dir: Path | None = None,
    progress: Callable[[int, int | None], None] | None = None,
    batch: int = 5000,
) -> Report:
    report = Report()
    checkpoints = {
        row.seq: row
        for row in (await connection.execute(select(AuditCheckpoint).order_by(AuditCheckpoint.seq))).all()
    }
    total_hint = (
        await connection.execute(select(AuditEntry.seq).order_by(AuditEntry.seq.desc()).limit(1))
    ).scalar()
    report.checkpoints = len(checkpoints)
    stored_at_checkpoint: dict[int, bytes] = {}
    anchor = _check_segments(report, await segments(connection), verifier)
    for seq, last_hash in anchor.items():
        if seq in checkpoints:  # a checkpoint at a segment's end is checked against its signed hash
            stored_at_checkpoint[seq] = last_hash

    expected_seq: int | None = None
    prev_stored = anchor.get(report.archived_through, GENESIS)
    recent: OrderedDict[bytes, int] = OrderedDict()  # entry_hash -> seq, a sliding window
    dangling: dict[bytes, int] = {}  # prev_hash that matched nothing yet -> seq of the row holding it
    last_report = time.monotonic()

    stream = await connection.stream(
        select(*ENTRY_COLUMNS).order_by(AuditEntry.seq).execution_options(yield_per=batch)
    )
    async for partition in stream.partitions(batch):
        for row in partition:
            mapping = row._mapping
            seq = mapping["seq"]
            if expected_seq is None:
                report.first_seq = seq
                start = report.archived_through + 1
                if seq < start:
                    report.problems.append(
                        Problem(
                            "entry",
                            seq,
                            f"entries from here overlap the archived segments (through seq={start - 1})",
                        )
                    )
                elif seq != start:
                    report.problems.append(
                        Problem("entry", start, f"entries {start}..{seq - 1} missing (deleted)")
                    )
                elif mapping["prev_hash"] != prev_stored:
                    after = f"archived segment ending at seq={seq - 1}" if seq > 1 else "chain's genesis"
                    report.problems.append(Problem("entry", seq, f"prev_hash does not continue the {after}"))
            elif seq != expected_seq:
                missing = f"{expected_seq}" if seq == expected_seq + 1 else f"{expected_seq}..{seq - 1}"
                report.problems.append(Problem("entry", expected_seq, f"entries {missing} missing (deleted)"))
            stored_prev = mapping["prev_hash"]
            stored_hash = mapping["entry_hash"]
            if stored_prev != prev_stored and expected_seq is not None and seq == expected_seq:
                earlier = recent.get(stored_prev)
                if earlier is not None:
                    report.problems.append(
                        Problem("entry", seq, f"out of order: links to seq={earlier} (rows reordered)")
                    )
                else:
                    dangling[stored_prev] = seq
                    report.problems.append(
                        Problem("entry", seq, "prev_hash mismatch (chain broken before this entry)")
                    )
            if entry_hash(stored_prev, canonical_body(mapping)) != stored_hash:
                report.problems.append(Problem("entry", seq, "entry hash mismatch (row modified)"))
            if stored_hash in dangling:
                # A row seen earlier links to this one: the two were swapped, not deleted.
                holder = dangling.pop(stored_hash)
                for index, problem in enumerate(report.problems):
                    if problem.seq == holder and problem.reason.startswith("prev_hash mismatch"):
                        report.problems[index] = Problem(
                            "entry", holder, f"out of order: links to seq={seq} (rows reordered)"
                        )
            if seq in checkpoints:
                stored_at_checkpoint[seq] = stored_hash
            recent[stored_hash] = seq
            if len(recent) > _LINK_WINDOW:
                recent.popitem(last=False)
            prev_stored = stored_hash
            expected_seq = seq + 1
            report.entries += 1
            report.last_seq = seq
        if progress and time.monotonic() - last_report >= 1.0:
            progress(report.entries, total_hint)
            last_report = time.monotonic()
    if progress:
        progress(report.entries, total_hint)

    if report.entries == 0 and report.archived_through:
        report.last_seq = report.archived_through  # everything archived so far; nothing to stream
    _check_checkpoints(report, checkpoints, stored_at_checkpoint, verifier)
    if witness_dir is not None:
        _check_witness(report, witness_dir, checkpoints, stored_at_checkpoint, verifier)
    report.problems.sort(key=lambda p: (p.seq is None, p.seq or 0))
    return report


def _check_segments(report: Report, rows: list[Any], verifier: CheckpointVerifier) -> dict[int, bytes]:
    """Check the archived segments' rows; returns {last_seq: last_hash} of those that hold."""
    anchors: dict[int, bytes] = {}
    expected, prev = 1, GENESIS
    for row in rows:
        note = segment_note(
            row.first_seq,
            row.last_seq,
            row.entries,
            row.prev_hash,
            row.last_hash,
            row.body_sha256,
            row.archived_at,
        )
        problem = _signature_problem(verifier, row.key_id, note, row.signature)
        if problem:
            report.problems.append(Problem("segment", row.last_seq, problem.replace("checkpoint", "segment")))
        elif row.first_seq != expected or row.prev_hash != prev:
            report.problems.append(
                Problem("segment", row.first_seq, f"archived segment does not follow seq={expected - 1}")
            )
        report.segments += 1
        report.archived_through = row.last_seq
        anchors[row.last_seq] = row.last_hash
        expected, prev = row.last_seq + 1, row.last_hash
    return anchors


def _check_checkpoints(
    report: Report,
    checkpoints: dict[int, Any],
    stored_at_checkpoint: dict[int, bytes],
    verifier: CheckpointVerifier,
) -> None:
    latest = max(checkpoints, default=None)
    for seq, checkpoint in checkpoints.items():
        note = checkpoint_note(seq, checkpoint.head_hash, checkpoint.prev_checkpoint_seq, checkpoint.ts)
        problem = _signature_problem(verifier, checkpoint.key_id, note, checkpoint.signature)
        if problem:
            report.problems.append(Problem("checkpoint", seq, problem))
            continue
        report.checkpoints_valid += 1
        previous = checkpoint.prev_checkpoint_seq
        if previous is not None and previous not in checkpoints:
            report.problems.append(
                Problem("checkpoint", previous, f"checkpoint missing (referenced by checkpoint seq={seq})")
            )
        stored = stored_at_checkpoint.get(seq)
        if stored is None and seq <= report.archived_through:
            continue  # inside an archived segment: checked in the segment file
        if stored is None:
            if report.last_seq is None or seq > report.last_seq:
                continue  # reported once below as a head older than the checkpoint
            report.problems.append(
                Problem("checkpoint", seq, "no entry with this seq (deleted after signing)")
            )
        elif stored != checkpoint.head_hash:
            report.problems.append(
                Problem("checkpoint", seq, "signed head hash differs from the chain (entries rewritten)")
            )
    if latest is not None and (report.last_seq or 0) < latest:
        report.problems.append(
            Problem(
                "chain",
                report.last_seq,
                f"chain head is older than the latest checkpoint seq={latest} (entries removed from the end)",
            )
        )
    report.unanchored_tail = (report.last_seq or 0) - (latest or 0) if report.last_seq else 0


def _check_witness(
    report: Report,
    witness_dir: Path,
    checkpoints: dict[int, Any],
    stored_at_checkpoint: dict[int, bytes],
    verifier: CheckpointVerifier,
) -> None:
    for path in sorted(witness_dir.glob("checkpoint-*.txt")):
        witnessed = parse_checkpoint_file(path.read_text(encoding="utf-8", errors="replace"))
        if witnessed is None:
            report.problems.append(Problem("witness", None, f"{path.name}: not a checkpoint file"))
            continue
        problem = _signature_problem(verifier, witnessed.key_id, witnessed.note, witnessed.signature)
        if problem:
            report.problems.append(Problem("witness", witnessed.seq, f"{path.name}: {problem}"))
            continue
        report.witnessed += 1
        if report.last_seq is None or witnessed.seq > report.last_seq:
            report.problems.append(
                Problem(
                    "witness",
                    witnessed.seq,
                    f"chain head seq={report.last_seq} is older than this witnessed checkpoint (rollback)",
                )
            )
            continue
        ours = checkpoints.get(witnessed.seq)
        if witnessed.seq <= report.archived_through and witnessed.seq not in stored_at_checkpoint:
            if ours is None or ours.head_hash != witnessed.head_hash:
                report.problems.append(
                    Problem(
                        "witness", witnessed.seq, "witnessed checkpoint missing or altered in the database"
                    )
                )
            continue  # its entries are archived: the segment file holds them
        if ours is None or ours.head_hash != witnessed.head_hash:
            report.problems.append(
                Problem("witness", witnessed.seq, "witnessed checkpoint missing or altered in the database")
            )
        elif stored_at_checkpoint.get(witnessed.seq) != witnessed.head_hash:
            report.problems.append(Problem("witness", witnessed.seq, "chain differs from the witnessed head"))
