"""The access broker: the only way to plaintext.

    policy check → data keys confirmed live in this transaction → audit entry → COMMIT → decrypt

The audit entry is committed before anything is decrypted, so a reveal either leaves its trace or
does not happen (fail closed): if the audit write or the commit fails, the caller gets an error
and no plaintext exists anywhere. Denials are recorded and committed too, then answered as "not
found" so a forbidden case is indistinguishable from a missing one.

Because the broker commits, it is called with a request-style session (the `DbSession`
dependency, or `async with sessionmaker() as s:` ending in `await s.commit()`), never inside an
`async with session.begin():` block; work flushed before the reveal commits with its audit entry.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.access.models import BreakGlassGrant
from app.access.policy import STAFF_PURPOSES, Principal, Purpose, may_read_case_content, system_may_open
from app.audit import service as audit
from app.cases.models import CASE_SEALED_FIELDS, Case
from app.clock import Clock
from app.errors import InvalidInput, NotFound
from app.keys.sealed import Sealed, sealed_columns
from app.keys.store import Sealer, seal_target

log = logging.getLogger("hotline.access")


@dataclass
class Revealed:
    """Plaintext by attribute name; `erased` lists fields whose data key was destroyed."""

    values: dict[str, str | None] = field(default_factory=dict)
    erased: list[str] = field(default_factory=list)

    def __repr__(self) -> str:
        return f"<Revealed fields={sorted(self.values)} erased={self.erased}>"


class AccessBroker:
    def __init__(self, sealer: Sealer, clock: Clock) -> None:
        self.sealer = sealer
        self.clock = clock

    async def active_break_glass(self, session: AsyncSession, principal: Principal, case: Case) -> bool:
        if principal.user_id is None:
            return False
        now: datetime = self.clock.now()
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

    async def deny(
        self,
        session: AsyncSession,
        principal: Principal,
        *,
        action: str,
        object_type: str,
        object_id: str,
        fields: Sequence[str],
        purpose: str | None,
    ) -> NotFound:
        """Record a refused access (committed on its own) and return the error to raise."""
        await session.rollback()
        audit.record(
            session,
            self.clock,
            actor=principal.actor,
            action=action,
            object_type=object_type,
            object_id=object_id,
            fields=fields,
            purpose=purpose,
            outcome="denied",
        )
        await session.commit()
        return NotFound()

    async def reveal_case(
        self, session: AsyncSession, principal: Principal, case: Case, fields: Sequence[str], purpose: Purpose
    ) -> Revealed:
        """A staff member reads sealed fields of a case they may see."""
        unknown = set(fields) - set(CASE_SEALED_FIELDS)
        if unknown or not fields:
            raise InvalidInput("Name one or more sealed fields of the case.", code="unknown_field")
        if purpose not in STAFF_PURPOSES:
            raise InvalidInput("That purpose is not available to staff.", code="invalid_purpose")
        break_glass = await self.active_break_glass(session, principal, case)
        allowed = may_read_case_content(principal, case.assignee_id, break_glass=break_glass)
        if purpose is Purpose.break_glass and not break_glass:
            allowed = False
        if not allowed:
            raise await self.deny(
                session,
                principal,
                action="case.reveal",
                object_type="case",
                object_id=case.public_id,
                fields=fields,
                purpose=purpose,
            )
        return await self._reveal(
            session,
            principal,
            [(case, name) for name in fields],
            purpose=purpose,
            action="case.reveal",
            object_type="case",
            object_id=case.public_id,
            details={"break_glass": True} if break_glass and case.assignee_id != principal.user_id else None,
        )

    async def reveal_rows(
        self,
        session: AsyncSession,
        principal: Principal,
        rows: Sequence[Any],
        attribute: str,
        *,
        purpose: Purpose,
        action: str,
        object_type: str,
        object_id: str,
    ) -> list[str | None]:
        """Several rows' values of one attribute in one audited batch (notes, chat messages).

        The caller has already established that `principal` may read the parent object's content.
        """
        revealed = await self._reveal(
            session,
            principal,
            [(row, attribute) for row in rows],
            purpose=purpose,
            action=action,
            object_type=object_type,
            object_id=object_id,
            details={"count": len(rows)},
            by_index=True,
        )
        return [revealed.values.get(f"{i}") for i in range(len(rows))]

    async def reveal_for_system(
        self,
        session: AsyncSession,
        principal: Principal,
        row: Any,
        attribute: str,
        *,
        purpose: Purpose,
        object_type: str,
        object_id: str,
    ) -> str | None:
        """A system component opens one field for a named purpose (dialing, texting, matching)."""
        target = seal_target(row, attribute)
        if not system_may_open(principal, purpose, {target.field_id}):
            raise await self.deny(
                session,
                principal,
                action="system.reveal",
                object_type=object_type,
                object_id=object_id,
                fields=[attribute],
                purpose=purpose,
            )
        revealed = await self._reveal(
            session,
            principal,
            [(row, attribute)],
            purpose=purpose,
            action="system.reveal",
            object_type=object_type,
            object_id=object_id,
        )
        return revealed.values.get(attribute)

    async def _reveal(
        self,
        session: AsyncSession,
        principal: Principal,
        targets: list[tuple[Any, str]],
        *,
        purpose: Purpose,
        action: str,
        object_type: str,
        object_id: str,
        details: dict[str, Any] | None = None,
        by_index: bool = False,
    ) -> Revealed:
        sealed: list[tuple[str, Any, str, Sealed]] = []
        result = Revealed()
        for index, (row, attribute) in enumerate(targets):
            if attribute not in sealed_columns(type(row)):
                raise InvalidInput("Not a sealed field.", code="unknown_field")
            label = str(index) if by_index else attribute
            value = getattr(row, attribute)
            if value is None:
                result.values[label] = None
            else:
                sealed.append((label, row, attribute, value))
        # The data keys must be live *now*, read inside this transaction: a key destroyed a moment
        # ago (retention, erasure) is not revived by a cache entry.
        live = await self.sealer.live_keys(session, {value.key_id for *_, value in sealed})
        audit.record(
            session,
            self.clock,
            actor=principal.actor,
            action=action,
            object_type=object_type,
            object_id=object_id,
            fields=sorted({attribute for _, attribute in targets}),
            purpose=purpose,
            details=details,
        )
        # Fail closed: nothing is decrypted unless the audit entry is durably committed.
        await session.commit()
        for label, row, attribute, value in sealed:
            record = live.get(value.key_id)
            if record is None:
                result.values[label] = None
                result.erased.append(label)
                continue
            result.values[label] = self.sealer.open(record, row, attribute)
        return result
