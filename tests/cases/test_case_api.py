"""The case API end to end: visibility, reveal auditing, intake validation, break-glass, exports."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from fastapi import FastAPI
from sqlalchemy import select

from app.access.models import BreakGlassGrant
from app.audit.models import AuditEntry
from app.audit.service import Actor
from app.cases.service import create_case
from app.jobs.runner import JobRunner, registry
from tests.support.canary import CanaryScan, LogCapture
from tests.support.staff import SignedInClient, next_code, sign_in, user_row

SETUP = Actor("cli:test")


@pytest.fixture(autouse=True)
def cheap_hashing(app: FastAPI) -> None:
    from app.accounts.passwords import Passwords

    app.state.auth.hasher.passwords = Passwords(time_cost=1, memory_cost=1024, allow_below_floor=True)


async def new_case(app: FastAPI, assignee: SignedInClient | None, **fields: str) -> str:
    async with app.state.database.sessionmaker() as session, session.begin():
        user = await user_row(app, assignee.user_public_id) if assignee else None
        case = await create_case(
            session,
            app.state.sealer,
            app.state.clock,
            actor=SETUP,
            language="es",
            category="detention",
            assignee=user,
            fields=fields,
        )
        return case.public_id


async def entries(app: FastAPI, action: str | None = None) -> list[AuditEntry]:
    async with app.state.database.sessionmaker() as session:
        query = select(AuditEntry).order_by(AuditEntry.seq)
        if action:
            query = query.where(AuditEntry.action == action)
        return list(await session.scalars(query))


async def test_lists_show_metadata_only_and_respect_assignment(app: FastAPI) -> None:
    volunteer = await sign_in(app)
    supervisor = await sign_in(app, roles="supervisor")
    mine = await new_case(app, volunteer, caller_name="Ana Canary")
    await new_case(app, None, caller_name="Someone Else")
    own = (await volunteer.http.get("/api/v1/cases")).json()
    assert [c["id"] for c in own["items"]] == [mine] and own["total"] == 1
    everything = (await supervisor.http.get("/api/v1/cases", params={"page_size": 1})).json()
    assert everything["total"] == 2 and len(everything["items"]) == 1
    filtered = (
        await supervisor.http.get("/api/v1/cases", params={"assignee": volunteer.user_public_id})
    ).json()
    assert [c["id"] for c in filtered["items"]] == [mine]
    detail = await volunteer.http.get(f"/api/v1/cases/{mine}")
    assert detail.json()["sealed_fields"] == ["caller_name"] and "Ana" not in detail.text
    bad = await supervisor.http.get("/api/v1/cases", params={"status": "bogus", "page_size": 0})
    assert bad.status_code == 422 and "bogus" not in bad.text


async def test_each_reveal_is_one_audit_entry_naming_the_fields(app: FastAPI) -> None:
    volunteer = await sign_in(app)
    case = await new_case(app, volunteer, caller_name="Ana Canary", a_number="A012345678")
    await volunteer.http.post(
        f"/api/v1/cases/{case}/notes", json={"body": "first note"}, headers=volunteer.headers()
    )
    before = len(await entries(app))
    response = await volunteer.http.post(
        f"/api/v1/cases/{case}/reveal",
        json={"fields": ["caller_name", "a_number"], "purpose": "intake"},
        headers=volunteer.headers(),
    )
    assert response.status_code == 200
    assert response.json()["values"] == {"caller_name": "Ana Canary", "a_number": "A012345678"}
    new = (await entries(app))[before:]
    assert [(e.action, e.fields, e.purpose) for e in new] == [
        ("case.reveal", "a_number,caller_name", "intake")
    ]
    notes = await volunteer.http.post(
        f"/api/v1/cases/{case}/reveal",
        json={"fields": ["notes"], "purpose": "follow_up"},
        headers=volunteer.headers(),
    )
    assert [n["body"] for n in notes.json()["notes"]] == ["first note"]
    assert [(e.action, e.fields) for e in (await entries(app))[before + 1 :]] == [("case.reveal", "notes")]


async def test_a_reveal_of_fields_notes_and_draft_is_one_audit_entry_and_one_commit(app: FastAPI) -> None:
    """The design promises one entry per reveal, whatever the mix (it used to write up to three
    and commit three times)."""
    from sqlalchemy import event

    volunteer = await sign_in(app)
    case = await new_case(app, volunteer, caller_name="Ana Canary", a_number="A012345678")
    for body in ("first note", "second note"):
        await volunteer.http.post(
            f"/api/v1/cases/{case}/notes", json={"body": body}, headers=volunteer.headers()
        )
    saved = await volunteer.http.put(
        f"/api/v1/cases/{case}/draft", json={"fields": {"caller_name": "Ana C."}}, headers=volunteer.headers()
    )
    assert saved.status_code == 200, saved.text
    before = len(await entries(app))
    commits: list[int] = []

    def count_commit(_connection: object) -> None:
        commits.append(1)

    engine = app.state.database.engine.sync_engine
    event.listen(engine, "commit", count_commit)
    try:
        response = await volunteer.http.post(
            f"/api/v1/cases/{case}/reveal",
            json={"fields": ["caller_name", "notes", "draft"], "purpose": "intake"},
            headers=volunteer.headers(),
        )
    finally:
        event.remove(engine, "commit", count_commit)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["values"] == {"caller_name": "Ana Canary"}
    assert [n["body"] for n in body["notes"]] == ["first note", "second note"]
    assert body["draft"] == {"caller_name": "Ana C."}
    new = (await entries(app))[before:]
    assert [(e.action, e.fields, e.purpose, e.details) for e in new] == [
        ("case.reveal", "caller_name,draft,notes", "intake", {"count": 3})
    ]
    # The broker's commit of the audit entry, then the request's own (nothing left to write).
    assert len(commits) <= 2


async def test_intake_fields_are_validated_and_bad_input_changes_nothing(app: FastAPI) -> None:
    volunteer = await sign_in(app)
    case = await new_case(app, volunteer)
    ok = await volunteer.http.patch(
        f"/api/v1/cases/{case}",
        json={"fields": {"a_number": "a-12345678", "date_of_birth": "1990-02-03"}},
        headers=volunteer.headers(),
    )
    assert ok.status_code == 200 and set(ok.json()["sealed_fields"]) == {"a_number", "date_of_birth"}
    before = len(await entries(app))
    for payload in (
        {"fields": {"a_number": "B99"}},
        {"fields": {"date_of_birth": "03/02/1990"}},
        {"fields": {"callback_number": "call me maybe"}},
        {"fields": {"unknown": "x"}},
        {"urgency": "whenever"},
        {"category": "nonsense_category"},
    ):
        response = await volunteer.http.patch(
            f"/api/v1/cases/{case}", json=payload, headers=volunteer.headers()
        )
        assert response.status_code == 422, payload
        assert "B99" not in response.text and "call me maybe" not in response.text
        assert "Traceback" not in response.text and "SELECT" not in response.text
    assert len(await entries(app)) == before
    revealed = await volunteer.http.post(
        f"/api/v1/cases/{case}/reveal",
        json={"fields": ["a_number"], "purpose": "intake"},
        headers=volunteer.headers(),
    )
    assert revealed.json()["values"]["a_number"] == "A012345678"
    closed = await volunteer.http.patch(
        f"/api/v1/cases/{case}", json={"status": "closed"}, headers=volunteer.headers()
    )
    assert closed.status_code == 200
    reopen = await volunteer.http.patch(
        f"/api/v1/cases/{case}", json={"status": "referred"}, headers=volunteer.headers()
    )
    assert reopen.status_code == 409


async def test_break_glass_grants_time_boxed_access_and_seals_the_reason(app: FastAPI) -> None:
    volunteer = await sign_in(app)
    supervisor = await sign_in(app, roles="supervisor")
    reviewer = await sign_in(app, roles="supervisor")
    case = await new_case(app, volunteer, caller_name="Ana Canary")
    reveal = {"fields": ["caller_name"], "purpose": "break_glass"}
    assert (
        await supervisor.http.post(f"/api/v1/cases/{case}/reveal", json=reveal, headers=supervisor.headers())
    ).status_code == 404
    short = await supervisor.http.post(
        f"/api/v1/cases/{case}/break-glass",
        json={"reason": "too short", "totp": "123456"},
        headers=supervisor.headers(),
    )
    assert short.status_code == 422
    reason = "Volunteer unreachable; caller reports detention in progress right now"
    wrong = await supervisor.http.post(
        f"/api/v1/cases/{case}/break-glass",
        json={"reason": reason, "totp": "000000"},
        headers=supervisor.headers(),
    )
    assert wrong.status_code == 401
    granted = await supervisor.http.post(
        f"/api/v1/cases/{case}/break-glass",
        json={"reason": reason, "totp": next_code(app, supervisor.secret)},
        headers=supervisor.headers(),
    )
    assert granted.status_code == 201
    grant_id = granted.json()["id"]
    opened = await supervisor.http.post(
        f"/api/v1/cases/{case}/reveal", json=reveal, headers=supervisor.headers()
    )
    assert opened.json()["values"] == {"caller_name": "Ana Canary"}
    glass = await entries(app, "case.break_glass")
    assert [e.outcome for e in glass] == ["denied", "ok"] and glass[1].value_hash
    assert all("detention" not in json.dumps(e.details) for e in await entries(app))
    async with app.state.database.sessionmaker() as session:
        stored = (await session.scalars(select(BreakGlassGrant))).one()
        assert b"detention" not in stored.reason.blob
    # Reviews: listed, not by oneself, once.
    pending = (await reviewer.http.get("/api/v1/break-glass/reviews")).json()
    assert [g["id"] for g in pending] == [grant_id]
    own = await supervisor.http.post(
        f"/api/v1/break-glass/reviews/{grant_id}", json={"outcome": "justified"}, headers=supervisor.headers()
    )
    assert own.status_code == 409
    done = await reviewer.http.post(
        f"/api/v1/break-glass/reviews/{grant_id}", json={"outcome": "justified"}, headers=reviewer.headers()
    )
    assert done.status_code == 200 and done.json()["reviewed_by"] == reviewer.user_public_id
    assert (await reviewer.http.get("/api/v1/break-glass/reviews")).json() == []
    app.state.clock.advance(timedelta(minutes=31))
    await supervisor.http.get("/api/v1/auth/me")  # keep the session alive is not enough:
    expired = await supervisor.http.post(
        f"/api/v1/cases/{case}/reveal", json=reveal, headers=supervisor.headers()
    )
    assert expired.status_code in (401, 404)


async def test_audit_export_needs_a_fresh_step_up_and_is_audited(app: FastAPI) -> None:
    supervisor = await sign_in(app, roles="supervisor")
    app.state.clock.advance(timedelta(minutes=6))
    refused = await supervisor.http.post("/api/v1/audit/exports", json={}, headers=supervisor.headers())
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "step_up_required"
    await supervisor.http.post(
        "/api/v1/auth/step-up", json={"totp": next_code(app, supervisor.secret)}, headers=supervisor.headers()
    )
    exported = await supervisor.http.post(
        "/api/v1/audit/exports", json={"action": "auth.login"}, headers=supervisor.headers()
    )
    assert exported.status_code == 200 and exported.headers["content-type"].startswith("text/csv")
    lines = exported.text.strip().splitlines()
    assert lines[0].startswith("seq,ts,actor") and len(lines) >= 2
    assert len(await entries(app, "audit.exported")) == 1


async def test_verification_runs_in_the_background(app: FastAPI) -> None:
    supervisor = await sign_in(app, roles="supervisor")
    requested = await supervisor.http.post("/api/v1/audit/verifications", headers=supervisor.headers())
    assert requested.status_code == 202 and requested.json()["state"] == "queued"
    runner = JobRunner(app.state.database, app.state.clock, registry=registry, services=app.state.services)
    await runner.run_until_idle()
    latest = (await supervisor.http.get("/api/v1/audit/verifications/latest")).json()
    assert latest["state"] == "ok" and latest["entries_checked"] > 5 and latest["problems"] == []


async def test_disabling_a_user_ends_their_sessions_at_once(app: FastAPI) -> None:
    admin = await sign_in(app, roles="admin")
    volunteer = await sign_in(app)
    assert (await volunteer.http.get("/api/v1/auth/me")).status_code == 200
    disabled = await admin.http.post(
        f"/api/v1/users/{volunteer.user_public_id}/disable", headers=admin.headers()
    )
    assert disabled.status_code == 200
    assert (await volunteer.http.get("/api/v1/auth/me")).status_code == 401


async def test_new_routes_leak_no_plaintext(app: FastAPI, captured_logs: LogCapture) -> None:
    scan = CanaryScan(app.state.database, captured_logs)
    c = scan.canaries
    volunteer = await sign_in(app)
    supervisor = await sign_in(app, roles="supervisor")
    case = await new_case(app, volunteer)
    responses = []
    responses.append(
        await volunteer.http.patch(
            f"/api/v1/cases/{case}",
            json={
                "fields": {
                    "caller_name": c.name,
                    "a_number": c.a_number,
                    "detention_facility": c.facility,
                    "callback_number": c.phone(0),
                    "code_word": c.code_word,
                }
            },
            headers=volunteer.headers(),
        )
    )
    responses.append(
        await volunteer.http.post(
            f"/api/v1/cases/{case}/notes", json={"body": c.note}, headers=volunteer.headers()
        )
    )
    responses.append(await volunteer.http.get(f"/api/v1/cases/{case}"))
    responses.append(await volunteer.http.get("/api/v1/cases"))
    responses.append(
        await supervisor.http.post(
            f"/api/v1/cases/{case}/break-glass",
            json={"reason": f"urgent: {c.name} at {c.facility}", "totp": next_code(app, supervisor.secret)},
            headers=supervisor.headers(),
        )
    )
    responses.append(await supervisor.http.get("/api/v1/audit", params={"case": case}))
    responses.append(await supervisor.http.get("/api/v1/break-glass/reviews"))
    # Invalid input carrying canaries must not be echoed.
    responses.append(
        await volunteer.http.patch(
            f"/api/v1/cases/{case}", json={"fields": {"a_number": c.name}}, headers=volunteer.headers()
        )
    )
    responses.append(
        await volunteer.http.post(
            "/api/v1/auth/login", json={"email": c.name, "password": c.note, "totp": "1"}
        )
    )
    scan.responses = [r.content for r in responses]
    revealed = await volunteer.http.post(
        f"/api/v1/cases/{case}/reveal",
        json={"fields": ["caller_name", "notes"], "purpose": "intake"},
        headers=volunteer.headers(),
    )
    assert c.name in revealed.text  # the one sanctioned path to plaintext
    assert await scan.hits() == []
    access = [json.loads(line) for line in captured_logs.lines if '"logger": "hotline.http"' in line]
    routes = {entry["route"] for entry in access}
    assert "/cases/{case_id}" in routes and not any(case in route for route in routes)
