"""Retention by crypto-shredding, on a frozen clock and both databases: past retention → erased
(the API answers 410 `erased` and shows why); within retention or on legal hold → untouched;
statistics and the audit chain survive; and no byte of what was shredded — wrapped data keys,
ciphertexts, blind-index values — is left in any column, nor in the SQLite file and WAL after a
checkpoint and VACUUM."""

from __future__ import annotations

import base64
import sqlite3
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.engine import make_url

from app.audit.service import Actor
from app.audit.verify import verify_chain
from app.callers.models import Caller
from app.callers.service import find_or_create_caller
from app.cases.models import Case, CaseNote, CaseStatus
from app.cases.service import add_note, create_case
from app.keys.models import DataKeyRecord
from app.retention import service as retention
from app.retention.models import LegalHold
from tests.support.canary import find, scan_database
from tests.support.staff import sign_in, user_row

SETUP = Actor("cli:test")


@pytest.fixture(autouse=True)
def cheap_hashing(app: FastAPI) -> None:
    from app.accounts.passwords import Passwords

    app.state.auth.hasher.passwords = Passwords(time_cost=1, memory_cost=1024, allow_below_floor=True)


async def closed_case(app: FastAPI, phone: str, name: str, note: str, *, assignee: Any = None) -> str:
    user = await user_row(app, assignee.user_public_id) if assignee else None
    async with app.state.database.sessionmaker() as session:
        caller, _ = await find_or_create_caller(
            session, app.state.sealer, app.state.broker, app.state.clock, phone
        )
        case = await create_case(
            session,
            app.state.sealer,
            app.state.clock,
            actor=SETUP,
            language="es",
            category="detention",
            caller=caller,
            assignee=user,
            fields={"caller_name": name, "a_number": "A123456789"},
        )
        assert user is not None
        await add_note(session, app.state.sealer, app.state.clock, case, author=user, actor=SETUP, body=note)
        case.status, case.closed_at = CaseStatus.closed, app.state.clock.now()
        await session.commit()
        return case.public_id


async def secrets_of(app: FastAPI, public_id: str) -> list[bytes]:
    """Every stored byte string that must vanish with the case and its caller."""
    async with app.state.database.sessionmaker() as session:
        case = (await session.scalars(select(Case).where(Case.public_id == public_id))).one()
        caller = await session.get(Caller, case.caller_id)
        assert caller is not None and caller.phone is not None and caller.phone_index
        notes = list(await session.scalars(select(CaseNote).where(CaseNote.case_id == case.id)))
        keys = list(
            await session.scalars(
                select(DataKeyRecord).where(DataKeyRecord.subject_id.in_([case.id, caller.id]))
            )
        )
        values = [
            case.caller_name.blob,  # type: ignore[union-attr]
            case.a_number.blob,  # type: ignore[union-attr]
            caller.phone.blob,
            caller.phone_index.encode(),
            *(n.body.blob for n in notes if n.body is not None),
            *(k.wrapped for k in keys if k.wrapped),
        ]
        return values


def needles(values: list[bytes]) -> dict[str, list[bytes]]:
    # Long enough to be unique; the hex and base64 forms too (how drivers and dumps render bytes).
    found: dict[str, list[bytes]] = {}
    for index, value in enumerate(values):
        middle = value[8:40] if len(value) > 40 else value
        found[f"secret{index}"] = [middle, middle.hex().encode(), base64.b64encode(middle)[:24]]
    return found


async def vacuumed_file_hits(app: FastAPI, wanted: dict[str, list[bytes]]) -> list[str]:
    database = app.state.database
    if not database.is_sqlite:
        return []
    path = Path(make_url(str(database.engine.url)).database or "")
    await database.engine.dispose()
    plain = sqlite3.connect(path)
    try:
        plain.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        plain.execute("VACUUM")
        plain.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        plain.close()
    hits = []
    for suffix in ("", "-wal", "-journal"):
        candidate = Path(str(path) + suffix)
        if candidate.exists():
            hits += find(candidate.read_bytes(), wanted, candidate.name)
    return hits


async def test_past_retention_is_shredded_within_or_on_hold_is_not(app: FastAPI) -> None:
    volunteer = await sign_in(app)
    supervisor = await sign_in(app, roles="supervisor")
    old = await closed_case(app, "+12025550111", "Zqx Old Name", "Zqx old note", assignee=volunteer)
    held = await closed_case(app, "+12025550122", "Zqx Held Name", "Zqx held note", assignee=volunteer)
    placed = await supervisor.http.post(
        "/api/v1/holds",
        json={"case": held, "reason": "pending federal proceeding"},
        headers=supervisor.headers(),
    )
    assert placed.status_code == 201, placed.text
    app.state.clock.advance(timedelta(days=800))
    recent = await closed_case(app, "+12025550133", "Zqx Recent Name", "Zqx recent note", assignee=volunteer)
    before = await secrets_of(app, old)
    kept = await secrets_of(app, held) + await secrets_of(app, recent)
    policy = retention.Policy.from_settings(app.state.settings)

    dry = await retention.purge(app.state.database, app.state.clock, policy, dry_run=True)
    assert dry["case.case_content"] == 1 and dry["caller.caller_identity"] == 1
    assert "Zqx" not in repr(dry)
    progress: list[tuple[int, int]] = []
    shredded = await retention.purge(
        app.state.database, app.state.clock, policy, progress=lambda d, t: progress.append((d, t))
    )
    assert shredded == dry and progress[-1][0] == progress[-1][1]
    assert await retention.purge(app.state.database, app.state.clock, policy) == {}  # nothing left

    # The API says so, and reveals nothing; the others are untouched.
    volunteer = await sign_in(app)  # sessions of 800 days ago have expired
    supervisor = await sign_in(app, roles="supervisor")
    volunteer_id = (await user_row(app, volunteer.user_public_id)).id
    for case_id in (old, held, recent):
        async with app.state.database.sessionmaker() as session, session.begin():
            case = (await session.scalars(select(Case).where(Case.public_id == case_id))).one()
            case.assignee_id = volunteer_id
    detail = (await volunteer.http.get(f"/api/v1/cases/{old}")).json()
    assert detail["erased"] == "retention" and detail["sealed_fields"] == []
    assert detail["caller"]["erased"] == "retention" and detail["caller"]["phone_last2"] is None
    assert detail["status"] == "closed" and detail["category"] == "detention" and detail["language"] == "es"
    gone = await volunteer.http.post(
        f"/api/v1/cases/{old}/reveal",
        json={"fields": ["caller_name"], "purpose": "follow_up"},
        headers=volunteer.headers(),
    )
    assert gone.status_code == 410 and gone.json()["error"]["code"] == "erased"
    assert "retention" in gone.json()["error"]["message"]
    for case_id, name in ((held, "Zqx Held Name"), (recent, "Zqx Recent Name")):
        shown = await volunteer.http.post(
            f"/api/v1/cases/{case_id}/reveal",
            json={"fields": ["caller_name", "notes"], "purpose": "follow_up"},
            headers=volunteer.headers(),
        )
        assert shown.status_code == 200 and shown.json()["values"]["caller_name"] == name

    # The audit chain still verifies; the shred entries name ids, never content.
    async with app.state.database.engine.connect() as conn:
        report = await verify_chain(conn, app.state.keys.material.checkpoint_verifier())
    assert report.ok, report.problems

    # Not a byte of the shredded values anywhere: every column, then the file and WAL.
    gone_needles = needles(before)
    assert await scan_database(app.state.database, gone_needles) == []
    still = needles(kept)
    assert await scan_database(app.state.database, still) != []  # the scan does see live data
    assert await vacuumed_file_hits(app, gone_needles) == []


async def test_a_released_hold_lets_retention_run(app: FastAPI) -> None:
    volunteer = await sign_in(app)
    supervisor = await sign_in(app, roles="supervisor")
    held = await closed_case(app, "+12025550144", "Zqx Name", "Zqx note", assignee=volunteer)
    placed = await supervisor.http.post(
        "/api/v1/holds",
        json={"case": held, "scope": "caller", "reason": "pending federal proceeding"},
        headers=supervisor.headers(),
    )
    assert placed.status_code == 201
    app.state.clock.advance(timedelta(days=800))
    policy = retention.Policy.from_settings(app.state.settings)
    assert await retention.purge(app.state.database, app.state.clock, policy) == {}
    supervisor = await sign_in(app, roles="supervisor")
    released = await supervisor.http.post(
        f"/api/v1/holds/{placed.json()['id']}/release", headers=supervisor.headers()
    )
    assert released.status_code == 200 and released.json()["released_at"]
    assert await retention.purge(app.state.database, app.state.clock, policy) != {}
    async with app.state.database.sessionmaker() as session:
        hold = (await session.scalars(select(LegalHold))).one()
        assert hold.reason is not None  # the hold's own record stays


async def test_bad_hold_requests_change_nothing(app: FastAPI) -> None:
    supervisor = await sign_in(app, roles="supervisor")
    volunteer = await sign_in(app)
    for payload in (
        {"case": "HX-0000-0000", "reason": "pending federal proceeding"},
        {"case": "not-an-id", "reason": "pending federal proceeding"},
        {"case": "HX-0000-0000", "reason": "short"},
        {"case": "HX-0000-0000", "reason": "pending\x00proceeding"},
        {"case": "HX-0000-0000", "scope": "everyone", "reason": "pending federal proceeding"},
        {"reason": "pending federal proceeding"},
    ):
        answer = await supervisor.http.post("/api/v1/holds", json=payload, headers=supervisor.headers())
        assert answer.status_code in (404, 422), (payload, answer.status_code)
    denied = await volunteer.http.post(
        "/api/v1/holds", json={"case": "HX-0000-0000", "reason": "x" * 20}, headers=volunteer.headers()
    )
    assert denied.status_code == 403
    async with app.state.database.sessionmaker() as session:
        assert list(await session.scalars(select(LegalHold))) == []


def test_the_purge_command_dry_runs_then_shreds(tmp_path: Path, test_databases: Any) -> None:
    """`hotline retention purge --dry-run` counts per kind and class; without it, shreds."""
    from tests.support.cli import hotline

    url = test_databases.empty("retention-cli")
    env = {"HOTLINE_DATABASE_URL": url, "HOTLINE_KEYRING_FILE": str(tmp_path / "keys.json")}
    refused = hotline("retention", "purge", "--dry-run", cwd=tmp_path, env=env)
    assert refused.returncode == 2 and "hotline db upgrade" in refused.stderr
    assert hotline("db", "upgrade", cwd=tmp_path, env=env).returncode == 0
    dry = hotline("retention", "purge", "--dry-run", cwd=tmp_path, env=env)
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.strip() == "hotline: nothing due"
    done = hotline("retention", "purge", cwd=tmp_path, env=env)
    assert done.returncode == 0 and done.stdout.strip() == "hotline: nothing shredded"
