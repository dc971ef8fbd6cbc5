"""Voicemail and callbacks: what happens when nobody can answer and the caller chose to leave a message.

* A caller whose number we have (never a withheld one) is offered a message after a while on hold;
  pressing the key is their consent. The recording's SID is sealed on a `Voicemail` row; a job
  downloads the audio, seals it under the case's key and stores it — and only in that same
  committed transaction enqueues its deletion at Twilio.
* Each message opens one `Callback`. Exactly one volunteer can claim it (a conditional UPDATE,
  atomic on both databases). Placing it rings the volunteer first (whisper: press 1), then the
  caller, both seeing the hotline's number. The caller's safety flags are honoured: a callback
  to a caller who said calling is unsafe cannot be claimed, and when they have not said a
  voicemail is safe, a machine answering ends the call (Twilio's answering-machine detection).

Services flush, never commit; REST calls to Twilio are jobs.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.access.policy import Principal, Purpose
from app.accounts.models import User
from app.audit import service as audit
from app.audit.service import Actor
from app.callers.models import Caller
from app.calls.models import Call, Callback, CallbackState, Voicemail
from app.cases.models import Case, Urgency
from app.clock import Clock
from app.errors import Conflict, NotFound
from app.jobs.service import enqueue
from app.keys.store import Sealer
from app.publicid import new_public_id
from telephony.numbers import normalize_e164

VOICEMAIL_FLOW = Actor("system:voicemail")
CALLBACK_DIALLER = Principal.system("callback-dialler")
MAX_CALLBACK_ATTEMPTS = 3


async def voicemail_for_call(
    session: AsyncSession, sealer: Sealer, clock: Clock, call: Call, recording_sid: str | None
) -> Voicemail | None:
    """The call's voicemail row (one per contact), created on the first webhook that names the
    recording — the ``<Record>`` action or the recording status callback, whichever comes first."""
    if call.case_id is None:
        return None
    found = await session.scalar(select(Voicemail).where(Voicemail.contact_id == call.contact_id))
    if found is None:
        candidate = Voicemail(
            public_id=new_public_id("VM"),
            case_id=call.case_id,
            contact_id=call.contact_id,
            state="recording",
            created_at=clock.now(),
        )
        try:
            # The <Record> action and the recording status callback arrive together: one inserts.
            async with session.begin_nested():
                session.add(candidate)
                await session.flush()
        except IntegrityError:
            found = await session.scalar(select(Voicemail).where(Voicemail.contact_id == call.contact_id))
            if found is None:
                raise
        else:
            found = candidate
            audit.record(
                session,
                clock,
                actor=VOICEMAIL_FLOW,
                action="voicemail.started",
                object_type="voicemail",
                object_id=found.public_id,
            )
    if recording_sid and found.recording_sid is None:
        await sealer.seal(session, found, "recording_sid", recording_sid)
    await session.flush()
    return found


async def open_callback(
    session: AsyncSession, clock: Clock, call: Call, voicemail: Voicemail | None
) -> Callback | None:
    """One callback per contact, for a caller we can call back (never a withheld number)."""
    if call.case_id is None:
        return None
    case = await session.get(Case, call.case_id)
    if case is None or case.caller_id is None:
        return None
    existing = await session.scalar(select(Callback).where(Callback.contact_id == call.contact_id))
    if existing is not None:
        if existing.voicemail_id is None and voicemail is not None:
            existing.voicemail_id = voicemail.id
        return existing
    candidate = Callback(
        public_id=new_public_id("CB"),
        case_id=case.id,
        contact_id=call.contact_id,
        voicemail_id=voicemail.id if voicemail else None,
        language=case.language,
        emergency=case.urgency == Urgency.emergency,
        drill=case.drill,
        state=CallbackState.open,
        attempts=0,
        created_at=clock.now(),
    )
    try:
        async with session.begin_nested():
            session.add(candidate)
            await session.flush()
    except IntegrityError:  # the other recording webhook opened it a moment ago
        return await session.scalar(select(Callback).where(Callback.contact_id == call.contact_id))
    callback = candidate
    audit.record(
        session,
        clock,
        actor=VOICEMAIL_FLOW,
        action="callback.opened",
        object_type="callback",
        object_id=callback.public_id,
        details={"case": case.public_id},
    )
    return callback


async def recording_finished(
    session: AsyncSession, sealer: Sealer, clock: Clock, call: Call, recording_sid: str, status: str
) -> Voicemail | None:
    """The recording status callback: fetch and store the audio (a job), or note that nothing was said."""
    voicemail = await voicemail_for_call(session, sealer, clock, call, recording_sid)
    if voicemail is None:
        return None
    if status == "completed" and voicemail.state == "recording":
        voicemail.state = "fetching"
        await enqueue(
            session,
            clock,
            "calls.store_voicemail",
            {"voicemail": voicemail.public_id},
            dedup_key=f"store-voicemail:{voicemail.public_id}",
            max_attempts=8,
        )
    elif status in ("absent", "failed") and voicemail.state == "recording":
        voicemail.state = status
    return voicemail


def _caller_may_be_called(caller: Caller | None) -> bool:
    return caller is not None and caller.safe_to_call is not False


async def claim(session: AsyncSession, clock: Clock, callback: Callback, volunteer: User) -> Callback:
    """Exactly one volunteer wins: ``UPDATE … WHERE state = 'open'``. The case is assigned to them
    (unless it already belongs to someone else, who alone may then claim it), and a job rings them."""
    if callback.state != CallbackState.open:
        raise Conflict("Someone else has already claimed this callback.", code="already_claimed")
    case = await session.get(Case, callback.case_id)
    if case is None:
        raise NotFound()
    if case.assignee_id is not None and case.assignee_id != volunteer.id:
        raise Conflict("This caller's case belongs to another volunteer.", code="case_assigned_elsewhere")
    caller = await session.get(Caller, case.caller_id) if case.caller_id else None
    if not _caller_may_be_called(caller):
        raise Conflict("The caller said it is not safe to call them back.", code="unsafe_to_call")
    if volunteer.phone is None or volunteer.phone_verified_at is None:
        raise Conflict("Verify your phone first: callbacks ring it.", code="phone_not_verified")
    now = clock.now()
    won = await session.execute(
        update(Callback)
        .where(Callback.id == callback.id, Callback.state == CallbackState.open)
        .values(state=CallbackState.claimed, claimed_by_id=volunteer.id, claimed_at=now)
        .returning(Callback.id)
        .execution_options(synchronize_session=False)
    )
    if won.first() is None:  # a concurrent claim committed first
        raise Conflict("Someone else has already claimed this callback.", code="already_claimed")
    await session.refresh(callback)
    if case.assignee_id is None:
        case.assignee_id = volunteer.id
        case.updated_at = now
        audit.record(
            session,
            clock,
            actor=Actor(volunteer.public_id, ("volunteer",)),
            action="case.assigned",
            object_type="case",
            object_id=case.public_id,
            details={"via": "callback"},
        )
    audit.record(
        session,
        clock,
        actor=Actor(volunteer.public_id, ("volunteer",)),
        action="callback.claimed",
        object_type="callback",
        object_id=callback.public_id,
    )
    await enqueue(
        session,
        clock,
        "calls.place_callback",
        {"callback": callback.public_id, "attempt": callback.attempts + 1},
        dedup_key=f"place-callback:{callback.public_id}:{callback.attempts + 1}",
        max_attempts=3,
    )
    return callback


async def callback_by_public_id(session: AsyncSession, public_id: str) -> Callback | None:
    return await session.scalar(select(Callback).where(Callback.public_id == public_id))


async def finish_attempt(session: AsyncSession, clock: Clock, callback: Callback, outcome: str) -> None:
    """One placement ended. Answered → completed; a machine we may not speak to → unreached; the
    volunteer not taking it → back to open for anyone; the caller not answering → open again until
    the attempts run out."""
    if callback.state != CallbackState.claimed:
        return
    now = clock.now()
    callback.outcome = outcome
    if outcome == "answered":
        callback.state = CallbackState.completed
        callback.finished_at = now
    elif outcome == "volunteer-unavailable":
        callback.state = CallbackState.open
        callback.claimed_by_id = None
        callback.claimed_at = None
    else:
        callback.attempts += 1
        if outcome == "machine" or callback.attempts >= MAX_CALLBACK_ATTEMPTS:
            callback.state = CallbackState.unreached
            callback.finished_at = now
        else:
            callback.state = CallbackState.open
            callback.claimed_by_id = None
            callback.claimed_at = None
    audit.record(
        session,
        clock,
        actor=VOICEMAIL_FLOW,
        action="callback.attempt_ended",
        object_type="callback",
        object_id=callback.public_id,
        details={"outcome": outcome, "state": callback.state},
    )


async def open_callbacks(session: AsyncSession, volunteer: User, *, limit: int = 100) -> list[Callback]:
    """Callbacks a volunteer may claim or holds: open ones (emergencies, then oldest) and their own."""
    rows = await session.scalars(
        select(Callback)
        .where(
            (Callback.state == CallbackState.open)
            | ((Callback.state == CallbackState.claimed) & (Callback.claimed_by_id == volunteer.id))
        )
        .order_by(Callback.emergency.desc(), Callback.created_at)
        .limit(limit)
    )
    return list(rows)


def describe(callback: Callback, case_public_id: str | None, claimed_by: str | None) -> dict[str, Any]:
    return {
        "id": callback.public_id,
        "case": case_public_id,
        "state": callback.state,
        "language": callback.language,
        "emergency": callback.emergency,
        "has_voicemail": callback.voicemail_id is not None,
        "attempts": callback.attempts,
        "outcome": callback.outcome,
        "claimed_by": claimed_by,
        "created_at": callback.created_at,
    }


async def dial_target(session: AsyncSession, broker: Any, callback: Callback) -> tuple[str, bool] | None:
    """The number to call (the case's callback number if the caller gave one, else the number they
    called from) and whether machines must be screened out; None when calling is not safe."""
    case = await session.get(Case, callback.case_id)
    if case is None or case.caller_id is None:
        return None
    caller = await session.get(Caller, case.caller_id)
    if not _caller_may_be_called(caller):
        return None
    assert caller is not None
    number: str | None = None
    if case.callback_number is not None:
        number = await broker.reveal_for_system(
            session,
            CALLBACK_DIALLER,
            case,
            "callback_number",
            purpose=Purpose.contact_caller,
            object_type="case",
            object_id=case.public_id,
        )
    if not number:
        number = await broker.reveal_for_system(
            session,
            CALLBACK_DIALLER,
            caller,
            "phone",
            purpose=Purpose.contact_caller,
            object_type="caller",
            object_id=caller.public_id,
        )
    e164 = normalize_e164(number)
    if e164 is None:
        return None
    return e164, caller.safe_to_voicemail is not True


async def voicemail_is_safe(session: AsyncSession, callback: Callback) -> bool:
    case = await session.get(Case, callback.case_id)
    caller = await session.get(Caller, case.caller_id) if case is not None and case.caller_id else None
    return caller is not None and caller.safe_to_voicemail is True
