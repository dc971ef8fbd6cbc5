"""Texting a referral: only a verified organisation's public details, only to a caller who said a
text is safe, through the jobs runner and the (fake) Twilio REST API, recorded on the case; the
canaries planted in the caller's data appear nowhere (responses, logs, database) on these routes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from app.audit.models import AuditEntry
from app.callers.models import Caller
from app.cases.models import Case, Referral
from app.clock import FrozenClock
from app.db.engine import Database
from app.jobs.models import Job
from app.jobs.runner import JobRunner, registry
from app.main import create_app
from telephony.fake import FakeTwilio
from tests.chats.test_messaging_webhooks import post
from tests.referrals.support import GOOD_ORGANISATION, case_for
from tests.support.canary import CanaryScan, LogCapture
from tests.support.staff import SignedInClient, sign_in

HOTLINE = "+12125550198"
THURSDAY_10_EST = datetime(2026, 11, 26, 15, 0, tzinfo=UTC)
EXPECTED_TEXT = (
    "Referral from the hotline: Brooklyn Defenders Test\n"
    "Phone: +17185550100\n"
    "Web: https://example.org/intake\n"
    "Hours: Mon-Fri 09:00-17:00 (America/New_York)"
)


@pytest.fixture
def fake() -> Iterator[FakeTwilio]:
    with FakeTwilio() as running:
        yield running


@pytest.fixture
async def texting_app(
    fake: FakeTwilio, make_settings: Any, clock: FrozenClock, database: Database
) -> AsyncIterator[FastAPI]:
    """The app with the fake Twilio's REST API; jobs are run by the test (frozen clock)."""
    settings = make_settings(
        twilio_account_sid=fake.account_sid,
        twilio_auth_token=fake.auth_token,
        twilio_api_url=fake.base_url,
        twilio_number=HOTLINE,
    )
    clock.set(THURSDAY_10_EST)
    application = create_app(settings, clock=clock, database=database, run_jobs=False)
    async with application.router.lifespan_context(application):
        yield application


async def verified_organisation(admin: SignedInClient, **changes: Any) -> str:
    created = await admin.http.post(
        "/api/v1/organisations", json=GOOD_ORGANISATION | changes, headers=admin.headers()
    )
    assert created.status_code == 201, created.text
    organisation: str = created.json()["id"]
    verified = await admin.http.post(f"/api/v1/organisations/{organisation}/verify", headers=admin.headers())
    assert verified.status_code == 200
    return organisation


async def refer(volunteer: SignedInClient, case: str, organisation: str) -> str:
    response = await volunteer.http.post(
        f"/api/v1/cases/{case}/referrals",
        json={"organisation": organisation, "services": ["legal_defense"]},
        headers=volunteer.headers(),
    )
    assert response.status_code == 201, response.text
    referral: str = response.json()["id"]
    return referral


async def send(volunteer: SignedInClient, case: str, referral: str) -> httpx.Response:
    return await volunteer.http.post(
        f"/api/v1/cases/{case}/referrals/{referral}/send", headers=volunteer.headers()
    )


async def referral_row(app: FastAPI, public_id: str) -> Referral:
    async with app.state.database.sessionmaker() as session:
        return (await session.scalars(select(Referral).where(Referral.public_id == public_id))).one()


async def send_jobs(app: FastAPI) -> list[dict[str, Any]]:
    async with app.state.database.sessionmaker() as session:
        return list(await session.scalars(select(Job.payload).where(Job.kind == "referrals.send_sms")))


async def test_a_referral_is_texted_with_public_details_only_and_its_delivery_recorded(
    texting_app: FastAPI, fake: FakeTwilio, captured_logs: LogCapture
) -> None:
    app = texting_app
    scan = CanaryScan(app.state.database, captured_logs)
    canaries = scan.canaries
    admin = await sign_in(app, roles="admin")
    volunteer = await sign_in(app)
    organisation = await verified_organisation(admin)
    case = await case_for(
        app,
        volunteer.user_public_id,
        phone=canaries.phone(0),
        fields={"caller_name": canaries.name, "detention_facility": canaries.facility},
    )
    noted = await volunteer.http.post(
        f"/api/v1/cases/{case}/notes", json={"body": canaries.note}, headers=volunteer.headers()
    )
    found = await volunteer.http.get("/api/v1/organisations", params={"case": case, "open_now": "true"})
    assert [o["id"] for o in found.json()["items"]] == [organisation]
    referral = await refer(volunteer, case, organisation)
    queued = await send(volunteer, case, referral)
    assert queued.status_code == 202, queued.text
    assert queued.json()["sms_status"] == "pending"
    assert await send_jobs(app) == [{"referral": referral}]  # ids only: never a number
    again = await send(volunteer, case, referral)
    assert again.status_code == 409 and again.json()["error"]["code"] == "already_sent"

    runner = JobRunner(app.state.database, app.state.clock, registry=registry, services=app.state.services)
    await runner.run_until_idle()
    (message,) = [m for m in fake.store.messages.values() if m.to == canaries.phone(0)]
    assert message.from_ == HOTLINE and message.body == EXPECTED_TEXT
    assert message.status_callback == "https://hotline.test/twilio/messaging/status"
    assert (await referral_row(app, referral)).sms_status == "queued"

    for status in ("delivered", "sent"):  # out of order: only forward
        answered = await post(
            volunteer.http,
            app.state.settings,
            "/twilio/messaging/status",
            {"MessageSid": message.sid, "AccountSid": fake.account_sid, "MessageStatus": status},
        )
        assert answered.status_code == 200
    detail = await volunteer.http.get(f"/api/v1/cases/{case}")
    (shown,) = detail.json()["referrals"]
    assert shown["id"] == referral and shown["sms_status"] == "delivered" and shown["sms_requested_at"]
    assert detail.json()["status"] == "referred"

    async with app.state.database.sessionmaker() as session:
        entries = list(await session.scalars(select(AuditEntry).where(AuditEntry.object_id == case)))
    texted = [e for e in entries if e.action == "case.referral_texted"]
    assert len(texted) == 1 and texted[0].details == {"referral": referral, "organisation": organisation}
    reveals = [e for e in entries if e.action == "system.reveal"]
    assert [(e.actor_id, e.purpose, e.fields) for e in reveals] == [
        ("system:referral-sender", "referral", "phone")
    ]
    scan.responses = [r.content for r in (noted, found, queued, again, detail)]
    assert await scan.hits() == []


@pytest.fixture
async def people(app: FastAPI) -> tuple[SignedInClient, SignedInClient]:
    app.state.clock.set(THURSDAY_10_EST)
    return await sign_in(app, roles="admin"), await sign_in(app)


async def set_caller(app: FastAPI, case: str, **values: Any) -> None:
    async with app.state.database.sessionmaker() as session, session.begin():
        row = (await session.scalars(select(Case).where(Case.public_id == case))).one()
        caller = await session.get(Caller, row.caller_id)
        assert caller is not None
        for name, value in values.items():
            setattr(caller, name, value)


@pytest.mark.parametrize(
    ("situation", "code"),
    [
        ("unverified", "organisation_not_verified"),
        ("verification_cleared", "organisation_not_verified"),
        ("deactivated", "organisation_not_verified"),
        ("withheld_number", "no_number"),
        ("unsafe_to_text", "unsafe_to_text"),
        ("safety_not_asked", "safety_not_asked"),
        ("opted_out", "opted_out"),
    ],
)
async def test_refused_sends_say_why_and_queue_nothing(
    app: FastAPI, people: tuple[SignedInClient, SignedInClient], situation: str, code: str
) -> None:
    admin, volunteer = people
    organisation = await verified_organisation(admin)
    url = f"/api/v1/organisations/{organisation}"
    if situation == "unverified":
        organisation = (
            await admin.http.post(
                "/api/v1/organisations",
                json=GOOD_ORGANISATION | {"name": "Never Verified"},
                headers=admin.headers(),
            )
        ).json()["id"]
    elif situation == "verification_cleared":
        await admin.http.patch(url, json={"intake_url": "https://example.org/new"}, headers=admin.headers())
    elif situation == "deactivated":
        await admin.http.delete(url, headers=admin.headers())
    case = await case_for(
        app, volunteer.user_public_id, phone=None if situation == "withheld_number" else "+12025550172"
    )
    if situation == "unsafe_to_text":
        await set_caller(app, case, safe_to_text=False)
    elif situation == "safety_not_asked":
        await set_caller(app, case, safe_to_text=None)
    elif situation == "opted_out":
        await set_caller(app, case, opted_out_at=THURSDAY_10_EST)
    referral = await refer(volunteer, case, organisation)
    refused = await send(volunteer, case, referral)
    assert refused.status_code == 409, refused.text
    assert refused.json()["error"]["code"] == code
    row = await referral_row(app, referral)
    assert row.sms_status is None and row.sms_requested_at is None
    assert await send_jobs(app) == []


async def test_only_who_may_read_the_case_can_send_and_only_its_own_referrals(
    app: FastAPI, people: tuple[SignedInClient, SignedInClient]
) -> None:
    admin, volunteer = people
    other = await sign_in(app)
    organisation = await verified_organisation(admin)
    case = await case_for(app, volunteer.user_public_id, phone="+12025550173")
    second = await case_for(app, volunteer.user_public_id, phone="+12025550174")
    referral = await refer(volunteer, case, organisation)
    assert (await send(other, case, referral)).status_code == 404
    assert (await send(volunteer, second, referral)).status_code == 404  # not that case's referral
    assert (await send(volunteer, case, "RF-ZZZZ-ZZZZ")).status_code == 404
    assert (await send(volunteer, case, "nonsense")).status_code == 422
    assert await send_jobs(app) == []


async def test_the_job_checks_again_and_sends_nothing_when_things_changed(
    texting_app: FastAPI, fake: FakeTwilio
) -> None:
    app = texting_app
    admin, volunteer = await sign_in(app, roles="admin"), await sign_in(app)
    organisation = await verified_organisation(admin)
    unsafe_case = await case_for(app, volunteer.user_public_id, phone="+12025550175")
    changed_case = await case_for(app, volunteer.user_public_id, phone="+12025550176")
    unsafe = await refer(volunteer, unsafe_case, organisation)
    changed = await refer(volunteer, changed_case, organisation)
    assert (await send(volunteer, unsafe_case, unsafe)).status_code == 202
    assert (await send(volunteer, changed_case, changed)).status_code == 202
    # Before the job runs: the caller now says a text is unsafe; the organisation's phone changes.
    await set_caller(app, unsafe_case, safe_to_text=False)
    patched = await admin.http.patch(
        f"/api/v1/organisations/{organisation}",
        json={"intake_phone": "+17185550111"},
        headers=admin.headers(),
    )
    assert patched.json()["verified"] is False
    runner = JobRunner(app.state.database, app.state.clock, registry=registry, services=app.state.services)
    await runner.run_until_idle()
    assert fake.store.messages == {}
    assert (await referral_row(app, unsafe)).sms_status == "failed"
    assert (await referral_row(app, changed)).sms_status == "failed"
    # A failed text may be asked for again once the details are verified again.
    await admin.http.post(f"/api/v1/organisations/{organisation}/verify", headers=admin.headers())
    assert (await send(volunteer, changed_case, changed)).status_code == 202
    await runner.run_until_idle()
    (message,) = fake.store.messages.values()
    assert "+17185550111" in message.body and message.to == "+12025550176"
    async with app.state.database.sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(Job).where(Job.state == "dead")) == 0
