"""`hotline audit archive`: signed segments leave the database, pruning stops at the last segment,
and what remains (and each segment on its own) still verifies."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, text

from app.audit.archive import ArchiveRefused, archive, build_segment, segment_name, verify_segment_files
from app.audit.models import AuditCheckpoint, AuditEntry, AuditSegment
from app.audit.service import Actor
from app.audit.verify import ENTRY_COLUMNS, verify_chain
from app.clock import FrozenClock
from app.db.engine import Database, create_database
from crypto.keyfile import KeyMaterial
from tests.audit.conftest import Tamperer, append, checkpoint
from tests.audit.test_postgres_roles import libpq, postgres, service_role  # noqa: F401 — fixtures
from tests.support.cli import hotline as cli

OPERATOR = Actor("cli:test")
LONG_AGO = datetime(2019, 1, 1, 12, 0, tzinfo=UTC)  # beyond the default six-year retention


async def old_log(database: Database, keys: KeyMaterial) -> FrozenClock:
    """Entries 1..7 on 2019-01-01 (checkpoint at 6), entries 8..12 two days later (checkpoint at 11)."""
    clock = FrozenClock(LONG_AGO)
    await append(database, clock, 6)
    await checkpoint(database, clock, keys)  # signs seq 6, writes entry 7
    clock.advance(timedelta(days=2))
    await append(database, clock, 4)
    await checkpoint(database, clock, keys)  # signs seq 11, writes entry 12
    return clock


async def seqs(database: Database) -> list[int]:
    async with database.sessionmaker() as session:
        return list((await session.scalars(select(AuditEntry.seq).order_by(AuditEntry.seq))).all())


async def delete_refused(database: Database, seq: int) -> bool:
    try:
        async with database.engine.begin() as conn:
            await conn.execute(text("DELETE FROM audit_entries WHERE seq = :seq"), {"seq": seq})
    except Exception as exc:
        assert "append-only" in str(exc)
        return True
    return False


async def test_archive_command_exports_prunes_and_verification_passes(
    database: Database, fresh_database_url: str, keys: KeyMaterial, tmp_path: Path
) -> None:
    await old_log(database, keys)
    env = {"HOTLINE_DATABASE_URL": fresh_database_url, "HOTLINE_KEYRING_FILE": str(tmp_path / "keys.json")}
    witness = tmp_path / "witness"
    assert cli("audit", "export-checkpoints", str(witness), env=env, cwd=tmp_path).returncode == 0
    assert await delete_refused(database, 1)  # nothing archived yet: no delete at all

    too_recent = cli("audit", "archive", "--before", "2026-01-01", env=env, cwd=tmp_path)
    assert too_recent.returncode == 2 and "inside the audit retention" in too_recent.stderr
    assert len(too_recent.stderr.strip().splitlines()) == 1

    out = tmp_path / "archive"
    run = cli(
        "audit",
        "archive",
        "--before",
        "2019-01-02",
        "--to",
        str(out),
        "--batch-size",
        "3",
        env=env,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr
    files = sorted(p.name for p in out.iterdir())
    assert files == [segment_name(1, 3), segment_name(4, 6), segment_name(7, 7)]
    assert run.stderr.count("archived seq") == 3 and "archived 7 entries into 3 signed segments" in run.stdout
    assert await seqs(database) == list(range(8, 17))  # + export's entry (13) and the archive's three
    async with database.sessionmaker() as session:
        rows = (await session.scalars(select(AuditSegment).order_by(AuditSegment.last_seq))).all()
        assert [(r.first_seq, r.last_seq, r.entries) for r in rows] == [(1, 3, 3), (4, 6, 3), (7, 7, 1)]
        archived = (
            await session.scalars(select(AuditEntry).where(AuditEntry.action == "audit.archived"))
        ).all()
        assert next(e.details for e in archived) == {"first_seq": 1, "last_seq": 3, "entries": 3}
        assert all(e.actor_id.startswith("cli:") for e in archived)

    verify = cli("audit", "verify", "--witness", str(witness), env=env, cwd=tmp_path)
    assert verify.returncode == 0, verify.stdout
    assert (
        "Entries: 9 (seq 8..16)" in verify.stdout
        and "Archived: seq 1..7 in 3 signed segments" in verify.stdout
    )
    segments = cli("audit", "verify-segment", *(str(out / f) for f in files), env=env, cwd=tmp_path)
    assert segments.returncode == 0, segments.stdout
    assert "segment-000000000004-000000000006.jsonl: 3 entries, 1 checkpoints" in segments.stdout

    again = cli("audit", "archive", "--before", "2019-01-02", "--to", str(out), env=env, cwd=tmp_path)
    assert again.returncode == 0 and "nothing to archive (archived through seq 7)" in again.stdout

    # The trigger lets nothing newer than the last exported segment go.
    for seq in (8, 12, 15):
        assert await delete_refused(database, seq)
    assert await seqs(database) == list(range(8, 18))  # + the verify run's entry

    # An edited segment no longer verifies; nor does a set with one missing.
    middle = out / files[1]
    lines = middle.read_text().splitlines(keepends=True)
    entry = json.loads(lines[0])
    entry["entry"]["purpose"] = "curiosity"
    middle.write_text(json.dumps(entry) + "\n" + "".join(lines[1:]))
    edited = cli("audit", "verify-segment", str(middle), env=env, cwd=tmp_path)
    assert edited.returncode == 1
    assert "seq=4: entry hash mismatch (entry modified)" in edited.stdout
    assert "segment body differs from its signed digest (file edited)" in edited.stdout
    gap = cli("audit", "verify-segment", str(out / files[0]), str(out / files[2]), env=env, cwd=tmp_path)
    assert gap.returncode == 1 and "seq 4..6 missing or overlapping" in gap.stdout


async def test_interrupted_archive_resumes_from_the_exported_file(
    database: Database, keys: KeyMaterial, tmp_path: Path
) -> None:
    clock = await old_log(database, keys)
    out = tmp_path / "archive"
    out.mkdir()
    # A run that wrote and fsynced segment 1..4 and died before its transaction committed.
    async with database.sessionmaker() as session:
        rows = [r._mapping for r in await session.execute(select(*ENTRY_COLUMNS).where(AuditEntry.seq <= 4))]
        cps = list(await session.scalars(select(AuditCheckpoint).where(AuditCheckpoint.seq <= 4)))
    data, _trailer = build_segment(rows, cps, keys.signer, clock.now())
    (out / segment_name(1, 4)).write_bytes(data)
    assert await seqs(database) == list(range(1, 13))

    report = await archive(
        database,
        keys.signer,
        clock,
        before=LONG_AGO + timedelta(days=1),
        directory=out,
        actor=OPERATOR,
        batch_size=2,
    )
    assert report.segments == [segment_name(1, 4), segment_name(5, 6), segment_name(7, 7)]
    assert (out / segment_name(1, 4)).read_bytes() == data  # reused, not rewritten
    assert [r.ok for r in verify_segment_files(sorted(out.iterdir()), keys.checkpoint_verifier())] == [
        True
    ] * 3
    async with database.engine.connect() as conn:
        result = await verify_chain(conn, keys.checkpoint_verifier())
    assert result.ok, result.problems
    assert result.first_seq == 8 and result.archived_through == 7 and result.segments == 3

    # A leftover file that does not verify stops the run before anything is deleted.
    clock.advance(timedelta(days=10))
    bad = out / segment_name(8, 9)
    bad.write_text("not a segment\n")
    with pytest.raises(ArchiveRefused, match="does not verify"):
        await archive(
            database, keys.signer, clock, before=clock.now(), directory=out, actor=OPERATOR, batch_size=2
        )
    assert (await seqs(database))[0] == 8


async def test_tampering_after_archive_is_detected(
    database: Database, keys: KeyMaterial, tamper: Tamperer, tmp_path: Path
) -> None:
    clock = await old_log(database, keys)
    await archive(
        database, keys.signer, clock, before=LONG_AGO + timedelta(days=1), directory=tmp_path, actor=OPERATOR
    )
    verifier = keys.checkpoint_verifier()

    async def problems() -> list[tuple[str, int | None, str]]:
        async with database.engine.connect() as conn:
            report = await verify_chain(conn, verifier)
        return [(p.kind, p.seq, p.reason) for p in report.problems]

    assert await problems() == []
    # A forged segment row (no signing key) would let the trigger prune more: verification says so.
    async with database.engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO audit_segments (last_seq, first_seq, entries, prev_hash, last_hash, "
                "body_sha256, first_ts, last_ts, archived_at, file_name, key_id, signature) "
                "SELECT 10, 8, 3, prev_hash, entry_hash, entry_hash, ts, ts, ts, 'forged', 'ed25519:x', :sig "
                "FROM audit_entries WHERE seq = 10"
            ),
            {"sig": b"\x00" * 64},
        )
    assert not await delete_refused(database, 8)  # the database now allows it…
    found = await problems()
    assert ("segment", 10, "segment signed with unknown key ed25519:x") in found  # …but verify does not
    assert ("entry", 9, "entries from here overlap the archived segments (through seq=10)") in found


async def test_the_first_remaining_entry_must_continue_the_last_segment(
    database: Database, keys: KeyMaterial, tamper: Tamperer, tmp_path: Path
) -> None:
    clock = await old_log(database, keys)
    await archive(
        database, keys.signer, clock, before=LONG_AGO + timedelta(days=1), directory=tmp_path, actor=OPERATOR
    )
    await tamper("DELETE FROM audit_entries WHERE seq = 8")
    async with database.engine.connect() as conn:
        report = await verify_chain(conn, keys.checkpoint_verifier())
    assert [(p.seq, p.reason) for p in report.problems] == [(8, "entries 8..8 missing (deleted)")]


async def test_archive_is_for_the_owner_only(
    postgres: None,  # noqa: F811
    database: Database,
    keys: KeyMaterial,
    fresh_database_url: str,
    service_role: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    from app.db.grants import apply_grants, owner_problem

    await old_log(database, keys)
    await apply_grants(database, service_role)
    assert await owner_problem(database) is None
    as_service = create_database(libpq(fresh_database_url, service_role))
    try:
        assert "does not own the audit tables" in (await owner_problem(as_service) or "")
        with pytest.raises(Exception, match="permission denied"):
            async with as_service.engine.begin() as conn:
                await conn.exec_driver_sql("DELETE FROM audit_segments")
    finally:
        await as_service.dispose()
    url = libpq(fresh_database_url, service_role)
    env = {"HOTLINE_DATABASE_URL": url, "HOTLINE_KEYRING_FILE": str(tmp_path / "keys.json")}
    refused = cli(
        "audit", "archive", "--before", "2019-01-02", "--to", str(tmp_path / "a"), env=env, cwd=tmp_path
    )
    assert refused.returncode == 2 and "audit archive is for the owner only" in refused.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to hand the file to another user")
async def test_archive_on_sqlite_needs_the_file_owner(
    backend: str, database: Database, fresh_database_url: str, keys: KeyMaterial, tmp_path: Path
) -> None:
    if backend != "sqlite":
        pytest.skip("SQLite file ownership")
    from app.db.engine import async_url
    from app.db.grants import owner_problem

    path = async_url(fresh_database_url).database
    assert path and await owner_problem(database, path) is None
    os.chown(path, 12345, -1)
    try:
        assert "run this as the user owning" in (await owner_problem(database, path) or "")
    finally:
        os.chown(path, 0, -1)
