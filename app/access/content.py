"""Who may touch a case's content, decided once per request, and proven by a capability.

`check_content()` is the one place that decides whether a staff member may read or write a case's
content — its sealed fields, notes, drafts, chat messages, voicemails, report entries: the volunteer
it is assigned to, or a supervisor holding an active break-glass grant for it. It returns a
`ContentAccess`, which nothing else can construct; the broker's staff reveals take one by type
(`AccessBroker.reveal_content`) and refuse anything else, so a reveal cannot be written that skips
the check. Chats, reports, drafts, notes and voicemails all go through it
(`app/cases/deps.py` exposes it as the `CaseContent` dependency).

A refusal is an `AuditedRefusal`: the request's session dependency rolls back whatever the
request did, records the refusal in the access log, commits that alone, and answers 404 — a case
you may not read looks exactly like a missing one.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.access.models import BreakGlassGrant
from app.access.policy import Principal, Purpose, may_read_case_content, may_read_report
from app.audit import service as audit
from app.cases.models import Case
from app.clock import Clock
from app.errors import DomainError, NotFound

_MINT = object()  # only this module can make a ContentAccess


class AuditedRefusal(DomainError):
    """A refused access that must leave a trace even though the request's own work is undone.

    Raised inside a request: `app/db/session.py` rolls the request back, records the entry, commits
    it and answers with `error` (404 by default). Outside a request, `record_refusal()` does the
    same steps on the caller's session."""

    def __init__(
        self,
        principal: Principal,
        *,
        action: str,
        object_type: str,
        object_id: str,
        fields: Sequence[str] = (),
        purpose: str | None = None,
        details: dict[str, Any] | None = None,
        error: DomainError | None = None,
    ) -> None:
        self.error = error or NotFound()
        super().__init__(self.error.message, code=self.error.code)
        self.status_code = self.error.status_code
        self.entry: dict[str, Any] = {
            "actor": principal.actor,
            "action": action,
            "object_type": object_type,
            "object_id": object_id,
            "fields": list(fields),
            "purpose": purpose,
            "outcome": "denied",
            "details": details,
        }


async def record_refusal(session: AsyncSession, clock: Clock, refusal: AuditedRefusal) -> None:
    """Undo the work in progress, then record and commit the refusal on its own."""
    await session.rollback()
    audit.record(session, clock, **refusal.entry)
    await session.commit()


class ContentAccess:
    """Proof that `principal` may read and write `case`'s content now (made by `check_content`)."""

    __slots__ = ("break_glass", "case", "principal")

    def __init__(self, case: Case, principal: Principal, break_glass: bool, *, _mint: object = None) -> None:
        if _mint is not _MINT:
            raise TypeError("ContentAccess is made by app.access.content.check_content only")
        self.case = case
        self.principal = principal
        # Read through a break-glass grant rather than an assignment (flagged in the log).
        self.break_glass = break_glass

    def __repr__(self) -> str:
        return f"<ContentAccess {self.case.public_id} by {self.principal.id}>"


def is_content_access(value: object) -> bool:
    return isinstance(value, ContentAccess)


async def active_break_glass(session: AsyncSession, clock: Clock, principal: Principal, case: Case) -> bool:
    if principal.user_id is None:
        return False
    now: datetime = clock.now()
    grant = await session.scalar(
        select(BreakGlassGrant.id)
        .where(
            BreakGlassGrant.case_id == case.id,
            BreakGlassGrant.supervisor_id == principal.user_id,
            BreakGlassGrant.expires_at > now,
        )
        .limit(1)
    )
    return grant is not None


async def check_content(
    session: AsyncSession,
    clock: Clock,
    principal: Principal,
    case: Case,
    *,
    action: str = "case.content",
    object_type: str = "case",
    object_id: str | None = None,
    fields: Sequence[str] = (),
    purpose: Purpose | None = None,
    assigned_only: bool = False,
    anonymous_report: bool = False,
) -> ContentAccess:
    """The assigned volunteer, or a supervisor under an active break-glass grant (not with
    `assigned_only`: replying to a caller is the assignee's alone). An `anonymous_report` names
    nobody, so any supervisor may read it with a stated purpose (`may_read_report`). A purpose of
    `break_glass` needs the grant. Anything else raises `AuditedRefusal` (recorded, answered 404)."""
    assigned = principal.user_id is not None and case.assignee_id == principal.user_id
    glass = False if assigned_only else await active_break_glass(session, clock, principal, case)
    if anonymous_report:
        allowed = may_read_report(principal, case.assignee_id)
    else:
        allowed = may_read_case_content(principal, case.assignee_id, break_glass=glass)
    if assigned_only and not assigned:
        allowed = False
    if purpose is Purpose.break_glass and not glass:
        allowed = False
    if not allowed:
        raise AuditedRefusal(
            principal,
            action=action,
            object_type=object_type,
            object_id=object_id or case.public_id,
            fields=fields,
            purpose=purpose,
        )
    return ContentAccess(case, principal, glass and not assigned, _mint=_MINT)
