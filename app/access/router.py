"""Break-glass review: every grant is listed for supervisors, who mark it reviewed.

Reassignments are listed with them (`kind: "reassignment"`): a supervisor who gives a case to a
volunteer gives that volunteer its content, so a different supervisor (not the one who moved it,
nor the one it went to) reviews each move the same way.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from app.access.models import BreakGlassGrant, CaseReassignment
from app.access.permissions import Permission
from app.accounts.deps import Auth, Staff, require
from app.accounts.models import User
from app.audit import service as audit
from app.cases.models import Case
from app.cases.schemas import PublicId
from app.db.session import DbSession
from app.errors import Conflict, NotFound

router = APIRouter(prefix="/break-glass", tags=["supervision"])
Reviewer = Annotated[Staff, require(Permission.break_glass_review)]


class GrantOut(BaseModel):
    id: str
    kind: Literal["break_glass", "reassignment"] = "break_glass"
    case: str
    supervisor: str = Field(description="Who broke the glass, or who reassigned the case.")
    assignee: str | None = Field(default=None, description="Reassignment: who the case went to.")
    previous_assignee: str | None = Field(default=None, description="Reassignment: who had it before.")
    created_at: datetime
    expires_at: datetime | None = Field(description="Break-glass only: when the access ends.")
    reviewed_at: datetime | None
    reviewed_by: str | None
    outcome: str | None


class ReviewIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    outcome: Literal["justified", "unjustified"]


@router.get("/reviews", response_model=list[GrantOut])
async def list_grants(
    staff: Reviewer, db: DbSession, pending: Annotated[bool, Query()] = True
) -> list[GrantOut]:
    """Break-glass grants and reassignments, newest first (`pending=false` adds reviewed ones)."""
    query = (
        select(BreakGlassGrant, Case.public_id, User.public_id)
        .join(Case, Case.id == BreakGlassGrant.case_id)
        .join(User, User.id == BreakGlassGrant.supervisor_id)
        .order_by(BreakGlassGrant.created_at.desc())
        .limit(500)
    )
    if pending:
        query = query.where(BreakGlassGrant.reviewed_at.is_(None))
    rows = (await db.execute(query)).all()
    moves_query = (
        select(CaseReassignment, Case.public_id)
        .join(Case, Case.id == CaseReassignment.case_id)
        .order_by(CaseReassignment.created_at.desc())
        .limit(500)
    )
    if pending:
        moves_query = moves_query.where(CaseReassignment.reviewed_at.is_(None))
    moves = (await db.execute(moves_query)).all()
    user_ids = {g.reviewed_by_id for g, _, _ in rows} | {
        i
        for m, _ in moves
        for i in (m.supervisor_id, m.assignee_id, m.previous_assignee_id, m.reviewed_by_id)
    }
    users = {
        row.id: row.public_id
        for row in await db.execute(
            select(User.id, User.public_id).where(User.id.in_({i for i in user_ids if i is not None}))
        )
    }
    items = [
        GrantOut(
            id=g.public_id,
            case=case,
            supervisor=supervisor,
            created_at=g.created_at,
            expires_at=g.expires_at,
            reviewed_at=g.reviewed_at,
            reviewed_by=users.get(g.reviewed_by_id) if g.reviewed_by_id else None,
            outcome=g.review_outcome,
        )
        for g, case, supervisor in rows
    ] + [reassignment_out(m, case, users) for m, case in moves]
    return sorted(items, key=lambda item: item.created_at, reverse=True)[:500]


def reassignment_out(move: CaseReassignment, case: str, users: dict[uuid.UUID, str]) -> GrantOut:
    return GrantOut(
        id=move.public_id,
        kind="reassignment",
        case=case,
        supervisor=users.get(move.supervisor_id, ""),
        assignee=users.get(move.assignee_id),
        previous_assignee=users.get(move.previous_assignee_id) if move.previous_assignee_id else None,
        created_at=move.created_at,
        expires_at=None,
        reviewed_at=move.reviewed_at,
        reviewed_by=users.get(move.reviewed_by_id) if move.reviewed_by_id else None,
        outcome=move.review_outcome,
    )


async def review_reassignment(
    move: CaseReassignment, body: ReviewIn, staff: Staff, db: DbSession, auth: Auth
) -> GrantOut:
    """Nobody reviews a reassignment they made, or one that gave them the case."""
    if staff.user.id in (move.supervisor_id, move.assignee_id):
        raise Conflict("A different supervisor must review this reassignment.")
    if move.reviewed_at is not None:
        raise Conflict("Already reviewed.")
    move.reviewed_at = auth.clock.now()
    move.reviewed_by_id = staff.user.id
    move.review_outcome = body.outcome
    case_id = await db.scalar(select(Case.public_id).where(Case.id == move.case_id))
    ids = {move.supervisor_id, move.assignee_id, move.previous_assignee_id, staff.user.id}
    users = {
        row.id: row.public_id
        for row in await db.execute(
            select(User.id, User.public_id).where(User.id.in_({i for i in ids if i is not None}))
        )
    }
    audit.record(
        db,
        auth.clock,
        actor=staff.principal.actor,
        action="case.reassignment_reviewed",
        object_type="case_reassignment",
        object_id=move.public_id,
        outcome="ok",
        details={"case": case_id, "verdict": body.outcome},
    )
    return reassignment_out(move, case_id or "", users)


@router.post("/reviews/{grant_id}", response_model=GrantOut, responses={404: {}, 409: {}})
async def review_grant(
    grant_id: PublicId, body: ReviewIn, staff: Reviewer, db: DbSession, auth: Auth
) -> GrantOut:
    """Record a review (of a break-glass grant or a reassignment). Nobody reviews their own."""
    grant = await db.scalar(select(BreakGlassGrant).where(BreakGlassGrant.public_id == grant_id))
    if grant is None:
        move = await db.scalar(select(CaseReassignment).where(CaseReassignment.public_id == grant_id))
        if move is None:
            raise NotFound()
        return await review_reassignment(move, body, staff, db, auth)
    if grant.supervisor_id == staff.user.id:
        raise Conflict("A different supervisor must review this access.")
    if grant.reviewed_at is not None:
        raise Conflict("Already reviewed.")
    grant.reviewed_at = auth.clock.now()
    grant.reviewed_by_id = staff.user.id
    grant.review_outcome = body.outcome
    case_id = await db.scalar(select(Case.public_id).where(Case.id == grant.case_id))
    supervisor = await db.scalar(select(User.public_id).where(User.id == grant.supervisor_id))
    audit.record(
        db,
        auth.clock,
        actor=staff.principal.actor,
        action="break_glass.reviewed",
        object_type="break_glass",
        object_id=grant.public_id,
        outcome="ok",
        details={"case": case_id, "verdict": body.outcome},
    )
    return GrantOut(
        id=grant.public_id,
        case=case_id or "",
        supervisor=supervisor or "",
        created_at=grant.created_at,
        expires_at=grant.expires_at,
        reviewed_at=grant.reviewed_at,
        reviewed_by=staff.user.public_id,
        outcome=grant.review_outcome,
    )
