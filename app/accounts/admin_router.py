"""Staff administration: list, create (→ enrolment link), edit, disable, reset MFA, end sessions."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from sqlalchemy import select

from app.access.permissions import Permission
from app.accounts import service
from app.accounts.auth import StepUpRequired
from app.accounts.deps import Auth, Staff, require
from app.accounts.models import User
from app.accounts.schemas import Email
from app.audit import service as audit
from app.cases.schemas import PublicId
from app.db.session import DbSession
from app.errors import InvalidInput, NotFound
from app.languages import UnknownLanguage, parse_languages

router = APIRouter(prefix="/users", tags=["users"])
UserReader = Annotated[Staff, require(Permission.users_read)]
UserAdmin = Annotated[Staff, require(Permission.users_manage)]
RoleName = Literal["volunteer", "supervisor", "admin"]
LanguageCode = Annotated[str, StringConstraints(pattern=r"^[a-z]{2,3}$")]
Timezone = Annotated[str, StringConstraints(min_length=1, max_length=64)]


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


def user_out(user: User) -> UserOut:
    return UserOut(
        id=user.public_id,
        email=user.email,
        name=user.display_name,
        roles=sorted(user.roles.split(",")),
        languages=user.language_list,
        timezone=user.timezone,
        status=user.status,
        sign_in_blocked=user.login_blocked_at is not None,
        created_at=user.created_at,
    )


async def user_by_public_id(db: DbSession, public_id: str) -> User:
    user = await db.scalar(select(User).where(User.public_id == public_id))
    if user is None:
        raise NotFound()
    return user


@router.get("", response_model=list[UserOut])
async def list_users(staff: UserReader, db: DbSession) -> list[UserOut]:
    return [user_out(u) for u in await db.scalars(select(User).order_by(User.display_name, User.public_id))]


@router.post("", response_model=UserCreated, status_code=201, responses={409: {}})
async def create_user(body: UserCreate, staff: UserAdmin, db: DbSession, auth: Auth) -> UserCreated:
    """The new person gets a one-time enrolment link (24 h) and sets their own password and TOTP."""
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
    )
    return UserCreated(
        user=user_out(user), enrolment_link=service.enrolment_link(auth.settings.public_url, token)
    )


@router.patch("/{user_id}", response_model=UserOut, responses={404: {}})
async def update_user(
    user_id: PublicId, body: UserPatch, staff: UserAdmin, db: DbSession, auth: Auth
) -> UserOut:
    user = await user_by_public_id(db, user_id)
    changed = []
    if body.name is not None:
        user.display_name = body.name
        changed.append("display_name")
    if body.roles is not None:
        user.roles = ",".join(r.value for r in service.parse_roles(body.roles))
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
    audit.record(
        db,
        auth.clock,
        actor=staff.principal.actor,
        action="user.updated",
        object_type="user",
        object_id=user.public_id,
        fields=changed,
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
