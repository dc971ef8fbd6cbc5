"""A caller's erasure request is blind until approved: one supervisor records a number and is told
the same thing (202, "recorded; needs a second supervisor") whether anyone called from it, nobody
did, or a legal hold keeps them; nothing is looked up. A second, distinct supervisor approves; only
then is the number matched through the blind index, holds checked and, unless held, everything of
the caller's crypto-shredded. The approver sees what was found, as counts; the request's own number
is shredded in every case. No audit entry names the caller or the number; volunteers and admins
cannot touch any of it."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from app.audit.models import AuditEntry
from app.audit.service import Actor
from app.callers.models import Caller
from app.callers.service import find_or_create_caller
from app.cases.service import create_case
from app.contacts.models import Channel
from app.contacts.service import create_contact
from app.db.base import Base
from app.keys.models import DataKeyRecord
from app.reports.models import TwilioCleanup
from app.retention.models import ErasureRequest
from tests.support.staff import SignedInClient, sign_in, user_row

SETUP = Actor("cli:test")
KNOWN = "+12025550177"
HELD = "+12025550178"
UNKNOWN = "+12025550179"
CALL_SID = "CA" + "7" * 32
PENDING = "Recorded; a second supervisor must approve it."


@pytest.fixture(autouse=True)
def cheap_hashing(app: FastAPI) -> None:
    from app.accounts.passwords import Passwords

    app.state.auth.hasher.passwords = Passwords(time_cost=1, memory_cost=1024, allow_below_floor=True)


async def caller_with_cases(app: FastAPI, assignee: str, phone: str, *, cases: int = 2) -> list[str]:
    """A caller with `cases` cases (one with a call recorded at Twilio); their public ids."""
    user = await user_row(app, assignee)
    async with app.state.database.sessionmaker() as session:
        caller, _ = await find_or_create_caller(
            session, app.state.sealer, app.state.broker, app.state.clock, phone
        )
        public = []
        for n in range(cases):
            case = await create_case(
                session,
                app.state.sealer,
                app.state.clock,
                actor=SETUP,
                language="es",
                category="detention",
                caller=caller,
                assignee=user,
                fields={"caller_name": f"Zqx Erase Me {n}"},
            )
            public.append(case.public_id)
        contact = await create_contact(
            session,
            app.state.sealer,
            app.state.clock,
            channel=Channel.voice,
            twilio_sid=CALL_SID if phone == KNOWN else "CA" + uuid.uuid4().hex,
            caller=caller,
        )
        contact.case_id = case.id
        await session.commit()
    return public


async def caller_row(app: FastAPI, phone_case: str) -> Caller:
    from app.cases.models import Case

    async with app.state.database.sessionmaker() as session:
        case = (await session.scalars(select(Case).where(Case.public_id == phone_case))).one()
        caller = await session.get(Caller, case.caller_id)
        assert caller is not None
        return caller


async def table_counts(app: FastAPI) -> dict[str, int]:
    async with app.state.database.sessionmaker() as session:
        return {
            table.name: int(await session.scalar(select(func.count()).select_from(table)) or 0)
            for table in Base.metadata.sorted_tables
        }


async def audit_since(app: FastAPI, seq: int) -> list[AuditEntry]:
    async with app.state.database.sessionmaker() as session:
        return list(
            await session.scalars(select(AuditEntry).where(AuditEntry.seq > seq).order_by(AuditEntry.seq))
        )


async def audit_head(app: FastAPI) -> int:
    async with app.state.database.sessionmaker() as session:
        return int(await session.scalar(select(func.max(AuditEntry.seq))) or 0)


def shape(entry: AuditEntry) -> tuple[Any, ...]:
    """An entry without its ids and times: what must not differ between requests."""
    return (
        entry.actor_id,
        entry.actor_roles,
        entry.action,
        entry.object_type,
        entry.fields,
        entry.purpose,
        entry.outcome,
        entry.value_hash,
        sorted(entry.details or {}),
    )


async def request(
    app: FastAPI, who: SignedInClient, phone: str
) -> tuple[httpx.Response, list[tuple[Any, ...]], dict[str, int]]:
    """Request an erasure; the answer, the shapes of the audit entries and the rows it wrote."""
    head, before = await audit_head(app), await table_counts(app)
    answer = await who.http.post("/api/v1/erasures", json={"phone": phone}, headers=who.headers())
    after = await table_counts(app)
    entries = await audit_since(app, head)
    assert all(e.object_id == answer.json()["id"] for e in entries if e.action.startswith("erasure."))
    return (
        answer,
        [shape(e) for e in entries],
        {t: after[t] - before[t] for t in after if after[t] != before[t]},
    )


async def test_requests_are_blind_and_the_approver_sees_the_outcome(app: FastAPI) -> None:
    volunteer = await sign_in(app)
    first = await sign_in(app, roles="supervisor")
    second = await sign_in(app, roles="supervisor")
    known_cases = await caller_with_cases(app, volunteer.user_public_id, KNOWN)
    held_cases = await caller_with_cases(app, volunteer.user_public_id, HELD, cases=1)
    # A hold on one of their cases keeps who the case is about: the caller is held too.
    hold = await second.http.post(
        "/api/v1/holds",
        json={"case": held_cases[0], "scope": "case", "reason": "pending federal proceeding"},
        headers=second.headers(),
    )
    assert hold.status_code == 201
    callers = {"known": await caller_row(app, known_cases[0]), "held": await caller_row(app, held_cases[0])}
    marker = await audit_head(app)

    answers, entries, rows = {}, {}, {}
    for name, phone in (("known", KNOWN), ("unknown", UNKNOWN), ("held", HELD)):
        answers[name], entries[name], rows[name] = await request(app, first, phone)
    bodies = {}
    for name, answer in answers.items():
        assert answer.status_code == 202, answer.text
        body = answer.json()
        assert body["id"].startswith("ER-") and body["state"] == "pending" and body["message"] == PENDING
        bodies[name] = {k: v for k, v in body.items() if k not in ("id", "requested_at")}
    # Identical answers, identical audit entries, identical rows written: nothing to tell them apart.
    assert bodies["known"] == bodies["unknown"] == bodies["held"]
    assert entries["known"] == entries["unknown"] == entries["held"]
    assert [e[2] for e in entries["known"]] == ["erasure.requested"]
    assert rows["known"] == rows["unknown"] == rows["held"]
    assert rows["known"] == {"erasure_requests": 1, "data_keys": 1, "audit_entries": 1}
    # Nothing is erased before the second supervisor approves.
    shown = await volunteer.http.post(
        f"/api/v1/cases/{known_cases[0]}/reveal",
        json={"fields": ["caller_name"], "purpose": "follow_up"},
        headers=volunteer.headers(),
    )
    assert shown.status_code == 200 and shown.json()["values"]["caller_name"] == "Zqx Erase Me 0"

    outcomes = {}
    for name, answer in answers.items():
        approved = await second.http.post(
            f"/api/v1/erasures/{answer.json()['id']}/approve", headers=second.headers()
        )
        assert approved.status_code == 200, approved.text
        body = approved.json()
        assert body["state"] == "processed" and body["approved_by"] == second.user_public_id
        outcomes[name] = body["outcome"]
    assert outcomes["known"] == {"matched": 1, "held": 0, "erased_cases": 2, "shredded_subjects": 4}
    assert outcomes["unknown"] == {"matched": 0, "held": 0, "erased_cases": 0, "shredded_subjects": 0}
    assert outcomes["held"] == {"matched": 1, "held": 1, "erased_cases": 0, "shredded_subjects": 0}

    for case_id in known_cases:
        detail = (await volunteer.http.get(f"/api/v1/cases/{case_id}")).json()
        assert detail["erased"] == "request" and detail["caller"]["erased"] == "request"
        gone = await volunteer.http.post(
            f"/api/v1/cases/{case_id}/reveal",
            json={"fields": ["caller_name"], "purpose": "follow_up"},
            headers=volunteer.headers(),
        )
        assert gone.status_code == 410 and gone.json()["error"]["message"] == "Erased on request."
    # The held caller keeps everything.
    kept = await volunteer.http.post(
        f"/api/v1/cases/{held_cases[0]}/reveal",
        json={"fields": ["caller_name"], "purpose": "follow_up"},
        headers=volunteer.headers(),
    )
    assert kept.status_code == 200 and kept.json()["values"]["caller_name"] == "Zqx Erase Me 0"

    # The list shows states, never what was found.
    listed = (await first.http.get("/api/v1/erasures")).json()["items"]
    assert sorted(item["id"] for item in listed) == sorted(a.json()["id"] for a in answers.values())
    assert {(item["state"], item["message"], item["outcome"]) for item in listed} == {
        ("processed", "Processed.", None)
    }

    async with app.state.database.sessionmaker() as session:
        known = await session.get(Caller, callers["known"].id)
        held = await session.get(Caller, callers["held"].id)
        assert known is not None and held is not None
        assert known.phone is None and known.phone_index is None and known.erased_reason == "request"
        assert held.phone is not None and held.phone_index is not None and held.erased_at is None
        # Twilio's record of the known caller's call is deleted through the jobs runner.
        assert [c.kind for c in await session.scalars(select(TwilioCleanup))] == ["call"]
        # Every request's number is gone: the column cleared, its data key destroyed.
        for row in await session.scalars(select(ErasureRequest)):
            assert row.state == "processed" and row.phone is None
            keys = list(
                await session.scalars(select(DataKeyRecord).where(DataKeyRecord.subject_id == row.id))
            )
            assert keys and all(k.wrapped is None and k.destroyed_at is not None for k in keys)

    entries_after = await audit_since(app, marker)
    actions = [e.action for e in entries_after]
    assert actions.count("erasure.requested") == 3
    assert actions.count("erasure.approved") == 3 and actions.count("erasure.processed") == 3
    assert actions.count("erasure.shred") == 4 + 3  # the known caller's subjects, each request's number
    processed = {e.object_id: e.details for e in entries_after if e.action == "erasure.processed"}
    assert processed == {a.json()["id"]: outcomes[name] for name, a in answers.items()}
    # Every reveal made for the erasure is logged under the request, not the caller.
    reveals = [e for e in entries_after if e.action == "system.reveal"]
    assert reveals and {e.object_type for e in reveals} == {"erasure"}
    assert {e.purpose for e in reveals} == {"erasure", "caller_match", "twilio_cleanup"}
    # No entry names either caller (row id in any form, or public id), or any of the numbers.
    forbidden = [KNOWN, HELD, UNKNOWN]
    forbidden += [x[1:] for x in forbidden] + [x[2:] for x in forbidden] + [x[-7:] for x in forbidden]
    for caller in callers.values():
        forbidden += [str(caller.id), caller.id.hex, caller.id.hex[:12], caller.public_id]
    dump = repr([(e.object_type, e.object_id, e.fields, e.details, e.value_hash) for e in entries_after])
    assert [x for x in forbidden if x in dump] == []


async def test_two_distinct_supervisors_and_nobody_else(app: FastAPI) -> None:
    volunteer = await sign_in(app)
    admin = await sign_in(app, roles="admin")
    first = await sign_in(app, roles="supervisor")
    second = await sign_in(app, roles="supervisor")
    cases = await caller_with_cases(app, volunteer.user_public_id, KNOWN, cases=1)

    for outsider in (volunteer, admin):
        refused = await outsider.http.post(
            "/api/v1/erasures", json={"phone": KNOWN}, headers=outsider.headers()
        )
        assert refused.status_code == 403
        assert (await outsider.http.get("/api/v1/erasures")).status_code == 403
    bad = await first.http.post("/api/v1/erasures", json={"phone": "call me"}, headers=first.headers())
    assert bad.status_code == 422 and "call me" not in bad.text
    # Two requests for one number are two requests: there is nothing to deduplicate on, blind.
    one = await first.http.post("/api/v1/erasures", json={"phone": KNOWN}, headers=first.headers())
    two = await first.http.post("/api/v1/erasures", json={"phone": KNOWN}, headers=first.headers())
    assert one.status_code == two.status_code == 202 and one.json()["id"] != two.json()["id"]

    own = await first.http.post(f"/api/v1/erasures/{one.json()['id']}/approve", headers=first.headers())
    assert own.status_code == 409 and own.json()["error"]["code"] == "same_supervisor"
    for outsider in (volunteer, admin):
        refused = await outsider.http.post(
            f"/api/v1/erasures/{one.json()['id']}/approve", headers=outsider.headers()
        )
        assert refused.status_code == 403
    missing = await second.http.post("/api/v1/erasures/ER-2222-2222/approve", headers=second.headers())
    assert missing.status_code == 404

    approved = await second.http.post(
        f"/api/v1/erasures/{one.json()['id']}/approve", headers=second.headers()
    )
    assert approved.status_code == 200 and approved.json()["outcome"]["erased_cases"] == 1
    twice = await second.http.post(f"/api/v1/erasures/{one.json()['id']}/approve", headers=second.headers())
    assert twice.status_code == 409 and twice.json()["error"]["code"] == "not_pending"
    # The second request finds nothing left: the number was erased with the caller.
    again = await second.http.post(f"/api/v1/erasures/{two.json()['id']}/approve", headers=second.headers())
    assert again.status_code == 200
    assert again.json()["outcome"] == {"matched": 0, "held": 0, "erased_cases": 0, "shredded_subjects": 0}
    detail = (await volunteer.http.get(f"/api/v1/cases/{cases[0]}")).json()
    assert detail["erased"] == "request"


async def test_a_caller_hold_keeps_everything_until_released(app: FastAPI) -> None:
    volunteer = await sign_in(app)
    first = await sign_in(app, roles="supervisor")
    second = await sign_in(app, roles="supervisor")
    cases = await caller_with_cases(app, volunteer.user_public_id, HELD, cases=1)
    hold = await first.http.post(
        "/api/v1/holds",
        json={"case": cases[0], "scope": "caller", "reason": "pending federal proceeding"},
        headers=first.headers(),
    )
    assert hold.status_code == 201

    requested = await first.http.post("/api/v1/erasures", json={"phone": HELD}, headers=first.headers())
    assert requested.status_code == 202 and requested.json()["message"] == PENDING
    approved = await second.http.post(
        f"/api/v1/erasures/{requested.json()['id']}/approve", headers=second.headers()
    )
    assert approved.status_code == 200 and approved.json()["state"] == "processed"
    assert approved.json()["outcome"] == {"matched": 1, "held": 1, "erased_cases": 0, "shredded_subjects": 0}
    assert "legal hold" in approved.json()["message"]
    assert (await volunteer.http.get(f"/api/v1/cases/{cases[0]}")).json()["erased"] is None

    # Once the hold is released, a new request (approved by the other supervisor) erases them.
    released = await first.http.post(f"/api/v1/holds/{hold.json()['id']}/release", headers=first.headers())
    assert released.status_code == 200
    requested = await second.http.post("/api/v1/erasures", json={"phone": HELD}, headers=second.headers())
    approved = await first.http.post(
        f"/api/v1/erasures/{requested.json()['id']}/approve", headers=first.headers()
    )
    assert approved.json()["outcome"] == {"matched": 1, "held": 0, "erased_cases": 1, "shredded_subjects": 3}
    assert (await volunteer.http.get(f"/api/v1/cases/{cases[0]}")).json()["erased"] == "request"


async def test_two_approvers_at_once_process_it_once(app: FastAPI) -> None:
    volunteer = await sign_in(app)
    first = await sign_in(app, roles="supervisor")
    second = await sign_in(app, roles="supervisor")
    third = await sign_in(app, roles="supervisor")
    await caller_with_cases(app, volunteer.user_public_id, KNOWN, cases=1)
    requested = await first.http.post("/api/v1/erasures", json={"phone": KNOWN}, headers=first.headers())
    path = f"/api/v1/erasures/{requested.json()['id']}/approve"

    answers = await asyncio.gather(
        second.http.post(path, headers=second.headers()), third.http.post(path, headers=third.headers())
    )
    assert sorted(a.status_code for a in answers) == [200, 409], [a.text for a in answers]
    async with app.state.database.sessionmaker() as session:
        entries = list(await session.scalars(select(AuditEntry.action)))
        assert entries.count("erasure.processed") == 1 and entries.count("erasure.approved") == 1
        assert len(list(await session.scalars(select(TwilioCleanup)))) == 1


async def test_a_request_nobody_approves_expires_and_its_number_is_shredded(app: FastAPI) -> None:
    """A typed number is a person's number: a request still pending a month later is cancelled and
    its number shredded by the hourly purge, without any lookup (it stays blind)."""
    from datetime import timedelta

    from app.retention.service import ERASURE_REQUEST_DAYS, expire_erasure_requests

    first = await sign_in(app, roles="supervisor")
    made = await first.http.post("/api/v1/erasures", json={"phone": KNOWN}, headers=first.headers())
    assert made.status_code == 202, made.text
    request_id = made.json()["id"]
    async with app.state.database.sessionmaker() as session, session.begin():
        assert await expire_erasure_requests(session, app.state.clock) == 0  # not yet
    app.state.clock.advance(timedelta(days=ERASURE_REQUEST_DAYS, hours=1))
    head = await audit_head(app)
    async with app.state.database.sessionmaker() as session, session.begin():
        assert await expire_erasure_requests(session, app.state.clock) == 1
    async with app.state.database.sessionmaker() as session:
        row = (
            await session.scalars(select(ErasureRequest).where(ErasureRequest.public_id == request_id))
        ).one()
        assert row.state == "cancelled" and row.phone is None
        keys = list(await session.scalars(select(DataKeyRecord).where(DataKeyRecord.subject_id == row.id)))
        assert keys and all(k.destroyed_at is not None and k.wrapped is None for k in keys)
    entries = await audit_since(app, head)
    assert {(e.action, e.object_id) for e in entries} >= {("erasure.expired", request_id)}
    assert not any(e.action.startswith("system.reveal") for e in entries)  # nothing was looked up
    second = await sign_in(app, roles="supervisor")  # a month on: sessions from then are over
    listed = (await second.http.get("/api/v1/erasures")).json()["items"]
    assert [item["state"] for item in listed if item["id"] == request_id] == ["cancelled"]
    late = await second.http.post(f"/api/v1/erasures/{request_id}/approve", headers=second.headers())
    assert late.status_code == 409
    for staff in (first, second):
        await staff.http.aclose()
