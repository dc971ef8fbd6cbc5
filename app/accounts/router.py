from __future__ import annotations

from fastapi import APIRouter, Request, Response

from app.access.permissions import permissions_of
from app.accounts.auth import DEVICE_COOKIE, DEVICE_LIFETIME, SESSION_COOKIE, TooManyAttempts, principal_for
from app.accounts.deps import Auth, SignedInStaff, Staff
from app.accounts.schemas import EnrollConfirmIn, EnrollIn, EnrollOut, LoginIn, MeOut, StatusOut, StepUpIn
from app.client import client_address
from app.db.session import DbSession
from app.events import service as live

router = APIRouter(prefix="/auth", tags=["auth"])


def me_out(staff: Staff, csrf: str) -> MeOut:
    user = staff.user
    return MeOut(
        id=user.public_id,
        email=user.email,
        name=user.display_name,
        roles=sorted(user.roles.split(",")),
        languages=user.language_list,
        timezone=user.timezone,
        csrf_token=csrf,
        session_expires_at=staff.session.expires_at.isoformat(),
    )


@router.post("/login", response_model=MeOut, responses={401: {}, 429: {}})
async def login(body: LoginIn, request: Request, response: Response, db: DbSession, auth: Auth) -> MeOut:
    """Password and TOTP together; a new session token every time."""
    try:
        signed_in = await auth.login(
            db,
            email=body.email,
            password=body.password,
            code=body.totp,
            device_token=request.cookies.get(DEVICE_COOKIE),
            address=client_address(request),
        )
    except TooManyAttempts as exc:
        response.headers["Retry-After"] = str(exc.retry_after)
        raise
    response.set_cookie(
        SESSION_COOKIE, signed_in.token, secure=True, httponly=True, samesite="strict", path="/"
    )
    if signed_in.device_token:
        response.set_cookie(
            DEVICE_COOKIE,
            signed_in.device_token,
            max_age=int(DEVICE_LIFETIME.total_seconds()),
            secure=True,
            httponly=True,
            samesite="strict",
            path="/",
        )
    principal = principal_for(signed_in.user)
    staff = Staff(signed_in.user, signed_in.session, principal, permissions_of(principal.roles))
    return me_out(staff, signed_in.csrf)


@router.post("/logout", response_model=StatusOut)
async def logout(staff: SignedInStaff, response: Response, db: DbSession, auth: Auth) -> StatusOut:
    await auth.logout(db, staff.user, staff.session)
    # On commit, every worker's live-event streams of this session end at once.
    await live.session_ended(db, staff.user.public_id, staff.session.id)
    response.delete_cookie(SESSION_COOKIE, secure=True, httponly=True, samesite="strict", path="/")
    return StatusOut(status="signed_out")


@router.get("/me", response_model=MeOut)
async def me(staff: SignedInStaff, auth: Auth) -> MeOut:
    return me_out(staff, auth.csrf_for(staff.session.token_hash))


@router.post("/enroll", response_model=EnrollOut, responses={422: {}})
async def enroll(body: EnrollIn, db: DbSession, auth: Auth) -> EnrollOut:
    """Set a password (unless set on the host) and receive a new TOTP secret and its QR code."""
    return EnrollOut(**await auth.enroll(db, body.token, body.password))


@router.post("/enroll/confirm", response_model=StatusOut, responses={422: {}})
async def enroll_confirm(body: EnrollConfirmIn, db: DbSession, auth: Auth) -> StatusOut:
    """Activates the account once a code from the new authenticator verifies."""
    await auth.enroll_confirm(db, body.token, body.totp)
    return StatusOut(status="active")


@router.post("/step-up", response_model=StatusOut, responses={401: {}, 429: {}})
async def step_up(body: StepUpIn, staff: SignedInStaff, db: DbSession, auth: Auth) -> StatusOut:
    """Re-check TOTP before break-glass, exports and MFA changes. Wrong codes count on the sign-in
    failure counter: 429 with Retry-After while its delay runs; the session ends after ten."""
    await auth.step_up(db, staff.user, staff.session, body.totp)
    return StatusOut(status="stepped_up")
