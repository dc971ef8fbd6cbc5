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
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.access.content import (
    AuditedRefusal,
    ContentAccess,
    active_break_glass,
    is_content_access,
    record_refusal,
)
from app.access.policy import STAFF_PURPOSES, Principal, Purpose, system_may_open
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
        return await active_break_glass(session, self.clock, principal, case)

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
        """Record a refused access (committed on its own) and return the error to raise: for
        system components, whose sessions are not a request's (staff refusals raise
        `AuditedRefusal` and the request's session dependency records them the same way)."""
        refusal = AuditedRefusal(
            principal,
            action=action,
            object_type=object_type,
            object_id=object_id,
            fields=fields,
            purpose=purpose,
        )
        await record_refusal(session, self.clock, refusal)
        return NotFound()

    async def reveal_case(
        self, session: AsyncSession, access: ContentAccess, fields: Sequence[str], purpose: Purpose
    ) -> Revealed:
        """Sealed fields of a case whose content `access` proves readable."""
        return await self.reveal_content(session, access, purpose=purpose, fields=fields)

    async def reveal_content(
        self,
        session: AsyncSession,
        access: ContentAccess,
        *,
        purpose: Purpose,
        fields: Sequence[str] = (),
        rows: Sequence[tuple[str, Any, str]] = (),
        action: str = "case.reveal",
        object_type: str = "case",
        object_id: str | None = None,
        audit_fields: Sequence[str] = (),
    ) -> Revealed:
        """A staff member's one reveal of a case's content: sealed `fields` of the case and any
        other `rows` of it — (label, row, attribute): notes, the draft, chat messages, report
        entries — in ONE audit entry and one commit, whatever the mix. Needs the capability
        `check_content()` made: nothing else reaches staff plaintext."""
        if not is_content_access(access):
            raise TypeError("a staff reveal needs the ContentAccess made by check_content()")
        unknown = set(fields) - set(CASE_SEALED_FIELDS)
        if unknown or not (fields or rows or audit_fields):
            raise InvalidInput("Name one or more sealed fields of the case.", code="unknown_field")
        if purpose not in STAFF_PURPOSES:
            raise InvalidInput("That purpose is not available to staff.", code="invalid_purpose")
        case = access.case
        targets = [(name, case, name) for name in fields] + list(rows)
        details: dict[str, Any] = {}
        if rows:
            details["count"] = len(rows)
        if access.break_glass:
            details["break_glass"] = True
        return await self._reveal(
            session,
            access.principal,
            targets,
            purpose=purpose,
            action=action,
            object_type=object_type,
            object_id=object_id or case.public_id,
            details=details or None,
            audit_fields=[*fields, *audit_fields] if audit_fields else None,
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
        """Several rows' values of one attribute in one audited batch, for a system component
        (deleting SIDs at Twilio, sending messages): its purpose must allow the field. Staff use
        `reveal_content`, which needs the content capability."""
        if not principal.is_system:
            raise TypeError("staff reveals go through reveal_content(ContentAccess, …)")
        field_ids = {seal_target(row, attribute).field_id for row in rows}
        if rows and not system_may_open(principal, purpose, field_ids):
            raise await self.deny(
                session,
                principal,
                action=action,
                object_type=object_type,
                object_id=object_id,
                fields=[attribute],
                purpose=purpose,
            )
        revealed = await self._reveal(
            session,
            principal,
            [(str(i), row, attribute) for i, row in enumerate(rows)],
            purpose=purpose,
            action=action,
            object_type=object_type,
            object_id=object_id,
            details={"count": len(rows)},
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
            [(attribute, row, attribute)],
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
        targets: Sequence[tuple[str, Any, str]],
        *,
        purpose: Purpose,
        action: str,
        object_type: str,
        object_id: str,
        details: dict[str, Any] | None = None,
        audit_fields: Sequence[str] | None = None,
    ) -> Revealed:
        """(label, row, attribute) targets → values by label, after ONE audit entry is committed."""
        sealed: list[tuple[str, Any, str, Sealed]] = []
        result = Revealed()
        for label, row, attribute in targets:
            if attribute not in sealed_columns(type(row)):
                raise InvalidInput("Not a sealed field.", code="unknown_field")
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
            fields=sorted(set(audit_fields) if audit_fields is not None else {a for _, _, a in targets}),
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
