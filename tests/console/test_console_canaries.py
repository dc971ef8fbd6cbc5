"""Canaries typed through the console's routes (drafts, intake, notes, chat-free pages, the event
stream) appear nowhere: not in the database in the clear, the logs, or any page or fragment the
console renders — only in the audited reveal."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import FastAPI

from app.db.engine import Database
from tests.console.test_pages import make_assigned_case
from tests.support.canary import CanaryScan, LogCapture
from tests.support.staff import next_code, sign_in


async def test_console_routes_leak_no_plaintext(
    make_settings: Any, clock: Any, database: Database, captured_logs: LogCapture
) -> None:
    from app.main import create_app

    settings = make_settings(events_keepalive_seconds=0.1, events_max_seconds=1.0)
    app = create_app(settings, clock=clock, database=database, run_jobs=False)
    async with app.router.lifespan_context(app):
        await run_scenario(app, captured_logs)


async def run_scenario(app: FastAPI, captured_logs: LogCapture) -> None:
    scan = CanaryScan(app.state.database, captured_logs)
    c = scan.canaries
    volunteer = await sign_in(app)
    supervisor = await sign_in(app, roles="supervisor")
    case = await make_assigned_case(app, volunteer.user_public_id)
    stream = asyncio.create_task(volunteer.http.get("/api/v1/events"))
    responses = [
        await volunteer.http.put(
            f"/api/v1/cases/{case}/draft",
            json={"fields": {"caller_name": c.name, "a_number": c.a_number, "note": c.note}},
            headers=volunteer.headers(),
        ),
        await volunteer.http.patch(
            f"/api/v1/cases/{case}",
            json={"fields": {"detention_facility": c.facility, "code_word": c.code_word}},
            headers=volunteer.headers(),
        ),
        await volunteer.http.put(
            f"/api/v1/cases/{case}/draft",
            json={"fields": {"callback_number": c.phone(0)}},
            headers=volunteer.headers(),
        ),
        await volunteer.http.post(
            f"/api/v1/cases/{case}/notes", json={"body": c.note}, headers=volunteer.headers()
        ),
        await supervisor.http.post(
            f"/api/v1/cases/{case}/break-glass",
            json={"reason": f"urgent: {c.name} at {c.facility}", "totp": next_code(app, supervisor.secret)},
            headers=supervisor.headers(),
        ),
    ]
    for path in ("/console", f"/console/cases/{case}", "/console/fragments/offers"):
        responses.append(await volunteer.http.get(path))
    for path in (
        "/console/board",
        "/console/fragments/board",
        f"/console/cases/{case}",
        "/console/cases",
        f"/console/audit?case={case}",
        "/console/break-glass",
        "/console/schedule",
        "/console/users",
    ):
        page = await supervisor.http.get(path)
        assert page.status_code == 200, path
        responses.append(page)
    responses.append(await stream)
    scan.responses = [r.content for r in responses]
    revealed = await volunteer.http.post(
        f"/api/v1/cases/{case}/reveal",
        json={"fields": ["detention_facility", "notes", "draft"], "purpose": "intake"},
        headers=volunteer.headers(),
    )
    assert c.facility in revealed.text and c.phone(0) in revealed.text  # the sanctioned path
    assert await scan.hits() == []
    for staff in (volunteer, supervisor):
        await staff.http.aclose()
