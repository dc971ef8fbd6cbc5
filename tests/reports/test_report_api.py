"""Reading an anonymous report: the facts come back only to the volunteer the report case is
assigned to (or a supervisor under break-glass), through one audited batch; the recording is
listed, not returned; nobody else can even see the case."""

from __future__ import annotations

import re

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from app.audit.models import AuditEntry
from app.reports.models import Report
from tests.chats.test_messaging_webhooks import message_params, post
from tests.support.staff import sign_in

FACTS = "ICE agents at the bus stop on Roosevelt Ave, Jackson Heights, 7am today"


@pytest.fixture(autouse=True)
def cheap_hashing(app: FastAPI) -> None:
    from app.accounts.passwords import Passwords

    app.state.auth.hasher.passwords = Passwords(time_cost=1, memory_cost=1024, allow_below_floor=True)


async def test_the_assigned_volunteer_reads_the_report_once_audited(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    settings = app.state.settings
    filed = await post(client, settings, "/twilio/messaging/incoming", message_params(f"REPORT 2 {FACTS}"))
    code = re.search(r"\b(\d{10})\b", filed.text)
    assert code is not None
    added = await post(
        client,
        settings,
        "/twilio/messaging/incoming",
        message_params(f"REPORT {code.group(1)} three of them"),
    )
    assert "added" in added.text
    async with app.state.database.sessionmaker() as session:
        report = (await session.scalars(select(Report))).one()
        from app.cases.models import Case

        case_id = (await session.get(Case, report.case_id)).public_id  # type: ignore[union-attr]
    volunteer = await sign_in(app)
    other = await sign_in(app)
    supervisor = await sign_in(app, roles="supervisor")
    listed = (await supervisor.http.get("/api/v1/cases")).json()["items"]
    assert [c["category"] for c in listed if c["id"] == case_id] == ["enforcement_report"]
    assigned = await supervisor.http.patch(
        f"/api/v1/cases/{case_id}", json={"assignee": volunteer.user_public_id}, headers=supervisor.headers()
    )
    assert assigned.status_code == 200, assigned.text

    # A report names nobody: a supervisor reads it with a stated purpose, audited, no break-glass.
    supervised = await supervisor.http.post(
        f"/api/v1/cases/{case_id}/report/reveal", json={"purpose": "follow_up"}, headers=supervisor.headers()
    )
    assert supervised.status_code == 200, supervised.text
    assert [e["text"] for e in supervised.json()["entries"]] == [FACTS, "three of them"]
    claimed = await supervisor.http.post(
        f"/api/v1/cases/{case_id}/report/reveal",
        json={"purpose": "break_glass"},
        headers=supervisor.headers(),
    )
    assert claimed.status_code == 404  # break-glass claimed without a grant: refused, audited
    unseen = await other.http.post(
        f"/api/v1/cases/{case_id}/report/reveal", json={"purpose": "follow_up"}, headers=other.headers()
    )
    assert unseen.status_code == 404
    bad = await volunteer.http.post(
        f"/api/v1/cases/{case_id}/report/reveal", json={"purpose": "curiosity"}, headers=volunteer.headers()
    )
    assert bad.status_code == 422
    shown = await volunteer.http.post(
        f"/api/v1/cases/{case_id}/report/reveal", json={"purpose": "follow_up"}, headers=volunteer.headers()
    )
    assert shown.status_code == 200, shown.text
    body = shown.json()
    assert body["category"] == "enforcement_report" and body["additions"] == 1
    assert [(e["source"], e["text"]) for e in body["entries"]] == [
        ("report", FACTS),
        ("addition", "three of them"),
    ]
    async with app.state.database.sessionmaker() as session:
        actions = [
            e.action
            for e in await session.scalars(select(AuditEntry).where(AuditEntry.action == "report.reveal"))
        ]
        outcomes = [
            e.outcome
            for e in await session.scalars(select(AuditEntry).where(AuditEntry.action == "report.reveal"))
        ]
    assert actions.count("report.reveal") == 3 and sorted(outcomes) == ["denied", "ok", "ok"]
