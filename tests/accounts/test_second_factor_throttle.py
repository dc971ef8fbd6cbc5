"""Second factors inside a session (step-up, break-glass) share the sign-in failure counter.

Security review, finding 2: wrong step-up and break-glass codes were unthrottled (150 wrong codes in
3 s, the right one accepted afterwards). Now: 429 with Retry-After while the sign-in delay runs
(the right code too), the session ends after `SECOND_FACTOR_SESSION_LIMIT` failures, everything is
audited, and a sign-in from the volunteer's own browser (known-device cookie) still gets through.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from app.access.models import BreakGlassGrant
from app.accounts import totp
from app.accounts.auth import CSRF_HEADER, SECOND_FACTOR_SESSION_LIMIT, SESSION_COOKIE, failure_delay
from app.audit.models import AuditEntry
from app.audit.service import Actor
from app.cases.service import create_case
from app.clock import FrozenClock
from tests.support.staff import PASSWORD, SignedInClient, sign_in, user_row

STEP_UP = "/api/v1/auth/step-up"
LOGIN = "/api/v1/auth/login"


@pytest.fixture(autouse=True)
def cheap_hashing(app: FastAPI) -> None:
    from app.accounts.passwords import Passwords

    app.state.auth.hasher.passwords = Passwords(time_cost=1, memory_cost=1024, allow_below_floor=True)


def wrong_code(app: FastAPI, secret: str) -> str:
    """A code that matches none of the steps the server accepts right now."""
    now = app.state.clock.now()
    near = {totp.code_at(secret, at=now + timedelta(seconds=30 * k)) for k in (-1, 0, 1)}
    return next(c for c in ("000000", "111111", "222222", "333333") if c not in near)


def right_code(app: FastAPI, secret: str) -> str:
    """The next step's code, without moving the clock: accepted (window ±1 step) unless throttled."""
    return totp.code_at(secret, at=app.state.clock.now() + timedelta(seconds=30))


def browser(app: FastAPI, address: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False, client=(address, 40000))
    return httpx.AsyncClient(transport=transport, base_url="https://hotline.test")


def stolen(staff: SignedInClient) -> dict[str, str]:
    """Headers of someone else replaying this staff member's session cookie (and its CSRF token)."""
    token = staff.http.cookies.get(SESSION_COOKIE)
    assert token
    return {"Cookie": f"{SESSION_COOKIE}={token}", CSRF_HEADER: staff.csrf}


async def entries(app: FastAPI, action: str) -> list[AuditEntry]:
    async with app.state.database.sessionmaker() as session:
        return list(
            await session.scalars(
                select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.seq)
            )
        )


async def new_case(app: FastAPI, assignee: SignedInClient) -> str:
    async with app.state.database.sessionmaker() as session, session.begin():
        case = await create_case(
            session,
            app.state.sealer,
            app.state.clock,
            actor=Actor("cli:test"),
            language="es",
            category="detention",
            assignee=await user_row(app, assignee.user_public_id),
            fields={},
        )
        return case.public_id


async def guess_until_the_session_ends(
    app: FastAPI, attacker: httpx.AsyncClient, staff: SignedInClient, path: str, body: dict[str, str]
) -> list[int]:
    """Wrong codes through a stolen session, waiting out each delay; returns the Retry-After values.
    While a delay runs, the *right* code is refused with 429 and not even checked."""
    clock: FrozenClock = app.state.clock
    headers = stolen(staff)
    waits = []
    for attempt in range(1, SECOND_FACTOR_SESSION_LIMIT + 1):
        wrong = await attacker.post(
            path, json={**body, "totp": wrong_code(app, staff.secret)}, headers=headers
        )
        assert wrong.status_code == 401, (attempt, wrong.text)
        assert wrong.json()["error"]["code"] == "invalid_credentials"
        user = await user_row(app, staff.user_public_id)
        assert user.failed_logins == attempt
        delay = int(failure_delay(attempt).total_seconds())
        if attempt == SECOND_FACTOR_SESSION_LIMIT or not delay:
            continue
        last_step = user.totp_last_step
        throttled = await attacker.post(
            path, json={**body, "totp": right_code(app, staff.secret)}, headers=headers
        )
        assert throttled.status_code == 429, (attempt, throttled.text)
        assert throttled.json()["error"]["code"] == "too_many_attempts"
        waits.append(int(throttled.headers["retry-after"]))
        user = await user_row(app, staff.user_public_id)
        assert user.failed_logins == attempt and user.totp_last_step == last_step  # not counted, not checked
        clock.advance(waits[-1])
    return waits


async def test_step_up_guessing_escalates_then_ends_the_session(app: FastAPI) -> None:
    staff = await sign_in(app)
    attacker = browser(app, "198.51.100.7")
    waits = await guess_until_the_session_ends(app, attacker, staff, STEP_UP, {})
    assert waits == [1, 2, 4, 8, 16]
    # The session is over: the right code does not help any more, and nothing was stepped up.
    after = await attacker.post(STEP_UP, json={"totp": right_code(app, staff.secret)}, headers=stolen(staff))
    assert after.status_code == 401 and after.json()["error"]["code"] == "unauthenticated"
    assert (await staff.http.get("/api/v1/auth/me")).status_code == 401
    step_ups = await entries(app, "auth.step_up")
    assert [(e.outcome, e.details) for e in step_ups] == [
        ("denied", {"failures": n}) for n in range(1, SECOND_FACTOR_SESSION_LIMIT + 1)
    ]
    ended = await entries(app, "auth.session_ended")
    assert len(ended) == 1 and ended[0].object_id == staff.user_public_id
    assert ended[0].details == {"reason": "second_factor_failures", "failures": SECOND_FACTOR_SESSION_LIMIT}


async def test_break_glass_guessing_escalates_then_ends_the_session(app: FastAPI) -> None:
    volunteer = await sign_in(app)
    supervisor = await sign_in(app, roles="supervisor")
    case = await new_case(app, volunteer)
    path = f"/api/v1/cases/{case}/break-glass"
    body = {"reason": "Volunteer unreachable; caller reports detention in progress right now"}
    attacker = browser(app, "198.51.100.8")
    waits = await guess_until_the_session_ends(app, attacker, supervisor, path, body)
    assert waits == [1, 2, 4, 8, 16]
    after = await attacker.post(
        path, json={**body, "totp": right_code(app, supervisor.secret)}, headers=stolen(supervisor)
    )
    assert after.status_code == 401 and after.json()["error"]["code"] == "unauthenticated"
    async with app.state.database.sessionmaker() as session:
        assert list(await session.scalars(select(BreakGlassGrant))) == []
    glass = await entries(app, "case.break_glass")
    assert [(e.outcome, e.object_id, e.details) for e in glass] == [
        ("denied", case, {"failures": n}) for n in range(1, SECOND_FACTOR_SESSION_LIMIT + 1)
    ]
    ended = await entries(app, "auth.session_ended")
    assert [(e.object_id, e.details["reason"]) for e in ended] == [
        (supervisor.user_public_id, "second_factor_failures")
    ]
    # The supervisor's own browser signs in again at once (known device) and can break the glass.
    elsewhere = browser(app, "198.51.100.9")
    code = right_code(app, supervisor.secret)
    refused = await elsewhere.post(
        LOGIN, json={"email": supervisor.email, "password": PASSWORD, "totp": code}
    )
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) > 0
    mine = await supervisor.http.post(
        LOGIN, json={"email": supervisor.email, "password": PASSWORD, "totp": code}
    )
    assert mine.status_code == 200, mine.text
    assert (await user_row(app, supervisor.user_public_id)).failed_logins == 0
    csrf = {CSRF_HEADER: mine.json()["csrf_token"]}
    app.state.clock.advance(timedelta(seconds=30))
    granted = await supervisor.http.post(
        path, json={**body, "totp": right_code(app, supervisor.secret)}, headers=csrf
    )
    assert granted.status_code == 201, granted.text


async def test_parallel_wrong_codes_cannot_all_be_checked(app: FastAPI) -> None:
    """The attempt is counted before the code is checked, so a burst cannot outrun the delay."""
    staff = await sign_in(app)
    attacker = browser(app, "198.51.100.10")
    headers = stolen(staff)
    wrong = wrong_code(app, staff.secret)
    responses = await asyncio.gather(
        *(attacker.post(STEP_UP, json={"totp": wrong}, headers=headers) for _ in range(20))
    )
    statuses = sorted(r.status_code for r in responses)
    free = next(n for n in range(1, 10) if failure_delay(n))  # the failure that starts the delays
    assert statuses == [401] * free + [429] * (20 - free), statuses
    assert (await user_row(app, staff.user_public_id)).failed_logins == free


async def test_sign_in_and_step_up_share_the_counter_and_a_known_device_gets_in(app: FastAPI) -> None:
    staff = await sign_in(app)  # this browser now holds a known-device cookie
    attacker = browser(app, "198.51.100.11")
    for _ in range(5):
        failed = await attacker.post(
            LOGIN, json={"email": staff.email, "password": "guess guess", "totp": "000000"}
        )
        assert failed.status_code == 401
    # Failures elsewhere slow down this account's second factors too ...
    throttled = await staff.http.post(
        STEP_UP, json={"totp": right_code(app, staff.secret)}, headers=staff.headers()
    )
    assert throttled.status_code == 429 and throttled.headers["retry-after"] == "1"
    # ... but never the volunteer's own browser signing in, which clears the count.
    code = right_code(app, staff.secret)
    again = await staff.http.post(LOGIN, json={"email": staff.email, "password": PASSWORD, "totp": code})
    assert again.status_code == 200, again.text
    user = await user_row(app, staff.user_public_id)
    assert user.failed_logins == 0 and user.next_login_at is None
    app.state.clock.advance(timedelta(seconds=30))
    stepped = await staff.http.post(
        STEP_UP,
        json={"totp": right_code(app, staff.secret)},
        headers={CSRF_HEADER: again.json()["csrf_token"]},
    )
    assert stepped.status_code == 200, stepped.text


async def test_a_right_step_up_code_clears_the_count(app: FastAPI) -> None:
    staff = await sign_in(app)
    for _ in range(5):
        bad = await staff.http.post(
            STEP_UP, json={"totp": wrong_code(app, staff.secret)}, headers=staff.headers()
        )
        assert bad.status_code == 401
    app.state.clock.advance(1)
    good = await staff.http.post(
        STEP_UP, json={"totp": right_code(app, staff.secret)}, headers=staff.headers()
    )
    assert good.status_code == 200, good.text
    user = await user_row(app, staff.user_public_id)
    assert user.failed_logins == 0 and user.next_login_at is None
    assert [e.outcome for e in await entries(app, "auth.step_up")] == ["denied"] * 5 + ["ok"]
