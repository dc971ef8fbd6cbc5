"""REST calls of the voice flow, on the durable jobs runner (never on a webhook's response path)."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import select

from app.access.policy import Principal, Purpose
from app.accounts.models import User
from app.calls.models import Call
from app.contacts.models import Contact
from app.jobs.runner import JobContext, PermanentFailure, RetryLater, registry
from app.routing.models import Offer, Task

log = logging.getLogger("hotline.calls")
DIALLER = Principal.system("voice-dialler")


def _telephony(ctx: JobContext) -> Any:
    client = ctx.services.get("telephony")
    if client is None:
        raise PermanentFailure("Twilio is not configured")
    return client


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
    number = await ctx.services["broker"].reveal_for_system(
        ctx.session,
        DIALLER,
        volunteer,
        "phone",
        purpose=Purpose.dial_volunteer,
        object_type="user",
        object_id=volunteer.public_id,
    )
    base = settings.public_url
    await client.create_call(
        to=number,
        from_=settings.twilio_number,
        url=f"{base}/twilio/voice/whisper?offer={offer.public_id}",
        status_callback=f"{base}/twilio/voice/leg-status?offer={offer.public_id}",
        timeout=int(settings.voice_ring_seconds),
    )


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
