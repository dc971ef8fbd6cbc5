"""Typed dependencies: who is calling, and may they call this route at all."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request

from app.access.permissions import Permission, permissions_of
from app.access.policy import Principal
from app.accounts.auth import CSRF_HEADER, SESSION_COOKIE, AuthService, principal_for
from app.accounts.models import StaffSession, User
from app.db.session import DbSession
from app.errors import Forbidden, Unauthenticated

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass
class Staff:
    """The signed-in staff member of this request."""

    user: User
    session: StaffSession
    principal: Principal
    permissions: frozenset[Permission]


def auth_service(request: Request) -> AuthService:
    service: AuthService = request.app.state.auth
    return service


Auth = Annotated[AuthService, Depends(auth_service)]


async def current_staff(request: Request, db: DbSession, auth: Auth) -> Staff:
    # The live-event stream must not keep an idle session alive on its own.
    touch = not request.url.path.endswith("/events")
    resolved = await auth.resolve(db, request.cookies.get(SESSION_COOKIE), touch=touch)
    if resolved is None:
        raise Unauthenticated()
    user, staff_session = resolved
    if request.method not in SAFE_METHODS:
        expected = auth.csrf_for(staff_session.token_hash)
        if not hmac.compare_digest(request.headers.get(CSRF_HEADER, ""), expected):
            raise Forbidden("Missing or wrong CSRF token.", code="csrf")
    principal = principal_for(user)
    return Staff(user, staff_session, principal, permissions_of(principal.roles))


def require(*needed: Permission) -> Any:
    """`Annotated[Staff, require(Permission.x)]`: 401 when signed out, 403 without the permission."""

    async def check(staff: Annotated[Staff, Depends(current_staff)]) -> Staff:
        if not set(needed) <= staff.permissions:
            raise Forbidden()
        return staff

    check.__name__ = "require_" + "_".join(p.value for p in needed)
    return Depends(check)


SignedInStaff = Annotated[Staff, require(Permission.signed_in)]
