"""Supervision of the access log: query, CSV export (step-up), background verification."""

from __future__ import annotations

import csv
import io
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.access.permissions import Permission
from app.accounts.auth import StepUpRequired
from app.accounts.deps import Auth, Staff, require
from app.audit import service as audit
from app.audit.models import AuditEntry, AuditVerification
from app.db.session import DbSession
from app.errors import NotFound
from app.jobs.service import enqueue
from app.publicid import new_public_id

router = APIRouter(prefix="/audit", tags=["audit"])
AuditReader = Annotated[Staff, require(Permission.audit_read)]
AuditExporter = Annotated[Staff, require(Permission.audit_export)]
AuditVerifier = Annotated[Staff, require(Permission.audit_verify)]
Name = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:@+-]{1,64}$")]


class AuditFilter(BaseModel):
    model_config = ConfigDict(extra="forbid")
    actor: Name | None = None
    case: Name | None = None
    action: Name | None = None
    since: datetime | None = None
    until: datetime | None = None


class AuditEntryOut(BaseModel):
    seq: int
    ts: datetime
    actor: str
    roles: list[str]
    action: str
    object_type: str | None
    object_id: str | None
    fields: list[str]
    purpose: str | None
    outcome: str
    details: dict[str, Any]


class AuditPage(BaseModel):
    items: list[AuditEntryOut]
    page: int
    page_size: int
    total: int


class AuditQuery(AuditFilter):
    """The filter plus paging: one query model, because a model with `extra="forbid"` read from
    the query string refuses every parameter it does not declare (paging was a 422 before)."""

    page: int = Field(default=1, ge=1, le=100_000)
    page_size: int = Field(default=100, ge=1, le=500)


class ExportIn(AuditFilter):
    limit: int = Field(default=10_000, ge=1, le=100_000)


class VerificationOut(BaseModel):
    id: str
    state: str
    entries_checked: int
    entries_total: int | None
    problems: list[dict[str, Any]]
    requested_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


def filtered(query: Any, criteria: AuditFilter) -> Any:
    if criteria.actor:
        query = query.where(AuditEntry.actor_id == criteria.actor)
    if criteria.case:
        query = query.where(AuditEntry.object_type == "case", AuditEntry.object_id == criteria.case)
    if criteria.action:
        query = query.where(AuditEntry.action == criteria.action)
    if criteria.since:
        query = query.where(AuditEntry.ts >= criteria.since)
    if criteria.until:
        query = query.where(AuditEntry.ts < criteria.until)
    return query


def entry_out(entry: AuditEntry) -> AuditEntryOut:
    return AuditEntryOut(
        seq=entry.seq,
        ts=entry.ts,
        actor=entry.actor_id,
        roles=[r for r in entry.actor_roles.split(",") if r],
        action=entry.action,
        object_type=entry.object_type,
        object_id=entry.object_id,
        fields=[f for f in entry.fields.split(",") if f],
        purpose=entry.purpose,
        outcome=entry.outcome,
        details=entry.details,
    )


@router.get("", response_model=AuditPage)
async def query_log(
    staff: AuditReader,
    db: DbSession,
    auth: Auth,
    criteria: Annotated[AuditQuery, Query()],
) -> AuditPage:
    """Newest first. Reading the log is itself recorded."""
    page, page_size = criteria.page, criteria.page_size
    query = filtered(select(AuditEntry), criteria)
    total = await db.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = list(
        await db.scalars(
            query.order_by(AuditEntry.seq.desc()).offset((page - 1) * page_size).limit(page_size)
        )
    )
    audit.record(
        db, auth.clock, actor=staff.principal.actor, action="audit.read", details={"rows": len(rows)}
    )
    return AuditPage(items=[entry_out(r) for r in rows], page=page, page_size=page_size, total=total)


@router.post("/exports", response_class=Response, responses={200: {"content": {"text/csv": {}}}, 403: {}})
async def export_log(body: ExportIn, staff: AuditExporter, db: DbSession, auth: Auth) -> Response:
    """CSV of the filtered entries (oldest first). Needs a step-up TOTP within the last minutes."""
    if not auth.stepped_up(staff.session):
        raise StepUpRequired()
    rows = list(
        await db.scalars(filtered(select(AuditEntry), body).order_by(AuditEntry.seq).limit(body.limit))
    )
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(
        [
            "seq",
            "ts",
            "actor",
            "roles",
            "action",
            "object_type",
            "object_id",
            "fields",
            "purpose",
            "outcome",
            "entry_hash",
        ]
    )
    for entry in rows:
        writer.writerow(
            [
                entry.seq,
                entry.ts.isoformat(),
                entry.actor_id,
                entry.actor_roles,
                entry.action,
                entry.object_type or "",
                entry.object_id or "",
                entry.fields,
                entry.purpose or "",
                entry.outcome,
                entry.entry_hash.hex(),
            ]
        )
    audit.record(
        db,
        auth.clock,
        actor=staff.principal.actor,
        action="audit.exported",
        details={"rows": len(rows), "first": rows[0].seq if rows else 0, "last": rows[-1].seq if rows else 0},
    )
    return Response(
        buffer.getvalue(),
        media_type="text/csv",
        headers={"Content-Disposition": 'attachment; filename="audit-export.csv"'},
    )


def verification_out(run: AuditVerification) -> VerificationOut:
    return VerificationOut(
        id=run.public_id,
        state=run.state,
        entries_checked=run.entries_checked,
        entries_total=run.entries_total,
        problems=run.problems,
        requested_at=run.requested_at,
        started_at=run.started_at,
        finished_at=run.finished_at,
    )


@router.post("/verifications", response_model=VerificationOut, status_code=202)
async def request_verification(staff: AuditVerifier, db: DbSession, auth: Auth) -> VerificationOut:
    """Start a full chain verification in the background; poll `/audit/verifications/latest`."""
    run = AuditVerification(
        public_id=new_public_id("AV"),
        requested_by_id=staff.user.id,
        state="queued",
        entries_checked=0,
        problems=[],
        requested_at=auth.clock.now(),
    )
    db.add(run)
    await db.flush()
    await enqueue(db, auth.clock, "audit.verify", {"run": run.public_id}, max_attempts=1)
    audit.record(
        db,
        auth.clock,
        actor=staff.principal.actor,
        action="audit.verify_requested",
        object_type="audit_verification",
        object_id=run.public_id,
    )
    return verification_out(run)


@router.get("/verifications/latest", response_model=VerificationOut, responses={404: {}})
async def latest_verification(staff: AuditVerifier, db: DbSession) -> VerificationOut:
    run = await db.scalar(select(AuditVerification).order_by(AuditVerification.requested_at.desc()).limit(1))
    if run is None:
        raise NotFound("No verification has run yet.")
    return verification_out(run)


async def run_by_public_id(db: AsyncSession, public_id: str) -> AuditVerification | None:
    return await db.scalar(select(AuditVerification).where(AuditVerification.public_id == public_id))
