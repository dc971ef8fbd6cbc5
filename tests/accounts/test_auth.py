"""Enrolment, sign-in, sessions, throttling and step-up through the HTTP API."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from app.accounts import totp
from app.accounts.models import StaffSession
from app.audit.models import AuditEntry
from app.clock import FrozenClock
from tests.support.staff import PASSWORD, create_staff, enrol, next_code, sign_in, user_row


@pytest.fixture(autouse=True)
def cheap_hashing(app: FastAPI) -> None:
    from app.accounts.passwords import Passwords

    # Same code path, test-sized argon2 parameters (production parameters are tested elsewhere).
    app.state.auth.hasher.passwords = Passwords(time_cost=1, memory_cost=1024, allow_below_floor=True)


async def actions(app: FastAPI) -> list[tuple[str, str]]:
    async with app.state.database.sessionmaker() as session:
        return [
            (e.action, e.outcome) for e in await session.scalars(select(AuditEntry).order_by(AuditEntry.seq))
        ]


async def test_enrolment_then_sign_in_sets_a_host_cookie_and_csrf(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    staff = await sign_in(app)
    cookie = staff.http.cookies.get("__Host-hotline_session")
    assert cookie and len(cookie) >= 43
    me = await staff.http.get("/api/v1/auth/me")
    assert me.status_code == 200 and me.json()["id"] == staff.user_public_id
    assert me.headers["cache-control"] == "no-store"
    assert "default-src 'self'" in me.headers["content-security-policy"]
    assert me.headers["strict-transport-security"].startswith("max-age=")
    # Only the hash of the token is stored.
    async with app.state.database.sessionmaker() as session:
        stored = list(await session.scalars(select(StaffSession.token_hash)))
    assert cookie not in stored and len(stored) == 1
    # Unsafe methods need the CSRF header.
    assert (await staff.http.post("/api/v1/auth/logout")).status_code == 403
    assert (await staff.http.post("/api/v1/auth/logout", headers=staff.headers())).status_code == 200
    assert (await staff.http.get("/api/v1/auth/me")).status_code == 401
    assert ("auth.enrolled", "ok") in await actions(app) and ("auth.logout", "ok") in await actions(app)


async def test_set_cookie_attributes(app: FastAPI) -> None:
    email, token = await create_staff(app, roles="volunteer")
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="https://hotline.test"
    ) as http:
        secret = await enrol(http, app, token)
        response = await http.post(
            "/api/v1/auth/login", json={"email": email, "password": PASSWORD, "totp": next_code(app, secret)}
        )
    cookies = response.headers.get_list("set-cookie")
    session_cookie = next(c for c in cookies if c.startswith("__Host-hotline_session="))
    for attribute in ("Secure", "HttpOnly", "SameSite=strict", "Path=/"):
        assert attribute.lower() in session_cookie.lower()
    assert "domain" not in session_cookie.lower()


async def test_unknown_user_and_wrong_password_look_the_same(app: FastAPI, client: httpx.AsyncClient) -> None:
    email, token = await create_staff(app, roles="volunteer")
    secret = await enrol(client, app, token)
    code = next_code(app, secret)
    wrong = await client.post(
        "/api/v1/auth/login", json={"email": email, "password": "not the password", "totp": code}
    )
    unknown = await client.post(
        "/api/v1/auth/login", json={"email": "nobody@example.org", "password": "x" * 10, "totp": code}
    )
    assert wrong.status_code == unknown.status_code == 401
    strip = lambda r: {k: v for k, v in r.json()["error"].items() if k != "request_id"}  # noqa: E731
    assert (
        strip(wrong)
        == strip(unknown)
        == {"code": "invalid_credentials", "message": "Email, password or code is not right."}
    )
    failures = [a for a in await actions(app) if a[0] == "auth.login_failed"]
    assert len(failures) == 2


async def test_a_totp_code_is_accepted_once_even_concurrently(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    email, token = await create_staff(app, roles="volunteer")
    secret = await enrol(client, app, token)
    code = next_code(app, secret)
    body = {"email": email, "password": PASSWORD, "totp": code}
    first, second = await asyncio.gather(
        client.post("/api/v1/auth/login", json=body), client.post("/api/v1/auth/login", json=body)
    )
    assert sorted([first.status_code, second.status_code]) == [200, 401]
    again = await client.post("/api/v1/auth/login", json=body)
    assert again.status_code == 401


async def test_totp_window_is_one_step_either_side(app: FastAPI, client: httpx.AsyncClient) -> None:
    email, token = await create_staff(app, roles="volunteer")
    secret = await enrol(client, app, token)
    clock: FrozenClock = app.state.clock
    clock.advance(300)
    stale = totp.code_at(secret, at=clock.now() - timedelta(seconds=60))
    assert (
        await client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD, "totp": stale})
    ).status_code == 401
    clock.advance(60)
    previous = totp.code_at(secret, at=clock.now() - timedelta(seconds=30))
    assert (
        await client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD, "totp": previous})
    ).status_code == 200


async def test_sessions_expire_idle_and_absolute(app: FastAPI) -> None:
    clock: FrozenClock = app.state.clock
    staff = await sign_in(app)
    clock.advance(timedelta(minutes=14))
    assert (await staff.http.get("/api/v1/auth/me")).status_code == 200  # refreshes the idle timer
    clock.advance(timedelta(minutes=14))
    assert (await staff.http.get("/api/v1/auth/me")).status_code == 200
    clock.advance(timedelta(minutes=15))
    assert (await staff.http.get("/api/v1/auth/me")).status_code == 401  # idle 15 minutes
    staff = await sign_in(app)
    for _ in range(12 * 6):
        clock.advance(timedelta(minutes=10))
        response = await staff.http.get("/api/v1/auth/me")
    assert response.status_code == 401  # absolute 12 hours, however active


async def test_enrolment_link_expires_after_24_hours_and_is_single_use(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    _email, token = await create_staff(app, roles="volunteer")
    app.state.clock.advance(timedelta(hours=24, seconds=1))
    expired = await client.post("/api/v1/auth/enroll", json={"token": token, "password": PASSWORD})
    assert expired.status_code == 422 and expired.json()["error"]["code"] == "invalid_token"
    _email, token = await create_staff(app, roles="volunteer")
    await enrol(client, app, token)
    reused = await client.post("/api/v1/auth/enroll", json={"token": token, "password": PASSWORD})
    assert reused.status_code == 422


async def test_weak_and_common_passwords_are_refused(app: FastAPI, client: httpx.AsyncClient) -> None:
    _email, token = await create_staff(app, roles="volunteer")
    for password in ("short", "password123", "iloveyou1"):
        response = await client.post("/api/v1/auth/enroll", json={"token": token, "password": password})
        assert response.status_code == 422 and response.json()["error"]["code"] == "weak_password"
        assert password not in response.text
    spaced = " leading and trailing spaces kept "
    assert (
        await client.post("/api/v1/auth/enroll", json={"token": token, "password": spaced})
    ).status_code == 200


async def test_throttling_escalates_then_stops_but_a_known_device_still_gets_in(app: FastAPI) -> None:
    clock: FrozenClock = app.state.clock
    staff = await sign_in(app)  # this browser now holds a device cookie
    await staff.http.post("/api/v1/auth/logout", headers=staff.headers())
    attacker = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="https://hotline.test")
    app.state.auth.addresses.per_minute = 10_000
    statuses = []
    for _ in range(400):
        if (await user_row(app, staff.user_public_id)).login_blocked_at is not None:
            break
        response = await attacker.post(
            "/api/v1/auth/login", json={"email": staff.email, "password": "guess guess", "totp": "000000"}
        )
        statuses.append(response.status_code)
        if response.status_code == 429:
            clock.advance(int(response.headers["retry-after"]))
    assert statuses[:5] == [401] * 5 and 429 in statuses
    user = await user_row(app, staff.user_public_id)
    assert user.login_blocked_at is not None
    # The attacker is stopped even with the right password; the volunteer's own browser is not.
    blocked = await attacker.post(
        "/api/v1/auth/login",
        json={"email": staff.email, "password": PASSWORD, "totp": next_code(app, staff.secret)},
    )
    assert blocked.status_code == 429
    mine = await staff.http.post(
        "/api/v1/auth/login",
        json={"email": staff.email, "password": PASSWORD, "totp": next_code(app, staff.secret)},
    )
    assert mine.status_code == 200
    assert (await user_row(app, staff.user_public_id)).login_blocked_at is None


async def test_per_address_budget(app: FastAPI, client: httpx.AsyncClient) -> None:
    app.state.auth.addresses.per_minute = 3
    codes = [
        (
            await client.post(
                "/api/v1/auth/login",
                json={"email": f"x{i}@example.org", "password": "whatever1", "totp": "123456"},
            )
        ).status_code
        for i in range(5)
    ]
    assert codes == [401, 401, 401, 429, 429]


async def test_step_up_checks_a_fresh_code(app: FastAPI) -> None:
    staff = await sign_in(app)
    bad = await staff.http.post("/api/v1/auth/step-up", json={"totp": "000000"}, headers=staff.headers())
    assert bad.status_code == 401
    good = await staff.http.post(
        "/api/v1/auth/step-up", json={"totp": next_code(app, staff.secret)}, headers=staff.headers()
    )
    assert good.status_code == 200


async def test_demo_staff_can_sign_in_with_the_printed_credentials(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    from app.demo import seed_demo

    issued = await seed_demo(app.state.database, app.state.sealer, app.state.clock)
    assert {c.email for c in issued} == {"demo-supervisor@example.org", "demo-volunteer@example.org"}
    volunteer = next(c for c in issued if c.email.startswith("demo-volunteer"))
    response = await client.post(
        "/api/v1/auth/login",
        json={
            "email": volunteer.email,
            "password": volunteer.password,
            "totp": next_code(app, volunteer.totp_secret),
        },
    )
    assert response.status_code == 200
    cases = await client.get("/api/v1/cases")
    assert cases.json()["total"] == 1 and cases.json()["items"][0]["drill"] is True
