"""The voice flow's decisions, called by the webhook handlers (which own the transaction).

A call becomes: a possibly-known caller (blind index; never for withheld numbers), a case, a
contact and a routing task — created when the caller is queued, not on the first webhook. Offers,
accepts, declines and hang-ups go through the routing engine; REST calls to Twilio (ringing a
volunteer, dequeuing the caller) are jobs.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts.models import User
from app.audit.service import Actor
from app.callers.models import Caller
from app.callers.service import find_or_create_caller
from app.calls.models import Call
from app.cases.models import Case, Urgency
from app.cases.service import create_case
from app.contacts.models import Channel, Contact
from app.contacts.service import create_contact
from app.jobs.service import enqueue
from app.publicid import derived_public_id
from app.routing import service as routing
from app.routing.models import Offer, OfferState, Task, TaskState

QUEUE_NAME = "hotline"
# An accepted caller not in the conference this long after the volunteer pressed 1 is offered again.
CONNECT_GRACE_SECONDS = 45
VOICE_FLOW = Actor("system:voice")


def routing_times(app: Any) -> routing.RoutingTimes:
    return routing.RoutingTimes.from_settings(app.state.settings)


async def start_contact(
    app: Any,
    session: AsyncSession,
    call: Call,
    *,
    language: str,
    emergency: bool,
    call_sid: str,
    from_number: str | None,
    task_public_id: str | None = None,
) -> Task:
    """Caller, case, contact and task for a call that is about to be queued (idempotent per call)."""
    if call.task_id is not None:
        existing = await session.get(Task, call.task_id)
        if existing is not None:
            return existing
    clock, sealer, broker = app.state.clock, app.state.sealer, app.state.broker
    call_id = call.id
    caller, _known = await find_or_create_caller(session, sealer, broker, clock, from_number)
    reloaded = await session.get(Call, call_id, populate_existing=True)  # the caller match may have committed
    assert reloaded is not None
    call = reloaded
    case = await create_case(
        session,
        sealer,
        clock,
        actor=VOICE_FLOW,
        language=language,
        urgency=Urgency.emergency if emergency else Urgency.normal,
        caller=caller,
        drill=call.drill,
    )
    contact = await create_contact(
        session,
        sealer,
        clock,
        channel=Channel.voice,
        twilio_sid=call_sid,
        caller=caller,
        language=language,
        drill=call.drill,
    )
    contact.case_id = case.id
    times = routing_times(app)
    task = await routing.create_task(
        session,
        clock,
        times,
        channel="voice",
        language=language,
        emergency=emergency,
        contact_id=contact.id,
        case_id=case.id,
        drill=call.drill,
        public_id=task_public_id,
    )
    call.case_id, call.contact_id, call.task_id = case.id, contact.id, task.id
    call.language, call.emergency, call.state = language, emergency, "queued"
    call.updated_at = clock.now()
    await routing.route(session, clock, times, task)
    return task


def task_public_id_for(keys: Any, call_sid: str) -> str:
    """The task id of a call, fixed by its CallSid (keyed): every replay of the enqueue step, and an
    answer given before the database work finished, name the same task."""
    return derived_public_id("TK", keys.material.keyed_hasher().hash("voice.task", call_sid.encode()))


async def task_by_public_id(session: AsyncSession, public_id: str) -> Task | None:
    return await session.scalar(select(Task).where(Task.public_id == public_id))


async def queue_position(session: AsyncSession, task: Task) -> int:
    return await routing.queue_position(session, task)


async def end_task(app: Any, session: AsyncSession, task: Task, state: str) -> None:
    if task.state in (TaskState.completed, TaskState.abandoned, TaskState.overflowed):
        return
    await routing.finish(session, app.state.clock, task, TaskState(state))
    if task.contact_id is not None:
        contact = await session.get(Contact, task.contact_id)
        if contact is not None and contact.ended_at is None:
            contact.ended_at = app.state.clock.now()
            contact.outcome = state
    # A seat may have been freed: offer the next waiting caller.
    await routing.next_task_for(session, app.state.clock, routing_times(app), "voice")


async def volunteer_prompt_language(session: AsyncSession, volunteer_id: Any) -> str:
    """The first of a volunteer's languages the prompt catalogue speaks (English otherwise)."""
    from app.calls.prompts import CATALOGUE_LANGUAGES

    volunteer = await session.get(User, volunteer_id)
    languages = volunteer.language_list if volunteer is not None else []
    return next((code for code in languages if code in CATALOGUE_LANGUAGES), "en")


async def offer_details(session: AsyncSession, offer_id: str) -> tuple[Task, str] | None:
    offer = await session.scalar(select(Offer).where(Offer.public_id == offer_id))
    if offer is None or offer.state != "pending":
        return None
    task = await session.get(Task, offer.task_id)
    if task is None:
        return None
    return task, await volunteer_prompt_language(session, offer.volunteer_id)


async def answer_offer(app: Any, session: AsyncSession, offer_id: str, *, accept: bool) -> Task | None:
    """The volunteer pressed 1 (accept → dequeue the caller, a job) or did not (next volunteer)."""
    clock, times = app.state.clock, routing_times(app)
    offer = await session.scalar(select(Offer).where(Offer.public_id == offer_id))
    if offer is None:
        return None
    if not accept:
        await routing.decline(session, clock, times, offer)
        return None
    task = await routing.accept(session, clock, offer)
    if task is None:
        return None
    await enqueue(
        session,
        clock,
        "calls.check_connected",
        {"task": task.public_id},
        run_at=clock.now() + timedelta(seconds=CONNECT_GRACE_SECONDS),
        dedup_key=f"check-connected:{offer.public_id}",
    )
    await enqueue(
        session,
        clock,
        "calls.dequeue_caller",
        {"task": task.public_id},
        dedup_key=f"dequeue:{task.public_id}",
        max_attempts=30,  # about 30 s of 1 s waits for the queue to be known
    )
    return task


async def volunteer_leg_ended(app: Any, session: AsyncSession, offer_id: str, call_status: str) -> None:
    """A volunteer leg ended; if its offer is still pending, nobody accepted on it. If they had
    accepted but their caller never reached them, the caller is offered to someone else."""
    clock, times = app.state.clock, routing_times(app)
    offer = await session.scalar(select(Offer).where(Offer.public_id == offer_id))
    if offer is None:
        return
    if offer.state == OfferState.accepted and call_status in ("completed", "busy", "failed", "no-answer"):
        task = await session.get(Task, offer.task_id)
        call = await session.scalar(select(Call).where(Call.task_id == offer.task_id))
        if task is not None and task.assigned_to_id == offer.volunteer_id and call is not None:
            if call.state != "connected":
                await routing.requeue(session, clock, times, task)
        return
    if offer.state != OfferState.pending:
        return
    if call_status in ("no-answer", "canceled"):
        await routing.expire(session, clock, times, offer, rang_out=True)
    elif call_status in ("busy", "failed", "completed"):
        await routing.decline(session, clock, times, offer)


async def caller_hung_up(app: Any, session: AsyncSession, call: Call) -> None:
    if call.task_id is None:
        return
    task = await session.get(Task, call.task_id)
    if task is None:
        return
    if task.state == TaskState.assigned:
        # The caller is gone, so the volunteer's leg has nothing left to do. Usually the
        # conference's endConferenceOnExit has already ended it, but a volunteer whose answer
        # reached Twilio after the caller had left would join a fresh, empty conference and wait
        # there alone (found by the 200-call surge): hang it up (a leg already over is fine).
        await release_volunteer_legs(session, app.state.clock, task)
        await end_task(app, session, task, "completed" if call.state == "connected" else "abandoned")
        return
    await end_task(app, session, task, "abandoned")


async def remember_leg(app: Any, session: AsyncSession, offer_id: str, leg_sid: str) -> None:
    """Keep the volunteer's leg (sealed) so it can be hung up if the caller never arrives."""
    offer = await session.scalar(select(Offer).where(Offer.public_id == offer_id))
    if offer is not None and offer.leg_sid is None:
        await app.state.sealer.seal(session, offer, "leg_sid", leg_sid)


async def release_volunteer_legs(session: AsyncSession, clock: Any, task: Task) -> None:
    """Hang up the leg of each volunteer who accepted this task (a job: REST calls never run here)."""
    accepted = await session.scalars(
        select(Offer.public_id).where(Offer.task_id == task.id, Offer.state == OfferState.accepted)
    )
    for offer_id in accepted:
        await enqueue(
            session,
            clock,
            "calls.release_volunteer",
            {"offer": offer_id},
            dedup_key=f"release:{offer_id}",
            max_attempts=5,
        )


async def can_call_back(session: AsyncSession, task: Task) -> bool:
    """A caller whose number we have and who has not said calling back is unsafe."""
    if task.case_id is None:
        return False
    case = await session.get(Case, task.case_id)
    if case is None or case.caller_id is None:
        return False
    caller = await session.get(Caller, case.caller_id)
    return caller is not None and caller.safe_to_call is not False


async def may_offer_voicemail(session: AsyncSession, task: Task, clock: Any, after_seconds: float) -> bool:
    """Hold content offers a message once the caller has waited `after_seconds` (and could be called back)."""
    waited = (clock.now() - task.enqueued_at).total_seconds()
    return waited >= after_seconds and await can_call_back(session, task)


async def accepted_task(app: Any, session: AsyncSession, offer_id: str) -> Task | str | None:
    """After a slow press of 1: the task if the offer was accepted, "pending" while the acceptance
    may still be on its way, None if it did not stand (expired, taken by someone else)."""
    offer = await session.scalar(select(Offer).where(Offer.public_id == offer_id))
    if offer is None:
        return None
    if offer.state == OfferState.pending:
        return "pending"
    if offer.state != OfferState.accepted:
        return None
    task = await session.get(Task, offer.task_id)
    if task is None or task.assigned_to_id != offer.volunteer_id or task.state != TaskState.assigned:
        return None
    return task
