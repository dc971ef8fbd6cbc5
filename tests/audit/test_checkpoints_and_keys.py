from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import select

from app.audit.models import AuditCheckpoint, AuditEntry
from app.clock import FrozenClock
from app.db.engine import Database
from app.jobs.runner import JobRunner, registry
from app.keys.store import KeyStore
from app.main import StartupError, create_app
from app.settings import Settings
from crypto.keyfile import KeyMaterial, create_key_file
from tests.audit.conftest import Tamperer, append
from tests.support.cli import hotline as cli

ROOT = Path(__file__).resolve().parents[2]


async def entries(database: Database) -> list[AuditEntry]:
    async with database.sessionmaker() as session:
        return list((await session.scalars(select(AuditEntry).order_by(AuditEntry.seq))).all())


async def checkpoints(database: Database) -> list[AuditCheckpoint]:
    async with database.sessionmaker() as session:
        return list((await session.scalars(select(AuditCheckpoint).order_by(AuditCheckpoint.seq))).all())


async def test_checkpoint_job_signs_every_n_entries_or_minutes(
    database: Database, clock: FrozenClock, keys: KeyMaterial, make_settings: Any
) -> None:
    settings = make_settings(audit_checkpoint_entries=5, audit_checkpoint_seconds=600)
    runner = JobRunner(
        database, clock, registry=registry, services={"settings": settings, "keys": KeyStore(keys)}
    )
    await append(database, clock, 3)
    await runner.run_until_idle()
    first = await checkpoints(database)
    assert [cp.seq for cp in first] == [3]  # the first checkpoint is due at once
    await append(database, clock, 3)  # 4 entries since (its own audit entry + 3): not yet due
    clock.advance(61)
    await runner.run_until_idle()
    assert [cp.seq for cp in await checkpoints(database)] == [3]
    await append(database, clock, 1)
    clock.advance(61)
    await runner.run_until_idle()
    assert [cp.seq for cp in await checkpoints(database)] == [3, 8]
    clock.advance(601)  # time-based: one new entry (the checkpoint's own) and ten minutes passed
    await runner.run_until_idle()
    assert [cp.seq for cp in await checkpoints(database)] == [3, 8, 9]
    signed = [e for e in await entries(database) if e.action == "audit.checkpoint_signed"]
    assert [e.object_id for e in signed] == ["seq:3", "seq:8", "seq:9"]
    assert all(e.details == {"key_id": keys.signer.key_id} for e in signed)


async def test_first_development_start_creates_the_key_file_and_audits_it(
    make_settings: Any, clock: FrozenClock, database: Database, tmp_path: Path
) -> None:
    settings: Settings = make_settings(keyring_file=str(tmp_path / "new-keys.json"))
    app: FastAPI = create_app(settings, clock=clock, database=database)
    async with app.router.lifespan_context(app):
        assert app.state.keys.material.development is True
    assert os.stat(settings.keyring_file).st_mode & 0o777 == 0o600
    created = [e for e in await entries(database) if e.action == "keys.file_created"]
    assert len(created) == 1 and created[0].details["development"] is True
    # Second start: the same file is loaded, nothing new is created or audited.
    app = create_app(settings, clock=clock, database=database)
    async with app.router.lifespan_context(app):
        pass
    assert len([e for e in await entries(database) if e.action == "keys.file_created"]) == 1


async def test_no_key_file_is_created_for_a_database_that_holds_data(
    make_settings: Any, clock: FrozenClock, database: Database, tmp_path: Path
) -> None:
    await append(database, clock, 1)
    settings = make_settings(keyring_file=str(tmp_path / "lost-keys.json"))
    app = create_app(settings, clock=clock, database=database)
    with pytest.raises(StartupError, match="already holds data: restore the key file"):
        async with app.router.lifespan_context(app):
            pass
    assert not (tmp_path / "lost-keys.json").exists()


@pytest.mark.parametrize("problem", ["missing", "development", "world-readable", "malformed"])
async def test_key_file_problems_stop_startup(
    problem: str, make_settings: Any, clock: FrozenClock, database: Database, tmp_path: Path, backend: str
) -> None:
    path = tmp_path / "keys.json"
    production = problem in {"missing", "development"}
    if problem == "development":
        create_key_file(path, development=True)
    elif problem == "world-readable":
        create_key_file(path)
        os.chmod(path, 0o644)
    elif problem == "malformed":
        path.write_text("{not json")
        os.chmod(path, 0o600)
    overrides: dict[str, Any] = {"keyring_file": str(path)}
    if production:
        overrides.update(env="production", docs_enabled=False)
    settings = make_settings(**overrides)
    app = create_app(settings, clock=clock, database=database)
    expected = {
        "missing": "not found: create it once with `hotline keys init",
        "development": "created by a development start",
        "world-readable": "keys.json",
        "malformed": "not valid JSON",
    }[problem]
    if production and backend == "postgresql":
        expected = "superuser"  # checked first: the test server's role is a superuser and owner
    with pytest.raises(StartupError, match=expected):
        async with app.router.lifespan_context(app):
            pass


def test_keys_init_creates_a_private_file_once(tmp_path: Path) -> None:
    path = tmp_path / "prod-keys.json"
    first = cli("keys", "init", "--file", str(path), env={}, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "Back it up" in first.stdout and os.stat(path).st_mode & 0o777 == 0o600
    before = path.read_bytes()
    again = cli("keys", "init", "--file", str(path), env={}, cwd=tmp_path)
    assert again.returncode == 2 and "refusing to overwrite" in again.stderr
    assert path.read_bytes() == before
    assert json.loads(before)["development"] is False


async def test_audit_verify_command(
    database: Database,
    fresh_database_url: str,
    clock: FrozenClock,
    keys: KeyMaterial,
    tamper: Tamperer,
    tmp_path: Path,
) -> None:
    key_path = tmp_path / "keys.json"  # the `keys` fixture's file
    env = {"HOTLINE_DATABASE_URL": fresh_database_url, "HOTLINE_KEYRING_FILE": str(key_path)}
    await append(database, clock, 4)
    from tests.audit.conftest import checkpoint

    await checkpoint(database, clock, keys)
    witness = tmp_path / "witness"
    exported = cli("audit", "export-checkpoints", str(witness), env=env, cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr
    assert [p.name for p in witness.iterdir()] == ["checkpoint-000000000004.txt"]

    good = cli("audit", "verify", "--witness", str(witness), env=env, cwd=tmp_path)
    assert good.returncode == 0, good.stdout + good.stderr
    assert "Result: OK" in good.stdout and "verifying:" in good.stderr

    await tamper("UPDATE audit_entries SET purpose = 'curiosity' WHERE seq = 2")
    bad = cli("audit", "verify", env=env, cwd=tmp_path)
    assert bad.returncode == 1
    assert "seq=2" in bad.stdout and "INVALID: entry hash mismatch (row modified)" in bad.stdout
    as_json = cli("audit", "verify", "--json", env=env, cwd=tmp_path)
    assert as_json.returncode == 1
    report = json.loads(as_json.stdout)
    assert report["result"] == "invalid"
    assert report["problems"] == [{"kind": "entry", "seq": 2, "reason": "entry hash mismatch (row modified)"}]
    runs = [e for e in await entries(database) if e.action == "audit.verify"]
    assert [e.outcome for e in runs] == ["ok", "invalid", "invalid"]
    assert runs[0].actor_id.startswith("cli:")
