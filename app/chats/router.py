"""The messaging webhooks. Rule: every message a caller sends is kept, even with the database down.

`/twilio/messaging/incoming` does its work (store, route, answer) under a 1.5 s deadline; if the
database fails or is too slow, the message goes to the sealed, fsynced outage spool and Twilio gets
an empty 200 — the spool is ingested exactly once when the database is back. The number's Fallback
URL, `/twilio/messaging/fallback`, spools without touching the database at all.
`/twilio/messaging/status` records delivery statuses in rank order.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from app.chats import service
from app.chats.jobs import schedule_deletion
from app.chats.spool import SpooledMessage
from app.referrals import service as referrals
from app.reports import service as reports
from app.reports.service import Reply
from app.webhooks.deps import TwilioSignature, twilio_webhook, webhook_context
from telephony import twiml
from telephony.payloads import IncomingMessage, MessageStatusCallback

log = logging.getLogger("hotline.chats")
signed = APIRouter(
    prefix="/twilio/messaging", tags=["twilio"], include_in_schema=False, dependencies=[TwilioSignature]
)
DEADLINE_SECONDS = 1.5
TWIML = "application/xml"
_stragglers: set[asyncio.Task[Any]] = set()


def reply(text: str | Reply | None) -> Response:
    """One <Message> up to 1,600 characters; beyond that, numbered parts. A report's reply asks
    Twilio for its status, so that the message can be deleted there once sent."""
    if isinstance(text, Reply):
        body = twiml.message_replies(twiml.split_message(text.text), status_callback=text.status_callback)
    else:
        body = twiml.message_replies(twiml.split_message(text)) if text else twiml.empty_response()
    return Response(content=body, media_type=TWIML)


async def spool(request: Request, event: IncomingMessage, drill: bool, received_at: Any = None) -> None:
    message = SpooledMessage(
        message_sid=event.message_sid,
        from_address=event.from_,
        body=event.body,
        media_count=event.num_media,
        opt_out_type=event.opt_out_type,
        drill=drill,
        received_at=(received_at or request.app.state.clock.now()).isoformat(),
    )
    await asyncio.to_thread(request.app.state.spool.append, message)


@signed.post("/incoming")
async def incoming(
    request: Request, event: Annotated[IncomingMessage, twilio_webhook(IncomingMessage)]
) -> Response:
    drill = webhook_context(request).drill
    state = request.app.state
    received_at = state.clock.now()  # arrival, not when slow work got round to it

    async def work() -> str | Reply | None:
        async with state.database.sessionmaker() as session:
            text = await service.receive(
                state,
                session,
                message_sid=event.message_sid,
                from_address=event.from_,
                body=event.body,
                media_count=event.num_media,
                opt_out_type=event.opt_out_type,
                drill=drill,
                received_at=received_at,
            )
            stored = await service.message_by_sid(session, state.keys, event.message_sid)
            if stored is not None:
                await schedule_deletion(session, state.clock, state.settings, stored)
            await session.commit()
            return text

    task = asyncio.create_task(work())
    done, _ = await asyncio.wait({task}, timeout=DEADLINE_SECONDS)
    if task in done and task.exception() is None:
        return reply(task.result())
    if task not in done:
        # Slow, not necessarily failed: let it finish (the spool copy is deduplicated on ingest).
        _stragglers.add(task)
        task.add_done_callback(_stragglers.discard)
    log.error(
        "message spooled: database unavailable",
        extra={"error": type(task.exception()).__name__ if task in done else "DeadlineExceeded"},
    )
    await spool(request, event, drill, received_at)
    return reply(None)


@signed.post("/fallback")
async def fallback(
    request: Request, event: Annotated[IncomingMessage, twilio_webhook(IncomingMessage)]
) -> Response:
    """The number's messaging Fallback URL: spool, no database."""
    await spool(request, event, webhook_context(request).drill)
    return reply(None)


@signed.post("/status")
async def status(
    request: Request, event: Annotated[MessageStatusCallback, twilio_webhook(MessageStatusCallback)]
) -> Response:
    state = request.app.state

    async def work() -> None:
        # A callback can overtake the send job's commit of the message's SID: look again for a
        # few seconds (past the answer's deadline, in the background); `chats.reconcile_statuses`
        # catches anything still missed.
        for delay in (0.0, 0.2, 0.5, 1.0, 2.0, 4.0):
            await asyncio.sleep(delay)
            async with state.database.sessionmaker() as session:
                message = await service.record_status(
                    state, session, event.message_sid, event.message_status, event.error_code
                )
                if message is None:
                    # Not a chat message: perhaps a referral texted to a caller.
                    if await referrals.record_sms_status(
                        state, session, event.message_sid, event.message_status, event.error_code
                    ):
                        await session.commit()
                        return
                    continue
                if message.status_rank >= 5:
                    await schedule_deletion(session, state.clock, state.settings, message)
                await session.commit()
                return

    task = asyncio.create_task(work())
    done, _ = await asyncio.wait({task}, timeout=DEADLINE_SECONDS)
    if task not in done:
        _stragglers.add(task)
        task.add_done_callback(_stragglers.discard)
    elif task.exception() is not None:
        # Twilio does not retry status callbacks: the status is lost, the message itself is not.
        log.error("message status not recorded", extra={"error": type(task.exception()).__name__})
    return Response(content=twiml.empty_response(), media_type=TWIML)


@signed.post("/cleanup")
async def cleanup(
    request: Request, event: Annotated[MessageStatusCallback, twilio_webhook(MessageStatusCallback)]
) -> Response:
    """Status callback of a reply that must not stay at Twilio (an anonymous report's): once
    Twilio has sent it, its deletion is scheduled (retried while Twilio still delivers it)."""
    state = request.app.state
    final = event.message_status in ("delivered", "undelivered", "failed", "read")
    if final or event.message_status == "sent":
        # "sent" may be the last status a carrier reports: delete then too, a little later.
        delay = None if final else timedelta(minutes=10)
        try:
            async with state.database.sessionmaker() as session:
                await reports.delete_at_twilio(session, state, "message", event.message_sid, delay=delay)
                await session.commit()
        except Exception as exc:  # Twilio does not retry status callbacks; say so, loudly
            log.error("report reply not scheduled for deletion", extra={"error": type(exc).__name__})
    return Response(content=twiml.empty_response(), media_type=TWIML)
