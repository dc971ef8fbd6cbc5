"""Case API. Thin handlers: load what the principal may see, call the service or the broker.

A case the caller may not see answers exactly like a missing one (404, same body).
"""

from __future__ import annotations

import hmac
import json
import uuid
from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.access.content import AuditedRefusal, check_content
from app.access.models import BreakGlassGrant, CaseReassignment
from app.access.permissions import Permission
from app.access.policy import Principal, Purpose
from app.accounts.deps import Auth, Staff, require
from app.accounts.models import Role, User, UserStatus
from app.audit import service as audit
from app.callers.models import Caller
from app.cases import service
from app.cases.deps import CaseContent, visible_case
from app.cases.models import Case, CaseNote, CaseStatus, IntakeDraft, Referral, Urgency
from app.cases.schemas import (
    BreakGlassIn,
    BreakGlassOut,
    CallerOut,
    CaseDetail,
    CaseList,
    CasePatch,
    CaseStatusName,
    CaseSummary,
    DraftIn,
    DraftSaved,
    LinkContactIn,
    LinkContactOut,
    NoteCreated,
    NoteIn,
    NoteOut,
    PublicId,
    ReferralIn,
    ReferralOut,
    RevealIn,
    RevealOut,
    UrgencyName,
)
from app.contacts.models import Contact
from app.db.session import DbSession
from app.errors import Conflict, Erased, Forbidden, InvalidInput, NotFound
from app.publicid import new_public_id
from app.referrals import service as referrals
from app.referrals.models import Organisation
from app.retention.service import erased_message

router = APIRouter(prefix="/cases", tags=["cases"])
CaseReader = Annotated[Staff, require(Permission.cases_read)]
CaseWriter = Annotated[Staff, require(Permission.cases_write)]
BreakGlasser = Annotated[Staff, require(Permission.break_glass)]
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such case, or not yours to see (indistinguishable)."}
}


async def public_ids(db: AsyncSession, user_ids: set[uuid.UUID | None]) -> dict[uuid.UUID | None, str]:
    ids = {i for i in user_ids if i is not None}
    if not ids:
        return {}
    rows = await db.execute(select(User.id, User.public_id).where(User.id.in_(ids)))
    return {row.id: row.public_id for row in rows}


def summary(case: Case, assignees: dict[uuid.UUID | None, str]) -> CaseSummary:
    return CaseSummary(
        id=case.public_id,
        status=case.status,
        category=case.category_id,
        urgency=case.urgency,
        language=case.language,
        assignee=assignees.get(case.assignee_id),
        drill=case.drill,
        created_at=case.created_at,
        updated_at=case.updated_at,
        closed_at=case.closed_at,
        erased=case.erased_reason if case.erased_at is not None else None,
    )


async def detail(db: AsyncSession, case: Case) -> CaseDetail:
    assignees = await public_ids(db, {case.assignee_id})
    notes = await db.scalar(select(func.count()).select_from(CaseNote).where(CaseNote.case_id == case.id))
    referral_rows = (
        await db.execute(
            select(Referral, Organisation)
            .join(Organisation, Organisation.id == Referral.organisation_id)
            .where(Referral.case_id == case.id)
            .order_by(Referral.created_at)
        )
    ).all()
    caller = await db.get(Caller, case.caller_id) if case.caller_id else None
    repeat = False
    if case.caller_id is not None:
        repeat = (
            await db.scalar(
                select(func.count())
                .select_from(Case)
                .where(Case.caller_id == case.caller_id, Case.id != case.id)
            )
            or 0
        ) > 0
    return CaseDetail(
        **summary(case, assignees).model_dump(),
        sealed_fields=case.sealed_fields_present(),
        notes=notes or 0,
        referrals=[
            ReferralOut(
                id=r.public_id,
                organisation=o.public_id,
                organisation_name=o.name,
                services=[s for s in r.services.split(",") if s],
                created_at=r.created_at,
                sms_status=r.sms_status,
                sms_requested_at=r.sms_requested_at,
            )
            for r, o in referral_rows
        ],
        caller=CallerOut(
            phone_last2=caller.phone_last2,
            safe_to_call=caller.safe_to_call,
            safe_to_text=caller.safe_to_text,
            safe_to_voicemail=caller.safe_to_voicemail,
            erased=caller.erased_reason if caller.erased_at is not None else None,
        )
        if caller
        else None,
        possible_repeat_caller=repeat,
    )


@router.get("", response_model=CaseList)
async def list_cases(
    staff: CaseReader,
    db: DbSession,
    status: CaseStatusName | None = None,
    category: Annotated[str | None, Query(pattern=r"^[a-z_]{1,32}$")] = None,
    urgency: UrgencyName | None = None,
    language: Annotated[str | None, Query(pattern=r"^[a-z]{2,3}$")] = None,
    assignee: PublicId | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
    page: Annotated[int, Query(ge=1, le=10_000)] = 1,
    page_size: Annotated[int, Query(ge=1, le=200)] = 50,
) -> CaseList:
    """A volunteer sees their own cases; a supervisor the metadata of all."""
    query = select(Case)
    if not staff.principal.has(Role.supervisor):
        query = query.where(Case.assignee_id == staff.user.id)
    if status:
        query = query.where(Case.status == status)
    if category:
        query = query.where(Case.category_id == category)
    if urgency:
        query = query.where(Case.urgency == urgency)
    if language:
        query = query.where(Case.language == language)
    if assignee:
        query = query.join(User, User.id == Case.assignee_id).where(User.public_id == assignee)
    if created_after:
        query = query.where(Case.created_at >= created_after)
    if created_before:
        query = query.where(Case.created_at < created_before)
    total = await db.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = list(
        await db.scalars(
            query.order_by(Case.created_at.desc(), Case.public_id)
            .offset((page - 1) * page_size)
            .limit(page_size)
        )
    )
    assignees = await public_ids(db, {c.assignee_id for c in rows})
    return CaseList(items=[summary(c, assignees) for c in rows], page=page, page_size=page_size, total=total)


@router.get("/{case_id}", response_model=CaseDetail, responses=NOT_FOUND)
async def get_case(case_id: PublicId, staff: CaseReader, db: DbSession) -> CaseDetail:
    """Metadata and the names of the sealed fields present — never their values."""
    return await detail(db, await visible_case(db, staff.principal, case_id))


@router.post(
    "/{case_id}/reveal",
    response_model=RevealOut,
    responses={**NOT_FOUND, 410: {"description": "The case's content was erased (retention or request)."}},
)
async def reveal(
    case_id: PublicId, body: RevealIn, staff: CaseReader, db: DbSession, auth: Auth
) -> RevealOut:
    """The only way to plaintext: one check, one audit entry, one commit before decryption —
    whatever mix of sealed fields, notes and the caller's own draft is asked for."""
    case = await visible_case(db, staff.principal, case_id)
    if case.erased_at is not None:
        raise Erased(erased_message(case.erased_reason))
    purpose = Purpose(body.purpose)
    asked = list(dict.fromkeys(body.fields))
    fields = [f for f in asked if f not in ("notes", "draft")]
    access = await check_content(
        db, auth.clock, staff.principal, case, action="case.reveal", fields=asked, purpose=purpose
    )
    notes = await service.notes_of(db, case) if "notes" in asked else []
    draft = (
        await db.scalar(
            select(IntakeDraft).where(IntakeDraft.case_id == case.id, IntakeDraft.author_id == staff.user.id)
        )
        if "draft" in asked
        else None
    )
    authors = await public_ids(db, {n.author_id for n in notes})
    rows: list[tuple[str, Any, str]] = [(f"note:{i}", note, "body") for i, note in enumerate(notes)]
    if draft is not None:
        rows.append(("draft", draft, "fields"))
    result = await auth.broker.reveal_content(
        db,
        access,
        purpose=purpose,
        fields=fields,
        rows=rows,
        audit_fields=[f for f in asked if f in ("notes", "draft")],
    )
    revealed_values = {name: result.values.get(name) for name in fields}
    erased = [label for label in result.erased if label in fields]
    notes_out = (
        [
            NoteOut(
                id=n.public_id,
                author=authors.get(n.author_id, "?"),
                created_at=n.created_at,
                body=result.values.get(f"note:{i}"),
            )
            for i, n in enumerate(notes)
        ]
        if "notes" in asked
        else None
    )
    draft_text = result.values.get("draft")
    draft_out = json.loads(draft_text) if draft_text else None
    return RevealOut(values=revealed_values, erased=erased, notes=notes_out, draft=draft_out)


@router.patch(
    "/{case_id}",
    response_model=CaseDetail,
    responses={
        **NOT_FOUND,
        403: {"description": "self_assignment: a supervisor does not assign a case to themselves."},
        409: {"description": "Status move not allowed."},
    },
)
async def update_case(
    case_id: PublicId, body: CasePatch, staff: CaseWriter, db: DbSession, auth: Auth
) -> CaseDetail:
    case = await visible_case(db, staff.principal, case_id)
    clock = auth.clock
    actor = staff.principal.actor
    assigned = case.assignee_id == staff.user.id
    if body.fields is not None or body.caller_safety is not None:
        await check_content(
            db,
            clock,
            staff.principal,
            case,
            action="case.update",
            fields=[*(body.fields or {}), *(["caller_safety"] if body.caller_safety is not None else [])],
        )
    if (body.status or body.category or body.urgency) and not (
        assigned or staff.principal.has(Role.supervisor)
    ):
        raise NotFound()
    if body.assignee is not None:
        if Permission.cases_assign not in staff.permissions:
            raise NotFound()
        if body.assignee == staff.user.public_id:
            # The assignee reads the case's content: a supervisor who also volunteers would skip
            # break-glass. Another supervisor may assign it to them (reviewed below).
            raise AuditedRefusal(
                staff.principal,
                action="case.assigned",
                object_type="case",
                object_id=case.public_id,
                details={"assignee": body.assignee, "reason": "self_assignment"},
                error=Forbidden(
                    "Supervisors do not assign cases to themselves: ask another supervisor, "
                    "or use break-glass.",
                    code="self_assignment",
                ),
            )
        assignee = await db.scalar(select(User).where(User.public_id == body.assignee))
        if (
            assignee is None
            or assignee.status != UserStatus.active
            or Role.volunteer not in assignee.role_set
        ):
            raise InvalidInput("Assign to an active volunteer.", code="invalid_assignee")
        review = None
        if assignee.id != case.assignee_id:
            # Whoever it goes to reads the content from now on: listed for review by another
            # supervisor, next to break-glass grants (`GET /api/v1/break-glass/reviews`).
            review = CaseReassignment(
                public_id=new_public_id("RA"),
                case_id=case.id,
                supervisor_id=staff.user.id,
                assignee_id=assignee.id,
                previous_assignee_id=case.assignee_id,
                created_at=clock.now(),
            )
            db.add(review)
        case.assignee_id = assignee.id
        audit.record(
            db,
            clock,
            actor=actor,
            action="case.assigned",
            object_type="case",
            object_id=case.public_id,
            details={"assignee": assignee.public_id, "review": review.public_id if review else None},
        )
    if body.status is not None:
        service.change_status(case, CaseStatus(body.status), clock)
    if body.category is not None:
        from app.cases.models import Category

        if await db.get(Category, body.category) is None:
            raise InvalidInput("Unknown category.", code="unknown_category")
        case.category_id = body.category
    if body.urgency is not None:
        case.urgency = Urgency(body.urgency)
    if body.fields is not None:
        changes = body.fields.model_dump(exclude_unset=True)
        if changes:
            await service.update_fields(db, auth.sealer, clock, case, actor=actor, fields=changes)
        # The intake is saved: this person's autosaved draft of it is not needed any more.
        await db.execute(
            delete(IntakeDraft).where(IntakeDraft.case_id == case.id, IntakeDraft.author_id == staff.user.id)
        )
    if body.caller_safety is not None and case.caller_id is not None:
        caller = await db.get(Caller, case.caller_id)
        assert caller is not None
        for name, value in body.caller_safety.model_dump(exclude_unset=True).items():
            setattr(caller, name, value)
    case.updated_at = clock.now()
    if body.status or body.category or body.urgency:
        audit.record(
            db,
            clock,
            actor=actor,
            action="case.updated",
            object_type="case",
            object_id=case.public_id,
            details={k: v for k, v in {"status": body.status, "urgency": body.urgency}.items() if v},
        )
    await db.flush()
    return await detail(db, case)


@router.put("/{case_id}/draft", response_model=DraftSaved, responses=NOT_FOUND)
async def save_draft(
    case_id: PublicId, body: DraftIn, staff: CaseWriter, access: CaseContent, db: DbSession, auth: Auth
) -> DraftSaved:
    """Autosave of the intake form being typed (sealed; one per case and person, replaced each
    time). Read it back through the reveal (`fields: ["draft"]`); saving the intake removes it."""
    case = access.case
    now = auth.clock.now()
    draft = await db.scalar(
        select(IntakeDraft).where(IntakeDraft.case_id == case.id, IntakeDraft.author_id == staff.user.id)
    )
    if draft is None:
        draft = IntakeDraft(case_id=case.id, author_id=staff.user.id, updated_at=now)
        db.add(draft)
        # Only the first autosave is recorded: every keystroke pause would flood the log.
        audit.record(
            db,
            auth.clock,
            actor=staff.principal.actor,
            action="case.draft_started",
            object_type="case",
            object_id=case.public_id,
        )
    draft.updated_at = now
    await auth.sealer.seal(db, draft, "fields", json.dumps(body.fields, sort_keys=True))
    await db.flush()
    return DraftSaved(saved_at=now)


@router.delete("/{case_id}/draft", status_code=204, responses=NOT_FOUND)
async def discard_draft(
    case_id: PublicId, staff: CaseWriter, access: CaseContent, db: DbSession, auth: Auth
) -> Response:
    case = access.case
    await db.execute(
        delete(IntakeDraft).where(IntakeDraft.case_id == case.id, IntakeDraft.author_id == staff.user.id)
    )
    return Response(status_code=204)


@router.post("/{case_id}/notes", response_model=NoteCreated, status_code=201, responses=NOT_FOUND)
async def add_note(
    case_id: PublicId, body: NoteIn, staff: CaseWriter, access: CaseContent, db: DbSession, auth: Auth
) -> NoteCreated:
    """Append-only: notes are never edited or deleted through the API."""
    case = access.case
    note = await service.add_note(
        db, auth.sealer, auth.clock, case, author=staff.user, actor=staff.principal.actor, body=body.body
    )
    return NoteCreated(id=note.public_id, created_at=note.created_at)


@router.post("/{case_id}/referrals", response_model=ReferralOut, status_code=201, responses=NOT_FOUND)
async def add_referral(
    case_id: PublicId, body: ReferralIn, staff: CaseWriter, db: DbSession, auth: Auth
) -> ReferralOut:
    case = await visible_case(db, staff.principal, case_id)
    if case.assignee_id != staff.user.id and not staff.principal.has(Role.supervisor):
        raise NotFound()
    organisation = await db.scalar(select(Organisation).where(Organisation.public_id == body.organisation))
    if organisation is None:
        raise InvalidInput("Unknown organisation.", code="unknown_organisation")
    referral = Referral(
        public_id=new_public_id("RF"),
        case_id=case.id,
        organisation_id=organisation.id,
        created_by_id=staff.user.id,
        created_at=auth.clock.now(),
        services=",".join(body.services),
    )
    db.add(referral)
    if case.status in (CaseStatus.open, CaseStatus.in_progress):
        case.status = CaseStatus.referred
    case.updated_at = auth.clock.now()
    audit.record(
        db,
        auth.clock,
        actor=staff.principal.actor,
        action="case.referred",
        object_type="case",
        object_id=case.public_id,
        details={"organisation": organisation.public_id},
    )
    await db.flush()
    return ReferralOut(
        id=referral.public_id,
        organisation=organisation.public_id,
        organisation_name=organisation.name,
        services=list(body.services),
        created_at=referral.created_at,
    )


@router.post(
    "/{case_id}/referrals/{referral_id}/send",
    response_model=ReferralOut,
    status_code=202,
    responses={
        **NOT_FOUND,
        409: {
            "description": "Not sent: organisation_not_verified, no_number (withheld or unknown), "
            "opted_out, unsafe_to_text, safety_not_asked or already_sent."
        },
    },
)
async def send_referral(
    case_id: PublicId,
    referral_id: PublicId,
    staff: CaseWriter,
    access: CaseContent,
    db: DbSession,
    auth: Auth,
) -> ReferralOut:
    """Text the organisation's public details (name, intake phone, web address, hours) to the
    caller; a job sends it. Only the assigned volunteer (or a supervisor with break-glass) may."""
    case = access.case
    referral = await db.scalar(
        select(Referral).where(Referral.public_id == referral_id, Referral.case_id == case.id)
    )
    if referral is None:
        raise NotFound()
    organisation = await db.get(Organisation, referral.organisation_id)
    assert organisation is not None
    await referrals.request_sms(
        db,
        auth.clock,
        case=case,
        referral=referral,
        organisation=organisation,
        requested_by=staff.user,
        actor=staff.principal.actor,
    )
    return ReferralOut(
        id=referral.public_id,
        organisation=organisation.public_id,
        organisation_name=organisation.name,
        services=[s for s in referral.services.split(",") if s],
        created_at=referral.created_at,
        sms_status=referral.sms_status,
        sms_requested_at=referral.sms_requested_at,
    )


@router.post(
    "/{case_id}/break-glass",
    response_model=BreakGlassOut,
    status_code=201,
    responses={
        **NOT_FOUND,
        401: {"description": "The TOTP code did not verify."},
        429: {"description": "Too many wrong codes: wait (Retry-After)."},
    },
)
async def break_glass(
    case_id: PublicId, body: BreakGlassIn, staff: BreakGlasser, db: DbSession, auth: Auth
) -> BreakGlassOut:
    """A supervisor's 30-minute access to one case's content: reason + fresh TOTP, flagged for review.
    The code is throttled on the account's sign-in failure counter (`verify_second_factor`)."""
    case = await visible_case(db, staff.principal, case_id)
    case_pk, public_id, user, principal = case.id, case.public_id, staff.user, staff.principal
    await auth.verify_second_factor(
        db,
        user,
        body.totp,
        staff_session=staff.session,
        action="case.break_glass",
        object_type="case",
        object_id=public_id,
        actor=principal.actor,
    )
    now = auth.clock.now()
    grant = BreakGlassGrant(
        public_id=new_public_id("BG"),
        case_id=case_pk,
        supervisor_id=principal.user_id,
        created_at=now,
        expires_at=now + timedelta(minutes=auth.settings.break_glass_minutes),
    )
    await auth.sealer.seal(db, grant, "reason", body.reason)
    db.add(grant)
    assert grant.reason is not None
    reason_hash = auth.keys.material.keyed_hasher().hash("break_glass.reason", grant.reason.blob).hex()
    audit.record(
        db,
        auth.clock,
        actor=principal.actor,
        action="case.break_glass",
        object_type="case",
        object_id=public_id,
        value_hash=reason_hash,
        details={"grant": grant.public_id},
    )
    await db.flush()
    return BreakGlassOut(id=grant.public_id, case=public_id, expires_at=grant.expires_at)


CODE_WORD_TRIES = 5
CODE_WORD_CHECKER = Principal.system("code-word")


class TooManyCodeWordTries(Conflict):
    code = "too_many_tries"
    message = "Five code words were tried on this contact; it cannot be linked."


@router.post(
    "/{case_id}/link-contact",
    response_model=LinkContactOut,
    responses={
        **NOT_FOUND,
        409: {"description": "No tries left."},
        422: {"description": "Code word did not match."},
    },
)
async def link_contact(
    case_id: PublicId, body: LinkContactIn, staff: CaseWriter, db: DbSession, auth: Auth
) -> LinkContactOut:
    """A possible repeat caller: the volunteer types the code word the caller says. Only a match
    links this contact to the caller's earlier case and gives the volunteer access to it. Shared
    phones (shelters, detention facilities) are common, so the number alone never does."""
    case = await visible_case(db, staff.principal, case_id)
    if case.assignee_id != staff.user.id or case.caller_id is None:
        raise NotFound()
    contact = await db.scalar(
        select(Contact).where(Contact.public_id == body.contact, Contact.case_id == case.id)
    )
    if contact is None:
        raise NotFound()
    if contact.code_word_attempts >= CODE_WORD_TRIES:
        raise TooManyCodeWordTries()
    contact.code_word_attempts += 1
    tries_left = CODE_WORD_TRIES - contact.code_word_attempts
    contact_pk, current_pk, caller_pk, actor = contact.id, case.id, case.caller_id, staff.principal.actor
    candidates = list(
        await db.scalars(
            select(Case).where(
                Case.caller_id == caller_pk, Case.id != current_pk, Case.code_word.is_not(None)
            )
        )
    )
    wanted = body.code_word.strip().casefold().encode()
    matched: Case | None = None
    for candidate in candidates:
        candidate_id = candidate.id
        stored = await auth.broker.reveal_for_system(
            db,
            CODE_WORD_CHECKER,
            candidate,
            "code_word",
            purpose=Purpose.code_word_check,
            object_type="case",
            object_id=candidate.public_id,
        )
        if stored is not None and hmac.compare_digest(stored.strip().casefold().encode(), wanted):
            matched = await db.get(Case, candidate_id, populate_existing=True)
            break
    reloaded = await db.get(Contact, contact_pk, populate_existing=True)
    assert reloaded is not None
    contact = reloaded
    if matched is None:
        audit.record(
            db,
            auth.clock,
            actor=actor,
            action="case.link_refused",
            object_type="contact",
            object_id=contact.public_id,
            outcome="denied",
            details={"tries_left": tries_left},
        )
        await db.commit()  # the spent try counts even though the request fails
        raise InvalidInput(
            f"That code word does not match. Tries left: {tries_left}.", code="code_word_mismatch"
        )
    contact.case_id = matched.id
    matched.assignee_id = staff.user.id
    matched.updated_at = auth.clock.now()
    audit.record(
        db,
        auth.clock,
        actor=actor,
        action="case.contact_linked",
        object_type="case",
        object_id=matched.public_id,
        details={"contact": contact.public_id},
    )
    return LinkContactOut(linked=True, case=matched.public_id)
