"""Legal holds and caller erasure (supervisors).

An erasure request is blind until approved: one supervisor records the caller's number (sealed on
the request under its own key; nothing is looked up), and the answer is the same whether or not
anyone ever called from it or is under a legal hold. Only when a second, distinct supervisor
approves is the number matched to a caller, holds checked and everything of the caller's
crypto-shredded (`service.process_erasure`); the approver sees what was found, as counts. The
request's own number is shredded then, whatever was found. Audit entries name the request
(`ER-…`), never the caller, the number or a hash of it."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints
from sqlalchemy import select

from app.access.permissions import Permission
from app.accounts.deps import Auth, Staff, require
from app.audit import service as audit
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


ErasureState = Literal["pending", "processed", "cancelled"]
# Requests approved before requests went blind say "done".
SHOWN_STATES: dict[str, ErasureState] = {
    "pending": "pending",
    "processed": "processed",
    "done": "processed",
    "cancelled": "cancelled",
}
STATE_MESSAGES: dict[str, str] = {
    "pending": "Recorded; a second supervisor must approve it.",
    "processed": "Processed.",
    "cancelled": "Cancelled.",
}


class ErasureOutcomeOut(BaseModel):
    matched: int = Field(description="Callers found with the number (0 or 1).")
    held: int = Field(description="1 if a legal hold kept the caller: nothing of theirs was erased.")
    erased_cases: int
    shredded_subjects: int


class ErasureOut(BaseModel):
    id: str
    state: ErasureState
    message: str
    requested_by: str | None
    requested_at: datetime
    approved_by: str | None
    approved_at: datetime | None
    outcome: ErasureOutcomeOut | None = Field(
        default=None, description="What processing found and did: shown once, to the approver."
    )


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


def _outcome_message(outcome: service.ErasureOutcome) -> str:
    if not outcome.matched:
        return "Processed: no caller with that number; nothing to erase."
    if outcome.held:
        return "Processed: the caller is under a legal hold, so nothing was erased."
    return "Processed: everything of the caller's was erased."


async def _erasure_out(
    db: DbSession, request: ErasureRequest, outcome: service.ErasureOutcome | None = None
) -> ErasureOut:
    users = await public_ids(db, {request.requested_by_id, request.approved_by_id})
    state = SHOWN_STATES[request.state]
    return ErasureOut(
        id=request.public_id,
        state=state,
        message=STATE_MESSAGES[state] if outcome is None else _outcome_message(outcome),
        requested_by=users.get(request.requested_by_id),
        requested_at=request.requested_at,
        approved_by=users.get(request.approved_by_id),
        approved_at=request.approved_at,
        outcome=None if outcome is None else ErasureOutcomeOut(**outcome.details()),
    )


@router.get("/erasures", response_model=ErasureList)
async def list_erasures(staff: Manager, db: DbSession) -> ErasureList:
    """Requests and their states (never what processing found)."""
    requests = list(
        await db.scalars(select(ErasureRequest).order_by(ErasureRequest.requested_at.desc()).limit(500))
    )
    return ErasureList(items=[await _erasure_out(db, r) for r in requests])


@router.post(
    "/erasures",
    response_model=ErasureOut,
    status_code=202,
    responses={422: {"description": "Not a phone number (format only)."}},
)
async def request_erasure(body: ErasureIn, staff: Manager, db: DbSession, auth: Auth) -> ErasureOut:
    """Record a caller's request to be erased; a second supervisor must approve it. Blind: nothing
    is looked up, so the answer is the same for a number that called, one that did not and one
    under a legal hold."""
    e164 = normalize_e164(body.phone)
    if e164 is None:
        raise InvalidInput("Give the caller's phone number in E.164 form (+1…).", code="invalid_phone")
    request = ErasureRequest(
        public_id=new_public_id("ER"),
        state="pending",
        requested_by_id=staff.user.id,
        requested_at=auth.clock.now(),
    )
    await auth.sealer.seal(db, request, "phone", e164)
    db.add(request)
    await db.flush()
    audit.record(
        db,
        auth.clock,
        actor=staff.principal.actor,
        action="erasure.requested",
        object_type="erasure",
        object_id=request.public_id,
    )
    return await _erasure_out(db, request)


@router.post(
    "/erasures/{request_id}/approve",
    response_model=ErasureOut,
    responses={404: {"description": "No such request."}, 409: {"description": "Not approvable."}},
)
async def approve_erasure(request_id: PublicId, staff: Manager, db: DbSession, auth: Auth) -> ErasureOut:
    """A second, distinct supervisor approves: only now is the number looked up, holds checked and,
    unless held, everything of the caller's shredded. The answer says what was found."""
    request = await db.scalar(select(ErasureRequest).where(ErasureRequest.public_id == request_id))
    if request is None:
        raise NotFound()
    if request.state != "pending":
        raise Conflict("This request is not pending.", code="not_pending")
    if request.requested_by_id == staff.user.id:
        raise Conflict("A second supervisor must approve an erasure.", code="same_supervisor")
    # The auth service carries the sealer, broker, clock and keys the erasure needs.
    outcome = await service.process_erasure(
        auth, db, request, approver_id=staff.user.id, actor=staff.principal.actor
    )
    return await _erasure_out(db, request, outcome)
