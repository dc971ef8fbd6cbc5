"""API fuzzing with Schemathesis, in-process: every operation of the OpenAPI document, 100+ generated cases
each (positive, then negative where the operation has anything to negate), sent as signed-in staff.

Zero server errors and zero schema violations (undocumented status, content type or body); at least 80 %
of the calls per operation get past authentication and CSRF to the handler (not a 401/403). Generated
values cannot know real ids or the current TOTP code, so most positive cases get real ones substituted
(every tenth keeps what was generated); a 404 for an unknown id still counts as reaching the handler.

Session-ending operations run on their own, each example re-creating what it destroys (logout) or aimed at
a throwaway account (disable, end sessions, reset MFA), so they cannot sign the other runs out.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta

import httpx
import pytest
from fastapi import FastAPI
from schemathesis import Case
from sqlalchemy import select

from app.access.models import BreakGlassGrant
from app.accounts.models import User
from app.audit.service import Actor
from app.callers.service import find_or_create_caller
from app.cases.models import Case as CaseRow
from app.cases.service import create_case
from app.publicid import new_public_id
from tests.support.fuzz import (
    BASE_URL,
    Fuzzer,
    Identity,
    Plan,
    StaffAuth,
    cheapen_hashing,
    problems,
    table,
)
from tests.support.staff import PASSWORD, create_staff, next_code

SETUP = Actor("cli:test")
ORGANISATION = "OR-4GAS-NYSC"  # seeded by the migrations
SESSION_ENDING = (
    "POST /api/v1/auth/logout",
    "POST /api/v1/users/{user_id}/disable",
    "POST /api/v1/users/{user_id}/end-sessions",
    "POST /api/v1/users/{user_id}/reset-mfa",
)

pytestmark = pytest.mark.slow


@dataclass
class World:
    app: FastAPI
    auth: StaffAuth
    case: str
    target_user: str

    def who(self, role: str) -> Identity:
        return self.auth.identities[role]


@pytest.fixture(autouse=True)
def cheap_hashing(app: FastAPI) -> None:
    cheapen_hashing(app)


@pytest.fixture
async def http(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
        yield client


async def user_id(app: FastAPI, email: str) -> str:
    async with app.state.database.sessionmaker() as session:
        found = await session.scalar(select(User.public_id).where(User.email == email))
    assert found is not None
    return found


async def throwaway(app: FastAPI) -> tuple[str, str]:
    """A pending account nobody signs in with: (public id, enrolment token)."""
    email, token = await create_staff(app, roles="volunteer")
    return await user_id(app, email), token


async def fresh_role_grant(app: FastAPI) -> tuple[str, str]:
    """A pending grant of supervisor to a fresh account, asked for by another admin: (user, grant)."""
    from app.accounts.models import RoleGrant

    target, _ = await throwaway(app)
    requester_email, _ = await create_staff(app, roles="admin")
    async with app.state.database.sessionmaker() as session, session.begin():
        person = (await session.scalars(select(User).where(User.public_id == target))).one()
        requester = (await session.scalars(select(User).where(User.email == requester_email))).one()
        grant = RoleGrant(
            public_id=new_public_id("RG"),
            user_id=person.id,
            roles="supervisor,volunteer",
            roles_before=person.roles,
            state="pending",
            requested_by_id=requester.id,
            requested_at=app.state.clock.now(),
        )
        session.add(grant)
    return target, grant.public_id


async def fresh_grant(app: FastAPI, case_id: str, supervisor: str, *, days: int = 7) -> str:
    """A break-glass grant held by `supervisor` (someone else reviews it)."""
    clock = app.state.clock
    async with app.state.database.sessionmaker() as session, session.begin():
        case = (await session.scalars(select(CaseRow).where(CaseRow.public_id == case_id))).one()
        holder = (await session.scalars(select(User).where(User.public_id == supervisor))).one()
        grant = BreakGlassGrant(
            public_id=new_public_id("BG"),
            case_id=case.id,
            supervisor_id=holder.id,
            created_at=clock.now(),
            expires_at=clock.now() + timedelta(days=days),
        )
        await app.state.sealer.seal(session, grant, "reason", "standing grant for the fuzz test")
        session.add(grant)
    return grant.public_id


async def fresh_offer(app: FastAPI, volunteer: str) -> str:
    """A pending chat offer to `volunteer`."""
    from app.routing.models import Offer, Task

    async with app.state.database.sessionmaker() as session, session.begin():
        owner = (await session.scalars(select(User).where(User.public_id == volunteer))).one()
        now = app.state.clock.now()
        task = Task(
            public_id=new_public_id("TK"), channel="chat", language="es", state="offered", enqueued_at=now
        )
        session.add(task)
        await session.flush()
        offer = Offer(
            public_id=new_public_id("OF"),
            task_id=task.id,
            volunteer_id=owner.id,
            channel="chat",
            state="pending",
            created_at=now,
            expires_at=now + timedelta(seconds=30),
        )
        session.add(offer)
    return offer.public_id


async def fresh_callback(app: FastAPI) -> str:
    """An open callback on a new, unassigned case with a caller."""
    from app.calls.models import Callback

    async with app.state.database.sessionmaker() as session:
        caller, _ = await find_or_create_caller(
            session, app.state.sealer, app.state.broker, app.state.clock, "+1 202 555 0149"
        )
        await session.commit()
    async with app.state.database.sessionmaker() as session, session.begin():
        case = await create_case(
            session, app.state.sealer, app.state.clock, actor=SETUP, language="es", caller=caller
        )
        callback = Callback(
            public_id=new_public_id("CB"),
            case_id=case.id,
            language="es",
            state="open",
            created_at=app.state.clock.now(),
        )
        session.add(callback)
    return callback.public_id


async def fresh_conversation(app: FastAPI, case_id: str) -> str:
    """An open SMS conversation with one inbound message on the world's case."""
    from app.chats import service as chats
    from app.chats.models import Conversation
    from app.contacts.models import Channel
    from app.contacts.service import create_contact

    async with app.state.database.sessionmaker() as session:
        caller, _ = await find_or_create_caller(
            session, app.state.sealer, app.state.broker, app.state.clock, "+1 202 555 0150"
        )
        await session.commit()
    async with app.state.database.sessionmaker() as session, session.begin():
        assert caller is not None
        case = (await session.scalars(select(CaseRow).where(CaseRow.public_id == case_id))).one()
        sid = "SM" + uuid.uuid4().hex
        contact = await create_contact(
            session, app.state.sealer, app.state.clock, channel=Channel.sms, twilio_sid=sid, caller=caller
        )
        now = app.state.clock.now()
        conversation = Conversation(
            public_id=new_public_id("CV"),
            contact_id=contact.id,
            case_id=case.id,
            caller_id=caller.id,
            channel="sms",
            state="active",
            created_at=now,
            last_inbound_at=now,
            last_activity_at=now,
        )
        session.add(conversation)
        await session.flush()
        await chats.store_inbound(
            session,
            app.state.sealer,
            app.state.clock,
            conversation,
            message_sid=sid,
            body="hola",
            media_count=0,
        )
    return conversation.public_id


async def fresh_erasure(app: FastAPI, requester: str | None) -> str:
    """A pending erasure of a fresh caller's number, recorded by another supervisor."""
    import uuid

    from app.accounts.models import User
    from app.callers.service import find_or_create_caller
    from app.retention.models import ErasureRequest

    async with app.state.database.sessionmaker() as session:
        number = f"+1202555{uuid.uuid4().int % 9000 + 1000:04d}"
        caller, _ = await find_or_create_caller(
            session, app.state.sealer, app.state.broker, app.state.clock, number
        )
        assert caller is not None
        by = await session.scalar(select(User.id).where(User.public_id == requester))
        assert by is not None
        request = ErasureRequest(
            public_id=new_public_id("ER"),
            state="pending",
            requested_by_id=by,
            requested_at=app.state.clock.now(),
        )
        await app.state.sealer.seal(session, request, "phone", number)
        session.add(request)
        await session.commit()
    return request.public_id


async def fresh_organisation(app: FastAPI, *, verified_by: str | None = None) -> str:
    """A directory entry with public contact details (verified by `verified_by` when given)."""
    from app.referrals import service as referrals

    async with app.state.database.sessionmaker() as session, session.begin():
        organisation = await referrals.create(
            session,
            app.state.clock,
            {
                "name": f"Fuzz Org {new_public_id('X')}",
                "services": ["legal_defense"],
                "languages": ["es"],
                "service_areas": ["bronx"],
                "intake_phone": "+17185550100",
                "intake_url": "https://example.org/",
            },
            actor=SETUP,
        )
        if verified_by is not None:
            admin = (await session.scalars(select(User).where(User.public_id == verified_by))).one()
            await referrals.verify(session, app.state.clock, organisation, admin, actor=SETUP)
    return organisation.public_id


async def fresh_referral(app: FastAPI, case_id: str, admin: str, volunteer: str) -> str:
    """A referral to a verified organisation on the world's case (its caller may be texted)."""
    from app.callers.models import Caller
    from app.cases.models import Referral
    from app.referrals.models import Organisation

    organisation_id = await fresh_organisation(app, verified_by=admin)
    async with app.state.database.sessionmaker() as session, session.begin():
        case = (await session.scalars(select(CaseRow).where(CaseRow.public_id == case_id))).one()
        organisation = (
            await session.scalars(select(Organisation).where(Organisation.public_id == organisation_id))
        ).one()
        author = (await session.scalars(select(User).where(User.public_id == volunteer))).one()
        if case.caller_id is not None:
            caller = await session.get(Caller, case.caller_id)
            if caller is not None:
                caller.safe_to_text = True
        referral = Referral(
            public_id=new_public_id("RF"),
            case_id=case.id,
            organisation_id=organisation.id,
            created_by_id=author.id,
            created_at=app.state.clock.now(),
        )
        session.add(referral)
    return referral.public_id


async def build_world(app: FastAPI, http: httpx.AsyncClient) -> World:
    auth = StaffAuth(app, http)
    for role, roles in (
        ("supervisor", "supervisor"),
        ("supervisor_bg", "supervisor"),
        ("volunteer", "volunteer"),
        ("admin", "admin"),
        ("login", "volunteer"),
        ("leaver", "volunteer"),
    ):
        await auth.enrol(role, roles)
    volunteer = auth.identities["volunteer"]
    async with app.state.database.sessionmaker() as session, session.begin():
        assignee = (await session.scalars(select(User).where(User.public_id == volunteer.user_id))).one()
        caller, _ = await find_or_create_caller(
            session, app.state.sealer, app.state.broker, app.state.clock, "+1 202 555 0147"
        )
        case = await create_case(
            session,
            app.state.sealer,
            app.state.clock,
            actor=SETUP,
            language="es",
            category="detention",
            caller=caller,
            assignee=assignee,
            fields={"caller_name": "Fuzz Caller", "a_number": "A012345678"},
        )
        # Callbacks ring the volunteer's phone: give them a verified one.
        await app.state.sealer.seal(session, assignee, "phone", "+12125550182")
        assignee.phone_verified_at = app.state.clock.now()
    await fresh_grant(app, case.public_id, auth.identities["supervisor_bg"].user_id)
    target, _ = await throwaway(app)
    for identity in auth.identities.values():
        if identity.role not in ("login", "leaver"):
            await auth.sign_in(identity)
    return World(app, auth, case.public_id, target)


def body_of(case: Case) -> dict[str, object]:
    """The generated JSON object, copied (positive bodies of these operations are always objects)."""
    return dict(case.body) if isinstance(case.body, dict) else {}


def regular_plans(world: World) -> dict[str, Plan]:
    app, auth = world.app, world.auth

    async def on_case(case: Case, index: int) -> None:
        case.path_parameters = {"case_id": world.case}

    async def login(case: Case, index: int) -> None:
        who = world.who("login")
        case.body = {"email": who.email, "password": PASSWORD, "totp": auth.code(who)}

    async def enroll(case: Case, index: int) -> None:
        _, token = await throwaway(app)
        body = body_of(case) | {"token": token}
        if index % 3 == 0:
            body["password"] = PASSWORD
        case.body = body

    async def enroll_confirm(case: Case, index: int) -> None:
        _, token = await throwaway(app)
        started = await auth.http.post("/api/v1/auth/enroll", json={"token": token, "password": PASSWORD})
        assert started.status_code == 200, started.text
        case.body = {"token": token, "totp": next_code(app, started.json()["totp_secret"])}

    async def step_up(case: Case, index: int) -> None:
        case.body = body_of(case) | {"totp": auth.code(world.who("supervisor"))}

    async def patch_case(case: Case, index: int) -> None:
        await on_case(case, index)
        body = body_of(case)
        if "assignee" in body and index % 2:
            body["assignee"] = world.who("volunteer").user_id
        if "category" in body and index % 2:
            body["category"] = "detention"
        case.body = body

    async def referral(case: Case, index: int) -> None:
        await on_case(case, index)
        body = body_of(case)
        if index % 2:
            body["organisation"] = ORGANISATION
        case.body = body

    async def break_glass(case: Case, index: int) -> None:
        await on_case(case, index)
        if index % 20 != 5:  # now and then a real case with the generated (wrong) code
            case.body = body_of(case) | {"totp": auth.code(world.who("supervisor"))}

    async def review(case: Case, index: int) -> None:
        grant = await fresh_grant(app, world.case, world.who("supervisor_bg").user_id)
        case.path_parameters = {"grant_id": grant}

    async def new_user(case: Case, index: int) -> None:
        if index % 2:
            case.body = body_of(case) | {"email": f"{uuid.uuid4().hex[:12]}@example.org"}

    async def on_target(case: Case, index: int) -> None:
        case.path_parameters = {"user_id": world.target_user}

    async def on_role_grant(case: Case, index: int) -> None:
        user, grant = await fresh_role_grant(app)
        case.path_parameters = {"user_id": user, "grant_id": grant}

    async def on_volunteer(case: Case, index: int) -> None:
        parameters = dict(case.path_parameters or {})
        parameters["user_id"] = world.who("volunteer").user_id
        case.path_parameters = parameters

    async def on_offer(case: Case, index: int) -> None:
        case.path_parameters = {"offer_id": await fresh_offer(app, world.who("volunteer").user_id)}

    async def on_conversation(case: Case, index: int) -> None:
        case.path_parameters = {"conversation_id": await fresh_conversation(app, world.case)}

    async def on_rights_draft(case: Case, index: int) -> None:
        from app.rights import service as rights
        from app.rights.models import RightsTopic

        async with app.state.database.sessionmaker() as session, session.begin():
            text = await rights.add_version(
                session,
                app.state.clock,
                topic=RightsTopic.in_the_street,
                language="ru",
                title="На улице",
                body="Сохраняйте спокойствие.",
                audio_url=None,
                author=None,
                actor=SETUP,
            )
        case.path_parameters = {"text_id": text.public_id}

    async def on_callback(case: Case, index: int) -> None:
        case.path_parameters = {"callback_id": await fresh_callback(app)}

    async def on_report(case: Case, index: int) -> None:
        from app.cases.models import Case as CaseModel
        from app.reports.models import Report

        async with app.state.database.sessionmaker() as session, session.begin():
            row = (await session.scalars(select(CaseModel).where(CaseModel.public_id == world.case))).one()
            if await session.scalar(select(Report).where(Report.case_id == row.id)) is None:
                now = app.state.clock.now()
                session.add(
                    Report(
                        public_id=new_public_id("RP"),
                        case_id=row.id,
                        channel="voice",
                        category="abuse_report",
                        language="es",
                        created_at=now,
                        updated_at=now,
                    )
                )
        case.path_parameters = {"case_id": world.case}

    async def hold_body(case: Case, index: int) -> None:
        body = body_of(case)
        if index % 2:
            body["case"] = world.case
        case.body = body

    async def on_hold(case: Case, index: int) -> None:
        placed = await auth.http.post(
            "/api/v1/holds",
            json={"case": world.case, "reason": "pending federal proceeding"},
            headers=auth.headers(world.who("supervisor")),
        )
        assert placed.status_code == 201, placed.text
        case.path_parameters = {"hold_id": placed.json()["id"]}

    async def erasure_body(case: Case, index: int) -> None:
        """Every other case a valid number (the generator rarely finds one): blind, it is 202."""
        body = body_of(case)
        if index % 2:
            body["phone"] = f"+1202555{1000 + index % 9000:04d}"
        case.body = body

    async def on_erasure(case: Case, index: int) -> None:
        case.path_parameters = {"request_id": await fresh_erasure(app, world.who("supervisor_bg").user_id)}

    async def search_directory(case: Case, index: int) -> None:
        if index % 3 == 1:
            case.query = dict(case.query or {}) | {"case": world.case}

    async def new_organisation(case: Case, index: int) -> None:
        """Every other case gets a fresh name and, of those, every other real contact details (the
        generator rarely finds a valid time zone or a dialable number)."""
        if index % 2:
            body = body_of(case) | {"name": f"Organisation {uuid.uuid4().hex[:12]}"}
            if index % 4 == 1:
                body |= {
                    "timezone": "America/New_York",
                    "intake_phone": "+17185550100",
                    "intake_url": "https://example.org/intake",
                    "services": ["housing"],
                    "languages": ["es"],
                    "service_areas": ["queens"],
                    "open_24_7": False,
                    "opening_hours": [{"day": "mon", "open": "09:00", "close": "17:00"}],
                }
            case.body = body

    async def on_organisation(case: Case, index: int) -> None:
        case.path_parameters = {"organisation_id": await fresh_organisation(app)}

    async def on_referral(case: Case, index: int) -> None:
        referral = await fresh_referral(
            app, world.case, world.who("admin").user_id, world.who("volunteer").user_id
        )
        case.path_parameters = {"case_id": world.case, "referral_id": referral}

    return {
        "GET /healthz": Plan(None),
        "GET /readyz": Plan(None),
        "GET /metrics": Plan(None),
        "POST /api/v1/auth/login": Plan(None, login),
        "GET /api/v1/auth/me": Plan("supervisor"),
        "POST /api/v1/auth/enroll": Plan(None, enroll),
        "POST /api/v1/auth/enroll/confirm": Plan(None, enroll_confirm),
        "POST /api/v1/auth/step-up": Plan("supervisor", step_up),
        "GET /api/v1/cases": Plan("supervisor"),
        "GET /api/v1/cases/{case_id}": Plan("supervisor", on_case),
        "PATCH /api/v1/cases/{case_id}": Plan("supervisor_bg", patch_case),
        "POST /api/v1/cases/{case_id}/reveal": Plan("volunteer", on_case),
        "POST /api/v1/cases/{case_id}/notes": Plan("volunteer", on_case),
        "PUT /api/v1/cases/{case_id}/draft": Plan("volunteer", on_case),
        "DELETE /api/v1/cases/{case_id}/draft": Plan("volunteer", on_case),
        "POST /api/v1/cases/{case_id}/referrals": Plan("volunteer", referral),
        "POST /api/v1/cases/{case_id}/break-glass": Plan("supervisor", break_glass),
        "POST /api/v1/cases/{case_id}/link-contact": Plan("volunteer", on_case),
        "GET /api/v1/break-glass/reviews": Plan("supervisor"),
        "POST /api/v1/break-glass/reviews/{grant_id}": Plan("supervisor", review),
        "GET /api/v1/audit": Plan("supervisor"),
        "POST /api/v1/audit/exports": Plan("supervisor", stepped_up=True),
        "POST /api/v1/audit/verifications": Plan("supervisor"),
        "GET /api/v1/audit/verifications/latest": Plan("supervisor"),
        "GET /api/v1/users": Plan("supervisor"),
        "POST /api/v1/users": Plan("admin", new_user, stepped_up=True),
        "PATCH /api/v1/users/{user_id}": Plan("admin", on_target, stepped_up=True),
        "POST /api/v1/users/{user_id}/role-grants/{grant_id}/approve": Plan(
            "admin", on_role_grant, stepped_up=True
        ),
        "POST /api/v1/users/{user_id}/clear-sign-in-block": Plan("supervisor", on_target),
        "GET /api/v1/me/availability": Plan("volunteer"),
        "PUT /api/v1/me/availability": Plan("volunteer"),
        "POST /api/v1/me/phone-verification": Plan("volunteer"),
        "POST /api/v1/me/phone-verification/confirm": Plan("volunteer"),
        "GET /api/v1/offers": Plan("volunteer"),
        "POST /api/v1/offers/{offer_id}/accept": Plan("volunteer", on_offer),
        "POST /api/v1/offers/{offer_id}/decline": Plan("volunteer", on_offer),
        "GET /api/v1/callbacks": Plan("volunteer"),
        "POST /api/v1/callbacks/{callback_id}/claim": Plan("volunteer", on_callback),
        "GET /api/v1/chats/{conversation_id}/messages": Plan("volunteer", on_conversation),
        "POST /api/v1/chats/{conversation_id}/messages/reveal": Plan("volunteer", on_conversation),
        "POST /api/v1/chats/{conversation_id}/messages": Plan("volunteer", on_conversation),
        "POST /api/v1/chats/{conversation_id}/close": Plan("volunteer", on_conversation),
        "GET /api/v1/rights": Plan("supervisor"),
        "POST /api/v1/rights": Plan("admin"),
        "POST /api/v1/rights/{text_id}/review": Plan("admin", on_rights_draft),
        "POST /api/v1/cases/{case_id}/report/reveal": Plan("volunteer", on_report),
        "GET /api/v1/holds": Plan("supervisor"),
        "POST /api/v1/holds": Plan("supervisor", hold_body),
        "POST /api/v1/holds/{hold_id}/release": Plan("supervisor", on_hold),
        "GET /api/v1/erasures": Plan("supervisor"),
        "POST /api/v1/erasures": Plan("supervisor", erasure_body),
        "POST /api/v1/erasures/{request_id}/approve": Plan("supervisor", on_erasure),
        "GET /api/v1/organisations": Plan("volunteer", search_directory),
        "POST /api/v1/organisations": Plan("admin", new_organisation),
        "PATCH /api/v1/organisations/{organisation_id}": Plan("admin", on_organisation),
        "POST /api/v1/organisations/{organisation_id}/verify": Plan("admin", on_organisation),
        "DELETE /api/v1/organisations/{organisation_id}": Plan("admin", on_organisation),
        "POST /api/v1/cases/{case_id}/referrals/{referral_id}/send": Plan("volunteer", on_referral),
        "GET /api/v1/schedule": Plan("supervisor"),
        "GET /api/v1/schedule/on-call": Plan("supervisor"),
        "GET /api/v1/events": Plan("volunteer"),
        "PUT /api/v1/schedule/{user_id}": Plan("supervisor", on_volunteer),
        "POST /api/v1/schedule/{user_id}/overrides": Plan("supervisor", on_volunteer),
        "DELETE /api/v1/schedule/{user_id}/overrides/{override_id}": Plan("supervisor", on_volunteer),
    }


def session_ending_plans(world: World) -> dict[str, Plan]:
    app, auth = world.app, world.auth

    async def fresh_session() -> None:
        """Logout destroys the session it is sent with: every example signs in anew first."""
        await auth.sign_in(world.who("leaver"))

    async def on_throwaway(case: Case, index: int) -> None:
        """A new account each time; every fourth one enrolled and signed in, so it has sessions to lose."""
        if index % 4 == 1:
            target = await auth.enrol("throwaway", "volunteer")
            await auth.sign_in(target)
            case.path_parameters = {"user_id": target.user_id}
        else:
            user, _ = await throwaway(app)
            case.path_parameters = {"user_id": user}

    return {
        "POST /api/v1/auth/logout": Plan("leaver", setup=fresh_session),
        "POST /api/v1/users/{user_id}/disable": Plan("admin", on_throwaway),
        "POST /api/v1/users/{user_id}/end-sessions": Plan("admin", on_throwaway),
        "POST /api/v1/users/{user_id}/reset-mfa": Plan("admin", on_throwaway, stepped_up=True),
    }


def test_every_operation_is_fuzzed(app: FastAPI, http: httpx.AsyncClient) -> None:
    fuzzer = Fuzzer(app, StaffAuth(app, http), http)
    world = World(app, fuzzer.auth, "HX-0000-0000", "U-0000-0000")
    planned = set(regular_plans(world)) | set(session_ending_plans(world))
    unplanned = sorted(set(fuzzer.operations()) - planned)
    assert unplanned == [], f"add these operations to a fuzz plan: {unplanned}"
    assert set(SESSION_ENDING) == set(session_ending_plans(world))


async def test_api_fuzz(app: FastAPI, http: httpx.AsyncClient, capsys: pytest.CaptureFixture[str]) -> None:
    world = await build_world(app, http)
    results = await Fuzzer(app, world.auth, http).run(regular_plans(world))
    with capsys.disabled():  # the per-operation counts are part of the result: shown even without -s
        print("\n" + table(results))
    found = problems(results)
    assert not found, "\n".join(found)


async def test_api_fuzz_session_ending_operations(
    app: FastAPI, http: httpx.AsyncClient, capsys: pytest.CaptureFixture[str]
) -> None:
    world = await build_world(app, http)
    results = await Fuzzer(app, world.auth, http).run(session_ending_plans(world))
    with capsys.disabled():
        print("\n" + table(results))
    found = problems(results)
    assert not found, "\n".join(found)
