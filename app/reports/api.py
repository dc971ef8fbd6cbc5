"""Reading an anonymous report: the assigned volunteer, or any supervisor with a stated purpose —
no break-glass, as a report names nobody (`check_content(anonymous_report=True)`) — one audited
batch per request. A report's metadata is in `GET /cases/{id}` like any case; its entries only
come through here."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict
from sqlalchemy import select

from app.access.content import check_content
from app.access.permissions import Permission
from app.access.policy import Purpose
from app.accounts.deps import Auth, Staff, require
from app.cases.router import visible_case
from app.cases.schemas import PublicId, StaffPurpose
from app.db.session import DbSession
from app.errors import Erased, NotFound
from app.reports.models import Report, ReportEntry
from app.retention.service import erased_message

router = APIRouter(prefix="/cases", tags=["reports"])
Reader = Annotated[Staff, require(Permission.cases_read)]


class ReportRevealIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    purpose: StaffPurpose


class ReportEntryOut(BaseModel):
    id: str
    kind: Literal["text", "audio"]
    source: Literal["report", "addition"]
    created_at: datetime
    text: str | None
    audio_stored: bool


class ReportOut(BaseModel):
    id: str
    category: str
    channel: str
    language: str
    additions: int
    created_at: datetime
    entries: list[ReportEntryOut]


@router.post(
    "/{case_id}/report/reveal",
    response_model=ReportOut,
    responses={404: {"description": "No such report case visible to you."}, 410: {"description": "Erased."}},
)
async def reveal_report(
    case_id: PublicId, body: ReportRevealIn, staff: Reader, db: DbSession, auth: Auth
) -> ReportOut:
    """The report's facts as the caller gave them (texts; recordings are listed, not returned)."""
    case = await visible_case(db, staff.principal, case_id)
    report = await db.scalar(select(Report).where(Report.case_id == case.id))
    if report is None:
        raise NotFound()
    if case.erased_at is not None:
        raise Erased(erased_message(case.erased_reason))
    purpose = Purpose(body.purpose)
    access = await check_content(
        db,
        auth.clock,
        staff.principal,
        case,
        action="report.reveal",
        fields=["report"],
        purpose=purpose,
        anonymous_report=True,
    )
    entries = list(
        await db.scalars(
            select(ReportEntry).where(ReportEntry.report_id == report.id).order_by(ReportEntry.created_at)
        )
    )
    texts = [entry for entry in entries if entry.kind == "text"]
    revealed = (
        await auth.broker.reveal_content(
            db,
            access,
            purpose=purpose,
            rows=[(entry.public_id, entry, "body") for entry in texts],
            action="report.reveal",
        )
        if texts
        else None
    )
    text_of = {entry.id: revealed.values.get(entry.public_id) if revealed else None for entry in texts}
    return ReportOut(
        id=report.public_id,
        category=report.category,
        channel=report.channel,
        language=report.language,
        additions=report.additions,
        created_at=report.created_at,
        entries=[
            ReportEntryOut(
                id=entry.public_id,
                kind=entry.kind,
                source=entry.source,
                created_at=entry.created_at,
                text=text_of.get(entry.id),
                audio_stored=entry.kind == "audio" and entry.state == "stored",
            )
            for entry in entries
        ],
    )
