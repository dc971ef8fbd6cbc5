"""Access to a case as a dependency chain: `VisibleCase` → `CaseContent`.

* `VisibleCase`: the case named by the `{case_id}` path parameter, if the signed-in staff member
  may see it (its metadata); otherwise 404, exactly like a missing case.
* `CaseContent`: a `ContentAccess` capability for that case — the assigned volunteer, or a
  supervisor with an active break-glass grant — checked once per request
  (`app.access.content.check_content`). The broker's staff reveals require it by type. A refusal
  is recorded in the access log (`case.content`, outcome denied) and answered 404.

Declare the route's permission (`staff: CaseWriter`) before these parameters, so a role without
the permission gets its 403 before any case is looked up.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.access.content import ContentAccess, check_content
from app.access.policy import Principal, may_see_case
from app.accounts.deps import Auth, Staff, current_staff
from app.cases.models import Case
from app.cases.schemas import PublicId
from app.db.session import DbSession
from app.errors import NotFound


async def visible_case(db: AsyncSession, principal: Principal, public_id: str) -> Case:
    case = await db.scalar(select(Case).where(Case.public_id == public_id))
    if case is None or not may_see_case(principal, case.assignee_id):
        raise NotFound()
    return case


async def _visible_case(
    case_id: Annotated[PublicId, Path()],
    staff: Annotated[Staff, Depends(current_staff)],
    db: DbSession,
) -> Case:
    return await visible_case(db, staff.principal, case_id)


VisibleCase = Annotated[Case, Depends(_visible_case)]


async def _case_content(
    case: VisibleCase,
    staff: Annotated[Staff, Depends(current_staff)],
    db: DbSession,
    auth: Auth,
) -> ContentAccess:
    return await check_content(db, auth.clock, staff.principal, case)


CaseContent = Annotated[ContentAccess, Depends(_case_content)]
