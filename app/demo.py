"""`hotline serve --demo` (development only): demo staff with one-time credentials and a demo case.

Passwords and TOTP secrets are generated fresh on every run and printed once; nothing about them is
stored in the clear. Never available in production.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from sqlalchemy import select

from app.accounts import totp
from app.accounts.models import User, UserStatus
from app.accounts.passwords import Passwords
from app.accounts.service import create_user
from app.audit.service import Actor
from app.cases.models import Case
from app.cases.service import create_case
from app.clock import Clock
from app.db.engine import Database
from app.keys.store import Sealer

DEMO_ACTOR = Actor("cli:demo")
DEMO_STAFF = (
    ("demo-supervisor@example.org", "Demo Supervisor", "supervisor,volunteer", "en,es"),
    ("demo-volunteer@example.org", "Demo Volunteer", "volunteer", "en,es,ht"),
)


@dataclass
class DemoCredentials:
    email: str
    roles: str
    password: str
    totp_secret: str
    otpauth_uri: str


async def seed_demo(database: Database, sealer: Sealer, clock: Clock) -> list[DemoCredentials]:
    hasher = Passwords()
    issued = []
    async with database.sessionmaker() as session, session.begin():
        for email, name, roles, languages in DEMO_STAFF:
            user = await session.scalar(select(User).where(User.email == email))
            if user is None:
                user, _token = await create_user(
                    session,
                    sealer,
                    clock,
                    actor=DEMO_ACTOR,
                    email=email,
                    name=name,
                    roles=roles,
                    languages=languages,
                )
            password = "demo-" + secrets.token_urlsafe(12)
            secret = totp.new_secret()
            user.password_hash = hasher.hash(password)
            await sealer.seal(session, user, "totp_secret", secret)
            user.totp_last_step = None
            user.status = UserStatus.active
            user.login_blocked_at = None
            user.failed_logins = 0
            issued.append(
                DemoCredentials(
                    email,
                    roles,
                    password,
                    secret,
                    totp.provisioning_uri(secret, account_name=email, issuer="Hotline demo"),
                )
            )
        volunteer = await session.scalar(select(User).where(User.email == DEMO_STAFF[1][0]))
        has_case = (
            await session.scalar(select(Case.id).where(Case.assignee_id == volunteer.id).limit(1))
            if volunteer
            else None
        )
        if volunteer is not None and has_case is None:
            await create_case(
                session,
                sealer,
                clock,
                actor=DEMO_ACTOR,
                language="es",
                category="detention",
                assignee=volunteer,
                fields={"caller_name": "Demo Caller (fictional)", "code_word": "girasol"},
                drill=True,
            )
    return issued
