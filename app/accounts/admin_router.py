"""Staff administration: list, create (→ enrolment link), edit, disable, reset MFA, end sessions.

Roles: nobody changes their own; admin never comes with volunteer or supervisor (admins see no case
content); granting supervisor or admin takes the acting admin's fresh step-up and a second,
distinct admin's approval (`RoleGrant`). With a single admin there is nobody to approve: the host
command `hotline users add` (audited as `cli:…`) is the bootstrap for the second admin.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import APIRouter, Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from sqlalchemy import select

from app.access.content import AuditedRefusal
from app.access.permissions import Permission
from app.accounts import service
from app.accounts.auth import StepUpRequired
from app.accounts.deps import Auth, Staff, require
from app.accounts.models import Role, RoleGrant, User
from app.accounts.schemas import Email
from app.audit import service as audit
from app.cases.schemas import PublicId
from app.db.session import DbSession
from app.errors import Conflict, DomainError, Forbidden, InvalidInput, NotFound
from app.languages import UnknownLanguage, parse_languages

router = APIRouter(prefix="/users", tags=["users"])
UserReader = Annotated[Staff, require(Permission.users_read)]
UserAdmin = Annotated[Staff, require(Permission.users_manage)]
RoleName = Literal["volunteer", "supervisor", "admin"]
LanguageCode = Annotated[str, StringConstraints(pattern=r"^[a-z]{2,3}$")]
Timezone = Annotated[str, StringConstraints(min_length=1, max_length=64)]


class PendingRoleGrantOut(BaseModel):
    id: str
    roles: list[str] = Field(description="The whole role set asked for.")
    requested_by: str
    requested_at: datetime


class UserOut(BaseModel):
    id: str
    email: str
    name: str
    roles: list[str]
    languages: list[str]
    timezone: str
    status: str
    sign_in_blocked: bool
    created_at: datetime
    pending_role_grant: PendingRoleGrantOut | None = Field(
        default=None, description="Supervisor or admin asked for; a second admin must approve."
    )


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    email: Email
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
    roles: list[RoleName] = Field(min_length=1, max_length=3)
    languages: list[LanguageCode] = Field(default_factory=list, max_length=20)
    timezone: Timezone = "America/New_York"


class UserCreated(BaseModel):
    user: UserOut
    enrolment_link: str


class UserPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)] | None = None
    roles: list[RoleName] | None = Field(default=None, min_length=1, max_length=3)
    languages: list[LanguageCode] | None = Field(default=None, max_length=20)
    timezone: Timezone | None = None


class EnrolmentOut(BaseModel):
    enrolment_link: str


def user_out(user: User, pending: PendingRoleGrantOut | None = None) -> UserOut:
    return UserOut(
        id=user.public_id,
        email=user.email,
        name=user.display_name,
        roles=sorted(r for r in user.roles.split(",") if r),
        languages=user.language_list,
        timezone=user.timezone,
        status=user.status,
        sign_in_blocked=user.login_blocked_at is not None,
        created_at=user.created_at,
        pending_role_grant=pending,
    )


async def pending_grants(
    db: DbSession, user_ids: set[uuid.UUID] | None = None
) -> dict[uuid.UUID, PendingRoleGrantOut]:
    """The pending role grant of each user (of `user_ids`, or of everyone)."""
    query = (
        select(RoleGrant, User.public_id)
        .join(User, User.id == RoleGrant.requested_by_id)
        .where(RoleGrant.state == "pending")
        .order_by(RoleGrant.requested_at)
    )
    if user_ids is not None:
        query = query.where(RoleGrant.user_id.in_(user_ids))
    return {
        grant.user_id: PendingRoleGrantOut(
            id=grant.public_id,
            roles=sorted(r for r in grant.roles.split(",") if r),
            requested_by=requester,
            requested_at=grant.requested_at,
        )
        for grant, requester in (await db.execute(query)).all()
    }


def refused(staff: Staff, error: DomainError, *, action: str, user_id: str, **details: str) -> AuditedRefusal:
    """The refusal to raise: the request's session dependency undoes the request's work, records
    it (committed on its own) and answers with `error`."""
    return AuditedRefusal(
        staff.principal,
        action=action,
        object_type="user",
        object_id=user_id,
        fields=["roles"],
        details={**details, "reason": error.code},
        error=error,
    )


def own_roles() -> Forbidden:
    return Forbidden("Nobody changes their own roles: ask another admin.", code="own_roles")


async def user_by_public_id(db: DbSession, public_id: str) -> User:
    user = await db.scalar(select(User).where(User.public_id == public_id))
    if user is None:
        raise NotFound()
    return user


@router.get("", response_model=list[UserOut])
async def list_users(staff: UserReader, db: DbSession) -> list[UserOut]:
    users = list(await db.scalars(select(User).order_by(User.display_name, User.public_id)))
    pending = await pending_grants(db)
    return [user_out(u, pending.get(u.id)) for u in users]


@router.post(
    "",
    response_model=UserCreated,
    status_code=201,
    responses={
        403: {"description": "step_up_required (to grant supervisor or admin)."},
        409: {},
        422: {"description": "admin_no_content_roles, unknown_language, unknown_timezone, …"},
    },
)
async def create_user(body: UserCreate, staff: UserAdmin, db: DbSession, auth: Auth) -> UserCreated:
    """The new person gets a one-time enrolment link (24 h) and sets their own password and TOTP.

    Supervisor or admin is a grant like any other: it needs a fresh step-up, and the account starts
    without it (`user.pending_role_grant`) until a second admin approves."""
    if set(service.parse_roles(body.roles)) & service.PRIVILEGED_ROLES and not auth.stepped_up(staff.session):
        raise StepUpRequired()
    user, token = await service.create_user(
        db,
        auth.sealer,
        auth.clock,
        actor=staff.principal.actor,
        email=body.email,
        name=body.name,
        roles=body.roles,
        languages=body.languages,
        timezone=body.timezone,
        requested_by=staff.user,
    )
    pending = (await pending_grants(db, {user.id})).get(user.id)
    return UserCreated(
        user=user_out(user, pending), enrolment_link=service.enrolment_link(auth.settings.public_url, token)
    )


@router.patch(
    "/{user_id}",
    response_model=UserOut,
    responses={
        202: {
            "model": UserOut,
            "description": "Saved; the supervisor or admin role asked for awaits a "
            "second admin's approval (`pending_role_grant`).",
        },
        403: {"description": "own_roles, or step_up_required to grant supervisor or admin."},
        404: {},
        422: {"description": "admin_no_content_roles, unknown_language, unknown_timezone."},
    },
)
async def update_user(
    user_id: PublicId, body: UserPatch, staff: UserAdmin, db: DbSession, auth: Auth, response: Response
) -> UserOut:
    """Name, languages and time zone apply at once. Roles: nobody changes their own (403
    `own_roles`); admin never comes with volunteer or supervisor (422 `admin_no_content_roles`).
    Removing roles, or adding volunteer, applies at once. Adding supervisor or admin needs a fresh
    step-up (403 `step_up_required`) and answers 202 with a pending grant that a second, distinct
    admin approves (`POST …/role-grants/{grant}/approve`); the roles do not change until then."""
    user = await user_by_public_id(db, user_id)
    changed = []
    pending = None
    if body.name is not None:
        user.display_name = body.name
        changed.append("display_name")
    if body.roles is not None:
        wanted = frozenset(Role(r) for r in body.roles)
        if wanted != user.role_set and user.id == staff.user.id:
            raise refused(staff, own_roles(), action="user.updated", user_id=user.public_id)
        roles = service.parse_roles(body.roles)
        if (wanted - user.role_set) & service.PRIVILEGED_ROLES:
            if not auth.stepped_up(staff.session):
                raise StepUpRequired()
            grant = await service.request_role_grant(
                db, auth.clock, user, roles, requested_by=staff.user, actor=staff.principal.actor
            )
            pending = PendingRoleGrantOut(
                id=grant.public_id,
                roles=sorted(r.value for r in roles),
                requested_by=staff.user.public_id,
                requested_at=grant.requested_at,
            )
        elif wanted != user.role_set:
            await service.cancel_pending_grants(db, auth.clock, user, by=staff.user)
            user.roles = ",".join(r.value for r in roles)
            changed.append("roles")
    if body.languages is not None:
        try:
            user.languages = ",".join(parse_languages(body.languages))
        except UnknownLanguage as exc:
            raise InvalidInput(str(exc), code="unknown_language") from None
        changed.append("languages")
    if body.timezone is not None:
        try:
            ZoneInfo(body.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise InvalidInput("Unknown time zone.", code="unknown_timezone") from None
        user.timezone = body.timezone
        changed.append("timezone")
    user.updated_at = auth.clock.now()
    if changed or pending is None:
        audit.record(
            db,
            auth.clock,
            actor=staff.principal.actor,
            action="user.updated",
            object_type="user",
            object_id=user.public_id,
            fields=changed,
            details={"roles": service.roles_code(user.roles)} if "roles" in changed else None,
        )
    if pending is not None:
        response.status_code = 202
        return user_out(user, pending)
    return user_out(user, (await pending_grants(db, {user.id})).get(user.id))


@router.post(
    "/{user_id}/role-grants/{grant_id}/approve",
    response_model=UserOut,
    responses={
        403: {"description": "own_roles, or step_up_required."},
        404: {},
        409: {"description": "not_pending, same_admin (the requester) or roles_changed."},
    },
)
async def approve_role_grant(
    user_id: PublicId, grant_id: PublicId, staff: UserAdmin, db: DbSession, auth: Auth
) -> UserOut:
    """A second admin, not the one who asked and not the person concerned, approves a pending grant
    of supervisor or admin (after a fresh step-up); the roles change now. With a single admin,
    `hotline users add` on the host is the audited bootstrap instead."""
    user = await user_by_public_id(db, user_id)
    grant = await db.scalar(
        select(RoleGrant).where(RoleGrant.public_id == grant_id, RoleGrant.user_id == user.id)
    )
    if grant is None:
        raise NotFound()
    if user.id == staff.user.id:
        raise refused(
            staff,
            own_roles(),
            action="user.role_grant_approved",
            user_id=user.public_id,
            grant=grant_id,
        )
    if grant.state == "pending" and grant.requested_by_id == staff.user.id:
        error = Conflict("A second admin must approve this role grant.", code="same_admin")
        raise refused(staff, error, action="user.role_grant_approved", user_id=user.public_id, grant=grant_id)
    if not auth.stepped_up(staff.session):
        raise StepUpRequired()
    await service.approve_role_grant(
        db, auth.clock, grant, user, approver=staff.user, actor=staff.principal.actor
    )
    return user_out(user)


@router.post("/{user_id}/disable", response_model=UserOut, responses={404: {}})
async def disable_user(user_id: PublicId, staff: UserAdmin, db: DbSession, auth: Auth) -> UserOut:
    user = await user_by_public_id(db, user_id)
    await service.disable_user(db, auth.clock, user, actor=staff.principal.actor)
    return user_out(user)


@router.post("/{user_id}/reset-mfa", response_model=EnrolmentOut, responses={403: {}, 404: {}})
async def reset_mfa(user_id: PublicId, staff: UserAdmin, db: DbSession, auth: Auth) -> EnrolmentOut:
    """Needs a fresh step-up: MFA changes are sensitive."""
    if not auth.stepped_up(staff.session):
        raise StepUpRequired()
    user = await user_by_public_id(db, user_id)
    token = await service.reset_mfa(db, auth.clock, user, actor=staff.principal.actor)
    return EnrolmentOut(enrolment_link=service.enrolment_link(auth.settings.public_url, token))


@router.post("/{user_id}/end-sessions", response_model=UserOut, responses={404: {}})
async def end_sessions(user_id: PublicId, staff: UserAdmin, db: DbSession, auth: Auth) -> UserOut:
    user = await user_by_public_id(db, user_id)
    await service.end_sessions(db, auth.clock, user, actor=staff.principal.actor)
    return user_out(user)


@router.post("/{user_id}/clear-sign-in-block", response_model=UserOut, responses={404: {}})
async def clear_block(user_id: PublicId, staff: UserReader, db: DbSession, auth: Auth) -> UserOut:
    """Supervisors (and admins) lift the hard stop after 100 failed sign-ins."""
    user = await user_by_public_id(db, user_id)
    await service.clear_sign_in_block(db, auth.clock, user, actor=staff.principal.actor)
    return user_out(user)
