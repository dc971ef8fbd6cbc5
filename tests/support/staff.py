"""Signing staff in through the real HTTP flow: enrolment link → password → TOTP → login."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta

import httpx
from fastapi import FastAPI

from app.accounts import totp
from app.accounts.models import User
from app.accounts.service import create_user
from app.audit.service import Actor
from app.clock import FrozenClock

PASSWORD = "correct horse battery staple 42"


@dataclass
class SignedInClient:
    http: httpx.AsyncClient
    user_public_id: str
    email: str
    secret: str
    csrf: str

    def headers(self) -> dict[str, str]:
        return {"X-CSRF-Token": self.csrf}


async def create_staff(
    app: FastAPI, *, roles: str, email: str | None = None, languages: str = "en,es"
) -> tuple[str, str]:
    """Create a pending account on the host; returns (email, enrolment token)."""
    email = email or f"{uuid.uuid4().hex[:10]}@example.org"
    async with app.state.database.sessionmaker() as session, session.begin():
        _user, token = await create_user(
            session,
            app.state.sealer,
            app.state.clock,
            actor=Actor("cli:test"),
            email=email,
            name="Staff Member",
            roles=roles,
            languages=languages,
        )
    return email, token


def next_code(app: FastAPI, secret: str) -> str:
    """A code for a time step not used yet: move the frozen clock on by one step first."""
    clock: FrozenClock = app.state.clock
    clock.advance(timedelta(seconds=30))
    return totp.code_at(secret, at=clock.now())


async def enrol(http: httpx.AsyncClient, app: FastAPI, token: str, password: str | None = PASSWORD) -> str:
    body = {"token": token} if password is None else {"token": token, "password": password}
    started = await http.post("/api/v1/auth/enroll", json=body)
    assert started.status_code == 200, started.text
    secret = started.json()["totp_secret"]
    confirmed = await http.post(
        "/api/v1/auth/enroll/confirm", json={"token": token, "totp": next_code(app, secret)}
    )
    assert confirmed.status_code == 200, confirmed.text
    return secret


async def sign_in(
    app: FastAPI, *, roles: str = "volunteer", base_url: str = "https://hotline.test"
) -> SignedInClient:
    email, token = await create_staff(app, roles=roles)
    http = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, raise_app_exceptions=False), base_url=base_url
    )
    secret = await enrol(http, app, token)
    response = await http.post(
        "/api/v1/auth/login", json={"email": email, "password": PASSWORD, "totp": next_code(app, secret)}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    return SignedInClient(http, body["id"], email, secret, body["csrf_token"])


async def user_row(app: FastAPI, public_id: str) -> User:
    from sqlalchemy import select

    async with app.state.database.sessionmaker() as session:
        return (await session.scalars(select(User).where(User.public_id == public_id))).one()
