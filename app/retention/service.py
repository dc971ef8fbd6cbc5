"""Retention, legal hold and erasure: data leaves on schedule, by crypto-shredding.

`shred(subject, classes)` destroys the data keys of those retention classes of one subject
(`wrapped` cleared, `destroyed_at` set), clears every ciphertext sealed under them and, for a
caller's identity, the blind index — in one transaction, with one audit entry. Metadata used for
statistics (category, language, outcome, dates) stays, and so does the audit trail (ids only).

What is due comes from the policy (settings, in days):

* closed cases: `case_content` (intake fields, notes, break-glass reasons), `chat_messages` and
  `voicemail_audio` of the case, each its own number of days after the case closed;
* abandoned contacts: `contact_meta` (Twilio SIDs) of the contact and of its routing tasks;
* callers with no open case: `caller_identity` (number, blind index), after their last contact;
  the calls' numbers (sealed per day) once that day is older than the same period.

A legal hold on a case keeps its subjects; a hold on a caller keeps the caller and all their
cases. Each subject is shredded in its own transaction: a purge can be interrupted at any point
and run again. Services flush; `purge` commits per subject.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit import service as audit
from app.audit.service import Actor
from app.callers.models import Caller
from app.calls.models import Call, WebhookReply
from app.cases.models import Case, CaseStatus
from app.clock import Clock
from app.contacts.models import Contact
from app.db.base import Base
from app.keys.models import DataKeyRecord
from app.keys.sealed import RetentionClass, sealed_columns
from app.retention.models import ErasureRequest, LegalHold
from app.routing.models import Task

RETENTION = Actor("system:retention")
CASE_CLASSES = (RetentionClass.case_content, RetentionClass.chat_messages, RetentionClass.voicemail_audio)
# Stored webhook answers only serve Twilio's retries of the same request: gone after two days.
WEBHOOK_REPLY_DAYS = 2


@dataclass(frozen=True)
class Policy:
    case_content_days: float
    chat_messages_days: float
    voicemail_days: float
    abandoned_contact_days: float
    caller_days: float

    @classmethod
    def from_settings(cls, settings: Any) -> Policy:
        return cls(
            case_content_days=settings.retention_case_content_days,
            chat_messages_days=settings.retention_chat_messages_days,
            voicemail_days=settings.retention_voicemail_days,
            abandoned_contact_days=settings.retention_abandoned_contact_days,
            caller_days=settings.retention_caller_days,
        )

    def case_days(self, retention_class: RetentionClass) -> float:
        return {
            RetentionClass.case_content: self.case_content_days,
            RetentionClass.chat_messages: self.chat_messages_days,
            RetentionClass.voicemail_audio: self.voicemail_days,
        }[retention_class]


@dataclass(frozen=True)
class Due:
    """One subject with the classes due for shredding. `label` is an id, never personal data."""

    subject_id: uuid.UUID
    classes: tuple[RetentionClass, ...]
    kind: str  # case | contact | task | caller | call_day
    label: str


# -- shredding --------------------------------------------------------------------------------------


def _sealed_models() -> list[tuple[type, str, list[str], dict[str, RetentionClass]]]:
    """(model, subject attribute, nullable sealed attributes, their classes) for every mapped class."""
    found = []
    for mapper in Base.registry.mappers:
        model = mapper.class_
        columns = sealed_columns(model)
        if not columns:
            continue
        table = model.__table__
        nullable = [name for name in columns if table.columns[name].nullable]
        found.append(
            (
                model,
                getattr(model, "__sealed_subject__", "id"),
                nullable,
                {name: columns[name].retention_class for name in nullable},
            )
        )
    return found


async def shred(
    session: AsyncSession,
    clock: Clock,
    subject_id: uuid.UUID,
    classes: Sequence[RetentionClass],
    *,
    actor: Actor,
    reason: str,
    object_type: str,
    object_id: str,
) -> None:
    """Crypto-shred `classes` of one subject: keys destroyed, ciphertexts and indexes cleared."""
    now = clock.now()
    wanted = {c.value for c in classes}
    await session.execute(
        update(DataKeyRecord)
        .where(
            DataKeyRecord.subject_id == subject_id,
            DataKeyRecord.retention_class.in_(wanted),
            DataKeyRecord.destroyed_at.is_(None),
        )
        .values(wrapped=None, destroyed_at=now)
        .execution_options(synchronize_session=False)
    )
    for model, subject_attr, nullable, column_classes in _sealed_models():
        names = [name for name in nullable if column_classes[name].value in wanted]
        if names:
            await session.execute(
                update(model)
                .where(getattr(model, subject_attr) == subject_id)
                .values({name: None for name in names})
                .execution_options(synchronize_session=False)
            )
    if RetentionClass.caller_identity.value in wanted:
        await session.execute(
            update(Caller)
            .where(Caller.id == subject_id)
            .values(phone_index=None, phone_last2=None, erased_at=now, erased_reason=reason)
            .execution_options(synchronize_session=False)
        )
    if RetentionClass.case_content.value in wanted:
        await session.execute(
            update(Case)
            .where(Case.id == subject_id)
            .values(erased_at=now, erased_reason=reason)
            .execution_options(synchronize_session=False)
        )
    audit.record(
        session,
        clock,
        actor=actor,
        action="retention.shred" if reason == "retention" else "erasure.shred",
        object_type=object_type,
        object_id=object_id,
        details={"classes": "+".join(sorted(wanted)), "reason": reason},
    )
    await session.flush()


# -- what is due ------------------------------------------------------------------------------------


async def _held(session: AsyncSession) -> tuple[set[uuid.UUID], set[uuid.UUID]]:
    """Cases and callers under an active legal hold (a caller's hold covers their cases; a case's
    hold covers its caller's identity)."""
    holds = list(await session.scalars(select(LegalHold).where(LegalHold.released_at.is_(None))))
    cases = {h.case_id for h in holds if h.case_id is not None}
    callers = {h.caller_id for h in holds if h.caller_id is not None}
    if callers:
        cases |= set(await session.scalars(select(Case.id).where(Case.caller_id.in_(callers))))
    if cases:
        # A case on hold keeps who it is about: its caller's identity stays too.
        callers |= {
            c
            for c in await session.scalars(select(Case.caller_id).where(Case.id.in_(cases)))
            if c is not None
        }
    return cases, callers


async def _live_classes(session: AsyncSession, subject_ids: set[uuid.UUID]) -> dict[uuid.UUID, set[str]]:
    """Classes that still have a live data key, per subject (only those need shredding)."""
    live: dict[uuid.UUID, set[str]] = {}
    if not subject_ids:
        return live
    rows = await session.execute(
        select(DataKeyRecord.subject_id, DataKeyRecord.retention_class).where(
            DataKeyRecord.subject_id.in_(subject_ids), DataKeyRecord.destroyed_at.is_(None)
        )
    )
    for subject, retention_class in rows:
        live.setdefault(subject, set()).add(retention_class)
    return live


async def due(session: AsyncSession, clock: Clock, policy: Policy, *, limit: int = 1000) -> list[Due]:
    now = clock.now()
    held_cases, held_callers = await _held(session)
    plan: list[Due] = []

    # Closed cases: each class its own number of days after closing.
    shortest = min(policy.case_content_days, policy.chat_messages_days, policy.voicemail_days)
    closed = list(
        await session.execute(
            select(Case.id, Case.public_id, Case.closed_at)
            .where(
                Case.status == CaseStatus.closed,
                Case.closed_at.is_not(None),
                Case.closed_at < now - timedelta(days=shortest),
            )
            .limit(limit)
        )
    )
    live = await _live_classes(session, {row.id for row in closed})
    for case_id, public_id, closed_at in closed:
        if case_id in held_cases:
            continue
        classes = tuple(
            c
            for c in CASE_CLASSES
            if closed_at is not None
            and closed_at < now - timedelta(days=policy.case_days(c))
            and c.value in live.get(case_id, set())
        )
        if classes:
            plan.append(Due(case_id, classes, "case", public_id))

    # Abandoned contacts: their SIDs, and those of their routing tasks (a volunteer leg's SID).
    cutoff = now - timedelta(days=policy.abandoned_contact_days)
    contacts = list(
        await session.execute(
            select(Contact.id, Contact.public_id, Contact.case_id).where(
                Contact.outcome.in_(["abandoned", "overflowed"]),
                Contact.ended_at.is_not(None),
                Contact.ended_at < cutoff,
            )
        )
    )
    tasks = list(
        await session.execute(
            select(Task.id, Task.public_id, Task.contact_id).where(
                Task.contact_id.in_([c.id for c in contacts] or [uuid.uuid4()])
            )
        )
    )
    live = await _live_classes(session, {c.id for c in contacts} | {t.id for t in tasks})
    held_contacts = {c.id for c in contacts if c.case_id in held_cases}
    for contact_id, public_id, _case in contacts:
        if contact_id not in held_contacts and RetentionClass.contact_meta.value in live.get(
            contact_id, set()
        ):
            plan.append(Due(contact_id, (RetentionClass.contact_meta,), "contact", public_id))
    for task_id, public_id, task_contact in tasks:
        if task_contact not in held_contacts and RetentionClass.contact_meta.value in live.get(
            task_id, set()
        ):
            plan.append(Due(task_id, (RetentionClass.contact_meta,), "task", public_id))

    # Callers with no open case, not seen for the caller period.
    cutoff = now - timedelta(days=policy.caller_days)
    open_case_callers = select(Case.caller_id).where(
        Case.caller_id.is_not(None), Case.status != CaseStatus.closed
    )
    callers = list(
        await session.execute(
            select(Caller.id, Caller.public_id).where(
                Caller.erased_at.is_(None),
                or_(
                    Caller.last_contact_at < cutoff,
                    Caller.last_contact_at.is_(None) & (Caller.created_at < cutoff),
                ),
                Caller.id.not_in(open_case_callers),
            )
        )
    )
    live = await _live_classes(session, {c.id for c in callers})
    for caller_id, caller_public_id in callers:
        if caller_id in held_callers:
            continue
        if RetentionClass.caller_identity.value in live.get(caller_id, set()):
            plan.append(Due(caller_id, (RetentionClass.caller_identity,), "caller", caller_public_id))

    # The calls' numbers, sealed under one key per day: shredded a whole day at a time.
    day_subjects = {
        subject: first.date().isoformat()
        for subject, first in await session.execute(
            select(Call.key_subject, func.min(Call.created_at))
            .where(Call.created_at < cutoff)
            .group_by(Call.key_subject)
        )
    }
    live = await _live_classes(session, set(day_subjects))
    for subject in sorted(day_subjects, key=str):
        if RetentionClass.caller_identity.value in live.get(subject, set()):
            plan.append(
                Due(subject, (RetentionClass.caller_identity,), "call_day", f"calls:{day_subjects[subject]}")
            )
    return plan


def counts(plan: Sequence[Due]) -> dict[str, int]:
    """How many subjects per kind and class are due: what a dry run prints (never content)."""
    totals: dict[str, int] = {}
    for item in plan:
        for retention_class in item.classes:
            key = f"{item.kind}.{retention_class.value}"
            totals[key] = totals.get(key, 0) + 1
    return dict(sorted(totals.items()))


async def purge(
    database: Any,
    clock: Clock,
    policy: Policy,
    *,
    dry_run: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, int]:
    """Shred everything due, one subject per transaction (safe to interrupt and run again)."""
    async with database.sessionmaker() as session:
        plan = await due(session, clock, policy)
    if dry_run:
        return counts(plan)
    for done, item in enumerate(plan, start=1):
        async with database.sessionmaker() as session, session.begin():
            await shred(
                session,
                clock,
                item.subject_id,
                item.classes,
                actor=RETENTION,
                reason="retention",
                object_type=item.kind,
                object_id=item.label,
            )
        if progress is not None:
            progress(done, len(plan))
    async with database.sessionmaker() as session, session.begin():
        await session.execute(
            delete(WebhookReply).where(
                WebhookReply.created_at < clock.now() - timedelta(days=WEBHOOK_REPLY_DAYS)
            )
        )
    return counts(plan)


def erased_message(reason: str | None) -> str:
    return "Erased on request." if reason == "request" else "Erased per retention policy."


# -- legal holds and erasure ------------------------------------------------------------------------

ERASER = Actor("system:erasure")


async def subjects_of_caller(session: AsyncSession, caller: Caller) -> list[Due]:
    """Everything sealed about one caller: their identity, their cases' content, messages and
    voicemail, their contacts' and tasks' Twilio SIDs."""
    caller_id = caller.id
    items = [Due(caller_id, (RetentionClass.caller_identity,), "caller", caller.public_id)]
    for case_id, public_id in await session.execute(
        select(Case.id, Case.public_id).where(Case.caller_id == caller_id)
    ):
        items.append(Due(case_id, CASE_CLASSES, "case", public_id))
    contacts = list(
        await session.execute(select(Contact.id, Contact.public_id).where(Contact.caller_id == caller_id))
    )
    for contact_id, public_id in contacts:
        items.append(Due(contact_id, (RetentionClass.contact_meta,), "contact", public_id))
    for task_id, public_id in await session.execute(
        select(Task.id, Task.public_id).where(Task.contact_id.in_([c.id for c in contacts] or [uuid.uuid4()]))
    ):
        items.append(Due(task_id, (RetentionClass.contact_meta,), "task", public_id))
    return items


async def erase_caller(
    state: Any,
    session: AsyncSession,
    caller: Caller,
    *,
    request_id: str,
    records: Sequence[tuple[str, str]] | None = None,
) -> Erased:
    """Delete Twilio's records of the caller (jobs), then shred everything of theirs. Flushes.

    `records` are the caller's Twilio records (`twilio_records_of_caller`), read beforehand so
    that nothing here commits (the broker commits per reveal); without them they are read first.
    Entries name the erasure request (`request_id`) or a case, contact or task public id: the
    caller's own shred names the request, never the caller."""
    from app.reports import service as reports

    if records is None:
        records = await twilio_records_of_caller(state, session, caller, request_id=request_id)
    for kind, sid in records:
        await reports.delete_at_twilio(session, state, kind, sid)
    items = await subjects_of_caller(session, caller)
    for item in items:
        own = item.kind == "caller"
        await shred(
            session,
            state.clock,
            item.subject_id,
            item.classes,
            actor=ERASER,
            reason="request",
            object_type="erasure" if own else item.kind,
            object_id=request_id if own else item.label,
        )
    # Closed or not, their cases now say why they are empty.
    await session.execute(
        update(Case)
        .where(Case.caller_id == caller.id)
        .values(erased_at=state.clock.now(), erased_reason="request")
        .execution_options(synchronize_session=False)
    )
    return Erased(cases=sum(1 for item in items if item.kind == "case"), subjects=len(items))


async def active_hold(
    session: AsyncSession, *, case_id: uuid.UUID | None, caller_id: uuid.UUID | None
) -> bool:
    clauses = []
    if case_id is not None:
        clauses.append(LegalHold.case_id == case_id)
    if caller_id is not None:
        clauses.append(LegalHold.caller_id == caller_id)
    if not clauses:
        return False
    found = await session.scalar(select(LegalHold.id).where(LegalHold.released_at.is_(None), or_(*clauses)))
    return found is not None


# -- what Twilio still holds --------------------------------------------------------------------


async def twilio_report(session: AsyncSession, settings: Any) -> list[tuple[str, int, str]]:
    """(what, how many, why) for every kind of record Twilio may still hold for us."""
    from sqlalchemy import func

    from app.calls.models import Voicemail
    from app.chats.models import ChatMessage
    from app.reports.models import ReportEntry, TwilioCleanup

    rows: list[tuple[str, int, str]] = []
    for kind, state, count in await session.execute(
        select(TwilioCleanup.kind, TwilioCleanup.state, func.count()).group_by(
            TwilioCleanup.kind, TwilioCleanup.state
        )
    ):
        if state == "done":
            continue
        why = (
            "the call is still running"
            if state == "waiting"
            else "deletion queued (retried while Twilio refuses)"
        )
        rows.append((f"{kind}s", int(count), why))
    messages = await session.scalar(
        select(func.count())
        .select_from(ChatMessage)
        .where(ChatMessage.sid_hash.is_not(None), ChatMessage.deleted_at_twilio.is_(None))
    )
    if messages:
        why = (
            "deletion queued once delivered"
            if settings.delete_messages_at_twilio
            else "kept at Twilio: HOTLINE_DELETE_MESSAGES_AT_TWILIO is off"
        )
        rows.append(("chat messages", int(messages), why))
    recordings = await session.scalar(
        select(func.count())
        .select_from(Voicemail)
        .where(Voicemail.recording_sid.is_not(None), Voicemail.deleted_at_twilio.is_(None))
    )
    if recordings:
        rows.append(("voicemail recordings", int(recordings), "deleted once fetched and stored sealed"))
    fetching = await session.scalar(
        select(func.count()).select_from(ReportEntry).where(ReportEntry.state == "fetching")
    )
    if fetching:
        rows.append(("report recordings", int(fetching), "deleted once fetched and stored sealed"))
    if not settings.delete_calls_at_twilio:
        calls = await session.scalar(
            select(func.count()).select_from(Contact).where(Contact.channel == "voice")
        )
        if calls:
            rows.append(("call records", int(calls), "kept at Twilio: HOTLINE_DELETE_CALLS_AT_TWILIO is off"))
    return rows


# -- blind erasure requests -------------------------------------------------------------------------


@dataclass(frozen=True)
class Erased:
    """What `erase_caller` shredded: counts only."""

    cases: int
    subjects: int


@dataclass(frozen=True)
class ErasureOutcome:
    """What processing an approved erasure request found and did, shown to the approver and kept
    in the access log: counts and flags only, nothing that names the caller."""

    matched: int  # callers found with the number (0 or 1)
    held: int  # 1 if a legal hold kept them (nothing of theirs was shredded)
    erased_cases: int
    shredded_subjects: int  # the caller's subjects (identity, cases, contacts, tasks)

    def details(self) -> dict[str, int]:
        return {
            "matched": self.matched,
            "held": self.held,
            "erased_cases": self.erased_cases,
            "shredded_subjects": self.shredded_subjects,
        }


async def twilio_records_of_caller(
    state: Any, session: AsyncSession, caller: Caller, *, request_id: str
) -> list[tuple[str, str]]:
    """(kind, SID) of every record of the caller's that Twilio may hold: their contacts' calls and
    messages, their cases' chat messages. Each reveal is audited under the erasure request and
    commits (the broker's rule)."""
    from app.access.policy import Principal, Purpose
    from app.chats.models import ChatMessage

    cleaner = Principal.system("twilio-cleanup")
    records: list[tuple[str, str]] = []
    contacts = list(await session.scalars(select(Contact).where(Contact.caller_id == caller.id)))
    for contact in contacts:
        if contact.twilio_sid is None:
            continue
        sid = await state.broker.reveal_for_system(
            session,
            cleaner,
            contact,
            "twilio_sid",
            purpose=Purpose.twilio_cleanup,
            object_type="erasure",
            object_id=request_id,
        )
        if sid:
            records.append(("call" if sid.startswith("CA") else "message", sid))
    case_ids = list(await session.scalars(select(Case.id).where(Case.caller_id == caller.id)))
    messages = list(
        await session.scalars(
            select(ChatMessage).where(
                ChatMessage.case_id.in_(case_ids or [uuid.uuid4()]), ChatMessage.message_sid.is_not(None)
            )
        )
    )
    if messages:
        sids = await state.broker.reveal_rows(
            session,
            cleaner,
            messages,
            "message_sid",
            purpose=Purpose.twilio_cleanup,
            action="system.reveal",
            object_type="erasure",
            object_id=request_id,
        )
        records += [("message", sid) for sid in sids if sid]
    return records


async def callers_on_hold(session: AsyncSession, caller_ids: Sequence[uuid.UUID]) -> bool:
    """Whether an active legal hold keeps any of these callers: one on them, or one on any of their
    cases (a case on hold keeps who it is about, as in `_held`)."""
    if not caller_ids:
        return False
    their_cases = select(Case.id).where(Case.caller_id.in_(caller_ids))
    found = await session.scalar(
        select(LegalHold.id)
        .where(
            LegalHold.released_at.is_(None),
            or_(LegalHold.caller_id.in_(caller_ids), LegalHold.case_id.in_(their_cases)),
        )
        .limit(1)
    )
    return found is not None


async def process_erasure(
    state: Any, session: AsyncSession, request: ErasureRequest, *, approver_id: uuid.UUID, actor: Actor
) -> ErasureOutcome:
    """Approve a pending, blind erasure request and carry it out (the router has checked that the
    approver is a second, distinct supervisor).

    Only now is the number opened (as `system:erasure`), matched to a caller through the blind
    index and confirmed, and holds checked. Every reveal is logged under the request's public id,
    never the caller's, so the erasure does not link to the caller's other entries. The broker
    commits per reveal, so all reveals come first (only their audit entries commit); then the
    request is claimed with a conditional update (a concurrent approver gets 409 not_pending) and
    the rest is flushed for the request's one commit: holds checked again, the caller erased
    unless held, and the request's own number shredded whatever was found."""
    from app.access.policy import Principal, Purpose
    from app.callers.service import phone_index
    from app.errors import Conflict

    system = Principal.system("erasure")
    request_id = request.public_id
    number = await state.broker.reveal_for_system(
        session,
        system,
        request,
        "phone",
        purpose=Purpose.erasure,
        object_type="erasure",
        object_id=request_id,
    )
    matches: list[Caller] = []
    if number is not None:
        candidates = list(
            await session.scalars(
                select(Caller)
                .where(Caller.phone_index == phone_index(state.keys, number))
                .order_by(Caller.id)
            )
        )
        for candidate in candidates:
            # The index is a truncated keyed hash: confirm by the sealed number (audited).
            revealed = await state.broker.reveal_for_system(
                session,
                system,
                candidate,
                "phone",
                purpose=Purpose.caller_match,
                object_type="erasure",
                object_id=request_id,
            )
            if revealed == number:
                matches.append(candidate)
    caller_ids = [caller.id for caller in matches]
    held = await callers_on_hold(session, caller_ids)
    records: list[list[tuple[str, str]]] = []
    if not held:
        for caller in matches:
            records.append(await twilio_records_of_caller(state, session, caller, request_id=request_id))

    claimed = await session.execute(
        update(ErasureRequest)
        .where(ErasureRequest.id == request.id, ErasureRequest.state == "pending")
        .values(state="processed", approved_by_id=approver_id, approved_at=state.clock.now())
        .execution_options(synchronize_session="fetch")
    )
    if getattr(claimed, "rowcount", 0) != 1:
        raise Conflict("This request is not pending.", code="not_pending")
    audit.record(
        session,
        state.clock,
        actor=actor,
        action="erasure.approved",
        object_type="erasure",
        object_id=request_id,
    )
    # Again, in the transaction that shreds: a hold placed since the first look still counts.
    held = held or await callers_on_hold(session, caller_ids)
    erased = Erased(cases=0, subjects=0)
    if not held:
        for caller, caller_records in zip(matches, records, strict=True):
            done = await erase_caller(state, session, caller, request_id=request_id, records=caller_records)
            erased = Erased(cases=erased.cases + done.cases, subjects=erased.subjects + done.subjects)
    # The typed number goes whatever was found: its key destroyed, the column cleared.
    await shred(
        session,
        state.clock,
        request.id,
        (RetentionClass.caller_identity,),
        actor=ERASER,
        reason="request",
        object_type="erasure",
        object_id=request_id,
    )
    await session.refresh(request)
    outcome = ErasureOutcome(
        matched=len(matches),
        held=int(held),
        erased_cases=erased.cases,
        shredded_subjects=erased.subjects,
    )
    audit.record(
        session,
        state.clock,
        actor=ERASER,
        action="erasure.processed",
        object_type="erasure",
        object_id=request_id,
        details=outcome.details(),
    )
    return outcome


# A request nobody approved is not kept for ever: its typed number is a person's number.
ERASURE_REQUEST_DAYS = 30


async def expire_erasure_requests(session: AsyncSession, clock: Clock) -> int:
    """Cancel erasure requests still pending `ERASURE_REQUEST_DAYS` after they were made and shred
    their typed numbers (key destroyed, column cleared); returns how many. Nothing is looked up:
    an unapproved request stays blind. Runs with the hourly purge."""
    cutoff = clock.now() - timedelta(days=ERASURE_REQUEST_DAYS)
    stale = list(
        await session.scalars(
            select(ErasureRequest).where(
                ErasureRequest.state == "pending", ErasureRequest.requested_at < cutoff
            )
        )
    )
    for request in stale:
        request.state = "cancelled"
        await shred(
            session,
            clock,
            request.id,
            (RetentionClass.caller_identity,),
            actor=ERASER,
            reason="retention",
            object_type="erasure",
            object_id=request.public_id,
        )
        audit.record(
            session,
            clock,
            actor=ERASER,
            action="erasure.expired",
            object_type="erasure",
            object_id=request.public_id,
            details={"days": ERASURE_REQUEST_DAYS},
        )
    return len(stale)
