"""Break-glass review: every grant is listed for supervisors, who mark it reviewed."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict
from sqlalchemy import select

from app.access.models import BreakGlassGrant
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
    case: str
    supervisor: str
    created_at: datetime
    expires_at: datetime
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
    """Break-glass grants, unreviewed first (`pending=false` lists all)."""
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
    reviewers = {
        row.id: row.public_id
        for row in await db.execute(
            select(User.id, User.public_id).where(
                User.id.in_({g.reviewed_by_id for g, _, _ in rows if g.reviewed_by_id})
            )
        )
    }
    return [
        GrantOut(
            id=g.public_id,
            case=case,
            supervisor=supervisor,
            created_at=g.created_at,
            expires_at=g.expires_at,
            reviewed_at=g.reviewed_at,
            reviewed_by=reviewers.get(g.reviewed_by_id),
            outcome=g.review_outcome,
        )
        for g, case, supervisor in rows
    ]


@router.post("/reviews/{grant_id}", response_model=GrantOut, responses={404: {}, 409: {}})
async def review_grant(
    grant_id: PublicId, body: ReviewIn, staff: Reviewer, db: DbSession, auth: Auth
) -> GrantOut:
    """Record a review. Nobody reviews their own break-glass."""
    grant = await db.scalar(select(BreakGlassGrant).where(BreakGlassGrant.public_id == grant_id))
    if grant is None:
        raise NotFound()
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
