"""A caller's erasure request: found by number through the blind index (the audit names the caller's
id, never the number), approved by a second, distinct supervisor, then everything of theirs is
crypto-shredded and shown as "erased on request"; volunteers and admins cannot touch any of it."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from sqlalchemy import select

from app.audit.models import AuditEntry
from app.audit.service import Actor
from app.callers.models import Caller
from app.callers.service import find_or_create_caller
from app.cases.service import create_case
from app.contacts.models import Channel
from app.contacts.service import create_contact
from app.reports.models import TwilioCleanup
from tests.support.staff import sign_in, user_row

SETUP = Actor("cli:test")
PHONE = "+12025550177"
CALL_SID = "CA" + "7" * 32


@pytest.fixture(autouse=True)
def cheap_hashing(app: FastAPI) -> None:
    from app.accounts.passwords import Passwords

    app.state.auth.hasher.passwords = Passwords(time_cost=1, memory_cost=1024, allow_below_floor=True)


async def caller_with_cases(app: FastAPI, assignee: str) -> list[str]:
    user = await user_row(app, assignee)
    async with app.state.database.sessionmaker() as session:
        caller, _ = await find_or_create_caller(
            session, app.state.sealer, app.state.broker, app.state.clock, PHONE
        )
        cases = []
        for name in ("Zqx Erase Me", "Zqx Erase Me Too"):
            case = await create_case(
                session,
                app.state.sealer,
                app.state.clock,
                actor=SETUP,
                language="es",
                category="detention",
                caller=caller,
                assignee=user,
                fields={"caller_name": name},
            )
            cases.append(case.public_id)
        contact = await create_contact(
            session,
            app.state.sealer,
            app.state.clock,
            channel=Channel.voice,
            twilio_sid=CALL_SID,
            caller=caller,
        )
        contact.case_id = case.id
        await session.commit()
    return cases


async def test_erasure_needs_two_supervisors_and_erases_everything(app: FastAPI) -> None:
    volunteer = await sign_in(app)
    admin = await sign_in(app, roles="admin")
    first = await sign_in(app, roles="supervisor")
    second = await sign_in(app, roles="supervisor")
    cases = await caller_with_cases(app, volunteer.user_public_id)

    for outsider in (volunteer, admin):
        refused = await outsider.http.post(
            "/api/v1/erasures", json={"phone": PHONE}, headers=outsider.headers()
        )
        assert refused.status_code == 403
    unknown = await first.http.post(
        "/api/v1/erasures", json={"phone": "+12025550100"}, headers=first.headers()
    )
    assert unknown.status_code == 404
    bad = await first.http.post("/api/v1/erasures", json={"phone": "call me"}, headers=first.headers())
    assert bad.status_code == 422
    requested = await first.http.post("/api/v1/erasures", json={"phone": PHONE}, headers=first.headers())
    assert requested.status_code == 201 and requested.json()["state"] == "pending"
    request_id = requested.json()["id"]
    again = await first.http.post("/api/v1/erasures", json={"phone": PHONE}, headers=first.headers())
    assert again.json()["id"] == request_id  # one pending request per caller

    own = await first.http.post(f"/api/v1/erasures/{request_id}/approve", headers=first.headers())
    assert own.status_code == 409 and own.json()["error"]["code"] == "same_supervisor"
    for outsider in (volunteer, admin):
        refused = await outsider.http.post(
            f"/api/v1/erasures/{request_id}/approve", headers=outsider.headers()
        )
        assert refused.status_code == 403
    # Nothing is erased before the second supervisor approves.
    shown = await volunteer.http.post(
        f"/api/v1/cases/{cases[0]}/reveal",
        json={"fields": ["caller_name"], "purpose": "follow_up"},
        headers=volunteer.headers(),
    )
    assert shown.status_code == 200 and shown.json()["values"]["caller_name"] == "Zqx Erase Me"

    approved = await second.http.post(f"/api/v1/erasures/{request_id}/approve", headers=second.headers())
    assert approved.status_code == 200, approved.text
    assert approved.json()["state"] == "done" and approved.json()["shredded_subjects"] >= 4
    for case_id in cases:
        detail = (await volunteer.http.get(f"/api/v1/cases/{case_id}")).json()
        assert detail["erased"] == "request" and detail["caller"]["erased"] == "request"
        gone = await volunteer.http.post(
            f"/api/v1/cases/{case_id}/reveal",
            json={"fields": ["caller_name"], "purpose": "follow_up"},
            headers=volunteer.headers(),
        )
        assert gone.status_code == 410 and gone.json()["error"]["message"] == "Erased on request."
    twice = await second.http.post(f"/api/v1/erasures/{request_id}/approve", headers=second.headers())
    assert twice.status_code == 409

    async with app.state.database.sessionmaker() as session:
        caller = (await session.scalars(select(Caller))).one()
        assert caller.phone is None and caller.phone_index is None and caller.erased_reason == "request"
        # Twilio's record of the call is deleted through the jobs runner.
        assert [c.kind for c in await session.scalars(select(TwilioCleanup))] == ["call"]
        entries = list(await session.scalars(select(AuditEntry).order_by(AuditEntry.seq)))
    actions = [e.action for e in entries]
    assert "erasure.no_match" in actions and "erasure.requested" in actions and "erasure.approved" in actions
    assert actions.count("erasure.shred") >= 4
    requested_entry = next(e for e in entries if e.action == "erasure.requested")
    assert requested_entry.object_id == str(caller.id)
    dump = repr([(e.object_id, e.details, e.value_hash) for e in entries])
    assert PHONE not in dump and PHONE[2:] not in dump and PHONE[-7:] not in dump
