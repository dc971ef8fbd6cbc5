"""Routing decisions (TaskRouter semantics, our own engine).

* Task order: emergency first, then oldest (`priority` desc, `enqueued_at` asc).
* Volunteer choice: on call now ∧ available ∧ a free seat on the channel ∧ speaks the language
  (escalation step 0; from step 1 anyone, with an interpreter flagged), longest idle first, never
  someone who already declined or missed this task.
* An offer takes a seat at once (primary key (volunteer, channel, slot) — a concurrent second
  claim of the same seat fails and moves on to the next candidate); accepting keeps the seat,
  declining or missing frees it and routes again. A missed offer makes the volunteer away for a few
  minutes and tells them by SMS (a job).
* Every decision is recorded in the access log (ids only).

Services flush, never commit. Timeouts and escalations are jobs on the durable runner.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts.models import User
from app.audit import service as audit
from app.audit.service import Actor
from app.cases.models import Case
from app.clock import Clock
from app.events import service as live
from app.jobs.service import enqueue
from app.publicid import new_public_id
from app.routing.models import OPEN_TASK_STATES, Offer, OfferState, Seat, Task, TaskState
from app.volunteers.models import Presence
from app.volunteers.service import OnCall, mark_away, on_call_now

ROUTER = Actor("system:routing")
EMERGENCY_PRIORITY = 100


@dataclass(frozen=True)
class RoutingTimes:
    """Offer lengths and escalation steps (settings)."""

    voice_ring_seconds: float = 20
    voice_whisper_seconds: float = 8
    chat_offer_seconds: float = 30
    missed_offer_away_minutes: float = 5
    language_match_seconds: float = 60
    max_queue_seconds: float = 600

    @classmethod
    def from_settings(cls, settings: Any) -> RoutingTimes:
        return cls(
            voice_ring_seconds=settings.voice_ring_seconds,
            voice_whisper_seconds=settings.voice_whisper_seconds,
            chat_offer_seconds=settings.chat_offer_seconds,
            missed_offer_away_minutes=settings.missed_offer_away_minutes,
            language_match_seconds=settings.language_match_seconds,
            max_queue_seconds=settings.max_queue_seconds,
        )

    def offer_length(self, channel: str) -> timedelta:
        if channel == "voice":
            return timedelta(seconds=self.voice_ring_seconds + self.voice_whisper_seconds)
        return timedelta(seconds=self.chat_offer_seconds)


def capacity_of(candidate: OnCall, channel: str) -> int:
    view = candidate.presence
    if channel == "voice":
        return view.voice_capacity if view.takes_voice else 0
    return view.chat_capacity if view.takes_chat else 0


async def create_task(
    session: AsyncSession,
    clock: Clock,
    times: RoutingTimes,
    *,
    channel: str,
    language: str,
    emergency: bool = False,
    contact_id: uuid.UUID | None = None,
    case_id: uuid.UUID | None = None,
    drill: bool = False,
    public_id: str | None = None,
) -> Task:
    now = clock.now()
    task = Task(
        public_id=public_id or new_public_id("TK"),
        contact_id=contact_id,
        case_id=case_id,
        channel=channel,
        language=language,
        emergency=emergency,
        priority=EMERGENCY_PRIORITY if emergency else 0,
        state=TaskState.queued,
        escalation_step=0,
        interpreter_needed=False,
        drill=drill,
        enqueued_at=now,
    )
    session.add(task)
    await session.flush()
    await enqueue(
        session,
        clock,
        "routing.escalate",
        {"task": task.public_id, "step": 1},
        run_at=now + timedelta(seconds=times.language_match_seconds),
        dedup_key=f"escalate:{task.public_id}:1",
    )
    audit.record(
        session,
        clock,
        actor=ROUTER,
        action="routing.task_created",
        object_type="task",
        object_id=task.public_id,
        details={"channel": channel, "language": language, "emergency": emergency},
    )
    await live.board_changed(session, task=task.public_id, state=task.state)
    return task


async def queue_position(session: AsyncSession, task: Task) -> int:
    """1-based position among open tasks of the channel, in our own order (not Twilio's FIFO)."""
    ahead = await session.scalar(
        select(func.count())
        .select_from(Task)
        .where(
            Task.channel == task.channel,
            Task.state.in_([s.value for s in OPEN_TASK_STATES]),
            Task.id != task.id,
            (Task.priority > task.priority)
            | ((Task.priority == task.priority) & (Task.enqueued_at < task.enqueued_at))
            | (
                (Task.priority == task.priority)
                & (Task.enqueued_at == task.enqueued_at)
                & (Task.public_id < task.public_id)
            ),
        )
    )
    return int(ahead or 0) + 1


async def _excluded(session: AsyncSession, task: Task) -> set[uuid.UUID]:
    """Volunteers who already had this task (declined, missed, withdrawn) or hold it now."""
    return set(await session.scalars(select(Offer.volunteer_id).where(Offer.task_id == task.id)))


async def _seats_taken(session: AsyncSession, channel: str) -> dict[uuid.UUID, set[int]]:
    taken: dict[uuid.UUID, set[int]] = {}
    for volunteer_id, slot in (
        await session.execute(select(Seat.volunteer_id, Seat.slot).where(Seat.channel == channel))
    ).all():
        taken.setdefault(volunteer_id, set()).add(slot)
    return taken


def _idle_key(candidate: OnCall) -> tuple[int, datetime]:
    since = candidate.presence.state_changed_at
    return (0, since) if since is not None else (1, datetime.max.replace(tzinfo=None))


async def route(session: AsyncSession, clock: Clock, times: RoutingTimes, task: Task) -> Offer | None:
    """Offer `task` to the best free volunteer, or leave it queued. Returns the offer made."""
    if task.state != TaskState.queued or task.escalation_step >= 2:
        return None
    # Only available volunteers can take it (and, first, only those who speak the language).
    wanted = task.language if task.escalation_step == 0 else None
    candidates = [
        c
        for c in await on_call_now(session, clock, language=wanted, available_only=True)
        if capacity_of(c, task.channel) > 0
    ]
    if task.escalation_step == 0:
        candidates = [c for c in candidates if task.language in c.languages]
    excluded = await _excluded(session, task)
    taken = await _seats_taken(session, task.channel)
    candidates = [c for c in candidates if c.user_id not in excluded]
    candidates.sort(key=_idle_key)
    for candidate in candidates:
        used = taken.get(candidate.user_id, set())
        free = [slot for slot in range(capacity_of(candidate, task.channel)) if slot not in used]
        if not free:
            continue
        now = clock.now()
        try:
            async with session.begin_nested():
                session.add(
                    Seat(
                        volunteer_id=candidate.user_id,
                        channel=task.channel,
                        slot=free[0],
                        task_id=task.id,
                        taken_at=now,
                    )
                )
                await session.flush()
        except IntegrityError:
            continue  # someone else took that seat a moment ago: next candidate
        offer = Offer(
            public_id=new_public_id("OF"),
            task_id=task.id,
            volunteer_id=candidate.user_id,
            channel=task.channel,
            state=OfferState.pending,
            created_at=now,
            expires_at=now + times.offer_length(task.channel),
        )
        session.add(offer)
        task.state = TaskState.offered
        await session.flush()
        await enqueue(
            session,
            clock,
            "routing.offer_timeout",
            {"offer": offer.public_id},
            run_at=offer.expires_at,
            dedup_key=f"offer-timeout:{offer.public_id}",
        )
        if task.channel == "voice":
            # Ringing the volunteer is a REST call to Twilio: never on a webhook's response path.
            await enqueue(
                session,
                clock,
                "calls.dial_volunteer",
                {"offer": offer.public_id},
                dedup_key=f"dial:{offer.public_id}",
                max_attempts=3,
            )
        audit.record(
            session,
            clock,
            actor=ROUTER,
            action="routing.offered",
            object_type="task",
            object_id=task.public_id,
            details={
                "offer": offer.public_id,
                "volunteer": candidate.public_id,
                "step": task.escalation_step,
            },
        )
        await live.publish(
            session, live.user_audience(candidate.public_id), "offer", id=offer.public_id, state=offer.state
        )
        await live.board_changed(session, task=task.public_id, state=task.state)
        return offer
    return None


async def _release_seat(session: AsyncSession, task: Task, now: datetime | None = None) -> None:
    """Free the task's seat; its volunteer is idle from now on (longest-idle-first ordering), so
    whoever just finished goes to the back of the line instead of being offered everything."""
    freed = list(
        await session.scalars(
            delete(Seat)
            .where(Seat.task_id == task.id)
            .returning(Seat.volunteer_id)
            .execution_options(synchronize_session=False)
        )
    )
    if freed and now is not None:
        await session.execute(
            update(Presence)
            .where(Presence.user_id.in_(freed))
            .values(state_changed_at=now)
            .execution_options(synchronize_session=False)
        )


async def accept(session: AsyncSession, clock: Clock, offer: Offer) -> Task | None:
    """The volunteer accepts: conditional on the offer still pending and not expired."""
    now = clock.now()
    changed = await session.execute(
        update(Offer)
        .where(Offer.id == offer.id, Offer.state == OfferState.pending, Offer.expires_at > now)
        .values(state=OfferState.accepted, answered_at=now)
        .returning(Offer.id)
        .execution_options(synchronize_session=False)
    )
    if changed.first() is None:
        return None
    task = await session.get(Task, offer.task_id, populate_existing=True)
    assert task is not None
    task.state = TaskState.assigned
    task.assigned_to_id = offer.volunteer_id
    task.assigned_at = now
    if task.case_id is not None:
        # The volunteer who took the contact holds its case (unless it already has someone).
        case = await session.get(Case, task.case_id)
        if case is not None and case.assignee_id is None:
            case.assignee_id = offer.volunteer_id
            case.updated_at = now
    audit.record(
        session,
        clock,
        actor=ROUTER,
        action="routing.accepted",
        object_type="task",
        object_id=task.public_id,
        details={"offer": offer.public_id},
    )
    await live.to_user(session, offer.volunteer_id, "offer", id=offer.public_id, state=OfferState.accepted)
    await live.board_changed(session, task=task.public_id, state=task.state)
    return task


async def _close_offer(session: AsyncSession, clock: Clock, offer: Offer, state: OfferState) -> Task | None:
    now = clock.now()
    changed = await session.execute(
        update(Offer)
        .where(Offer.id == offer.id, Offer.state == OfferState.pending)
        .values(state=state, answered_at=now)
        .returning(Offer.id)
        .execution_options(synchronize_session=False)
    )
    if changed.first() is None:
        return None
    task = await session.get(Task, offer.task_id, populate_existing=True)
    assert task is not None
    await _release_seat(session, task, now)
    if task.state == TaskState.offered:
        task.state = TaskState.queued
    audit.record(
        session,
        clock,
        actor=ROUTER,
        action=f"routing.{state.value}",
        object_type="task",
        object_id=task.public_id,
        details={"offer": offer.public_id},
    )
    await live.to_user(session, offer.volunteer_id, "offer", id=offer.public_id, state=state.value)
    await live.board_changed(session, task=task.public_id, state=task.state)
    return task


async def decline(session: AsyncSession, clock: Clock, times: RoutingTimes, offer: Offer) -> Offer | None:
    """Declined: the seat is freed and the task goes to the next volunteer. Returns the next offer."""
    task = await _close_offer(session, clock, offer, OfferState.declined)
    return await route(session, clock, times, task) if task is not None else None


async def expire(
    session: AsyncSession, clock: Clock, times: RoutingTimes, offer: Offer, *, rang_out: bool = False
) -> Offer | None:
    """Nobody answered in time: the volunteer goes away for a few minutes and is told by SMS —
    unless their phone never rang (our own backlog), when the offer just moves on."""
    await session.refresh(offer)
    if not rang_out and offer.expires_at > clock.now():
        return None  # the ring started late and extended the offer; its own timeout follows
    task = await _close_offer(session, clock, offer, OfferState.missed)
    if task is None:
        return None
    volunteer = await session.get(User, offer.volunteer_id)
    rang = rang_out or offer.channel != "voice" or offer.rung_at is not None
    if (
        rang
        and volunteer is not None
        and await mark_away(
            session, clock, volunteer, until=clock.now() + timedelta(minutes=times.missed_offer_away_minutes)
        )
    ):
        await enqueue(
            session,
            clock,
            "routing.missed_offer_notice",
            {"volunteer": volunteer.public_id},
            dedup_key=f"missed-notice:{offer.public_id}",
        )
    return await route(session, clock, times, task)


async def finish(
    session: AsyncSession, clock: Clock, task: Task, state: TaskState = TaskState.completed
) -> None:
    """The contact ended (or was abandoned / overflowed): pending offers withdrawn, seat freed."""
    now = clock.now()
    withdrawn = (
        await session.execute(
            update(Offer)
            .where(Offer.task_id == task.id, Offer.state == OfferState.pending)
            .values(state=OfferState.withdrawn, answered_at=now)
            .returning(Offer.public_id, Offer.volunteer_id)
            .execution_options(synchronize_session=False)
        )
    ).all()
    await _release_seat(session, task, now)
    task.state = state
    task.finished_at = now
    audit.record(
        session,
        clock,
        actor=ROUTER,
        action=f"routing.{state.value}",
        object_type="task",
        object_id=task.public_id,
    )
    for offer_public_id, volunteer_id in withdrawn:
        await live.to_user(session, volunteer_id, "offer", id=offer_public_id, state=OfferState.withdrawn)
    await live.board_changed(session, task=task.public_id, state=task.state)


async def escalate(
    session: AsyncSession, clock: Clock, times: RoutingTimes, task: Task, step: int
) -> Offer | None:
    """Language match → anyone (interpreter flagged) → overflow, on the task's own clock."""
    if task.state not in (TaskState.queued, TaskState.offered) or task.escalation_step >= step:
        return None
    task.escalation_step = step
    if step == 1:
        task.interpreter_needed = True
        await enqueue(
            session,
            clock,
            "routing.escalate",
            {"task": task.public_id, "step": 2},
            run_at=task.enqueued_at + timedelta(seconds=times.max_queue_seconds),
            dedup_key=f"escalate:{task.public_id}:2",
        )
    audit.record(
        session,
        clock,
        actor=ROUTER,
        action="routing.escalated",
        object_type="task",
        object_id=task.public_id,
        details={"step": step},
    )
    await live.board_changed(session, task=task.public_id, state=task.state)
    if step >= 2:
        return None  # the voice/chat flow hands it to overflow or voicemail
    return await route(session, clock, times, task) if task.state == TaskState.queued else None


async def next_task_for(
    session: AsyncSession, clock: Clock, times: RoutingTimes, channel: str
) -> Offer | None:
    """When a volunteer frees up: offer the highest-priority, oldest queued task that finds someone."""
    queued = list(
        await session.scalars(
            select(Task)
            .where(Task.state == TaskState.queued, Task.channel == channel, Task.escalation_step < 2)
            .order_by(Task.priority.desc(), Task.enqueued_at, Task.public_id)
            .limit(50)
        )
    )
    for task in queued:
        offer = await route(session, clock, times, task)
        if offer is not None:
            return offer
    return None


async def offer_waiting_work(
    session: AsyncSession, clock: Clock, times: RoutingTimes, *, limit: int = 10
) -> int:
    """Someone became free (came on, went available): offer queued contacts until nobody takes more."""
    made = 0
    for channel in ("voice", "chat"):
        while made < limit and await next_task_for(session, clock, times, channel) is not None:
            made += 1
    return made


async def requeue(session: AsyncSession, clock: Clock, times: RoutingTimes, task: Task) -> Offer | None:
    """An accepted voice contact never connected (the caller was not dequeued in time): the
    volunteer's acceptance is withdrawn, their seat freed, and the caller offered to someone else."""
    if task.state != TaskState.assigned:
        return None
    now = clock.now()
    volunteer_id = task.assigned_to_id
    await session.execute(
        update(Offer)
        .where(Offer.task_id == task.id, Offer.state == OfferState.accepted)
        .values(state=OfferState.withdrawn, answered_at=now)
        .execution_options(synchronize_session=False)
    )
    await _release_seat(session, task, now)
    task.state, task.assigned_to_id, task.assigned_at = TaskState.queued, None, None
    if task.case_id is not None:
        case = await session.get(Case, task.case_id)
        if case is not None and case.assignee_id == volunteer_id:
            case.assignee_id = None
    audit.record(
        session,
        clock,
        actor=ROUTER,
        action="routing.requeued",
        object_type="task",
        object_id=task.public_id,
    )
    await live.board_changed(session, task=task.public_id, state=task.state)
    return await route(session, clock, times, task)


async def offer_rang(session: AsyncSession, clock: Clock, times: RoutingTimes, offer: Offer) -> None:
    """The volunteer's phone is ringing now: the offer's full length counts from this moment."""
    now = clock.now()
    offer.rung_at = now
    offer.expires_at = now + times.offer_length(offer.channel)
    await enqueue(
        session,
        clock,
        "routing.offer_timeout",
        {"offer": offer.public_id},
        run_at=offer.expires_at,
        dedup_key=f"offer-timeout:{offer.public_id}:rung",
    )
