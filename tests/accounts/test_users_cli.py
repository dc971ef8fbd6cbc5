"""`hotline users …` on the host: clear one-line errors that change nothing, audited success."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from app.accounts.models import StaffSession, User, UserStatus
from app.audit.models import AuditEntry
from app.clock import FrozenClock
from app.db.engine import Database
from app.keys.models import DataKeyRecord
from app.main import StartupError, create_app
from tests.support.cli import hotline
from tests.support.factories import make_services

ROOT = Path(__file__).resolve().parents[2]


async def count(database: Database, model: type) -> int:
    async with database.sessionmaker() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def test_users_add_refuses_bad_input_and_changes_nothing(
    database: Database, fresh_database_url: str, clock: FrozenClock, tmp_path: Path
) -> None:
    make_services(database, clock, tmp_path / "keys.json")
    env = {"HOTLINE_DATABASE_URL": fresh_database_url, "HOTLINE_KEYRING_FILE": str(tmp_path / "keys.json")}
    base = ["users", "add", "--email", "ana@example.org", "--name", "Ana"]
    cases = [
        (["--roles", "wizard"], "Unknown role 'wizard'"),
        (["--roles", "volunteer", "--phone", "not a phone"], "cannot be dialled"),
        (["--roles", "volunteer", "--languages", "en,xx"], "unknown language code 'xx'"),
        (["--roles", "volunteer", "--timezone", "Mars/Olympus"], "Unknown time zone"),
        (["--roles", "volunteer", "--email", "not-an-email"], "Not an email address"),
    ]
    for extra, message in cases:
        args = base + extra if "--email" not in extra else ["users", "add", "--name", "Ana", *extra]
        result = hotline(*args, env=env, cwd=tmp_path)
        assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr, extra
    weak = hotline(
        *base, "--roles", "volunteer", "--password-stdin", env=env, cwd=tmp_path, stdin="password1\n"
    )
    assert weak.returncode == 2 and "password refused" in weak.stderr and "password1" not in weak.stderr
    assert await count(database, User) == 0
    ok = hotline(*base, "--roles", "volunteer,supervisor", "--phone", "+12125550100", env=env, cwd=tmp_path)
    assert ok.returncode == 0 and "/console/enroll#token=" in ok.stdout
    assert await count(database, User) == 1 and await count(database, DataKeyRecord) == 1
    async with database.sessionmaker() as session:
        created = (await session.scalars(select(AuditEntry).where(AuditEntry.action == "user.created"))).one()
    assert created.actor_id.startswith("cli:")


async def test_users_recovery_commands(
    database: Database, fresh_database_url: str, clock: FrozenClock, tmp_path: Path
) -> None:
    make_services(database, clock, tmp_path / "keys.json")
    env = {"HOTLINE_DATABASE_URL": fresh_database_url, "HOTLINE_KEYRING_FILE": str(tmp_path / "keys.json")}
    assert (
        hotline(
            "users",
            "add",
            "--email",
            "bo@example.org",
            "--name",
            "Bo",
            "--roles",
            "volunteer",
            env=env,
            cwd=tmp_path,
        ).returncode
        == 0
    )
    missing = hotline("users", "disable", "nobody@example.org", env=env, cwd=tmp_path)
    assert missing.returncode == 2 and "no staff account" in missing.stderr
    reset = hotline("users", "reset-mfa", "bo@example.org", env=env, cwd=tmp_path)
    assert reset.returncode == 0 and "enroll#token=" in reset.stdout
    assert hotline("users", "end-sessions", "bo@example.org", env=env, cwd=tmp_path).returncode == 0
    assert hotline("users", "disable", "bo@example.org", env=env, cwd=tmp_path).returncode == 0
    async with database.sessionmaker() as session:
        user = (await session.scalars(select(User))).one()
        actions = list(await session.scalars(select(AuditEntry.action).order_by(AuditEntry.seq)))
    assert user.status == UserStatus.disabled and user.sessions_valid_after is not None
    assert {"user.mfa_reset", "user.sessions_ended", "user.disabled"} <= set(actions)
    assert await count(database, StaffSession) == 0


async def test_startup_refuses_a_database_whose_keys_the_key_file_lacks(
    database: Database, make_settings: object, clock: FrozenClock, tmp_path: Path
) -> None:
    from tests.support.factories import make_case

    services = make_services(database, clock, tmp_path / "first.json")
    async with database.sessionmaker() as session, session.begin():
        await make_case(session, services, fields={"caller_name": "x"})
    from crypto.keyfile import create_key_file

    create_key_file(tmp_path / "other.json")
    settings = make_settings(keyring_file=str(tmp_path / "other.json"))  # type: ignore[operator]
    app = create_app(settings, clock=clock, database=database)
    with pytest.raises(StartupError, match=r"which the key file .* lacks"):
        async with app.router.lifespan_context(app):
            pass
