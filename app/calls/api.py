"""Volunteer-facing telephony endpoints: offers (`GET /offers`, accept/decline) and callbacks
(`GET /callbacks`, `POST /callbacks/{id}/claim`). Metadata only: no number, name or message here.

A voice offer is accepted on the phone (pressing 1 in the whisper is what proves a person, not a
voicemail box, has the call); the console can decline it. Chat offers are accepted here.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter
from pydantic import BaseModel
from sqlalchemy import select

from app.access.permissions import Permission
from app.accounts.deps import Auth, Staff, require
from app.accounts.models import User
from app.calls import callbacks as service
from app.calls.models import Callback
from app.cases.models import Case
from app.cases.schemas import PublicId
from app.chats import service as chats
from app.db.session import DbSession
from app.errors import Conflict, NotFound
from app.routing import service as routing
from app.routing.models import Offer, OfferState, Task

router = APIRouter(tags=["telephony"])
Volunteer = Annotated[Staff, require(Permission.availability)]
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "No such offer or callback."}}


class OfferOut(BaseModel):
    id: str
    channel: str
    language: str
    emergency: bool
    interpreter_needed: bool
    case: str | None
    created_at: datetime
    expires_at: datetime


class OfferList(BaseModel):
    offers: list[OfferOut]


class OfferAnswer(BaseModel):
    id: str
    state: str
    case: str | None


class CallbackOut(BaseModel):
    id: str
    case: str | None
    state: str
    language: str
    emergency: bool
    has_voicemail: bool
    attempts: int
    outcome: str | None
    claimed_by: str | None
    created_at: datetime


class CallbackList(BaseModel):
    callbacks: list[CallbackOut]


async def _case_ids(db: DbSession, ids: set[Any]) -> dict[Any, str]:
    ids.discard(None)
    if not ids:
        return {}
    return dict((await db.execute(select(Case.id, Case.public_id).where(Case.id.in_(ids)))).all())


async def _own_offer(db: DbSession, staff: Staff, offer_id: str) -> Offer:
    offer = await db.scalar(select(Offer).where(Offer.public_id == offer_id))
    if offer is None or offer.volunteer_id != staff.user.id:
        raise NotFound()
    return offer


@router.get("/offers", response_model=OfferList)
async def list_offers(staff: Volunteer, db: DbSession) -> OfferList:
    """The signed-in volunteer's pending offers, newest first."""
    rows = (
        await db.execute(
            select(Offer, Task)
            .join(Task, Task.id == Offer.task_id)
            .where(Offer.volunteer_id == staff.user.id, Offer.state == OfferState.pending)
            .order_by(Offer.created_at.desc())
        )
    ).all()
    cases = await _case_ids(db, {task.case_id for _, task in rows})
    return OfferList(
        offers=[
            OfferOut(
                id=offer.public_id,
                channel=offer.channel,
                language=task.language,
                emergency=task.emergency,
                interpreter_needed=task.interpreter_needed,
                case=cases.get(task.case_id),
                created_at=offer.created_at,
                expires_at=offer.expires_at,
            )
            for offer, task in rows
        ]
    )


@router.post("/offers/{offer_id}/accept", response_model=OfferAnswer, responses={**NOT_FOUND, 409: {}})
async def accept_offer(offer_id: PublicId, staff: Volunteer, db: DbSession, auth: Auth) -> OfferAnswer:
    """Accept a chat offer (the case becomes yours). Voice offers are accepted by pressing 1."""
    offer = await _own_offer(db, staff, offer_id)
    if offer.channel == "voice":
        raise Conflict("Voice offers are accepted on your phone: press 1.", code="accept_on_phone")
    task = await routing.accept(db, auth.clock, offer)
    if task is None:
        raise Conflict("This offer has ended.", code="offer_ended")
    await chats.task_accepted(db, task)
    cases = await _case_ids(db, {task.case_id})
    return OfferAnswer(id=offer.public_id, state=OfferState.accepted, case=cases.get(task.case_id))


@router.post("/offers/{offer_id}/decline", response_model=OfferAnswer, responses={**NOT_FOUND, 409: {}})
async def decline_offer(offer_id: PublicId, staff: Volunteer, db: DbSession, auth: Auth) -> OfferAnswer:
    """Decline: the contact goes to the next volunteer at once."""
    offer = await _own_offer(db, staff, offer_id)
    if offer.state != OfferState.pending:
        raise Conflict("This offer has ended.", code="offer_ended")
    await routing.decline(db, auth.clock, routing.RoutingTimes.from_settings(auth.settings), offer)
    return OfferAnswer(id=offer.public_id, state=OfferState.declined, case=None)


async def _callback_out(db: DbSession, rows: list[Callback]) -> list[CallbackOut]:
    cases = await _case_ids(db, {row.case_id for row in rows})
    claimers = {row.claimed_by_id for row in rows if row.claimed_by_id}
    names = (
        dict((await db.execute(select(User.id, User.public_id).where(User.id.in_(claimers)))).all())
        if claimers
        else {}
    )
    return [
        CallbackOut(
            **service.describe(
                row, cases.get(row.case_id), names.get(row.claimed_by_id) if row.claimed_by_id else None
            )
        )
        for row in rows
    ]


@router.get("/callbacks", response_model=CallbackList)
async def list_callbacks(staff: Volunteer, db: DbSession) -> CallbackList:
    """Callbacks to claim (emergencies first, then oldest) and the ones you hold."""
    return CallbackList(callbacks=await _callback_out(db, await service.open_callbacks(db, staff.user)))


@router.post(
    "/callbacks/{callback_id}/claim",
    response_model=CallbackOut,
    responses={**NOT_FOUND, 409: {"description": "Already claimed, unsafe to call, or phone not verified."}},
)
async def claim_callback(callback_id: PublicId, staff: Volunteer, db: DbSession, auth: Auth) -> CallbackOut:
    """Claim a callback: exactly one volunteer wins; your phone rings, then (on 1) the caller's,
    both from the hotline's number. The case becomes yours."""
    callback = await service.callback_by_public_id(db, callback_id)
    if callback is None:
        raise NotFound()
    claimed = await service.claim(db, auth.clock, callback, staff.user)
    return (await _callback_out(db, [claimed]))[0]
