"""Staff accounts: creation on the host (`hotline users add`), enrolment links, offboarding."""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Iterable
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts.models import EnrolmentToken, Role, RoleGrant, User, UserStatus
from app.audit import service as audit
from app.audit.service import Actor
from app.clock import Clock
from app.errors import Conflict, InvalidInput
from app.events import service as live
from app.keys.store import Sealer
from app.languages import UnknownLanguage, parse_languages
from app.publicid import new_public_id
from telephony.numbers import normalize_e164

ENROLMENT_VALIDITY = timedelta(hours=24)
# Roles that open case content (metadata of every case, content through assignment or break-glass).
CONTENT_ROLES = frozenset({Role.volunteer, Role.supervisor})
# Granting one of these to someone who does not hold it needs the acting admin's step-up and a
# second admin's approval (`RoleGrant`); removing roles, or adding volunteer alone, is one step.
PRIVILEGED_ROLES = frozenset({Role.supervisor, Role.admin})
_EMAIL = re.compile(r"^[^@\s]{1,64}@[A-Za-z0-9.-]{1,253}\.[A-Za-z]{2,}$")


def normalize_email(raw: str) -> str:
    email = raw.strip().lower()
    if not _EMAIL.match(email):
        raise InvalidInput("Not an email address.", code="invalid_email")
    return email


def parse_roles(raw: str | Iterable[str]) -> list[Role]:
    items = raw.split(",") if isinstance(raw, str) else list(raw)
    roles: list[Role] = []
    for item in items:
        name = item.strip().lower()
        if not name:
            continue
        try:
            role = Role(name)
        except ValueError:
            raise InvalidInput(
                f"Unknown role {name!r}: use volunteer, supervisor or admin.", code="unknown_role"
            ) from None
        if role not in roles:
            roles.append(role)
    if not roles:
        raise InvalidInput("At least one role is needed.", code="unknown_role")
    check_role_combination(roles)
    return roles


def check_role_combination(roles: Iterable[Role]) -> None:
    """Admins manage accounts and see no case content by design: the admin role never comes with a
    content role on one account (a person who needs both has two accounts)."""
    held = set(roles)
    if Role.admin in held and held & CONTENT_ROLES:
        raise InvalidInput(
            "The admin role cannot be combined with volunteer or supervisor: admins see no case "
            "content. Use a separate account.",
            code="admin_no_content_roles",
        )


def roles_code(roles: str | Iterable[Role]) -> str:
    """A role set as an access-log code: `supervisor+volunteer` (`none` for no role)."""
    names = roles.split(",") if isinstance(roles, str) else [r.value for r in roles]
    return "+".join(sorted(n for n in names if n)) or "none"


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def issue_enrolment(session: AsyncSession, clock: Clock, user: User) -> str:
    """A new one-time enrolment token (valid 24 h); earlier unused ones stop working."""
    now = clock.now()
    await session.execute(
        update(EnrolmentToken)
        .where(EnrolmentToken.user_id == user.id, EnrolmentToken.used_at.is_(None))
        .values(expires_at=now)
    )
    token = secrets.token_urlsafe(32)
    session.add(
        EnrolmentToken(
            user_id=user.id, token_hash=token_hash(token), created_at=now, expires_at=now + ENROLMENT_VALIDITY
        )
    )
    return token


def enrolment_link(public_url: str, token: str) -> str:
    # The token rides in the fragment: browsers never send it to the server or in Referer headers,
    # so it stays out of access logs. The console posts it to /api/v1/auth/enroll.
    return f"{public_url}/console/enroll#token={token}"


async def create_user(
    session: AsyncSession,
    sealer: Sealer,
    clock: Clock,
    *,
    actor: Actor,
    email: str,
    name: str,
    roles: str | Iterable[str],
    phone: str | None = None,
    languages: str | Iterable[str] = "",
    timezone: str = "America/New_York",
    password_hash: str | None = None,
    requested_by: User | None = None,
) -> tuple[User, str]:
    """Create a pending staff account; returns it and its one-time enrolment token.

    Admin never comes with volunteer or supervisor (422 `admin_no_content_roles`). Through the API
    (`requested_by`, the acting admin) supervisor and admin are not given here: the account starts
    with its other roles (possibly none) and a pending `RoleGrant` asks a second admin. The host
    command (`hotline users add`, no `requested_by`) gives every role at once and is audited: it is
    the bootstrap while there is a single admin.
    """
    email = normalize_email(email)
    display_name = name.strip()
    if not 1 <= len(display_name) <= 100:
        raise InvalidInput("Name must be 1 to 100 characters.", code="invalid_name")
    role_list = parse_roles(roles)
    try:
        language_list = parse_languages(list(languages) if not isinstance(languages, str) else languages)
    except UnknownLanguage as exc:
        raise InvalidInput(str(exc), code="unknown_language") from None
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidInput(f"Unknown time zone {timezone!r}.", code="unknown_timezone") from None
    e164 = None
    if phone is not None:
        e164 = normalize_e164(phone)
        if e164 is None:
            raise InvalidInput("The phone number cannot be dialled.", code="invalid_phone")
    if await session.scalar(select(User.id).where(User.email == email)) is not None:
        raise Conflict("A staff account with that email exists.")
    now = clock.now()
    granted = role_list
    if requested_by is not None:
        granted = [r for r in role_list if r not in PRIVILEGED_ROLES]
    user = User(
        public_id=new_public_id("U"),
        email=email,
        display_name=display_name,
        roles=",".join(r.value for r in granted),
        languages=",".join(language_list),
        timezone=timezone,
        status=UserStatus.pending,
        password_hash=password_hash,
        created_at=now,
        updated_at=now,
    )
    if e164 is not None:
        await sealer.seal(session, user, "phone", e164)
    session.add(user)
    await session.flush()
    token = await issue_enrolment(session, clock, user)
    audit.record(
        session,
        clock,
        actor=actor,
        action="user.created",
        object_type="user",
        object_id=user.public_id,
        fields=["phone"] if e164 else [],
        details={"roles": roles_code(user.roles)},
    )
    if requested_by is not None and granted != role_list:
        await request_role_grant(session, clock, user, role_list, requested_by=requested_by, actor=actor)
    return user, token


async def user_by_email(session: AsyncSession, email: str) -> User | None:
    return await session.scalar(select(User).where(User.email == email.strip().lower()))


async def disable_user(session: AsyncSession, clock: Clock, user: User, *, actor: Actor) -> None:
    """Offboarding: the account stops working at once and every session dies."""
    now = clock.now()
    user.status = UserStatus.disabled
    user.disabled_at = now
    user.sessions_valid_after = now
    user.updated_at = now
    await _revoke_sessions(session, user, now)
    audit.record(
        session, clock, actor=actor, action="user.disabled", object_type="user", object_id=user.public_id
    )


async def reset_mfa(session: AsyncSession, clock: Clock, user: User, *, actor: Actor) -> str:
    """Forget the second factor; the person re-enrols with a new link (password kept)."""
    now = clock.now()
    user.totp_secret = None
    user.totp_last_step = None
    user.status = UserStatus.pending
    user.sessions_valid_after = now
    user.updated_at = now
    await _revoke_sessions(session, user, now)
    token = await issue_enrolment(session, clock, user)
    audit.record(
        session, clock, actor=actor, action="user.mfa_reset", object_type="user", object_id=user.public_id
    )
    return token


async def end_sessions(session: AsyncSession, clock: Clock, user: User, *, actor: Actor) -> None:
    now = clock.now()
    user.sessions_valid_after = now
    await _revoke_sessions(session, user, now)
    audit.record(
        session,
        clock,
        actor=actor,
        action="user.sessions_ended",
        object_type="user",
        object_id=user.public_id,
    )


async def clear_sign_in_block(session: AsyncSession, clock: Clock, user: User, *, actor: Actor) -> None:
    user.failed_logins = 0
    user.next_login_at = None
    user.login_blocked_at = None
    audit.record(
        session,
        clock,
        actor=actor,
        action="user.sign_in_unblocked",
        object_type="user",
        object_id=user.public_id,
    )


async def _revoke_sessions(session: AsyncSession, user: User, now: datetime) -> None:
    from app.accounts.models import StaffSession

    await session.execute(
        update(StaffSession)
        .where(StaffSession.user_id == user.id, StaffSession.revoked_at.is_(None))
        .values(revoked_at=now)
        .execution_options(synchronize_session=False)
    )
    await live.session_ended(session, user.public_id)  # every worker's streams of theirs end on commit


async def cancel_pending_grants(session: AsyncSession, clock: Clock, user: User, *, by: User) -> int:
    """Earlier pending role grants of `user` stop being approvable (their roles are being changed)."""
    grants = list(
        await session.scalars(
            select(RoleGrant).where(RoleGrant.user_id == user.id, RoleGrant.state == "pending")
        )
    )
    for grant in grants:
        grant.state, grant.decided_by_id, grant.decided_at = "cancelled", by.id, clock.now()
    return len(grants)


async def request_role_grant(
    session: AsyncSession, clock: Clock, user: User, roles: list[Role], *, requested_by: User, actor: Actor
) -> RoleGrant:
    """Ask for `user`'s roles to become `roles` (which add supervisor or admin): nothing changes
    until a second, distinct admin approves (`approve_role_grant`). The caller checks the step-up."""
    cancelled = await cancel_pending_grants(session, clock, user, by=requested_by)
    grant = RoleGrant(
        public_id=new_public_id("RG"),
        user_id=user.id,
        roles=",".join(r.value for r in roles),
        roles_before=user.roles,
        state="pending",
        requested_by_id=requested_by.id,
        requested_at=clock.now(),
    )
    session.add(grant)
    await session.flush()
    audit.record(
        session,
        clock,
        actor=actor,
        action="user.role_grant_requested",
        object_type="user",
        object_id=user.public_id,
        fields=["roles"],
        details={
            "grant": grant.public_id,
            "roles": roles_code(grant.roles),
            "roles_before": roles_code(user.roles),
            "cancelled": cancelled,
        },
    )
    return grant


async def approve_role_grant(
    session: AsyncSession, clock: Clock, grant: RoleGrant, user: User, *, approver: User, actor: Actor
) -> None:
    """A second admin approves: the roles change now. The caller refuses the person concerned and
    checks the step-up; here: still pending, not the requester's own, roles unchanged since."""
    if grant.state != "pending":
        raise Conflict("This role grant is not pending.", code="not_pending")
    if grant.requested_by_id == approver.id:
        raise Conflict("A second admin must approve this role grant.", code="same_admin")
    if user.role_set != frozenset(Role(r) for r in grant.roles_before.split(",") if r):
        raise Conflict(
            "This person's roles changed since the grant was asked; ask again.", code="roles_changed"
        )
    roles = parse_roles(grant.roles)
    now = clock.now()
    user.roles = ",".join(r.value for r in roles)
    user.updated_at = now
    grant.state, grant.decided_by_id, grant.decided_at = "approved", approver.id, now
    requester = await session.scalar(select(User.public_id).where(User.id == grant.requested_by_id))
    audit.record(
        session,
        clock,
        actor=actor,
        action="user.role_grant_approved",
        object_type="user",
        object_id=user.public_id,
        fields=["roles"],
        details={"grant": grant.public_id, "roles": roles_code(roles), "requested_by": requester},
    )
