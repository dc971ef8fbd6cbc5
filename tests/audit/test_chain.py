"""The hash chain: gapless, fork-free, and every kind of tampering named with its seq and reason."""

from __future__ import annotations

import base64
import itertools
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from app.audit import service as audit
from app.audit.models import AuditCheckpoint, AuditEntry
from app.audit.verify import Report, checkpoint_file_text, verify_chain
from app.clock import FrozenClock
from app.db.engine import Database
from crypto.keyfile import KeyMaterial
from crypto.signing import CheckpointSigner
from tests.audit.conftest import Tamperer, append, checkpoint


async def verify(database: Database, keys: KeyMaterial, witness: Path | None = None) -> Report:
    async with database.engine.connect() as conn:
        return await verify_chain(conn, keys.checkpoint_verifier(), witness_dir=witness)


def problems(report: Report) -> list[tuple[str, int | None, str]]:
    return [(p.kind, p.seq, p.reason) for p in report.problems]


async def test_entries_chain_in_commit_order_and_verify(
    database: Database, clock: FrozenClock, keys: KeyMaterial
) -> None:
    await append(database, clock, 5)
    async with database.sessionmaker() as session:
        rows = (await session.scalars(select(AuditEntry).order_by(AuditEntry.seq))).all()
    assert [row.seq for row in rows] == [1, 2, 3, 4, 5]
    assert rows[0].prev_hash == b"\0" * 32
    assert all(later.prev_hash == earlier.entry_hash for earlier, later in itertools.pairwise(rows))
    assert [row.ts for row in rows] == sorted(row.ts for row in rows) and rows[-1].ts < clock.now()
    report = await verify(database, keys)
    assert report.ok and report.entries == 5 and (report.first_seq, report.last_seq) == (1, 5)


async def test_rolled_back_transactions_leave_no_hole(
    database: Database, clock: FrozenClock, keys: KeyMaterial
) -> None:
    await append(database, clock, 2)
    with pytest.raises(RuntimeError):
        async with database.sessionmaker() as session, session.begin():
            audit.record(session, clock, actor=audit.SYSTEM, action="case.reveal", object_id="CS-2222-2222")
            raise RuntimeError("request failed after recording")
    await append(database, clock, 1)
    async with database.sessionmaker() as session:
        seqs = (await session.scalars(select(AuditEntry.seq).order_by(AuditEntry.seq))).all()
    assert list(seqs) == [1, 2, 3]
    assert (await verify(database, keys)).ok


async def test_record_refuses_free_text(database: Database, clock: FrozenClock) -> None:
    async with database.sessionmaker() as session:
        with pytest.raises(audit.AuditError):
            audit.record(session, clock, actor=audit.SYSTEM, action="case.reveal", object_id="Maria Lopez")
        with pytest.raises(audit.AuditError):
            audit.record(
                session, clock, actor=audit.SYSTEM, action="case.reveal", details={"note": "he said x"}
            )
        with pytest.raises(audit.AuditError):
            audit.record(session, clock, actor=audit.SYSTEM, action="Case Reveal!")
        with pytest.raises(audit.AuditError):
            audit.Actor("+1 212 555 0100")


async def test_triggers_reject_update_and_delete(database: Database, clock: FrozenClock) -> None:
    await append(database, clock, 1)
    for statement in ("UPDATE audit_entries SET action = 'x'", "DELETE FROM audit_entries"):
        with pytest.raises(Exception, match="append-only"):
            async with database.engine.begin() as conn:
                await conn.execute(text(statement))
    async with database.sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(AuditEntry)) == 1


async def test_edited_row(
    database: Database, clock: FrozenClock, keys: KeyMaterial, tamper: Tamperer
) -> None:
    await append(database, clock, 6)
    await tamper("UPDATE audit_entries SET object_id = 'HX-9999' WHERE seq = 3")
    assert problems(await verify(database, keys)) == [("entry", 3, "entry hash mismatch (row modified)")]


async def test_edited_row_with_recomputed_hash_breaks_the_next_link(
    database: Database, clock: FrozenClock, keys: KeyMaterial, tamper: Tamperer
) -> None:
    await append(database, clock, 4)
    # The editor recomputes row 2's own hash but cannot fix row 3's stored prev_hash (it is hashed too).
    from app.audit.chain import canonical_body, entry_hash

    async with database.engine.connect() as conn:
        row = (await conn.execute(select(AuditEntry.__table__).where(AuditEntry.seq == 2))).one()
    changed = {**row._mapping, "purpose": "curiosity"}
    new_hash = entry_hash(row.prev_hash, canonical_body(changed))
    await tamper("UPDATE audit_entries SET purpose = 'curiosity', entry_hash = :h WHERE seq = 2", h=new_hash)
    assert problems(await verify(database, keys)) == [
        ("entry", 3, "prev_hash mismatch (chain broken before this entry)")
    ]


async def test_deleted_row(
    database: Database, clock: FrozenClock, keys: KeyMaterial, tamper: Tamperer
) -> None:
    await append(database, clock, 6)
    await tamper("DELETE FROM audit_entries WHERE seq = 4")
    assert problems(await verify(database, keys)) == [("entry", 4, "entries 4 missing (deleted)")]


async def test_reordered_rows(
    database: Database, clock: FrozenClock, keys: KeyMaterial, tamper: Tamperer
) -> None:
    await append(database, clock, 6)
    # Swap rows 3 and 4 wholesale (every column but seq), as if their order had been changed.
    await tamper(
        "UPDATE audit_entries SET seq = -3 WHERE seq = 3",
        "UPDATE audit_entries SET seq = 3 WHERE seq = 4",
        "UPDATE audit_entries SET seq = 4 WHERE seq = -3",
    )
    found = problems(await verify(database, keys))
    # Each moved row's own hash no longer matches (seq is hashed), and the links point elsewhere.
    assert sorted(found) == [
        ("entry", 3, "entry hash mismatch (row modified)"),
        ("entry", 3, "out of order: links to seq=4 (rows reordered)"),
        ("entry", 4, "entry hash mismatch (row modified)"),
        ("entry", 4, "out of order: links to seq=2 (rows reordered)"),
        ("entry", 5, "out of order: links to seq=3 (rows reordered)"),
    ]


async def test_forged_checkpoint(
    database: Database, clock: FrozenClock, keys: KeyMaterial, tamper: Tamperer
) -> None:
    await append(database, clock, 3)
    seq = await checkpoint(database, clock, keys)
    await tamper("UPDATE audit_checkpoints SET signature = :s WHERE seq = :q", s=b"\x01" * 64, q=seq)
    assert problems(await verify(database, keys)) == [
        ("checkpoint", seq, "checkpoint signature invalid (forged or altered)")
    ]


async def test_checkpoint_under_an_unknown_key(
    database: Database, clock: FrozenClock, keys: KeyMaterial
) -> None:
    await append(database, clock, 3)
    outsider = CheckpointSigner.generate()
    async with database.sessionmaker() as session, session.begin():
        await audit.sign_checkpoint(session, clock, outsider, every_entries=1, every_seconds=1, force=True)
    assert problems(await verify(database, keys)) == [
        ("checkpoint", 3, f"checkpoint signed with unknown key {outsider.key_id}")
    ]


async def test_missing_checkpoint(
    database: Database, clock: FrozenClock, keys: KeyMaterial, tamper: Tamperer
) -> None:
    await append(database, clock, 2)
    first = await checkpoint(database, clock, keys)
    await append(database, clock, 2)
    await checkpoint(database, clock, keys)
    await tamper("DELETE FROM audit_checkpoints WHERE seq = :q", q=first)
    assert problems(await verify(database, keys)) == [
        ("checkpoint", first, "checkpoint missing (referenced by checkpoint seq=5)")
    ]


async def test_rewritten_chain_is_caught_by_the_checkpoint(
    database: Database, clock: FrozenClock, keys: KeyMaterial, tamper: Tamperer
) -> None:
    from app.audit.chain import GENESIS, canonical_body, entry_hash

    await append(database, clock, 4)
    signed = await checkpoint(database, clock, keys)  # covers seq 1..4
    # Someone with write access edits row 2 and recomputes every later hash: locally consistent.
    async with database.engine.connect() as conn:
        rows = [
            dict(r._mapping)
            for r in (await conn.execute(select(AuditEntry.__table__).order_by(AuditEntry.seq)))
        ]
    rows[1]["purpose"] = "curiosity"
    prev = GENESIS
    statements, params = [], {}
    for row in rows:
        digest = entry_hash(prev, canonical_body(row))
        statements.append(
            f"UPDATE audit_entries SET purpose = :p{row['seq']}, prev_hash = :v{row['seq']}, "
            f"entry_hash = :h{row['seq']} WHERE seq = {row['seq']}"
        )
        params.update({f"p{row['seq']}": row["purpose"], f"v{row['seq']}": prev, f"h{row['seq']}": digest})
        prev = digest
    await tamper(*statements, **params)
    assert problems(await verify(database, keys)) == [
        ("checkpoint", signed, "signed head hash differs from the chain (entries rewritten)")
    ]


async def test_truncated_tail(
    database: Database, clock: FrozenClock, keys: KeyMaterial, tamper: Tamperer
) -> None:
    await append(database, clock, 5)
    signed = await checkpoint(database, clock, keys)  # seq 5; its own audit entry is seq 6
    await tamper("DELETE FROM audit_entries WHERE seq >= 4")
    assert problems(await verify(database, keys)) == [
        (
            "chain",
            3,
            f"chain head is older than the latest checkpoint seq={signed} (entries removed from the end)",
        )
    ]


async def test_rollback_detected_against_a_witness(
    database: Database, clock: FrozenClock, keys: KeyMaterial, tamper: Tamperer, tmp_path: Path
) -> None:
    await append(database, clock, 3)
    await checkpoint(database, clock, keys)
    await append(database, clock, 3)
    await checkpoint(database, clock, keys)
    witness = tmp_path / "witness"
    witness.mkdir()
    async with database.sessionmaker() as session:
        for cp in await session.scalars(select(AuditCheckpoint)):
            (witness / f"checkpoint-{cp.seq:012d}.txt").write_text(checkpoint_file_text(cp))
    assert (await verify(database, keys, witness)).ok
    # Restore "yesterday's backup": the later entries and the later checkpoint disappear together.
    await tamper("DELETE FROM audit_checkpoints WHERE seq > 3", "DELETE FROM audit_entries WHERE seq > 4")
    found = problems(await verify(database, keys, witness))
    assert found == [("witness", 7, "chain head seq=4 is older than this witnessed checkpoint (rollback)")]


async def test_forged_witness_file_is_reported(
    database: Database, clock: FrozenClock, keys: KeyMaterial, tmp_path: Path
) -> None:
    await append(database, clock, 2)
    await checkpoint(database, clock, keys)
    async with database.sessionmaker() as session:
        cp = (await session.scalars(select(AuditCheckpoint))).one()
    text_ = checkpoint_file_text(cp).replace(
        base64.b64encode(cp.signature).decode(), base64.b64encode(b"\0" * 64).decode()
    )
    (tmp_path / "checkpoint-000000000002.txt").write_text(text_)
    assert problems(await verify(database, keys, tmp_path)) == [
        ("witness", 2, "checkpoint-000000000002.txt: checkpoint signature invalid (forged or altered)")
    ]
