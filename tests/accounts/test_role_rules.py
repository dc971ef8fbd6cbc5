"""Who may give whom case content: the rules behind the finding "case content without break-glass".

* A supervisor does not assign a case to themselves (another supervisor may; otherwise break-glass),
  and every reassignment is listed for review by a third supervisor, like a break-glass grant.
* Nobody changes their own roles.
* Admin never comes with volunteer or supervisor (admins see no case content), at creation too.
* Granting supervisor or admin takes the acting admin's step-up and a second, distinct admin's
  approval; removing roles or adding volunteer is one step.
* `hotline users add` on the host stays the audited bootstrap (a single admin cannot approve).
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from app.access.models import BreakGlassGrant, CaseReassignment
from app.accounts import service as accounts
from app.accounts.models import RoleGrant, User
from app.audit.models import AuditEntry
from app.audit.service import Actor
from app.cases.service import create_case
from app.clock import FrozenClock
from app.db.engine import Database
from app.errors import InvalidInput
from tests.support.cli import hotline
from tests.support.factories import make_services
from tests.support.staff import SignedInClient, next_code, sign_in, user_row

SETUP = Actor("cli:test")


@pytest.fixture
def cheap_hashing(app: FastAPI) -> None:
    from app.accounts.passwords import Passwords

    app.state.auth.hasher.passwords = Passwords(time_cost=1, memory_cost=1024, allow_below_floor=True)


async def new_case(app: FastAPI, assignee: SignedInClient) -> str:
    user = await user_row(app, assignee.user_public_id)
    async with app.state.database.sessionmaker() as session, session.begin():
        case = await create_case(
            session,
            app.state.sealer,
            app.state.clock,
            actor=SETUP,
            language="es",
            category="detention",
            assignee=user,
            fields={"caller_name": "Ana Canary"},
        )
        return case.public_id


async def entries(app: FastAPI, *actions: str) -> list[AuditEntry]:
    async with app.state.database.sessionmaker() as session:
        query = select(AuditEntry).order_by(AuditEntry.seq)
        if actions:
            query = query.where(AuditEntry.action.in_(actions))
        return list(await session.scalars(query))


async def count(app: FastAPI, model: type) -> int:
    async with app.state.database.sessionmaker() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def step_up(app: FastAPI, staff: SignedInClient) -> None:
    response = await staff.http.post(
        "/api/v1/auth/step-up", json={"totp": next_code(app, staff.secret)}, headers=staff.headers()
    )
    assert response.status_code == 200, response.text


def let_step_up_lapse(app: FastAPI) -> None:
    """Past the step-up window (5 min), within the idle limit (15 min)."""
    clock: FrozenClock = app.state.clock
    clock.advance(timedelta(minutes=6))


async def roles_of(app: FastAPI, staff: SignedInClient) -> list[str]:
    return sorted((await user_row(app, staff.user_public_id)).roles.split(","))


def error_code(response: httpx.Response) -> str:
    return str(response.json()["error"]["code"])


async def assert_public_ids_only(app: FastAPI, *people: SignedInClient) -> None:
    """The entries name staff by public id: never an email or a row UUID."""
    rows = [await user_row(app, p.user_public_id) for p in people]
    for entry in await entries(app):
        text = json.dumps([entry.object_id, entry.details, entry.actor_id])
        assert "@" not in text, entry.action
        assert not any(str(row.id) in text or row.id.hex in text for row in rows), entry.action


async def reveal(staff: SignedInClient, case: str) -> httpx.Response:
    return await staff.http.post(
        f"/api/v1/cases/{case}/reveal",
        json={"fields": ["caller_name"], "purpose": "follow_up"},
        headers=staff.headers(),
    )


async def test_a_supervisor_does_not_assign_a_case_to_themselves(app: FastAPI, cheap_hashing: None) -> None:
    """The finding: a supervisor who also volunteers PATCHed the assignee to themselves and read
    the case with no reason, no TOTP and nothing to review."""
    volunteer = await sign_in(app)
    both = await sign_in(app, roles="supervisor,volunteer")
    case = await new_case(app, volunteer)
    taken = await both.http.patch(
        f"/api/v1/cases/{case}", json={"assignee": both.user_public_id}, headers=both.headers()
    )
    assert taken.status_code == 403 and error_code(taken) == "self_assignment"
    shown = (await both.http.get(f"/api/v1/cases/{case}")).json()
    assert shown["assignee"] == volunteer.user_public_id
    assert (await reveal(both, case)).status_code == 404
    # Along with another change, nothing of the request is kept.
    mixed = await both.http.patch(
        f"/api/v1/cases/{case}",
        json={"assignee": both.user_public_id, "urgency": "high"},
        headers=both.headers(),
    )
    assert mixed.status_code == 403
    assert (await both.http.get(f"/api/v1/cases/{case}")).json()["urgency"] != "high"
    refused = await entries(app, "case.assigned")
    assert [(e.outcome, e.object_id, e.actor_id) for e in refused] == [
        ("denied", case, both.user_public_id)
    ] * 2
    assert refused[0].details == {"assignee": both.user_public_id, "reason": "self_assignment"}
    assert await count(app, CaseReassignment) == 0 and await count(app, BreakGlassGrant) == 0
    await assert_public_ids_only(app, volunteer, both)
    for staff in (volunteer, both):
        await staff.http.aclose()


async def test_another_supervisor_may_assign_and_every_reassignment_is_reviewed(
    app: FastAPI, cheap_hashing: None
) -> None:
    volunteer = await sign_in(app)
    both = await sign_in(app, roles="supervisor,volunteer")
    mover = await sign_in(app, roles="supervisor")
    reviewer = await sign_in(app, roles="supervisor")
    case = await new_case(app, volunteer)
    moved = await mover.http.patch(
        f"/api/v1/cases/{case}", json={"assignee": both.user_public_id}, headers=mover.headers()
    )
    assert moved.status_code == 200 and moved.json()["assignee"] == both.user_public_id
    assert (await reveal(both, case)).status_code == 200  # the assignee reads it, as intended
    again = await mover.http.patch(
        f"/api/v1/cases/{case}", json={"assignee": both.user_public_id}, headers=mover.headers()
    )
    assert again.status_code == 200  # not a change: nothing more to review
    listed = (await reviewer.http.get("/api/v1/break-glass/reviews")).json()
    assert len(listed) == 1
    (move,) = listed
    assert move["kind"] == "reassignment" and move["id"].startswith("RA-")
    assert (move["case"], move["supervisor"], move["assignee"], move["previous_assignee"]) == (
        case,
        mover.user_public_id,
        both.user_public_id,
        volunteer.user_public_id,
    )
    assert move["reviewed_at"] is None and move["expires_at"] is None
    assigned = await entries(app, "case.assigned")
    assert assigned[0].details == {"assignee": both.user_public_id, "review": move["id"]}
    # Neither the supervisor who moved it nor the one who got it reviews it.
    for own in (mover, both):
        refused = await own.http.post(
            f"/api/v1/break-glass/reviews/{move['id']}", json={"outcome": "justified"}, headers=own.headers()
        )
        assert refused.status_code == 409, own.user_public_id
    done = await reviewer.http.post(
        f"/api/v1/break-glass/reviews/{move['id']}",
        json={"outcome": "unjustified"},
        headers=reviewer.headers(),
    )
    assert done.status_code == 200, done.text
    assert done.json()["reviewed_by"] == reviewer.user_public_id and done.json()["outcome"] == "unjustified"
    assert (await reviewer.http.get("/api/v1/break-glass/reviews")).json() == []
    everything = (await reviewer.http.get("/api/v1/break-glass/reviews", params={"pending": "false"})).json()
    assert [m["id"] for m in everything] == [move["id"]]
    twice = await reviewer.http.post(
        f"/api/v1/break-glass/reviews/{move['id']}", json={"outcome": "justified"}, headers=reviewer.headers()
    )
    assert twice.status_code == 409
    (reviewed,) = await entries(app, "case.reassignment_reviewed")
    assert reviewed.object_id == move["id"] and reviewed.details == {"case": case, "verdict": "unjustified"}
    # The console's review page lists it with the break-glass grants.
    page = await reviewer.http.get("/console/break-glass")
    assert page.status_code == 200 and case in page.text
    await assert_public_ids_only(app, volunteer, both, mover, reviewer)
    for staff in (volunteer, both, mover, reviewer):
        await staff.http.aclose()


async def test_nobody_changes_their_own_roles(app: FastAPI, cheap_hashing: None) -> None:
    """The finding: an admin (no content by design) PATCHed their own roles to add supervisor and
    volunteer, with no step-up, then assigned cases to themselves."""
    admin = await sign_in(app, roles="admin")
    await step_up(app, admin)
    for roles in (["admin", "supervisor", "volunteer"], ["supervisor", "volunteer"], ["volunteer"]):
        response = await admin.http.patch(
            f"/api/v1/users/{admin.user_public_id}", json={"roles": roles}, headers=admin.headers()
        )
        assert response.status_code == 403 and error_code(response) == "own_roles", roles
    assert await roles_of(app, admin) == ["admin"]
    assert await count(app, RoleGrant) == 0
    assert (await admin.http.get("/api/v1/cases")).status_code == 403
    # Their own name and time zone, with roles as they are, stay editable.
    renamed = await admin.http.patch(
        f"/api/v1/users/{admin.user_public_id}",
        json={"name": "Ada", "roles": ["admin"], "timezone": "America/Chicago"},
        headers=admin.headers(),
    )
    assert renamed.status_code == 200 and renamed.json()["name"] == "Ada"
    refused = [e for e in await entries(app, "user.updated") if e.outcome == "denied"]
    assert len(refused) == 3
    assert {(e.object_id, e.actor_id, e.details["reason"]) for e in refused} == {
        (admin.user_public_id, admin.user_public_id, "own_roles")
    }
    await assert_public_ids_only(app, admin)
    await admin.http.aclose()


async def test_admin_never_comes_with_a_content_role(app: FastAPI, cheap_hashing: None) -> None:
    admin = await sign_in(app, roles="admin")
    other_admin = await sign_in(app, roles="admin")
    volunteer = await sign_in(app)
    await step_up(app, admin)
    for target, roles in (
        (volunteer, ["admin", "volunteer"]),
        (volunteer, ["volunteer", "supervisor", "admin"]),
        (other_admin, ["admin", "supervisor"]),
        (other_admin, ["admin", "volunteer"]),
    ):
        response = await admin.http.patch(
            f"/api/v1/users/{target.user_public_id}", json={"roles": roles}, headers=admin.headers()
        )
        assert response.status_code == 422 and error_code(response) == "admin_no_content_roles", roles
    created = await admin.http.post(
        "/api/v1/users",
        json={"email": "both@example.org", "name": "Both", "roles": ["admin", "supervisor"]},
        headers=admin.headers(),
    )
    assert created.status_code == 422 and error_code(created) == "admin_no_content_roles"
    assert await roles_of(app, volunteer) == ["volunteer"] and await roles_of(app, other_admin) == ["admin"]
    assert await count(app, RoleGrant) == 0
    async with app.state.database.sessionmaker() as session:
        with pytest.raises(InvalidInput) as refused:
            await accounts.create_user(
                session,
                app.state.sealer,
                app.state.clock,
                actor=SETUP,
                email="host@example.org",
                name="Host",
                roles="admin,volunteer",
            )
        assert refused.value.code == "admin_no_content_roles"
    for staff in (admin, other_admin, volunteer):
        await staff.http.aclose()


async def test_granting_supervisor_or_admin_takes_a_step_up_and_a_second_admin(
    app: FastAPI, cheap_hashing: None
) -> None:
    first = await sign_in(app, roles="admin")
    second = await sign_in(app, roles="admin")
    target = await sign_in(app)
    path = f"/api/v1/users/{target.user_public_id}"
    let_step_up_lapse(app)
    stale = await first.http.patch(path, json={"roles": ["volunteer", "supervisor"]}, headers=first.headers())
    assert stale.status_code == 403 and error_code(stale) == "step_up_required"
    assert await count(app, RoleGrant) == 0
    await step_up(app, first)
    asked = await first.http.patch(path, json={"roles": ["volunteer", "supervisor"]}, headers=first.headers())
    assert asked.status_code == 202, asked.text
    grant = asked.json()["pending_role_grant"]
    assert grant["roles"] == ["supervisor", "volunteer"] and grant["requested_by"] == first.user_public_id
    assert asked.json()["roles"] == ["volunteer"]  # nothing changes before the approval
    assert await roles_of(app, target) == ["volunteer"]
    assert (await target.http.get("/api/v1/audit")).status_code == 403
    listed = {u["id"]: u for u in (await second.http.get("/api/v1/users")).json()}
    assert listed[target.user_public_id]["pending_role_grant"]["id"] == grant["id"]
    approve = f"{path}/role-grants/{grant['id']}/approve"
    # Not by the admin who asked, not by the person concerned, not without a step-up.
    same = await first.http.post(approve, headers=first.headers())
    assert same.status_code == 409 and error_code(same) == "same_admin"
    assert (await target.http.post(approve, headers=target.headers())).status_code == 403
    let_step_up_lapse(app)
    unconfirmed = await second.http.post(approve, headers=second.headers())
    assert unconfirmed.status_code == 403 and error_code(unconfirmed) == "step_up_required"
    assert await roles_of(app, target) == ["volunteer"]
    await step_up(app, second)
    approved = await second.http.post(approve, headers=second.headers())
    assert approved.status_code == 200, approved.text
    assert (
        approved.json()["roles"] == ["supervisor", "volunteer"]
        and approved.json()["pending_role_grant"] is None
    )
    assert await roles_of(app, target) == ["supervisor", "volunteer"]
    assert (await target.http.get("/api/v1/audit")).status_code == 200
    assert (await second.http.post(approve, headers=second.headers())).status_code == 409
    (requested,) = await entries(app, "user.role_grant_requested")
    assert (requested.actor_id, requested.object_id) == (first.user_public_id, target.user_public_id)
    assert requested.details == {
        "grant": grant["id"],
        "roles": "supervisor+volunteer",
        "roles_before": "volunteer",
        "cancelled": 0,
    }
    decisions = await entries(app, "user.role_grant_approved")
    assert [(e.outcome, e.actor_id) for e in decisions] == [
        ("denied", first.user_public_id),
        ("ok", second.user_public_id),
    ]
    assert decisions[0].details == {"grant": grant["id"], "reason": "same_admin"}
    assert decisions[-1].details == {
        "grant": grant["id"],
        "roles": "supervisor+volunteer",
        "requested_by": first.user_public_id,
    }
    # An admin moved to supervisor does not approve their own move.
    await step_up(app, first)
    moving = await first.http.patch(
        f"/api/v1/users/{second.user_public_id}", json={"roles": ["supervisor"]}, headers=first.headers()
    )
    assert moving.status_code == 202
    await step_up(app, second)
    own = await second.http.post(
        f"/api/v1/users/{second.user_public_id}/role-grants/{moving.json()['pending_role_grant']['id']}/approve",
        headers=second.headers(),
    )
    assert own.status_code == 403 and error_code(own) == "own_roles"
    assert await roles_of(app, second) == ["admin"]
    await assert_public_ids_only(app, first, second, target)
    for staff in (first, second, target):
        await staff.http.aclose()


async def test_a_new_account_gets_supervisor_or_admin_only_through_a_grant(
    app: FastAPI, cheap_hashing: None
) -> None:
    first = await sign_in(app, roles="admin")
    second = await sign_in(app, roles="admin")
    await step_up(app, first)
    created = await first.http.post(
        "/api/v1/users",
        json={"email": "next.admin@example.org", "name": "Next Admin", "roles": ["admin"]},
        headers=first.headers(),
    )
    assert created.status_code == 201, created.text
    user = created.json()["user"]
    assert user["roles"] == [] and user["pending_role_grant"]["roles"] == ["admin"]
    await step_up(app, second)
    approved = await second.http.post(
        f"/api/v1/users/{user['id']}/role-grants/{user['pending_role_grant']['id']}/approve",
        headers=second.headers(),
    )
    assert approved.status_code == 200 and approved.json()["roles"] == ["admin"]
    (made,) = [e for e in await entries(app, "user.created") if e.object_id == user["id"]]
    assert made.actor_id == first.user_public_id and made.details == {"roles": "none"}
    for staff in (first, second):
        await staff.http.aclose()


async def test_removing_roles_or_adding_volunteer_is_one_step_and_voids_a_pending_grant(
    app: FastAPI, cheap_hashing: None
) -> None:
    first = await sign_in(app, roles="admin")
    second = await sign_in(app, roles="admin")
    target = await sign_in(app, roles="supervisor")
    path = f"/api/v1/users/{target.user_public_id}"
    await step_up(app, first)
    asked = await first.http.patch(path, json={"roles": ["admin"]}, headers=first.headers())
    assert asked.status_code == 202
    grant = asked.json()["pending_role_grant"]["id"]
    let_step_up_lapse(app)  # neither removing nor adding volunteer needs it
    added = await second.http.patch(
        path, json={"roles": ["supervisor", "volunteer"]}, headers=second.headers()
    )
    assert added.status_code == 200 and added.json()["roles"] == ["supervisor", "volunteer"]
    assert added.json()["pending_role_grant"] is None
    removed = await second.http.patch(path, json={"roles": ["volunteer"]}, headers=second.headers())
    assert removed.status_code == 200 and removed.json()["roles"] == ["volunteer"]
    await step_up(app, second)
    stale = await second.http.post(f"{path}/role-grants/{grant}/approve", headers=second.headers())
    assert stale.status_code == 409 and error_code(stale) == "not_pending"
    assert await roles_of(app, target) == ["volunteer"]
    changes = [e for e in await entries(app, "user.updated") if e.outcome == "ok"]
    assert [e.details for e in changes] == [{"roles": "supervisor+volunteer"}, {"roles": "volunteer"}]
    for staff in (first, second, target):
        await staff.http.aclose()


async def test_the_console_shows_a_pending_grant_and_its_approval(app: FastAPI, cheap_hashing: None) -> None:
    first = await sign_in(app, roles="admin")
    second = await sign_in(app, roles="admin")
    target = await sign_in(app)
    await step_up(app, first)
    asked = await first.http.patch(
        f"/api/v1/users/{target.user_public_id}",
        json={"roles": ["supervisor", "volunteer"], "languages": ["en"], "timezone": "America/New_York"},
        headers=first.headers(),
    )
    assert asked.status_code == 202
    grant = asked.json()["pending_role_grant"]["id"]
    own_page = await first.http.get("/console/users")
    assert own_page.status_code == 200 and f'data-pending-grant="{grant}"' in own_page.text
    assert f"/role-grants/{grant}/approve" not in own_page.text  # the one who asked cannot approve
    other_page = await second.http.get("/console/users")
    assert other_page.status_code == 200 and f"/role-grants/{grant}/approve" in other_page.text
    for staff in (first, second, target):
        await staff.http.aclose()


async def test_the_host_command_is_the_audited_bootstrap(
    database: Database, fresh_database_url: str, clock: FrozenClock, tmp_path: Path
) -> None:
    """With a single admin nobody can approve a grant: `hotline users add` on the host gives roles
    at once (audited as `cli:…`), and refuses admin with a content role like any bad input."""
    make_services(database, clock, tmp_path / "keys.json")
    env = {"HOTLINE_DATABASE_URL": fresh_database_url, "HOTLINE_KEYRING_FILE": str(tmp_path / "keys.json")}
    base = ["users", "add", "--name", "Ana"]
    mixed = hotline(*base, "--email", "ana@example.org", "--roles", "admin,supervisor", env=env, cwd=tmp_path)
    assert mixed.returncode == 2 and "cannot be combined" in mixed.stderr and "Traceback" not in mixed.stderr
    ok = hotline(*base, "--email", "ana@example.org", "--roles", "admin", env=env, cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    async with database.sessionmaker() as session:
        (user,) = list(await session.scalars(select(User)))
        assert user.roles == "admin"
        (created,) = list(
            await session.scalars(select(AuditEntry).where(AuditEntry.action == "user.created"))
        )
        assert created.actor_id.startswith("cli:") and created.details == {"roles": "admin"}
        assert await session.scalar(select(func.count()).select_from(RoleGrant)) == 0
