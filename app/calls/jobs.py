"""REST calls of the voice flow, on the durable jobs runner (never on a webhook's response path)."""

from __future__ import annotations

import base64
import contextlib
import logging
import uuid
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

from sqlalchemy import select

from app.access.policy import Principal, Purpose, system_may_open
from app.accounts.models import User
from app.calls.callbacks import finish_attempt
from app.calls.flow import caller_hung_up, release_volunteer_legs
from app.calls.models import Call, Callback, CallbackState, Voicemail
from app.contacts.models import Contact
from app.jobs.runner import JobContext, PermanentFailure, RetryLater, registry
from app.jobs.service import enqueue
from app.routing.models import Offer, Task, TaskState
from app.routing.service import RoutingTimes, offer_rang, requeue
from app.volunteers.models import PhoneVerification
from app.volunteers.service import VERIFICATION_CALL_JOB, verification_reference
from telephony.rest import CallNotInProgress, TelephonyError
from telephony.rest import NotFound as NotFoundAtTwilio

log = logging.getLogger("hotline.calls")
DIALLER = Principal.system("voice-dialler")
VOICEMAIL_STORE = Principal.system("voicemail-store")


def _telephony(ctx: JobContext) -> Any:
    client = ctx.services.get("telephony")
    if client is None:
        raise PermanentFailure("Twilio is not configured")
    return client


async def volunteer_number(ctx: JobContext, volunteer: User) -> str:
    """A volunteer's phone, opened through the broker for dialling them (audited)."""
    number: str = await ctx.services["broker"].reveal_for_system(
        ctx.session,
        DIALLER,
        volunteer,
        "phone",
        purpose=Purpose.dial_volunteer,
        object_type="user",
        object_id=volunteer.public_id,
    )
    return number


@registry.register("calls.dial_volunteer", timeout=30)
async def dial_volunteer(ctx: JobContext, payload: dict[str, Any]) -> None:
    """Ring the volunteer with the hotline's number; the answered leg hears the whisper."""
    settings = ctx.services["settings"]
    offer = await ctx.session.scalar(select(Offer).where(Offer.public_id == payload["offer"]))
    if offer is None or offer.state != "pending":
        return
    volunteer = await ctx.session.get(User, offer.volunteer_id)
    if volunteer is None or volunteer.phone is None:
        raise PermanentFailure("volunteer has no phone")
    client = _telephony(ctx)
    number = await volunteer_number(ctx, volunteer)
    base = settings.public_url
    await client.create_call(
        to=number,
        from_=settings.twilio_number,
        url=f"{base}/twilio/voice/whisper?offer={offer.public_id}",
        status_callback=f"{base}/twilio/voice/leg-status?offer={offer.public_id}",
        timeout=int(settings.voice_ring_seconds),
    )
    # After the REST call, so no write lock is held while Twilio answers (SQLite).
    await offer_rang(ctx.session, ctx.clock, RoutingTimes.from_settings(settings), offer)


@registry.register("calls.dequeue_caller", timeout=30)
async def dequeue_caller(ctx: JobContext, payload: dict[str, Any]) -> None:
    """Take the accepted caller out of Twilio's queue, by CallSid, into the task's conference."""
    settings = ctx.services["settings"]
    task = await ctx.session.scalar(select(Task).where(Task.public_id == payload["task"]))
    if task is None or task.contact_id is None:
        return
    call = await ctx.session.scalar(select(Call).where(Call.task_id == task.id))
    contact = await ctx.session.get(Contact, task.contact_id)
    if call is None or contact is None:
        return
    if call.queue_sid is None:
        # The first waitUrl poll records the queue; an offer can be accepted before that lands.
        raise RetryLater(1.0, "queue_unknown")
    client = _telephony(ctx)
    call_sid = await ctx.services["broker"].reveal_for_system(
        ctx.session,
        DIALLER,
        contact,
        "twilio_sid",
        purpose=Purpose.call_control,
        object_type="contact",
        object_id=contact.public_id,
    )
    await client.dequeue_call(
        call.queue_sid, call_sid, f"{settings.public_url}/twilio/voice/connect?task={task.public_id}"
    )


@registry.register("calls.store_voicemail", timeout=60)
async def store_voicemail(ctx: JobContext, payload: dict[str, Any]) -> None:
    """Download the message, seal it under the case's voicemail key and store it. Its deletion at
    Twilio is enqueued in the same transaction, so it can only run once the sealed copy is stored."""
    voicemail = await ctx.session.scalar(select(Voicemail).where(Voicemail.public_id == payload["voicemail"]))
    if voicemail is None or voicemail.state != "fetching" or voicemail.recording_sid is None:
        return
    client = _telephony(ctx)
    recording_sid = await ctx.services["broker"].reveal_for_system(
        ctx.session,
        VOICEMAIL_STORE,
        voicemail,
        "recording_sid",
        purpose=Purpose.store_voicemail,
        object_type="voicemail",
        object_id=voicemail.public_id,
    )
    try:
        audio = await client.fetch_recording_audio(recording_sid)
    except NotFoundAtTwilio as exc:
        voicemail.state = "failed"
        raise PermanentFailure("the recording is not at Twilio") from exc
    except TelephonyError as exc:
        raise RetryLater(30.0, "recording_unavailable") from exc
    encoded = base64.b64encode(audio).decode("ascii")
    await ctx.services["sealer"].seal(ctx.session, voicemail, "audio", encoded)
    voicemail.audio_type = "audio/wav"
    voicemail.state = "stored"
    voicemail.stored_at = ctx.clock.now()
    await enqueue(
        ctx.session,
        ctx.clock,
        "calls.delete_recording",
        {"voicemail": voicemail.public_id},
        dedup_key=f"delete-recording:{voicemail.public_id}",
        max_attempts=12,
    )


@registry.register("calls.delete_recording", timeout=30)
async def delete_recording(ctx: JobContext, payload: dict[str, Any]) -> None:
    """Delete a stored voicemail's recording at Twilio (a recording already gone counts as deleted)."""
    voicemail = await ctx.session.scalar(select(Voicemail).where(Voicemail.public_id == payload["voicemail"]))
    if voicemail is None or voicemail.deleted_at_twilio is not None or voicemail.recording_sid is None:
        return
    if voicemail.audio is None:
        raise PermanentFailure("refusing to delete a recording whose audio is not stored")
    client = _telephony(ctx)
    recording_sid = await ctx.services["broker"].reveal_for_system(
        ctx.session,
        VOICEMAIL_STORE,
        voicemail,
        "recording_sid",
        purpose=Purpose.twilio_cleanup,
        object_type="voicemail",
        object_id=voicemail.public_id,
    )
    with contextlib.suppress(NotFoundAtTwilio):
        await client.delete_recording(recording_sid)
    voicemail.deleted_at_twilio = ctx.clock.now()


@registry.register("calls.place_callback", timeout=30)
async def place_callback(ctx: JobContext, payload: dict[str, Any]) -> None:
    """Ring the volunteer who claimed the callback, from the hotline's number; their whisper then
    dials the caller."""
    settings = ctx.services["settings"]
    callback = await ctx.session.scalar(select(Callback).where(Callback.public_id == payload["callback"]))
    if callback is None or callback.state != CallbackState.claimed or callback.claimed_by_id is None:
        return
    volunteer = await ctx.session.get(User, callback.claimed_by_id)
    if volunteer is None or volunteer.phone is None:
        await finish_attempt(ctx.session, ctx.clock, callback, "volunteer-unavailable")
        return
    client = _telephony(ctx)
    number = await volunteer_number(ctx, volunteer)
    base = settings.public_url
    await client.create_call(
        to=number,
        from_=settings.twilio_number,
        url=f"{base}/twilio/voice/callback-whisper?callback={callback.public_id}",
        status_callback=f"{base}/twilio/voice/callback-leg-status?callback={callback.public_id}",
        timeout=int(settings.voice_ring_seconds),
    )


@registry.register("calls.check_connected", timeout=30)
async def check_connected(ctx: JobContext, payload: dict[str, Any]) -> None:
    """A volunteer accepted, but the caller never reached the conference (the dequeue failed, or
    the accepting leg's answer was lost): free the volunteer and, if the caller is still queued,
    offer them to someone else."""
    task = await ctx.session.scalar(select(Task).where(Task.public_id == payload["task"]))
    if task is None or task.state != TaskState.assigned:
        return
    call = await ctx.session.scalar(select(Call).where(Call.task_id == task.id))
    if call is None or call.state == "connected":
        return
    log.warning("accepted caller never connected", extra={"task": task.public_id})
    await release_volunteer_legs(ctx.session, ctx.clock, task)
    await requeue(ctx.session, ctx.clock, RoutingTimes.from_settings(ctx.services["settings"]), task)


@registry.register("calls.release_volunteer", timeout=30)
async def release_volunteer(ctx: JobContext, payload: dict[str, Any]) -> None:
    """Hang up a volunteer's leg whose caller will not arrive (a leg already gone counts as done)."""
    offer = await ctx.session.scalar(select(Offer).where(Offer.public_id == payload["offer"]))
    if offer is None or offer.leg_sid is None:
        return
    client = _telephony(ctx)
    leg_sid = await ctx.services["broker"].reveal_for_system(
        ctx.session,
        DIALLER,
        offer,
        "leg_sid",
        purpose=Purpose.call_control,
        object_type="offer",
        object_id=offer.public_id,
    )
    if leg_sid is None:  # shredded with its task: nothing left to address
        return
    with contextlib.suppress(NotFoundAtTwilio, CallNotInProgress):
        await client.hang_up_call(leg_sid)


FINAL_CALL_STATES = frozenset({"completed", "busy", "failed", "no-answer", "canceled"})
RECONCILE_AFTER_SECONDS = 120
RECONCILER = Principal.system("voice-reconciler")


@registry.register("calls.reconcile", timeout=120)
async def reconcile(ctx: JobContext, payload: dict[str, Any]) -> None:
    """The safety net for a status callback whose work was lost (its webhook failed outright):
    ask Twilio about every voice contact still open after a while, and end those whose caller is
    gone — freeing their volunteer's seat. One audited batch reveal of the CallSids per round."""
    client = ctx.services.get("telephony")
    if client is None:
        return
    cutoff = ctx.clock.now() - timedelta(seconds=RECONCILE_AFTER_SECONDS)
    rows = (
        await ctx.session.execute(
            select(Task, Contact)
            .join(Contact, Contact.id == Task.contact_id)
            .where(
                Task.channel == "voice",
                Task.state.in_([TaskState.queued, TaskState.offered, TaskState.assigned]),
                Task.enqueued_at < cutoff,
            )
            .order_by(Task.enqueued_at)
            .limit(50)
        )
    ).all()
    if not rows:
        return
    if not system_may_open(RECONCILER, Purpose.call_control, {"contact.twilio_sid"}):
        raise PermanentFailure("policy does not allow call control")
    sids = await ctx.services["broker"].reveal_rows(
        ctx.session,
        RECONCILER,
        [contact for _, contact in rows],
        "twilio_sid",
        purpose=Purpose.call_control,
        action="system.reveal",
        object_type="contact",
        object_id="reconcile",
    )
    ended = []
    for (task, _contact), sid in zip(rows, sids, strict=True):
        if not sid:
            continue
        try:
            status = (await client.fetch_call(sid)).status
        except NotFoundAtTwilio:
            status = "completed"  # deleted at Twilio: long over
        except TelephonyError:
            continue  # Twilio unreachable: next round
        if status in FINAL_CALL_STATES:
            ended.append(task.id)
    env = SimpleNamespace(state=SimpleNamespace(clock=ctx.clock, settings=ctx.services["settings"]))
    for task_id in ended:
        call = await ctx.session.scalar(select(Call).where(Call.task_id == task_id))
        if call is not None:
            log.warning("voice contact ended without its status callback", extra={"call_state": call.state})
            await caller_hung_up(env, ctx.session, call)


registry.every("calls.reconcile", lambda services: 60.0)


@registry.register(VERIFICATION_CALL_JOB, timeout=30)
async def verification_call(ctx: JobContext, payload: dict[str, Any]) -> None:
    """Call the volunteer's phone on file from the hotline's number; the answered call speaks the
    code (`/twilio/voice/verification`). The URL names the verification by a keyed reference,
    never by the code or the number."""
    settings = ctx.services["settings"]
    verification = await ctx.session.get(PhoneVerification, uuid.UUID(payload["verification_id"]))
    now = ctx.clock.now()
    if verification is None or verification.confirmed_at is not None or verification.expires_at <= now:
        return
    user = await ctx.session.get(User, verification.user_id)
    if user is None or user.phone is None:
        return
    client = _telephony(ctx)
    number = await volunteer_number(ctx, user)
    reference = verification_reference(ctx.services["keys"], verification.id)
    await client.create_call(
        to=number,
        from_=settings.twilio_number,
        url=f"{settings.public_url}/twilio/voice/verification?ref={reference}",
        timeout=int(settings.voice_ring_seconds) + 10,
    )
