"""Cases: creation, sealed intake fields, append-only notes, referrals. Services flush, never commit."""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts.models import User
from app.audit import service as audit
from app.audit.service import Actor
from app.callers.models import Caller
from app.cases.models import (
    CASE_SEALED_FIELDS,
    STATUS_TRANSITIONS,
    Case,
    CaseNote,
    CaseStatus,
    Category,
    Urgency,
)
from app.clock import Clock
from app.errors import Conflict, InvalidInput
from app.keys.store import Sealer
from app.languages import LANGUAGES
from app.publicid import new_public_id


async def create_case(
    session: AsyncSession,
    sealer: Sealer,
    clock: Clock,
    *,
    actor: Actor,
    language: str,
    category: str | None = None,
    urgency: Urgency = Urgency.normal,
    caller: Caller | None = None,
    assignee: User | None = None,
    fields: Mapping[str, str | None] | None = None,
    drill: bool = False,
) -> Case:
    if language not in LANGUAGES:
        raise InvalidInput("Unknown language.", code="unknown_language")
    if category is not None and await session.get(Category, category) is None:
        raise InvalidInput("Unknown category.", code="unknown_category")
    now = clock.now()
    case = Case(
        public_id=new_public_id("HX"),
        status=CaseStatus.open,
        category_id=category,
        urgency=urgency,
        language=language,
        caller_id=caller.id if caller else None,
        assignee_id=assignee.id if assignee else None,
        drill=drill,
        created_at=now,
        updated_at=now,
    )
    await seal_fields(session, sealer, case, fields or {})
    session.add(case)
    try:
        await session.flush()
    except IntegrityError as exc:  # a public id collision, about 1 in 10^12
        raise Conflict("Please retry.") from exc
    audit.record(
        session,
        clock,
        actor=actor,
        action="case.created",
        object_type="case",
        object_id=case.public_id,
        fields=[name for name, value in (fields or {}).items() if value is not None],
    )
    return case


async def seal_fields(
    session: AsyncSession, sealer: Sealer, case: Case, fields: Mapping[str, str | None]
) -> None:
    for name, value in fields.items():
        if name not in CASE_SEALED_FIELDS:
            raise InvalidInput("Not a case field.", code="unknown_field")
        await sealer.seal(session, case, name, value)


async def update_fields(
    session: AsyncSession,
    sealer: Sealer,
    clock: Clock,
    case: Case,
    *,
    actor: Actor,
    fields: Mapping[str, str | None],
) -> None:
    await seal_fields(session, sealer, case, fields)
    case.updated_at = clock.now()
    audit.record(
        session,
        clock,
        actor=actor,
        action="case.updated",
        object_type="case",
        object_id=case.public_id,
        fields=list(fields),
    )


def change_status(case: Case, status: CaseStatus, clock: Clock) -> None:
    current = CaseStatus(case.status)
    if status == current:
        return
    if status not in STATUS_TRANSITIONS[current]:
        raise Conflict(f"A case cannot go from {current.value} to {status.value}.")
    case.status = status
    case.closed_at = clock.now() if status is CaseStatus.closed else None
    case.updated_at = clock.now()


async def add_note(
    session: AsyncSession, sealer: Sealer, clock: Clock, case: Case, *, author: User, actor: Actor, body: str
) -> CaseNote:
    note = CaseNote(
        public_id=new_public_id("NT"), case_id=case.id, author_id=author.id, created_at=clock.now()
    )
    await sealer.seal(session, note, "body", body)
    session.add(note)
    case.updated_at = clock.now()
    await session.flush()
    audit.record(
        session,
        clock,
        actor=actor,
        action="case.note_added",
        object_type="case",
        object_id=case.public_id,
        fields=["body"],
    )
    return note


async def notes_of(session: AsyncSession, case: Case) -> list[CaseNote]:
    return list(
        await session.scalars(
            select(CaseNote).where(CaseNote.case_id == case.id).order_by(CaseNote.created_at)
        )
    )
