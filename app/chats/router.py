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
from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from app.chats import service
from app.chats.jobs import schedule_deletion
from app.chats.spool import SpooledMessage
from app.referrals import service as referrals
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


def reply(text: str | None) -> Response:
    """One <Message> up to 1,600 characters; beyond that, numbered parts."""
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

    async def work() -> str | None:
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
