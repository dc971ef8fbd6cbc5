"""Chat work on the durable jobs runner: sending replies, deleting messages at Twilio, closing
conversations nobody has written in for a while."""

from __future__ import annotations

import logging
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

from sqlalchemy import select

from app.access.policy import Principal, Purpose, system_may_open
from app.callers.models import Caller
from app.chats import service
from app.chats.models import ChatMessage, Conversation, ConversationState
from app.contacts.service import sid_hash
from app.jobs.runner import JobContext, PermanentFailure, RetryLater, registry
from app.jobs.service import enqueue
from telephony.payloads import message_status_rank
from telephony.rest import NotFound as NotFoundAtTwilio
from telephony.rest import OptedOut, ResourceNotComplete, TelephonyError

log = logging.getLogger("hotline.chats")
SENDER = Principal.system("chat-sender")
CLEANER = Principal.system("twilio-cleanup")


def _state(ctx: JobContext) -> Any:
    """The pieces of app state the chat service uses, from the runner's services."""
    services = ctx.services
    return SimpleNamespace(
        settings=services["settings"],
        clock=ctx.clock,
        keys=services["keys"],
        sealer=services["sealer"],
        broker=services["broker"],
    )


@registry.register("chats.send", timeout=30)
async def send(ctx: JobContext, payload: dict[str, Any]) -> None:
    """Send one outbound message (a volunteer's reply, or the WhatsApp template)."""
    state = _state(ctx)
    message = await ctx.session.scalar(select(ChatMessage).where(ChatMessage.public_id == payload["message"]))
    if message is None or message.status != "pending":
        return
    conversation = await ctx.session.get(Conversation, message.conversation_id)
    caller = await ctx.session.get(Caller, conversation.caller_id) if conversation else None
    if conversation is None or caller is None:
        raise PermanentFailure("conversation gone")
    if caller.opted_out_at is not None:
        message.status, message.error_code = "failed", 21610
        return
    if caller.safe_to_text is False:
        message.status = "failed"  # the caller said texting them is unsafe: never sent
        return
    now = ctx.clock.now()
    if message.kind == "text" and service.outside_window(conversation, now):
        message.status = "held"  # released when the caller writes again
        await service.send_template(state, ctx.session, conversation)
        return
    client = ctx.services.get("telephony")
    if client is None:
        raise PermanentFailure("Twilio is not configured")
    number = await state.broker.reveal_for_system(
        ctx.session,
        SENDER,
        caller,
        "phone",
        purpose=Purpose.contact_caller,
        object_type="caller",
        object_id=caller.public_id,
    )
    body = ""
    if message.kind != "template":
        body = (
            await state.broker.reveal_for_system(
                ctx.session,
                SENDER,
                message,
                "body",
                purpose=Purpose.send_message,
                object_type="chat_message",
                object_id=message.public_id,
            )
            or ""
        )
    settings = state.settings
    to = service.address_for(conversation.channel, number)
    from_ = service.address_for(conversation.channel, settings.twilio_number)
    try:
        sid = await client.send_message(
            to=to,
            from_=from_,
            body=body,
            status_callback=f"{settings.public_url}/twilio/messaging/status",
            content_sid=settings.whatsapp_template_sid if message.kind == "template" else None,
        )
    except OptedOut:
        message.status, message.error_code = "failed", 21610
        caller.opted_out_at = caller.opted_out_at or now
        return
    except TelephonyError as exc:
        if exc.code is not None and exc.status is not None and 400 <= exc.status < 500:
            message.status, message.error_code = "failed", exc.code
            return
        raise RetryLater(5.0, "twilio_unavailable") from exc
    message.sid_hash = sid_hash(state.keys, sid)
    await state.sealer.seal(ctx.session, message, "message_sid", sid)
    if message_status_rank("queued") > message.status_rank:
        message.status, message.status_rank = "queued", message_status_rank("queued")
    message.updated_at = ctx.clock.now()


@registry.register("chats.delete_at_twilio", timeout=30)
async def delete_at_twilio(ctx: JobContext, payload: dict[str, Any]) -> None:
    """Delete a stored message at Twilio (setting `HOTLINE_DELETE_MESSAGES_AT_TWILIO`); Twilio
    refuses while a message is still being delivered (20009): try again later."""
    state = _state(ctx)
    message = await ctx.session.scalar(select(ChatMessage).where(ChatMessage.public_id == payload["message"]))
    if message is None or message.deleted_at_twilio is not None or message.message_sid is None:
        return
    client = ctx.services.get("telephony")
    if client is None:
        return
    sid = await state.broker.reveal_for_system(
        ctx.session,
        CLEANER,
        message,
        "message_sid",
        purpose=Purpose.twilio_cleanup,
        object_type="chat_message",
        object_id=message.public_id,
    )
    try:
        await client.delete_message(sid)
    except NotFoundAtTwilio:
        pass
    except ResourceNotComplete as exc:
        raise RetryLater(60.0, "message_in_progress") from exc
    message.deleted_at_twilio = ctx.clock.now()


@registry.register("chats.close_inactive", timeout=60)
async def close_inactive(ctx: JobContext, payload: dict[str, Any]) -> None:
    state = _state(ctx)
    cutoff = ctx.clock.now() - timedelta(minutes=state.settings.chat_inactivity_minutes)
    stale = await ctx.session.scalars(
        select(Conversation)
        .where(Conversation.state != ConversationState.closed, Conversation.last_activity_at < cutoff)
        .limit(200)
    )
    for conversation in list(stale):
        await service.close(state, ctx.session, conversation, reason="inactivity")


registry.every("chats.close_inactive", lambda services: 300.0)


async def schedule_deletion(session: Any, clock: Any, settings: Any, message: ChatMessage) -> None:
    if settings.delete_messages_at_twilio and message.sid_hash is not None:
        await enqueue(
            session,
            clock,
            "chats.delete_at_twilio",
            {"message": message.public_id},
            dedup_key=f"delete-message:{message.public_id}",
            max_attempts=20,
        )


@registry.register("chats.ingest_spool", timeout=120)
async def ingest_spool(ctx: JobContext, payload: dict[str, Any]) -> None:
    """Messages spooled during a database outage, into the database (exactly once)."""
    spool = ctx.services.get("spool")
    if spool is None or not spool.files():
        return
    count = await service.ingest_spool(_state(ctx), ctx.services["database"], spool)
    if count:
        log.warning("spooled messages ingested", extra={"count": count})


registry.every("chats.ingest_spool", lambda services: 10.0)


@registry.register("chats.reconcile_statuses", timeout=120)
async def reconcile_statuses(ctx: JobContext, payload: dict[str, Any]) -> None:
    """Ask Twilio for the status of our messages still short of a final one after a minute (a
    status callback is never retried by Twilio, and can arrive before we know the SID)."""
    client = ctx.services.get("telephony")
    if client is None:
        return
    state = _state(ctx)
    cutoff = ctx.clock.now() - timedelta(seconds=60)
    rows = list(
        await ctx.session.scalars(
            select(ChatMessage)
            .where(
                ChatMessage.direction == "out",
                ChatMessage.status_rank.between(0, 4),
                ChatMessage.sid_hash.is_not(None),
                ChatMessage.updated_at < cutoff,
                ChatMessage.created_at > ctx.clock.now() - timedelta(days=2),
            )
            .order_by(ChatMessage.updated_at)
            .limit(50)
        )
    )
    if not rows:
        return
    if not system_may_open(SENDER, Purpose.send_message, {"chat_message.sid"}):
        raise PermanentFailure("policy does not allow reading message SIDs")
    sids = await state.broker.reveal_rows(
        ctx.session,
        SENDER,
        rows,
        "message_sid",
        purpose=Purpose.send_message,
        action="system.reveal",
        object_type="chat_message",
        object_id="reconcile",
    )
    for message, sid in zip(rows, sids, strict=True):
        if not sid:
            continue
        try:
            info = await client.fetch_message(sid)
        except TelephonyError:
            continue
        await service.record_status(state, ctx.session, sid, info.status, info.error_code)
        message.updated_at = ctx.clock.now()


registry.every("chats.reconcile_statuses", lambda services: 60.0)
