"""Routing work on the durable jobs runner: offer timeouts, escalation steps, missed-offer notices."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import select

from app.access.policy import Principal, Purpose
from app.accounts.models import User
from app.jobs.runner import JobContext, registry
from app.routing import service
from app.routing.models import Offer, Task

log = logging.getLogger("hotline.routing")
NOTIFIER = Principal.system("routing-notice")
MISSED_OFFER_TEXT = (
    "Hotline: you missed a call offer, so you are set to away for a few minutes. "
    "Set yourself available again in the console when you are ready."
)


def routing_times(ctx: JobContext) -> service.RoutingTimes:
    return service.RoutingTimes.from_settings(ctx.services["settings"])


@registry.register("routing.offer_timeout", timeout=30)
async def offer_timeout(ctx: JobContext, payload: dict[str, Any]) -> None:
    offer = await ctx.session.scalar(select(Offer).where(Offer.public_id == payload["offer"]))
    if offer is not None:
        await service.expire(ctx.session, ctx.clock, routing_times(ctx), offer)


@registry.register("routing.escalate", timeout=30)
async def escalate(ctx: JobContext, payload: dict[str, Any]) -> None:
    task = await ctx.session.scalar(select(Task).where(Task.public_id == payload["task"]))
    if task is not None:
        await service.escalate(ctx.session, ctx.clock, routing_times(ctx), task, int(payload["step"]))


@registry.register("routing.missed_offer_notice", timeout=30)
async def missed_offer_notice(ctx: JobContext, payload: dict[str, Any]) -> None:
    """Text the volunteer that they were set away. Needs Twilio; without it there is nobody to
    send through, which is logged (development without Twilio credentials)."""
    client = ctx.services.get("telephony")
    settings = ctx.services["settings"]
    if client is None or not settings.twilio_number:
        log.warning(
            "missed-offer notice not sent: Twilio is not configured",
            extra={"volunteer": payload["volunteer"]},
        )
        return
    volunteer = await ctx.session.scalar(select(User).where(User.public_id == payload["volunteer"]))
    if volunteer is None or volunteer.phone is None:
        return
    number = await ctx.services["broker"].reveal_for_system(
        ctx.session,
        NOTIFIER,
        volunteer,
        "phone",
        purpose=Purpose.dial_volunteer,
        object_type="user",
        object_id=volunteer.public_id,
    )
    if number:
        await client.send_message(to=number, from_=settings.twilio_number, body=MISSED_OFFER_TEXT)
