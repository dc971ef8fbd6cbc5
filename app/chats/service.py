"""The chat flow: SMS and WhatsApp conversations, from the first message to a volunteer's replies.

* Every inbound message is stored once (keyed hash of its MessageSid), its body sealed under the
  case's `chat_messages` key, before anything else happens.
* A first message opens a case, a chat contact and a conversation, and is answered with the
  language menu; the chosen language routes the conversation as a chat task (offers as for calls,
  accepted in the console).
* STOP is Twilio's (it confirms and blocks our texts, error 21610): we note the opt-out, close the
  conversation and never answer. START lifts it. HELP gets the help text.
* A volunteer's reply is stored sealed and sent by a job; delivery statuses only move forward by
  Twilio's status rank. WhatsApp outside its 24-hour window: the reply is held and a configured
  template invites the caller to write back; their next message releases what was held.

Services flush, never commit (the broker's reveals commit their audit entries).
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit import service as audit
from app.audit.service import Actor
from app.callers.models import Caller
from app.callers.service import find_or_create_caller
from app.calls import prompts
from app.cases.models import Case
from app.cases.service import create_case
from app.chats.models import ChatMessage, Conversation, ConversationState
from app.clock import Clock
from app.contacts.models import Channel, Contact
from app.contacts.service import create_contact, sid_hash
from app.errors import Conflict
from app.events import service as live
from app.jobs.service import enqueue
from app.publicid import new_public_id
from app.reports import service as reports
from app.routing import service as routing
from app.routing.models import Task, TaskState
from telephony.numbers import normalize_e164
from telephony.payloads import message_status_rank

CHAT_FLOW = Actor("system:chat")
MAX_BODY = 1600
WHATSAPP_WINDOW = timedelta(hours=24)
STOP_WORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"})
START_WORDS = frozenset({"START", "UNSTOP", "YES"})
HELP_WORDS = frozenset({"HELP", "INFO"})
TEXTS_FILE = Path(__file__).with_name("texts.json")


RIGHTS_MENU_MINUTES = 15


@cache
def _data() -> dict[str, Any]:
    return dict(json.loads(TEXTS_FILE.read_text(encoding="utf-8")))


def _texts() -> dict[str, dict[str, str]]:
    return {code: dict(values) for code, values in _data()["texts"].items()}


def keyword_language(kind: str, keyword: str, settings: Any) -> str | None:
    """The language of an SMS keyword of `kind` ("rights_keywords", "report_keywords"), or None.
    The setting of the same name (JSON, language → words) replaces the shipped list per language."""
    table: dict[str, list[str]] = dict(_data()[kind])
    table.update(getattr(settings, kind, None) or {})
    for language, words in table.items():
        if keyword in {w.strip().upper() for w in words}:
            return language
    return None


def rights_keyword_language(keyword: str, settings: Any) -> str | None:
    """The language a know-your-rights keyword asks in (`RIGHTS`, `DERECHOS`, `DWA`…), or None."""
    return keyword_language("rights_keywords", keyword, settings)


async def rights_reply(
    session: AsyncSession, conversation: Conversation, language: str, now: datetime
) -> str:
    """The topic menu of the reviewed texts in `language` (digits then answer it for a while)."""
    from app.rights import service as rights

    topics = await rights.servable_topics(session, language)
    if not topics:
        return text("rights_none", language)
    conversation.rights_language, conversation.rights_menu_at = language, now
    lines = [text("rights_menu", language)]
    for number, topic in enumerate(topics, start=1):
        served = await rights.current(session, topic, language)
        if served is not None:
            lines.append(f"{number} {served.title}")
    return "\n".join(lines)


async def rights_choice(
    session: AsyncSession, conversation: Conversation, choice: str, now: datetime
) -> str | None:
    """A digit answering a recent topic menu: the chosen reviewed text (title and body)."""
    from app.rights import service as rights

    if (
        conversation.rights_menu_at is None
        or conversation.rights_language is None
        or now - conversation.rights_menu_at > timedelta(minutes=RIGHTS_MENU_MINUTES)
        or not choice.isdigit()
    ):
        return None
    topics = await rights.servable_topics(session, conversation.rights_language)
    index = int(choice) - 1
    if not 0 <= index < len(topics):
        return None
    served = await rights.current(session, topics[index], conversation.rights_language)
    if served is None:
        return None
    conversation.rights_menu_at = None
    return f"{served.title}\n{served.body}"


def text(key: str, language: str | None) -> str:
    """A chat text in the caller's language (English where that language has none)."""
    table = _texts()
    return table.get(language or "en", {}).get(key) or table["en"][key]


def language_menu() -> str:
    """Welcome and menu in English and Spanish, then every language by its own name."""
    lines = [text("welcome", "en"), text("welcome", "es"), f"{text('menu', 'en')} / {text('menu', 'es')}"]
    catalogue = prompts.catalogue()
    for code in prompts.CATALOGUE_LANGUAGES:
        lines.append(f"{catalogue[code].menu_digit} {catalogue[code].endonym}")
    return "\n".join(lines)


def channel_of(address: str) -> Channel:
    return Channel.whatsapp if address.startswith("whatsapp:") else Channel.sms


def bare(address: str) -> str:
    return address.removeprefix("whatsapp:")


def address_for(channel: str, number: str) -> str:
    return f"whatsapp:{number}" if channel == Channel.whatsapp else number


async def open_conversation(session: AsyncSession, caller: Caller, channel: str) -> Conversation | None:
    return await session.scalar(
        select(Conversation)
        .where(
            Conversation.caller_id == caller.id,
            Conversation.channel == channel,
            Conversation.state != ConversationState.closed,
        )
        .order_by(Conversation.created_at.desc())
        .limit(1)
    )


async def already_received(session: AsyncSession, keys: Any, message_sid: str) -> bool:
    """Stored in a conversation, or taken into an anonymous report (then only its clean-up row
    at Twilio remembers it)."""
    if await message_by_sid(session, keys, message_sid) is not None:
        return True
    return await reports.already_received(session, keys, message_sid)


async def message_by_sid(session: AsyncSession, keys: Any, message_sid: str) -> ChatMessage | None:
    return await session.scalar(
        select(ChatMessage).where(ChatMessage.sid_hash == sid_hash(keys, message_sid))
    )


async def store_inbound(
    session: AsyncSession,
    sealer: Any,
    clock: Clock,
    conversation: Conversation,
    *,
    message_sid: str,
    body: str,
    media_count: int,
    received_at: datetime | None = None,
) -> ChatMessage:
    now = received_at or clock.now()
    message = ChatMessage(
        public_id=new_public_id("MS"),
        conversation_id=conversation.id,
        case_id=conversation.case_id,
        direction="in",
        kind="text",
        sid_hash=sid_hash(sealer.keys, message_sid),
        length=len(body),
        media_count=media_count,
        status="received",
        status_rank=message_status_rank("received"),
        created_at=now,
        updated_at=now,
    )
    await sealer.seal(session, message, "message_sid", message_sid)
    await sealer.seal(session, message, "body", body)
    session.add(message)
    conversation.last_inbound_at = max(conversation.last_inbound_at, now)
    conversation.last_activity_at = max(conversation.last_activity_at, now)
    await session.flush()
    assignee = await session.scalar(select(Case.assignee_id).where(Case.id == conversation.case_id))
    await live.to_user(session, assignee, "chat", id=conversation.public_id, message=message.public_id)
    return message


async def receive(
    state: Any,
    session: AsyncSession,
    *,
    message_sid: str,
    from_address: str,
    body: str,
    media_count: int = 0,
    opt_out_type: str | None = None,
    drill: bool = False,
    received_at: datetime | None = None,
) -> str | reports.Reply | None:
    """Handle one inbound message (idempotent by MessageSid); returns the reply text, if any (a
    report's reply comes with the status callback that has it deleted at Twilio once sent)."""
    sealer, clock, broker = state.sealer, state.clock, state.broker
    if await already_received(session, state.keys, message_sid):
        return None  # a replay: stored already, and the caller must not get the reply twice
    channel = channel_of(from_address)
    e164 = normalize_e164(bare(from_address))
    if e164 is None:
        return None  # no usable number: nothing we could ever reply to
    keyword = body.strip().upper()
    is_stop = opt_out_type == "STOP" or keyword in STOP_WORDS
    now = received_at or clock.now()
    if is_stop:
        await reports.end_dialogue(session, state.keys, e164)
    elif opt_out_type != "START":
        # An anonymous report is recognised before the caller is looked up: none of its
        # messages reads or writes a caller, conversation, contact or case row.
        report_reply = await reports.sms_step(
            state,
            session,
            channel=channel,
            e164=e164,
            message_sid=message_sid,
            body=body,
            drill=drill,
            now=now,
        )
        if report_reply is not False:
            return report_reply
    caller, _known = await find_or_create_caller(session, sealer, broker, clock, e164)
    if caller is None:
        return None
    conversation = await open_conversation(session, caller, channel)
    is_start = opt_out_type == "START" or (keyword in START_WORDS and caller.opted_out_at is not None)
    if is_stop or is_start:
        caller.opted_out_at = clock.now() if is_stop else None
        audit.record(
            session,
            clock,
            actor=CHAT_FLOW,
            action="caller.opted_out" if is_stop else "caller.opted_in",
            object_type="caller",
            object_id=caller.public_id,
        )
        if conversation is not None:
            await store_inbound(
                session,
                sealer,
                clock,
                conversation,
                message_sid=message_sid,
                body=body,
                media_count=media_count,
            )
            if is_stop:
                await close(state, session, conversation, reason="stop")
        return None  # Twilio answers STOP/START itself
    opened = conversation is None
    if conversation is None:
        case = await create_case(
            session, sealer, clock, actor=CHAT_FLOW, language="en", caller=caller, drill=drill
        )
        contact = await create_contact(
            session, sealer, clock, channel=channel, twilio_sid=message_sid, caller=caller, drill=drill
        )
        contact.case_id = case.id
        now = received_at or clock.now()
        conversation = Conversation(
            public_id=new_public_id("CV"),
            contact_id=contact.id,
            case_id=case.id,
            caller_id=caller.id,
            channel=channel,
            state=ConversationState.language,
            drill=drill,
            created_at=now,
            last_inbound_at=now,
            last_activity_at=now,
        )
        session.add(conversation)
        await session.flush()
        audit.record(
            session,
            clock,
            actor=CHAT_FLOW,
            action="chat.opened",
            object_type="conversation",
            object_id=conversation.public_id,
            details={"channel": channel, "case": case.public_id},
        )
    await store_inbound(
        session,
        sealer,
        clock,
        conversation,
        message_sid=message_sid,
        body=body,
        media_count=media_count,
        received_at=received_at,
    )
    if keyword in HELP_WORDS and not opened:
        return text("help", conversation.language)
    asked = rights_keyword_language(keyword, state.settings)
    if asked is not None:
        return None if caller.safe_to_text is False else await rights_reply(session, conversation, asked, now)
    if opened:
        return language_menu()
    chosen_text = await rights_choice(session, conversation, body.strip(), now)
    if chosen_text is not None:
        return None if caller.safe_to_text is False else chosen_text
    if conversation.state == ConversationState.language:
        chosen = prompts.language_for_digit(body.strip())
        if chosen is None:
            return language_menu()
        await start_routing(state, session, conversation, chosen)
        return text("waiting", chosen)
    if conversation.channel == Channel.whatsapp:
        await release_held(session, clock, conversation)
    return None


async def start_routing(state: Any, session: AsyncSession, conversation: Conversation, language: str) -> Task:
    clock = state.clock
    conversation.language = language
    case = await session.get(Case, conversation.case_id)
    contact = await session.get(Contact, conversation.contact_id)
    if case is not None:
        case.language = language
    if contact is not None:
        contact.language = language
    times = routing.RoutingTimes.from_settings(state.settings)
    task = await routing.create_task(
        session,
        clock,
        times,
        channel="chat",
        language=language,
        contact_id=conversation.contact_id,
        case_id=conversation.case_id,
        drill=conversation.drill,
    )
    conversation.task_id = task.id
    conversation.state = ConversationState.waiting
    await routing.route(session, clock, times, task)
    return task


async def task_accepted(session: AsyncSession, task: Task) -> None:
    """A volunteer accepted the chat's offer: the conversation is theirs now."""
    conversation = await session.scalar(select(Conversation).where(Conversation.task_id == task.id))
    if conversation is not None and conversation.state == ConversationState.waiting:
        conversation.state = ConversationState.active


async def close(state: Any, session: AsyncSession, conversation: Conversation, *, reason: str) -> None:
    """End the conversation and its task (abandoned if nobody had taken it)."""
    if conversation.state == ConversationState.closed:
        return
    clock = state.clock
    now = clock.now()
    conversation.state = ConversationState.closed
    conversation.closed_at, conversation.closed_reason = now, reason
    contact = await session.get(Contact, conversation.contact_id)
    if contact is not None and contact.ended_at is None:
        contact.ended_at, contact.outcome = now, f"closed:{reason}"
    if conversation.task_id is not None:
        task = await session.get(Task, conversation.task_id)
        if task is not None and task.state in (TaskState.queued, TaskState.offered, TaskState.assigned):
            final = TaskState.completed if task.state == TaskState.assigned else TaskState.abandoned
            await routing.finish(session, clock, task, final)
            await routing.next_task_for(
                session, clock, routing.RoutingTimes.from_settings(state.settings), "chat"
            )
    audit.record(
        session,
        clock,
        actor=CHAT_FLOW,
        action="chat.closed",
        object_type="conversation",
        object_id=conversation.public_id,
        details={"reason": reason},
    )


async def reply(
    state: Any, session: AsyncSession, conversation: Conversation, author: Any, body: str, *, actor: Actor
) -> ChatMessage:
    """A volunteer's reply: stored sealed at once, sent by a job."""
    if conversation.state == ConversationState.closed:
        raise Conflict("This conversation is closed.", code="conversation_closed")
    caller = await session.get(Caller, conversation.caller_id)
    if caller is None or caller.opted_out_at is not None:
        raise Conflict("The caller texted STOP: no more messages can be sent.", code="opted_out")
    if caller.safe_to_text is False:
        raise Conflict("The caller said texting them is not safe.", code="unsafe_to_text")
    clock = state.clock
    now = clock.now()
    message = ChatMessage(
        public_id=new_public_id("MS"),
        conversation_id=conversation.id,
        case_id=conversation.case_id,
        direction="out",
        kind="text",
        length=len(body),
        status="pending",
        status_rank=-1,
        author_id=author.id,
        created_at=now,
        updated_at=now,
    )
    await state.sealer.seal(session, message, "body", body)
    session.add(message)
    conversation.last_activity_at = now
    await session.flush()
    await enqueue(
        session, clock, "chats.send", {"message": message.public_id}, dedup_key=f"send:{message.public_id}"
    )
    audit.record(
        session,
        clock,
        actor=actor,
        action="chat.replied",
        object_type="conversation",
        object_id=conversation.public_id,
        details={"message": message.public_id},
    )
    return message


def outside_window(conversation: Conversation, now: datetime) -> bool:
    return conversation.channel == Channel.whatsapp and now - conversation.last_inbound_at > WHATSAPP_WINDOW


async def release_held(session: AsyncSession, clock: Clock, conversation: Conversation) -> None:
    """The caller wrote on WhatsApp: the window is open again, send what was held for it."""
    held = await session.scalars(
        select(ChatMessage).where(
            ChatMessage.conversation_id == conversation.id,
            ChatMessage.direction == "out",
            ChatMessage.status == "held",
        )
    )
    for message in held:
        message.status, message.status_rank = "pending", -1
        await enqueue(
            session,
            clock,
            "chats.send",
            {"message": message.public_id},
            dedup_key=f"send:{message.public_id}:{int(clock.now().timestamp())}",
        )


async def record_status(
    state: Any, session: AsyncSession, message_sid: str, status: str, error_code: int | None
) -> ChatMessage | None:
    """A delivery status: applied only if it ranks above the stored one (callbacks come out of order)."""
    message = await message_by_sid(session, state.keys, message_sid)
    if message is None:
        return None
    if error_code == 63016 and message.kind == "text":
        # WhatsApp's 24-hour window had closed: hold the reply, invite the caller with a template.
        conversation = await session.get(Conversation, message.conversation_id)
        message.status, message.status_rank, message.error_code = "held", -1, 63016
        if conversation is not None:
            await send_template(state, session, conversation)
        return message
    rank = message_status_rank(status)
    if rank <= message.status_rank:
        return message
    message.status, message.status_rank = status, rank
    message.error_code = error_code if error_code else message.error_code
    message.updated_at = state.clock.now()
    if error_code == 21610:
        conversation = await session.get(Conversation, message.conversation_id)
        caller = await session.get(Caller, conversation.caller_id) if conversation else None
        if caller is not None and caller.opted_out_at is None:
            caller.opted_out_at = state.clock.now()
    return message


async def send_template(state: Any, session: AsyncSession, conversation: Conversation) -> ChatMessage | None:
    """Queue the configured WhatsApp template (once per window) that asks the caller to write back."""
    if not state.settings.whatsapp_template_sid:
        return None
    pending = await session.scalar(
        select(ChatMessage).where(
            ChatMessage.conversation_id == conversation.id,
            ChatMessage.kind == "template",
            ChatMessage.created_at > conversation.last_inbound_at,
        )
    )
    if pending is not None:
        return pending
    now = state.clock.now()
    template = ChatMessage(
        public_id=new_public_id("MS"),
        conversation_id=conversation.id,
        case_id=conversation.case_id,
        direction="out",
        kind="template",
        length=0,
        status="pending",
        status_rank=-1,
        created_at=now,
        updated_at=now,
    )
    session.add(template)
    await session.flush()
    await enqueue(
        session,
        state.clock,
        "chats.send",
        {"message": template.public_id},
        dedup_key=f"send:{template.public_id}",
    )
    return template


async def system_reply(
    state: Any, session: AsyncSession, conversation: Conversation, body: str
) -> ChatMessage:
    """An automatic text (the language menu, "a volunteer will reply") sent by a job rather than in
    the webhook's answer — for messages taken from the outage spool."""
    now = state.clock.now()
    message = ChatMessage(
        public_id=new_public_id("MS"),
        conversation_id=conversation.id,
        case_id=conversation.case_id,
        direction="out",
        kind="system",
        length=len(body),
        status="pending",
        status_rank=-1,
        created_at=now,
        updated_at=now,
    )
    await state.sealer.seal(session, message, "body", body)
    session.add(message)
    await session.flush()
    await enqueue(
        session,
        state.clock,
        "chats.send",
        {"message": message.public_id},
        dedup_key=f"send:{message.public_id}",
    )
    return message


async def ingest_spool(state: Any, database: Any, spool: Any, *, limit_files: int = 20) -> int:
    """Take every spooled message into the database exactly once; returns how many were new."""
    from sqlalchemy.exc import IntegrityError

    ingested = 0
    for path in spool.files()[:limit_files]:
        claimed = spool.claim(path)
        for _sid_hash, spooled in spool.read(claimed):
            async with database.sessionmaker() as session:
                try:
                    if await already_received(session, state.keys, spooled.message_sid):
                        continue
                    text = await receive(
                        state,
                        session,
                        message_sid=spooled.message_sid,
                        from_address=spooled.from_address,
                        body=spooled.body,
                        media_count=spooled.media_count,
                        opt_out_type=spooled.opt_out_type,
                        drill=spooled.drill,
                        received_at=datetime.fromisoformat(spooled.received_at),
                    )
                    # A report's reply is never stored to be sent later (it may hold a reference
                    # code): a report spooled in an outage is filed without one.
                    if isinstance(text, str) and text:
                        stored = await message_by_sid(session, state.keys, spooled.message_sid)
                        conversation = (
                            await session.get(Conversation, stored.conversation_id)
                            if stored is not None
                            else None
                        )
                        if conversation is not None:
                            await system_reply(state, session, conversation, text)
                    await session.commit()
                    ingested += 1
                except IntegrityError:
                    await session.rollback()  # a concurrent ingester or a late webhook stored it first
        spool.remove(claimed)
    return ingested
