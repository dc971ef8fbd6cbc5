"""Every route × every kind of caller → the one expected status. A mismatch either way fails, and so
does a route missing from the matrix (add new routes here with their expected statuses)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from sqlalchemy import select

from app.access.models import BreakGlassGrant
from app.accounts import service as accounts
from app.accounts.models import User
from app.audit.models import AuditVerification
from app.audit.service import Actor
from app.cases.service import create_case
from app.main import API_ROUTERS
from app.publicid import new_public_id
from tests.support.staff import PASSWORD, create_staff, enrol, next_code

ROLES = ("anonymous", "assigned", "other_volunteer", "supervisor", "supervisor_bg", "admin", "disabled")
SETUP = Actor("cli:test")


@dataclass
class Caller:
    email: str | None
    secret: str | None
    user_id: str | None = None


@dataclass
class World:
    case: str
    callers: dict[str, Caller]


def expect(
    anonymous: int,
    assigned: int,
    other_volunteer: int,
    supervisor: int,
    supervisor_bg: int,
    admin: int,
    disabled: int | None = None,
) -> dict[str, int]:
    return {
        "anonymous": anonymous,
        "assigned": assigned,
        "other_volunteer": other_volunteer,
        "supervisor": supervisor,
        "supervisor_bg": supervisor_bg,
        "admin": admin,
        "disabled": anonymous if disabled is None else disabled,
    }


# (method, path template) → (request builder, expected status per caller)
Build = Callable[[FastAPI, World, str], Awaitable[dict[str, Any]]]


async def nothing(app: FastAPI, world: World, role: str) -> dict[str, Any]:
    return {}


def body(payload: dict[str, Any]) -> Build:
    async def build(app: FastAPI, world: World, role: str) -> dict[str, Any]:
        return {"json": payload}

    return build


async def fresh_target_user(app: FastAPI, world: World, role: str) -> dict[str, Any]:
    async with app.state.database.sessionmaker() as session, session.begin():
        user, _ = await accounts.create_user(
            session,
            app.state.sealer,
            app.state.clock,
            actor=SETUP,
            email=f"{new_public_id('T').lower()}@example.org",
            name="Target",
            roles="volunteer",
        )
    return {"user_id": user.public_id, "json": {"name": "Renamed"}}


async def grant_by_someone_else(app: FastAPI, world: World, role: str) -> dict[str, Any]:
    async with app.state.database.sessionmaker() as session, session.begin():
        third, _ = await accounts.create_user(
            session,
            app.state.sealer,
            app.state.clock,
            actor=SETUP,
            email=f"{new_public_id('S').lower()}@example.org",
            name="Sup",
            roles="supervisor",
        )
        from app.cases.models import Case

        case = (await session.scalars(select(Case).where(Case.public_id == world.case))).one()
        grant = BreakGlassGrant(
            public_id=new_public_id("BG"),
            case_id=case.id,
            supervisor_id=third.id,
            created_at=app.state.clock.now(),
            expires_at=app.state.clock.now() + timedelta(minutes=30),
        )
        await app.state.sealer.seal(session, grant, "reason", "matrix test reason long enough")
        session.add(grant)
    return {"grant_id": grant.public_id, "json": {"outcome": "justified"}}


async def totp_body(app: FastAPI, world: World, role: str) -> dict[str, Any]:
    caller = world.callers[role]
    code = next_code(app, caller.secret) if caller.secret else "123456"
    return {"json": {"totp": code}}


async def break_glass_body(app: FastAPI, world: World, role: str) -> dict[str, Any]:
    caller = world.callers[role]
    code = next_code(app, caller.secret) if caller.secret else "123456"
    return {"json": {"reason": "caller in danger, assigned volunteer unreachable", "totp": code}}


async def bad_login(app: FastAPI, world: World, role: str) -> dict[str, Any]:
    # A different unknown address each time, so the per-account throttle does not kick in.
    return {"json": {"email": f"nobody-{role}@example.org", "password": "not a password", "totp": "123456"}}


async def schedule_target(app: FastAPI, world: World, role: str) -> dict[str, Any]:
    async with app.state.database.sessionmaker() as session, session.begin():
        user, _ = await accounts.create_user(
            session,
            app.state.sealer,
            app.state.clock,
            actor=SETUP,
            email=f"{new_public_id('V').lower()}@example.org",
            name="Shift Volunteer",
            roles="volunteer",
        )
    return {"user_id": user.public_id}


def for_schedule_target(payload: dict[str, Any]) -> Build:
    async def build(app: FastAPI, world: World, role: str) -> dict[str, Any]:
        return await schedule_target(app, world, role) | {"json": payload}

    return build


async def override_of_target(app: FastAPI, world: World, role: str) -> dict[str, Any]:
    from datetime import date

    from app.volunteers import service as volunteers
    from app.volunteers.models import OverrideKind

    target = await schedule_target(app, world, role)
    async with app.state.database.sessionmaker() as session, session.begin():
        user = (await session.scalars(select(User).where(User.public_id == target["user_id"]))).one()
        override = await volunteers.add_override(
            session, app.state.clock, user, on_date=date(2026, 12, 24), kind=OverrideKind.off, actor=SETUP
        )
    return target | {"override_id": override.public_id}


async def repeat_contact(app: FastAPI, world: World, role: str) -> dict[str, Any]:
    """A fresh contact on the world's case whose caller has an earlier case with a code word."""
    from app.callers.service import find_or_create_caller
    from app.cases.models import Case
    from app.contacts.models import Channel
    from app.contacts.service import create_contact

    async with app.state.database.sessionmaker() as session:
        caller, _ = await find_or_create_caller(
            session, app.state.sealer, app.state.broker, app.state.clock, "+12025550147"
        )
        await session.commit()
    async with app.state.database.sessionmaker() as session, session.begin():
        assert caller is not None
        case = (await session.scalars(select(Case).where(Case.public_id == world.case))).one()
        case.caller_id = caller.id
        await create_case(
            session,
            app.state.sealer,
            app.state.clock,
            actor=SETUP,
            language="es",
            caller=caller,
            fields={"code_word": "girasol"},
        )
        contact = await create_contact(
            session,
            app.state.sealer,
            app.state.clock,
            channel=Channel.voice,
            twilio_sid="CA" + uuid.uuid4().hex,
            caller=caller,
        )
        contact.case_id = case.id
    return {"json": {"contact": contact.public_id, "code_word": "wrong-word"}}


async def offer_to_assigned(app: FastAPI, world: World, role: str) -> dict[str, Any]:
    """A fresh pending chat offer to the "assigned" volunteer (nobody else's to answer)."""
    from app.routing.models import Offer, Task

    async with app.state.database.sessionmaker() as session, session.begin():
        owner = (
            await session.scalars(select(User).where(User.public_id == world.callers["assigned"].user_id))
        ).one()
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
    return {"offer_id": offer.public_id}


async def open_callback(app: FastAPI, world: World, role: str) -> dict[str, Any]:
    """A fresh open callback on an unassigned case; volunteers get a verified phone so they may claim."""
    from app.callers.service import find_or_create_caller
    from app.calls.models import Callback

    async with app.state.database.sessionmaker() as session:
        caller, _ = await find_or_create_caller(
            session, app.state.sealer, app.state.broker, app.state.clock, "+12025550148"
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
        if world.callers[role].user_id is not None:
            user = (
                await session.scalars(select(User).where(User.public_id == world.callers[role].user_id))
            ).one()
            if user.phone is None:
                await app.state.sealer.seal(session, user, "phone", "+12125550181")
                user.phone_verified_at = app.state.clock.now()
    return {"callback_id": callback.public_id}


async def conversation_on_world_case(app: FastAPI, world: World, role: str) -> dict[str, Any]:
    """A chat conversation on the world's case (assigned to the "assigned" volunteer)."""
    from app.callers.service import find_or_create_caller
    from app.cases.models import Case
    from app.chats.models import Conversation
    from app.contacts.models import Channel
    from app.contacts.service import create_contact

    async with app.state.database.sessionmaker() as session:
        caller, _ = await find_or_create_caller(
            session, app.state.sealer, app.state.broker, app.state.clock, "+12025550149"
        )
        await session.commit()
    async with app.state.database.sessionmaker() as session, session.begin():
        assert caller is not None
        case = (await session.scalars(select(Case).where(Case.public_id == world.case))).one()
        contact = await create_contact(
            session,
            app.state.sealer,
            app.state.clock,
            channel=Channel.sms,
            twilio_sid="SM" + uuid.uuid4().hex,
            caller=caller,
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
    return {"conversation_id": conversation.public_id}


def with_body(build: Build, payload: dict[str, Any]) -> Build:
    async def combined(app: FastAPI, world: World, role: str) -> dict[str, Any]:
        return await build(app, world, role) | {"json": payload}

    return combined


RIGHTS_BODY = {"topic": "at_work", "language": "es", "title": "En el trabajo", "body": "Mantenga la calma."}


async def rights_draft_by_someone_else(app: FastAPI, world: World, role: str) -> dict[str, Any]:
    """A fresh unreviewed version written by another admin (so the caller may review it)."""
    from app.rights import service as rights
    from app.rights.models import RightsTopic

    async with app.state.database.sessionmaker() as session, session.begin():
        text = await rights.add_version(
            session,
            app.state.clock,
            topic=RightsTopic.at_work,
            language="es",
            title="En el trabajo",
            body="Mantenga la calma.",
            audio_url=None,
            author=None,
            actor=SETUP,
        )
    return {"text_id": text.public_id, "json": {}}


async def hold_on_world_case(app: FastAPI, world: World, role: str) -> dict[str, Any]:
    return {"json": {"case": world.case, "scope": "case", "reason": "pending federal proceeding"}}


async def placed_hold(app: FastAPI, world: World, role: str) -> dict[str, Any]:
    from app.cases.models import Case
    from app.retention.models import LegalHold

    async with app.state.database.sessionmaker() as session, session.begin():
        case = (await session.scalars(select(Case).where(Case.public_id == world.case))).one()
        placer = (await session.scalars(select(User).where(User.roles == "supervisor"))).first()
        assert placer is not None
        hold = LegalHold(
            public_id=new_public_id("LH"),
            case_id=case.id,
            placed_by_id=placer.id,
            placed_at=app.state.clock.now(),
        )
        await app.state.sealer.seal(session, hold, "reason", "pending federal proceeding")
        session.add(hold)
    return {"hold_id": hold.public_id}


async def erasure_by_someone_else(app: FastAPI, world: World, role: str) -> dict[str, Any]:
    """A pending erasure of a fresh caller's number, recorded by a third supervisor."""
    from app.callers.service import find_or_create_caller
    from app.retention.models import ErasureRequest

    async with app.state.database.sessionmaker() as session:
        third, _ = await accounts.create_user(
            session,
            app.state.sealer,
            app.state.clock,
            actor=SETUP,
            email=f"{new_public_id('E').lower()}@example.org",
            name="Sup",
            roles="supervisor",
        )
        number = f"+1202555{uuid.uuid4().int % 9000 + 1000:04d}"
        caller, _ = await find_or_create_caller(
            session, app.state.sealer, app.state.broker, app.state.clock, number
        )
        assert caller is not None
        request = ErasureRequest(
            public_id=new_public_id("ER"),
            state="pending",
            requested_by_id=third.id,
            requested_at=app.state.clock.now(),
        )
        await app.state.sealer.seal(session, request, "phone", number)
        session.add(request)
        await session.commit()
    return {"request_id": request.public_id}


ORGANISATION_BODY = {
    "name": "Matrix Legal Aid",
    "services": ["legal_defense"],
    "languages": ["es"],
    "service_areas": ["queens"],
    "intake_phone": "+17185550100",
    "intake_url": "https://example.org/intake",
}


async def fresh_organisation(
    app: FastAPI, world: World, role: str, *, verified: bool = False
) -> dict[str, Any]:
    """A new directory entry with public contact details (verified when asked)."""
    from app.referrals import service as referrals

    async with app.state.database.sessionmaker() as session, session.begin():
        organisation = await referrals.create(
            session,
            app.state.clock,
            ORGANISATION_BODY | {"name": f"Matrix Org {new_public_id('X')}", "languages": ["es"]},
            actor=SETUP,
        )
        if verified:
            admin = (
                await session.scalars(select(User).where(User.public_id == world.callers["admin"].user_id))
            ).one()
            await referrals.verify(session, app.state.clock, organisation, admin, actor=SETUP)
    return {"organisation_id": organisation.public_id, "json": {"services": ["housing"]}}


async def referral_to_text(app: FastAPI, world: World, role: str) -> dict[str, Any]:
    """A fresh referral to a verified organisation on the world's case, whose caller may be texted."""
    from app.callers.service import find_or_create_caller
    from app.cases.models import Case, Referral

    organisation_id = (await fresh_organisation(app, world, role, verified=True))["organisation_id"]
    async with app.state.database.sessionmaker() as session:
        caller, _ = await find_or_create_caller(
            session, app.state.sealer, app.state.broker, app.state.clock, "+12025550146"
        )
        await session.commit()
    async with app.state.database.sessionmaker() as session, session.begin():
        from app.callers.models import Caller
        from app.referrals.models import Organisation

        assert caller is not None
        row = await session.get(Caller, caller.id)
        assert row is not None
        row.safe_to_text = True
        case = (await session.scalars(select(Case).where(Case.public_id == world.case))).one()
        case.caller_id = row.id
        organisation = (
            await session.scalars(select(Organisation).where(Organisation.public_id == organisation_id))
        ).one()
        creator = (
            await session.scalars(select(User).where(User.public_id == world.callers["admin"].user_id))
        ).one()
        referral = Referral(
            public_id=new_public_id("RF"),
            case_id=case.id,
            organisation_id=organisation.id,
            created_by_id=creator.id,
            created_at=app.state.clock.now(),
        )
        session.add(referral)
    return {"referral_id": referral.public_id}


async def report_on_world_case(app: FastAPI, world: World, role: str) -> dict[str, Any]:
    """The world's case made an anonymous report (once), so its reveal has something to show."""
    from app.cases.models import Case
    from app.reports.models import Report

    async with app.state.database.sessionmaker() as session, session.begin():
        case = (await session.scalars(select(Case).where(Case.public_id == world.case))).one()
        if await session.scalar(select(Report).where(Report.case_id == case.id)) is None:
            now = app.state.clock.now()
            session.add(
                Report(
                    public_id=new_public_id("RP"),
                    case_id=case.id,
                    channel="sms",
                    category="enforcement_report",
                    language="es",
                    created_at=now,
                    updated_at=now,
                )
            )
    return {"json": {"purpose": "follow_up"}}


async def new_staff(app: FastAPI, roles: str, prefix: str = "T") -> User:
    async with app.state.database.sessionmaker() as session, session.begin():
        user, _ = await accounts.create_user(
            session,
            app.state.sealer,
            app.state.clock,
            actor=SETUP,
            email=f"{new_public_id(prefix).lower()}@example.org",
            name="Target",
            roles=roles,
        )
    return user


async def pending_grant(app: FastAPI, target_id: str, requester_id: str, roles: list[str]) -> str:
    """A pending role grant of `roles` to `target_id`, asked by `requester_id` (public ids)."""
    async with app.state.database.sessionmaker() as session, session.begin():
        target = (await session.scalars(select(User).where(User.public_id == target_id))).one()
        requester = (await session.scalars(select(User).where(User.public_id == requester_id))).one()
        grant = await accounts.request_role_grant(
            session,
            app.state.clock,
            target,
            accounts.parse_roles(roles),
            requested_by=requester,
            actor=SETUP,
        )
    return grant.public_id


async def grant_by_another_admin(app: FastAPI, world: World, role: str) -> dict[str, Any]:
    """Supervisor for a fresh volunteer, asked by a third admin: any other admin may approve it."""
    target = await new_staff(app, "volunteer")
    requester = await new_staff(app, "admin", "A")
    grant = await pending_grant(app, target.public_id, requester.public_id, ["volunteer", "supervisor"])
    return {"user_id": target.public_id, "grant_id": grant}


async def grant_asked_by_caller(app: FastAPI, world: World, role: str) -> dict[str, Any]:
    """Supervisor for a fresh volunteer, asked by the caller themselves (the world's admin for the
    signed-out): nobody approves their own request."""
    target = await new_staff(app, "volunteer")
    requester = world.callers[role].user_id or world.callers["admin"].user_id
    assert requester is not None
    grant = await pending_grant(app, target.public_id, requester, ["volunteer", "supervisor"])
    return {"user_id": target.public_id, "grant_id": grant}


async def grant_of_caller(app: FastAPI, world: World, role: str) -> dict[str, Any]:
    """A change of the caller's own roles (to supervisor), asked by a third admin."""
    target = world.callers[role].user_id or world.callers["admin"].user_id
    assert target is not None
    requester = await new_staff(app, "admin", "A")
    grant = await pending_grant(app, target, requester.public_id, ["supervisor"])
    return {"user_id": target, "grant_id": grant}


def on_fresh(roles: str, payload: dict[str, Any]) -> Build:
    """`payload` for a fresh account holding `roles`."""

    async def build(app: FastAPI, world: World, role: str) -> dict[str, Any]:
        return {"user_id": (await new_staff(app, roles)).public_id, "json": payload}

    return build


def on_caller(payload: dict[str, Any]) -> Build:
    async def build(app: FastAPI, world: World, role: str) -> dict[str, Any]:
        return {"user_id": world.callers[role].user_id or "U-2222-2222", "json": payload}

    return build


async def assign_to_caller(app: FastAPI, world: World, role: str) -> dict[str, Any]:
    return {"json": {"assignee": world.callers[role].user_id or "U-2222-2222"}}


def new_account(roles: list[str]) -> Build:
    async def build(app: FastAPI, world: World, role: str) -> dict[str, Any]:
        email = f"{new_public_id('N').lower()}@example.org"
        return {"json": {"email": email, "name": "New", "roles": roles}}

    return build


async def reassignment_by_someone_else(app: FastAPI, world: World, role: str) -> dict[str, Any]:
    """A third supervisor gave the world's case to a fresh volunteer: listed for review."""
    from app.access.models import CaseReassignment
    from app.cases.models import Case

    mover = await new_staff(app, "supervisor", "S")
    assignee = await new_staff(app, "volunteer")
    async with app.state.database.sessionmaker() as session, session.begin():
        case = (await session.scalars(select(Case).where(Case.public_id == world.case))).one()
        move = CaseReassignment(
            public_id=new_public_id("RA"),
            case_id=case.id,
            supervisor_id=mover.id,
            assignee_id=assignee.id,
            previous_assignee_id=case.assignee_id,
            created_at=app.state.clock.now(),
        )
        session.add(move)
    return {"grant_id": move.public_id, "json": {"outcome": "justified"}}


BAD_TOKEN = {"token": "x" * 43}

MATRIX: dict[tuple[str, str], tuple[Build, dict[str, int]]] = {
    ("GET", "/healthz"): (nothing, expect(200, 200, 200, 200, 200, 200)),
    ("GET", "/readyz"): (nothing, expect(200, 200, 200, 200, 200, 200)),
    ("GET", "/metrics"): (nothing, expect(200, 200, 200, 200, 200, 200)),
    ("POST", "/api/v1/auth/login"): (bad_login, expect(401, 401, 401, 401, 401, 401)),
    ("POST", "/api/v1/auth/logout"): (nothing, expect(401, 200, 200, 200, 200, 200)),
    ("GET", "/api/v1/auth/me"): (nothing, expect(401, 200, 200, 200, 200, 200)),
    ("POST", "/api/v1/auth/enroll"): (
        body(BAD_TOKEN | {"password": PASSWORD}),
        expect(422, 422, 422, 422, 422, 422),
    ),
    ("POST", "/api/v1/auth/enroll/confirm"): (
        body(BAD_TOKEN | {"totp": "123456"}),
        expect(422, 422, 422, 422, 422, 422),
    ),
    ("POST", "/api/v1/auth/step-up"): (totp_body, expect(401, 200, 200, 200, 200, 200)),
    ("GET", "/api/v1/cases"): (nothing, expect(401, 200, 200, 200, 200, 403)),
    ("GET", "/api/v1/cases/{case_id}"): (nothing, expect(401, 200, 404, 200, 200, 403)),
    ("POST", "/api/v1/cases/{case_id}/reveal"): (
        body({"fields": ["caller_name", "notes"], "purpose": "intake"}),
        expect(401, 200, 404, 404, 200, 403),
    ),
    ("PATCH", "/api/v1/cases/{case_id}"): (body({"urgency": "high"}), expect(401, 200, 404, 200, 200, 403)),
    ("PUT", "/api/v1/cases/{case_id}/draft"): (
        body({"fields": {"caller_name": "Ana", "note": "half a thought"}}),
        expect(401, 200, 404, 404, 200, 403),
    ),
    ("DELETE", "/api/v1/cases/{case_id}/draft"): (nothing, expect(401, 204, 404, 404, 204, 403)),
    ("POST", "/api/v1/cases/{case_id}/notes"): (
        body({"body": "called back"}),
        expect(401, 201, 404, 404, 201, 403),
    ),
    ("POST", "/api/v1/cases/{case_id}/referrals"): (
        body({"organisation": "OR-4GAS-NYSC", "services": ["legal_defense"]}),
        expect(401, 201, 404, 201, 201, 403),
    ),
    ("POST", "/api/v1/cases/{case_id}/link-contact"): (repeat_contact, expect(401, 422, 404, 404, 404, 403)),
    ("POST", "/api/v1/cases/{case_id}/break-glass"): (break_glass_body, expect(401, 403, 403, 201, 201, 403)),
    ("GET", "/api/v1/break-glass/reviews"): (nothing, expect(401, 403, 403, 200, 200, 403)),
    ("POST", "/api/v1/break-glass/reviews/{grant_id}"): (
        grant_by_someone_else,
        expect(401, 403, 403, 200, 200, 403),
    ),
    ("GET", "/api/v1/audit"): (nothing, expect(401, 403, 403, 200, 200, 403)),
    ("POST", "/api/v1/audit/exports"): (body({}), expect(401, 403, 403, 200, 200, 403)),
    ("POST", "/api/v1/audit/verifications"): (nothing, expect(401, 403, 403, 202, 202, 403)),
    ("GET", "/api/v1/audit/verifications/latest"): (nothing, expect(401, 403, 403, 200, 200, 403)),
    ("GET", "/api/v1/users"): (nothing, expect(401, 403, 403, 200, 200, 200)),
    ("POST", "/api/v1/users"): (
        body({"email": "new.person@example.org", "name": "New", "roles": ["volunteer"]}),
        expect(401, 403, 403, 403, 403, 201),
    ),
    ("PATCH", "/api/v1/users/{user_id}"): (fresh_target_user, expect(401, 403, 403, 403, 403, 200)),
    # A grant asked by another admin: any other (stepped-up) admin approves it.
    ("POST", "/api/v1/users/{user_id}/role-grants/{grant_id}/approve"): (
        grant_by_another_admin,
        expect(401, 403, 403, 403, 403, 200),
    ),
    ("POST", "/api/v1/users/{user_id}/disable"): (fresh_target_user, expect(401, 403, 403, 403, 403, 200)),
    ("POST", "/api/v1/users/{user_id}/reset-mfa"): (fresh_target_user, expect(401, 403, 403, 403, 403, 200)),
    ("POST", "/api/v1/users/{user_id}/end-sessions"): (
        fresh_target_user,
        expect(401, 403, 403, 403, 403, 200),
    ),
    ("POST", "/api/v1/users/{user_id}/clear-sign-in-block"): (
        fresh_target_user,
        expect(401, 403, 403, 200, 200, 200),
    ),
    ("GET", "/api/v1/me/availability"): (nothing, expect(401, 200, 200, 403, 403, 403)),
    ("PUT", "/api/v1/me/availability"): (
        body({"state": "available", "voice_capacity": 0}),
        expect(401, 200, 200, 403, 403, 403),
    ),
    # Matrix volunteers have no phone on file: the start is refused after the permission check.
    ("POST", "/api/v1/me/phone-verification"): (nothing, expect(401, 422, 422, 403, 403, 403)),
    ("POST", "/api/v1/me/phone-verification/confirm"): (
        body({"code": "123456"}),
        expect(401, 422, 422, 403, 403, 403),
    ),
    ("GET", "/api/v1/schedule"): (nothing, expect(401, 200, 200, 200, 200, 200)),
    ("GET", "/api/v1/offers"): (nothing, expect(401, 200, 200, 403, 403, 403)),
    ("POST", "/api/v1/offers/{offer_id}/accept"): (offer_to_assigned, expect(401, 200, 404, 403, 403, 403)),
    ("POST", "/api/v1/offers/{offer_id}/decline"): (offer_to_assigned, expect(401, 200, 404, 403, 403, 403)),
    ("GET", "/api/v1/callbacks"): (nothing, expect(401, 200, 200, 403, 403, 403)),
    ("POST", "/api/v1/callbacks/{callback_id}/claim"): (open_callback, expect(401, 200, 200, 403, 403, 403)),
    ("GET", "/api/v1/chats/{conversation_id}/messages"): (
        conversation_on_world_case,
        expect(401, 200, 404, 200, 200, 403),
    ),
    ("POST", "/api/v1/chats/{conversation_id}/messages/reveal"): (
        with_body(conversation_on_world_case, {"purpose": "intake"}),
        expect(401, 200, 404, 404, 200, 403),
    ),
    ("POST", "/api/v1/chats/{conversation_id}/messages"): (
        with_body(conversation_on_world_case, {"body": "Hello"}),
        expect(401, 202, 404, 404, 404, 403),
    ),
    ("POST", "/api/v1/chats/{conversation_id}/close"): (
        conversation_on_world_case,
        expect(401, 200, 404, 404, 404, 403),
    ),
    ("GET", "/api/v1/rights"): (nothing, expect(401, 200, 200, 200, 200, 200)),
    ("POST", "/api/v1/rights"): (body(RIGHTS_BODY), expect(401, 403, 403, 403, 403, 201)),
    ("POST", "/api/v1/rights/{text_id}/review"): (
        rights_draft_by_someone_else,
        expect(401, 403, 403, 403, 403, 200),
    ),
    ("GET", "/api/v1/organisations"): (nothing, expect(401, 200, 200, 200, 200, 200)),
    ("POST", "/api/v1/organisations"): (body(ORGANISATION_BODY), expect(401, 403, 403, 403, 403, 201)),
    ("PATCH", "/api/v1/organisations/{organisation_id}"): (
        fresh_organisation,
        expect(401, 403, 403, 403, 403, 200),
    ),
    ("POST", "/api/v1/organisations/{organisation_id}/verify"): (
        fresh_organisation,
        expect(401, 403, 403, 403, 403, 200),
    ),
    ("DELETE", "/api/v1/organisations/{organisation_id}"): (
        fresh_organisation,
        expect(401, 403, 403, 403, 403, 204),
    ),
    ("POST", "/api/v1/cases/{case_id}/referrals/{referral_id}/send"): (
        referral_to_text,
        expect(401, 202, 404, 404, 202, 403),
    ),
    ("GET", "/api/v1/schedule/on-call"): (nothing, expect(401, 403, 403, 200, 200, 403)),
    ("GET", "/api/v1/events"): (nothing, expect(401, 200, 200, 200, 200, 200)),
    ("PUT", "/api/v1/schedule/{user_id}"): (
        for_schedule_target({"shifts": [{"weekday": "sat", "start": "22:00", "duration_minutes": 480}]}),
        expect(401, 403, 403, 200, 200, 200),
    ),
    ("POST", "/api/v1/schedule/{user_id}/overrides"): (
        for_schedule_target({"date": "2026-12-24", "kind": "off"}),
        expect(401, 403, 403, 201, 201, 201),
    ),
    ("DELETE", "/api/v1/schedule/{user_id}/overrides/{override_id}"): (
        override_of_target,
        expect(401, 403, 403, 204, 204, 204),
    ),
    ("POST", "/api/v1/cases/{case_id}/report/reveal"): (
        report_on_world_case,
        # A report names nobody: any supervisor reads it with a stated purpose (audited).
        expect(401, 200, 404, 200, 200, 403),
    ),
    ("GET", "/api/v1/holds"): (nothing, expect(401, 403, 403, 200, 200, 403)),
    ("POST", "/api/v1/holds"): (hold_on_world_case, expect(401, 403, 403, 201, 201, 403)),
    ("POST", "/api/v1/holds/{hold_id}/release"): (placed_hold, expect(401, 403, 403, 200, 200, 403)),
    ("GET", "/api/v1/erasures"): (nothing, expect(401, 403, 403, 200, 200, 403)),
    # Blind: recorded for a second supervisor whether or not anyone called from the number.
    ("POST", "/api/v1/erasures"): (body({"phone": "+12025550100"}), expect(401, 403, 403, 202, 202, 403)),
    ("POST", "/api/v1/erasures/{request_id}/approve"): (
        erasure_by_someone_else,
        expect(401, 403, 403, 200, 200, 403),
    ),
    # The console: pages send the signed-out to the sign-in page (303); what a role may not see
    # is a 404 page, like a missing one; fragments fetched by the page's script answer 401/403.
    ("GET", "/console/login"): (nothing, expect(200, 303, 303, 303, 303, 303, 200)),
    ("GET", "/console/enroll"): (nothing, expect(200, 200, 200, 200, 200, 200)),
    ("GET", "/console/exit"): (nothing, expect(200, 200, 200, 200, 200, 200)),
    ("GET", "/console"): (nothing, expect(303, 200, 200, 200, 200, 200)),
    ("GET", "/console/fragments/offers"): (nothing, expect(401, 200, 200, 403, 403, 403)),
    ("GET", "/console/offers/{offer_id}"): (offer_to_assigned, expect(303, 303, 303, 303, 303, 303)),
    ("GET", "/console/cases/{case_id}"): (nothing, expect(303, 200, 404, 200, 200, 404)),
    ("GET", "/console/chats/{conversation_id}"): (
        conversation_on_world_case,
        expect(303, 200, 404, 200, 200, 404),
    ),
    ("GET", "/console/board"): (nothing, expect(303, 404, 404, 200, 200, 404)),
    ("GET", "/console/fragments/board"): (nothing, expect(401, 403, 403, 200, 200, 403)),
    ("GET", "/console/audit"): (nothing, expect(303, 404, 404, 200, 200, 404)),
    ("GET", "/console/cases"): (nothing, expect(303, 200, 200, 200, 200, 404)),
    ("GET", "/console/break-glass"): (nothing, expect(303, 404, 404, 200, 200, 404)),
    ("GET", "/console/schedule"): (nothing, expect(303, 404, 404, 200, 200, 200)),
    ("GET", "/console/users"): (nothing, expect(303, 404, 404, 200, 200, 200)),
    ("GET", "/openapi.json"): (nothing, expect(200, 200, 200, 200, 200, 200)),
    ("GET", "/docs"): (nothing, expect(200, 200, 200, 200, 200, 200)),
    ("GET", "/docs/oauth2-redirect"): (nothing, expect(200, 200, 200, 200, 200, 200)),
}


# Paths that change who holds which role or case, beyond one row per route: what → (method, path,
# request builder, expected status per caller). Matrix admins signed in just now: their step-up is
# fresh. Every path is also a MATRIX route.
USER = "/api/v1/users/{user_id}"
APPROVE = USER + "/role-grants/{grant_id}/approve"
ROLE_CHANGES: dict[str, tuple[str, str, Build, dict[str, int]]] = {
    # The finding: a supervisor who volunteers gave themselves a case and read it, no break-glass.
    "self-assignment": (
        "PATCH",
        "/api/v1/cases/{case_id}",
        assign_to_caller,
        expect(401, 404, 404, 403, 403, 403),
    ),
    # The finding: an admin added supervisor and volunteer to their own roles.
    "own roles": ("PATCH", USER, on_caller({"roles": ["volunteer"]}), expect(401, 403, 403, 403, 403, 403)),
    "own name": ("PATCH", USER, on_caller({"name": "Same"}), expect(401, 403, 403, 403, 403, 200)),
    "grant supervisor": (
        "PATCH",
        USER,
        on_fresh("volunteer", {"roles": ["volunteer", "supervisor"]}),
        expect(401, 403, 403, 403, 403, 202),
    ),
    "grant admin": (
        "PATCH",
        USER,
        on_fresh("volunteer", {"roles": ["admin"]}),
        expect(401, 403, 403, 403, 403, 202),
    ),
    "remove a role": (
        "PATCH",
        USER,
        on_fresh("supervisor,volunteer", {"roles": ["volunteer"]}),
        expect(401, 403, 403, 403, 403, 200),
    ),
    "add volunteer": (
        "PATCH",
        USER,
        on_fresh("supervisor", {"roles": ["supervisor", "volunteer"]}),
        expect(401, 403, 403, 403, 403, 200),
    ),
    "admin + volunteer": (
        "PATCH",
        USER,
        on_fresh("volunteer", {"roles": ["admin", "volunteer"]}),
        expect(401, 403, 403, 403, 403, 422),
    ),
    "admin + supervisor": (
        "PATCH",
        USER,
        on_fresh("admin", {"roles": ["admin", "supervisor"]}),
        expect(401, 403, 403, 403, 403, 422),
    ),
    "new supervisor": (
        "POST",
        "/api/v1/users",
        new_account(["supervisor"]),
        expect(401, 403, 403, 403, 403, 201),
    ),
    "new admin + supervisor": (
        "POST",
        "/api/v1/users",
        new_account(["admin", "supervisor"]),
        expect(401, 403, 403, 403, 403, 422),
    ),
    "approve own request": ("POST", APPROVE, grant_asked_by_caller, expect(401, 403, 403, 403, 403, 409)),
    "approve own roles": ("POST", APPROVE, grant_of_caller, expect(401, 403, 403, 403, 403, 403)),
    "review a reassignment": (
        "POST",
        "/api/v1/break-glass/reviews/{grant_id}",
        reassignment_by_someone_else,
        expect(401, 403, 403, 200, 200, 403),
    ),
}


def app_routes(app: FastAPI) -> set[tuple[str, str]]:
    """Every (method, path) the app serves: the OpenAPI paths plus the documentation pages."""
    found = {
        (method.upper(), path) for path, operations in app.openapi()["paths"].items() for method in operations
    }
    found |= {
        (method, route.path)  # type: ignore[attr-defined]
        for route in app.router.routes
        if getattr(route, "path", None)
        for method in (getattr(route, "methods", None) or set()) - {"HEAD", "OPTIONS"}
    }
    # The console's pages are left out of the OpenAPI description: find them in the routers.
    found |= {(m, path) for m, path in walk_routes(app.router.routes) if path.startswith("/console")}
    return found


def walk_routes(routes: list[Any], prefix: str = "") -> Iterator[tuple[str, str]]:
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            yield from walk_routes(inner.routes, prefix + route.include_context.prefix)
        elif isinstance(route, APIRoute):
            for method in route.methods - {"HEAD", "OPTIONS"}:
                yield method, prefix + route.path


def test_every_route_is_in_the_matrix(app: FastAPI) -> None:
    routes = app_routes(app)
    assert sorted(routes - set(MATRIX)) == [], "add these routes to the authorization matrix"
    assert sorted(set(MATRIX) - routes) == [], "stale matrix entries"
    public = {"/auth/login", "/auth/enroll", "/auth/enroll/confirm"}
    for router in API_ROUTERS:
        for route in router.routes:
            assert isinstance(route, APIRoute)
            if route.path in public:
                continue
            names = {d.call.__name__ for d in route.dependant.dependencies if d.call is not None}
            assert any(n.startswith("require_") for n in names), f"{route.path} has no require(Permission…)"


@pytest.fixture(autouse=True)
def cheap_hashing(app: FastAPI) -> None:
    from app.accounts.passwords import Passwords

    app.state.auth.hasher.passwords = Passwords(time_cost=1, memory_cost=1024, allow_below_floor=True)
    app.state.auth.addresses.per_minute = 100_000


async def build_world(app: FastAPI, client: httpx.AsyncClient) -> World:
    callers: dict[str, Caller] = {"anonymous": Caller(None, None)}
    for role, roles in (
        ("assigned", "volunteer"),
        ("other_volunteer", "volunteer"),
        ("supervisor", "supervisor"),
        ("supervisor_bg", "supervisor"),
        ("admin", "admin"),
        ("disabled", "volunteer,supervisor"),
    ):
        email, token = await create_staff(app, roles=roles)
        secret = await enrol(client, app, token)
        async with app.state.database.sessionmaker() as session:
            user = (await session.scalars(select(User).where(User.email == email))).one()
        callers[role] = Caller(email, secret, user.public_id)
    async with app.state.database.sessionmaker() as session, session.begin():
        users = {
            c.user_id: u
            for u in await session.scalars(select(User))
            for c in callers.values()
            if c.user_id == u.public_id
        }
        assigned = users[callers["assigned"].user_id]
        case = await create_case(
            session,
            app.state.sealer,
            app.state.clock,
            actor=SETUP,
            language="es",
            category="detention",
            assignee=assigned,
            fields={"caller_name": "Matrix Caller"},
        )
        sup_bg = users[callers["supervisor_bg"].user_id]
        grant = BreakGlassGrant(
            public_id=new_public_id("BG"),
            case_id=case.id,
            supervisor_id=sup_bg.id,
            created_at=app.state.clock.now(),
            expires_at=app.state.clock.now() + timedelta(days=1),
        )
        await app.state.sealer.seal(session, grant, "reason", "standing grant for the matrix test")
        session.add(grant)
        session.add(
            AuditVerification(
                public_id=new_public_id("AV"),
                state="ok",
                entries_checked=0,
                problems=[],
                requested_at=app.state.clock.now(),
            )
        )
        await accounts.disable_user(session, app.state.clock, users[callers["disabled"].user_id], actor=SETUP)
    return World(case.public_id, callers)


async def login(app: FastAPI, caller: Caller, disabled: bool) -> tuple[httpx.AsyncClient, dict[str, str]]:
    http = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, raise_app_exceptions=False), base_url="https://hotline.test"
    )
    if caller.email is None:
        return http, {}
    if disabled:
        # A session cookie minted before the account was disabled: it must not work any more.
        http.cookies.set(
            "__Host-hotline_session", "stale-session-token-from-before-disabling", domain="hotline.test"
        )
        return http, {"X-CSRF-Token": "x"}
    response = await http.post(
        "/api/v1/auth/login",
        json={"email": caller.email, "password": PASSWORD, "totp": next_code(app, caller.secret or "")},
    )
    assert response.status_code == 200, response.text
    return http, {"X-CSRF-Token": response.json()["csrf_token"]}


async def test_authorization_matrix(app: FastAPI, client: httpx.AsyncClient) -> None:
    world = await build_world(app, client)
    mismatches = []
    for (method, template), (build, expected) in MATRIX.items():
        for role in ROLES:
            http, headers = await login(app, world.callers[role], disabled=role == "disabled")
            request = await build(app, world, role)
            path = template.format(
                case_id=world.case,
                user_id=request.get("user_id", "U-2222-2222"),
                grant_id=request.get("grant_id", "BG-2222-2222"),
                override_id=request.get("override_id", "SO-2222-2222"),
                offer_id=request.get("offer_id", "OF-2222-2222"),
                callback_id=request.get("callback_id", "CB-2222-2222"),
                conversation_id=request.get("conversation_id", "CV-2222-2222"),
                text_id=request.get("text_id", "RT-2222-2222"),
                hold_id=request.get("hold_id", "LH-2222-2222"),
                request_id=request.get("request_id", "ER-2222-2222"),
                organisation_id=request.get("organisation_id", "OR-2222-2222"),
                referral_id=request.get("referral_id", "RF-2222-2222"),
            )
            response = await http.request(method, path, json=request.get("json"), headers=headers)
            if response.status_code != expected[role]:
                mismatches.append(
                    f"{method} {template} as {role}: {response.status_code} != {expected[role]}"
                )
            await http.aclose()
    assert mismatches == []


async def test_role_changing_paths(app: FastAPI, client: httpx.AsyncClient) -> None:
    world = await build_world(app, client)
    assert {(method, template) for method, template, _, _ in ROLE_CHANGES.values()} <= set(MATRIX)
    mismatches = []
    for what, (method, template, build, expected) in ROLE_CHANGES.items():
        for role in ROLES:
            http, headers = await login(app, world.callers[role], disabled=role == "disabled")
            request = await build(app, world, role)
            path = template.format(
                case_id=world.case,
                user_id=request.get("user_id", "U-2222-2222"),
                grant_id=request.get("grant_id", "RG-2222-2222"),
            )
            response = await http.request(method, path, json=request.get("json"), headers=headers)
            if response.status_code != expected[role]:
                mismatches.append(
                    f"{what}: {method} {template} as {role}: {response.status_code} != {expected[role]}"
                )
            await http.aclose()
    assert mismatches == []


async def test_an_unassigned_case_answers_exactly_like_a_missing_one(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    world = await build_world(app, client)
    http, headers = await login(app, world.callers["other_volunteer"], disabled=False)
    for method, suffix, payload in (
        ("GET", "", None),
        ("POST", "/reveal", {"fields": ["caller_name"], "purpose": "intake"}),
        ("PATCH", "", {"urgency": "low"}),
        ("POST", "/notes", {"body": "x"}),
    ):
        real = await http.request(
            method, f"/api/v1/cases/{world.case}{suffix}", json=payload, headers=headers
        )
        missing = await http.request(
            method, f"/api/v1/cases/HX-ZZZZ-ZZZZ{suffix}", json=payload, headers=headers
        )
        assert real.status_code == missing.status_code == 404
        strip = lambda r: {k: v for k, v in r.json()["error"].items() if k != "request_id"}  # noqa: E731
        assert strip(real) == strip(missing)
    await http.aclose()
