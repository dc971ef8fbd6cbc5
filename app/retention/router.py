"""Legal holds and caller erasure (supervisors). An erasure needs two distinct supervisors: one
records the request (finding the caller by their number through the blind index), another
approves it, and only then is everything of the caller's crypto-shredded. Audit entries name the
matched caller's id, never the number or a hash of it."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints
from sqlalchemy import select

from app.access.permissions import Permission
from app.access.policy import Principal, Purpose
from app.accounts.deps import Auth, Staff, require
from app.audit import service as audit
from app.callers.models import Caller
from app.callers.service import phone_index
from app.cases.models import Case
from app.cases.router import public_ids
from app.cases.schemas import PublicId
from app.db.session import DbSession
from app.errors import Conflict, InvalidInput, NotFound
from app.publicid import new_public_id
from app.retention import service
from app.retention.models import ErasureRequest, LegalHold
from app.validation import printable
from telephony.numbers import normalize_e164

router = APIRouter(tags=["retention"])
Manager = Annotated[Staff, require(Permission.retention_manage)]
MATCHER = Principal.system("caller-match")


class HoldIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    case: PublicId
    scope: Literal["case", "caller"] = Field(
        default="case", description="Hold the case, or its caller (and with them all their cases)."
    )
    reason: Annotated[
        str,
        StringConstraints(strip_whitespace=True, min_length=10, max_length=1000),
        AfterValidator(printable),
    ]


class HoldOut(BaseModel):
    id: str
    case: str | None
    scope: Literal["case", "caller"]
    placed_by: str | None
    placed_at: datetime
    released_by: str | None
    released_at: datetime | None


class HoldList(BaseModel):
    items: list[HoldOut]


class ErasureIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    phone: Annotated[str, StringConstraints(strip_whitespace=True, min_length=7, max_length=32)]


class ErasureOut(BaseModel):
    id: str
    state: Literal["pending", "done", "cancelled"]
    requested_by: str | None
    requested_at: datetime
    approved_by: str | None
    approved_at: datetime | None
    shredded_subjects: int | None = None


class ErasureList(BaseModel):
    items: list[ErasureOut]


async def _hold_out(db: DbSession, hold: LegalHold) -> HoldOut:
    users = await public_ids(db, {hold.placed_by_id, hold.released_by_id})
    case_public = None
    if hold.case_id is not None:
        case_public = await db.scalar(select(Case.public_id).where(Case.id == hold.case_id))
    return HoldOut(
        id=hold.public_id,
        case=case_public,
        scope="case" if hold.case_id is not None else "caller",
        placed_by=users.get(hold.placed_by_id),
        placed_at=hold.placed_at,
        released_by=users.get(hold.released_by_id),
        released_at=hold.released_at,
    )


@router.get("/holds", response_model=HoldList)
async def list_holds(staff: Manager, db: DbSession) -> HoldList:
    holds = list(await db.scalars(select(LegalHold).order_by(LegalHold.placed_at.desc()).limit(500)))
    return HoldList(items=[await _hold_out(db, hold) for hold in holds])


@router.post(
    "/holds", response_model=HoldOut, status_code=201, responses={404: {"description": "No such case."}}
)
async def place_hold(body: HoldIn, staff: Manager, db: DbSession, auth: Auth) -> HoldOut:
    """Keep a case (or its caller, with all their cases) out of retention until released."""
    case = await db.scalar(select(Case).where(Case.public_id == body.case))
    if case is None:
        raise NotFound()
    if body.scope == "caller" and case.caller_id is None:
        raise InvalidInput("This case has no caller to hold.", code="no_caller")
    if case.erased_at is not None:
        raise Conflict("This case was already erased.", code="erased")
    hold = LegalHold(
        public_id=new_public_id("LH"),
        case_id=case.id if body.scope == "case" else None,
        caller_id=case.caller_id if body.scope == "caller" else None,
        placed_by_id=staff.user.id,
        placed_at=auth.clock.now(),
    )
    await auth.sealer.seal(db, hold, "reason", body.reason)
    db.add(hold)
    await db.flush()
    audit.record(
        db,
        auth.clock,
        actor=staff.principal.actor,
        action="legal_hold.placed",
        object_type="case",
        object_id=case.public_id,
        details={"hold": hold.public_id, "scope": body.scope},
    )
    return await _hold_out(db, hold)


@router.post(
    "/holds/{hold_id}/release", response_model=HoldOut, responses={404: {"description": "No such hold."}}
)
async def release_hold(hold_id: PublicId, staff: Manager, db: DbSession, auth: Auth) -> HoldOut:
    hold = await db.scalar(select(LegalHold).where(LegalHold.public_id == hold_id))
    if hold is None:
        raise NotFound()
    if hold.released_at is not None:
        raise Conflict("This hold was already released.", code="released")
    hold.released_by_id, hold.released_at = staff.user.id, auth.clock.now()
    audit.record(
        db,
        auth.clock,
        actor=staff.principal.actor,
        action="legal_hold.released",
        object_type="legal_hold",
        object_id=hold.public_id,
    )
    return await _hold_out(db, hold)


async def _erasure_out(db: DbSession, request: ErasureRequest, shredded: int | None = None) -> ErasureOut:
    users = await public_ids(db, {request.requested_by_id, request.approved_by_id})
    return ErasureOut(
        id=request.public_id,
        state=request.state,
        requested_by=users.get(request.requested_by_id),
        requested_at=request.requested_at,
        approved_by=users.get(request.approved_by_id),
        approved_at=request.approved_at,
        shredded_subjects=shredded,
    )


@router.get("/erasures", response_model=ErasureList)
async def list_erasures(staff: Manager, db: DbSession) -> ErasureList:
    requests = list(
        await db.scalars(select(ErasureRequest).order_by(ErasureRequest.requested_at.desc()).limit(500))
    )
    return ErasureList(items=[await _erasure_out(db, r) for r in requests])


@router.post(
    "/erasures",
    response_model=ErasureOut,
    status_code=201,
    responses={404: {"description": "No caller with that number."}},
)
async def request_erasure(body: ErasureIn, staff: Manager, db: DbSession, auth: Auth) -> ErasureOut:
    """Record a caller's request to be erased; a second supervisor must approve it."""
    e164 = normalize_e164(body.phone)
    if e164 is None:
        raise InvalidInput("Give the caller's phone number in E.164 form (+1…).", code="invalid_phone")
    caller = None
    for candidate in await db.scalars(
        select(Caller).where(Caller.phone_index == phone_index(auth.keys, e164))
    ):
        number = await auth.broker.reveal_for_system(
            db,
            MATCHER,
            candidate,
            "phone",
            purpose=Purpose.caller_match,
            object_type="caller",
            object_id=str(candidate.id),
        )
        if number == e164:
            caller = candidate
            break
    if caller is None:
        # The search itself is recorded (committed on its own: the refusal rolls back the rest).
        await db.rollback()
        audit.record(
            db,
            auth.clock,
            actor=staff.principal.actor,
            action="erasure.no_match",
            object_type="caller",
            outcome="not_found",
        )
        await db.commit()
        raise NotFound("No caller with that number.")
    if await service.active_hold(db, case_id=None, caller_id=caller.id):
        raise Conflict("This caller is under a legal hold; release it first.", code="on_hold")
    pending = await db.scalar(
        select(ErasureRequest).where(ErasureRequest.caller_id == caller.id, ErasureRequest.state == "pending")
    )
    if pending is not None:
        return await _erasure_out(db, pending)
    request = ErasureRequest(
        public_id=new_public_id("ER"),
        caller_id=caller.id,
        state="pending",
        requested_by_id=staff.user.id,
        requested_at=auth.clock.now(),
    )
    db.add(request)
    await db.flush()
    audit.record(
        db,
        auth.clock,
        actor=staff.principal.actor,
        action="erasure.requested",
        object_type="caller",
        object_id=str(caller.id),
        details={"request": request.public_id},
    )
    return await _erasure_out(db, request)


@router.post(
    "/erasures/{request_id}/approve",
    response_model=ErasureOut,
    responses={404: {"description": "No such request."}, 409: {"description": "Not approvable."}},
)
async def approve_erasure(request_id: PublicId, staff: Manager, db: DbSession, auth: Auth) -> ErasureOut:
    """A second, distinct supervisor approves: everything of the caller's is shredded now."""
    request = await db.scalar(select(ErasureRequest).where(ErasureRequest.public_id == request_id))
    if request is None:
        raise NotFound()
    if request.state != "pending":
        raise Conflict("This request is not pending.", code="not_pending")
    if request.requested_by_id == staff.user.id:
        raise Conflict("A second supervisor must approve an erasure.", code="same_supervisor")
    caller = await db.get(Caller, request.caller_id)
    if caller is None:
        raise NotFound()
    if await service.active_hold(db, case_id=None, caller_id=caller.id):
        raise Conflict("This caller is under a legal hold; release it first.", code="on_hold")
    request.state, request.approved_by_id, request.approved_at = "done", staff.user.id, auth.clock.now()
    audit.record(
        db,
        auth.clock,
        actor=staff.principal.actor,
        action="erasure.approved",
        object_type="caller",
        object_id=str(caller.id),
        details={"request": request.public_id},
    )
    state = auth  # the auth service carries sealer, broker, clock and keys
    shredded = await service.erase_caller(state, db, caller, request_id=request.public_id)
    return await _erasure_out(db, request, shredded)
