"""Canaries planted through this issue's services appear nowhere: database, WAL, logs, outputs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from app.access.policy import Principal, Purpose
from app.callers.service import find_or_create_caller
from app.cases.service import add_note, update_fields
from app.contacts.models import Channel
from app.contacts.service import contact_by_sid, create_contact
from app.db.engine import Database
from tests.support.canary import CanaryScan, LogCapture
from tests.support.factories import Services, make_case, make_user, principal_of, staff_reveal

ROOT = Path(__file__).resolve().parents[2]


async def test_services_leave_no_plaintext_anywhere(
    services: Services,
    database: Database,
    captured_logs: LogCapture,
    fresh_database_url: str,
    tmp_path: Path,
) -> None:
    scan = CanaryScan(database, captured_logs)
    c = scan.canaries
    async with database.sessionmaker() as session, session.begin():
        volunteer = await make_user(session, services, phone=c.phone(1))
        caller, seen = await find_or_create_caller(
            session, services.sealer, services.broker, services.clock, c.phone(0)
        )
        assert caller is not None and not seen
        case = await make_case(
            session,
            services,
            assignee=volunteer,
            fields={
                "caller_name": c.name,
                "a_number": c.a_number,
                "detention_facility": c.facility,
                "code_word": c.code_word,
                "callback_number": c.phone(0),
            },
        )
        case.caller_id = caller.id
        await add_note(
            session,
            services.sealer,
            services.clock,
            case,
            author=volunteer,
            actor=principal_of(volunteer).actor,
            body=c.note,
        )
        await update_fields(
            session,
            services.sealer,
            services.clock,
            case,
            actor=principal_of(volunteer).actor,
            fields={"country_of_origin": c.name},
        )
        await create_contact(
            session, services.sealer, services.clock, channel=Channel.voice, twilio_sid=c.sid, caller=caller
        )
        case_id, volunteer_principal = case.public_id, principal_of(volunteer)
    # Repeat caller recognised through the blind index, and every read path exercised.
    async with database.sessionmaker() as session:
        again, seen = await find_or_create_caller(
            session, services.sealer, services.broker, services.clock, c.phone(0)
        )
        assert seen and again is not None and again.id == caller.id
        await session.commit()
        assert await contact_by_sid(session, services.keys, c.sid) is not None
        from sqlalchemy import select

        from app.cases.models import Case

        loaded = (await session.scalars(select(Case).where(Case.public_id == case_id))).one()
        revealed = await staff_reveal(
            services.broker,
            session,
            volunteer_principal,
            loaded,
            ["caller_name", "a_number", "detention_facility"],
            Purpose.intake,
        )
        assert revealed.values["caller_name"] == c.name
        loaded = (await session.scalars(select(Case).where(Case.public_id == case_id))).one()
        assert (
            await services.broker.reveal_for_system(
                session,
                Principal.system("code-word"),
                loaded,
                "code_word",
                purpose=Purpose.code_word_check,
                object_type="case",
                object_id=case_id,
            )
            == c.code_word
        )
    # The host command path: `hotline users add` with a canary phone number.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HOTLINE_", "TWILIO_"))}
    env.update(
        PYTHONPATH=str(ROOT),
        HOTLINE_DATABASE_URL=fresh_database_url,
        HOTLINE_KEYRING_FILE=str(tmp_path / "keys.json"),
        HOTLINE_LOG_LEVEL="DEBUG",
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "app.cli",
            "users",
            "add",
            "--email",
            "canary@example.org",
            "--name",
            "Staff Member",
            "--roles",
            "volunteer",
            "--phone",
            c.phone(2),
        ],
        env=env,
        capture_output=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    scan.outputs += [result.stdout, result.stderr]
    assert await scan.hits() == []


def test_the_scanner_finds_a_planted_leak(tmp_path: Path) -> None:
    from tests.support.canary import Canaries, find

    c = Canaries()
    needles = c.needles()
    assert find(f"log line with {c.phone(0)[1:]} in it".encode(), needles, "x")
    assert find(c.name.encode("utf-16-le"), needles, "x")
    assert not find(b"nothing to see", needles, "x")
