"""Plain factory functions for tests (no magic): staff, callers, cases, all through the services."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.access.broker import AccessBroker
from app.access.policy import Principal
from app.accounts.models import Role, User, UserStatus
from app.accounts.service import create_user
from app.audit.service import Actor
from app.cases.models import Case
from app.cases.service import create_case
from app.clock import Clock
from app.db.engine import Database
from app.keys.store import KeyStore, Sealer
from crypto.keyfile import KeyMaterial, create_key_file

SETUP = Actor("system:test-setup")


@dataclass
class Services:
    database: Database
    clock: Clock
    material: KeyMaterial
    keys: KeyStore
    sealer: Sealer
    broker: AccessBroker


def make_services(database: Database, clock: Clock, key_path: Path, *, cache_ttl: float = 300.0) -> Services:
    material = create_key_file(key_path, development=True)
    keys = KeyStore(material, str(key_path))
    sealer = Sealer(keys, clock, cache_ttl=cache_ttl)
    return Services(database, clock, material, keys, sealer, AccessBroker(sealer, clock))


async def make_user(
    session: AsyncSession,
    services: Services,
    *,
    roles: str = "volunteer",
    email: str | None = None,
    phone: str | None = None,
    languages: str = "en",
) -> User:
    import uuid

    user, _token = await create_user(
        session,
        services.sealer,
        services.clock,
        actor=SETUP,
        email=email or f"{uuid.uuid4().hex[:10]}@example.org",
        name="Test Volunteer",
        roles=roles,
        phone=phone,
        languages=languages,
    )
    user.status = UserStatus.active
    return user


def principal_of(user: User) -> Principal:
    return Principal(
        id=user.public_id, roles=frozenset(Role(r) for r in user.roles.split(",")), user_id=user.id
    )


async def make_case(
    session: AsyncSession,
    services: Services,
    *,
    assignee: User | None = None,
    fields: dict[str, str] | None = None,
    language: str = "es",
) -> Case:
    return await create_case(
        session,
        services.sealer,
        services.clock,
        actor=SETUP,
        language=language,
        category="detention",
        assignee=assignee,
        fields=fields or {},
    )


async def staff_reveal(
    broker: Any, session: AsyncSession, principal: Principal, case: Case, fields: list[str], purpose: Any
) -> Any:
    """A staff member's reveal of case fields, as a request makes it: the content check (a refusal
    is recorded and raised as NotFound, as the request's session dependency does), then the
    broker's reveal with the capability the check returned."""
    from app.access.content import AuditedRefusal, check_content, record_refusal
    from app.errors import NotFound

    try:
        access = await check_content(
            session, broker.clock, principal, case, action="case.reveal", fields=fields, purpose=purpose
        )
    except AuditedRefusal as refusal:
        await record_refusal(session, broker.clock, refusal)
        raise NotFound() from None
    return await broker.reveal_case(session, access, fields, purpose)
