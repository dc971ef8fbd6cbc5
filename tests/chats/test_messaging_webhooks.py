"""The messaging webhooks, signed exactly as Twilio signs them: first contact and language menu,
replays stored once, STOP/HELP, delivery statuses in rank order, and the outage spool."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from app.access.policy import Principal, Purpose
from app.callers.models import Caller
from app.chats import service
from app.chats.models import ChatMessage, Conversation, ConversationState
from app.routing.models import Task
from app.settings import Settings
from telephony.signature import sign
from tests.support.canary import CanaryScan, LogCapture

BASE = "https://hotline.test"
CALLER = "+12025550161"


def message_params(body: str, *, sid: str | None = None, from_: str = CALLER, **extra: str) -> dict[str, str]:
    sid = sid or "SM" + uuid.uuid4().hex
    return {
        "MessageSid": sid,
        "SmsSid": sid,
        "SmsMessageSid": sid,
        "AccountSid": "AC" + "0" * 32,
        "From": from_,
        "To": "+15005550006",
        "Body": body,
        "NumMedia": "0",
        "NumSegments": "1",
        "SmsStatus": "received",
        "ApiVersion": "2010-04-01",
        **extra,
    }


async def post(
    client: httpx.AsyncClient, settings: Settings, path: str, params: dict[str, str]
) -> httpx.Response:
    token = settings.twilio_auth_tokens()[0]
    return await client.post(
        path, data=params, headers={"X-Twilio-Signature": sign(BASE + path, params, token)}
    )


async def count(app: FastAPI, model: type) -> int:
    async with app.state.database.sessionmaker() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def test_first_message_gets_the_menu_then_the_language_routes_it(
    app: FastAPI, client: httpx.AsyncClient, settings: Settings
) -> None:
    first = await post(client, settings, "/twilio/messaging/incoming", message_params("ayuda por favor"))
    assert first.status_code == 200 and "<Message>" in first.text
    assert "Español" in first.text and "English" in first.text
    menu_again = await post(client, settings, "/twilio/messaging/incoming", message_params("hola?"))
    assert "Español" in menu_again.text
    chosen = await post(client, settings, "/twilio/messaging/incoming", message_params(" 2 "))
    assert "voluntario" in chosen.text
    async with app.state.database.sessionmaker() as session:
        conversation = (await session.scalars(select(Conversation))).one()
        task = (await session.scalars(select(Task))).one()
    assert conversation.state == ConversationState.waiting and conversation.language == "es"
    assert task.channel == "chat" and task.language == "es"
    assert await count(app, ChatMessage) == 3
    later = await post(
        client, settings, "/twilio/messaging/incoming", message_params("mi esposo fue detenido")
    )
    assert later.status_code == 200 and "<Message>" not in later.text  # the volunteer answers, not us
    assert await count(app, ChatMessage) == 4


async def test_replays_concurrent_and_repeated_store_one_message(
    app: FastAPI, client: httpx.AsyncClient, settings: Settings
) -> None:
    params = message_params("hello")
    answers = await asyncio.gather(
        *[post(client, settings, "/twilio/messaging/incoming", params) for _ in range(5)]
    )
    assert all(a.status_code == 200 for a in answers)
    assert await count(app, ChatMessage) == 1 and await count(app, Conversation) == 1
    assert sum("<Message>" in a.text for a in answers) == 1  # the menu once, not five times
    await post(client, settings, "/twilio/messaging/incoming", params)
    assert await count(app, ChatMessage) == 1


async def test_stop_is_respected_and_help_answered(
    app: FastAPI, client: httpx.AsyncClient, settings: Settings
) -> None:
    await post(client, settings, "/twilio/messaging/incoming", message_params("hi"))
    helped = await post(client, settings, "/twilio/messaging/incoming", message_params("help"))
    assert "STOP" in helped.text
    stopped = await post(
        client, settings, "/twilio/messaging/incoming", message_params("STOP", OptOutType="STOP")
    )
    assert "<Message>" not in stopped.text  # Twilio confirms STOP itself
    async with app.state.database.sessionmaker() as session:
        caller = (await session.scalars(select(Caller))).one()
        conversation = (await session.scalars(select(Conversation))).one()
    assert caller.opted_out_at is not None
    assert conversation.state == ConversationState.closed and conversation.closed_reason == "stop"
    await post(client, settings, "/twilio/messaging/incoming", message_params("START", OptOutType="START"))
    async with app.state.database.sessionmaker() as session:
        assert (await session.scalars(select(Caller))).one().opted_out_at is None


async def test_delivery_statuses_only_move_forward(
    app: FastAPI, client: httpx.AsyncClient, settings: Settings
) -> None:
    await post(client, settings, "/twilio/messaging/incoming", message_params("hi"))
    async with app.state.database.sessionmaker() as session:
        conversation = (await session.scalars(select(Conversation))).one()
        outbound = ChatMessage(
            public_id="MS-2222-3333",
            conversation_id=conversation.id,
            case_id=conversation.case_id,
            direction="out",
            kind="text",
            sid_hash=service.sid_hash(app.state.keys, "SM" + "a" * 32),
            length=3,
            status="queued",
            status_rank=2,
            created_at=app.state.clock.now(),
            updated_at=app.state.clock.now(),
        )
        session.add(outbound)
        await session.commit()
    for status in ("delivered", "sent", "queued", "read", "sent"):
        params = {
            "MessageSid": "SM" + "a" * 32,
            "AccountSid": "AC" + "0" * 32,
            "MessageStatus": status,
            "From": "+15005550006",
            "To": CALLER,
        }
        answered = await post(client, settings, "/twilio/messaging/status", params)
        assert answered.status_code == 200
    async with app.state.database.sessionmaker() as session:
        message = (
            await session.scalars(select(ChatMessage).where(ChatMessage.public_id == "MS-2222-3333"))
        ).one()
    assert message.status == "read"


async def test_database_down_spools_and_ingests_exactly_once(
    app: FastAPI, client: httpx.AsyncClient, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the database failing, messages are sealed into the spool and Twilio gets 200; the
    ingest (run twice, as after a worker restart mid-ingest) stores each exactly once."""
    real = app.state.database.sessionmaker

    def broken() -> Any:
        raise ConnectionError("database down")

    monkeypatch.setattr(app.state.database, "sessionmaker", broken)
    sids = []
    for body in ("first", "second", "third"):
        params = message_params(body)
        sids.append(params["MessageSid"])
        answered = await post(client, settings, "/twilio/messaging/incoming", params)
        assert answered.status_code == 200 and "<Response" in answered.text
    fallback = message_params("via fallback")
    sids.append(fallback["MessageSid"])
    assert (await post(client, settings, "/twilio/messaging/fallback", fallback)).status_code == 200
    assert (await post(client, settings, "/twilio/messaging/fallback", fallback)).status_code == 200  # replay
    spool = app.state.spool
    assert spool.files()
    raw = b"".join(p.read_bytes() for p in spool.files())
    assert b"first" not in raw and CALLER.encode() not in raw and CALLER[1:].encode() not in raw
    monkeypatch.setattr(app.state.database, "sessionmaker", real)
    # A worker dies after ingesting part of a file: the rename already happened.
    first_file = spool.files()[0]
    claimed = spool.claim(first_file)
    partial = next(iter(spool.read(claimed)))
    assert partial[1].body == "first"
    state = app.state
    async with state.database.sessionmaker() as session:
        await service.receive(
            state,
            session,
            message_sid=partial[1].message_sid,
            from_address=partial[1].from_address,
            body="first",
        )
        await session.commit()
    assert await service.ingest_spool(state, state.database, spool) == 3  # the three not yet in
    assert await service.ingest_spool(state, state.database, spool) == 0
    assert spool.files() == []
    async with state.database.sessionmaker() as session:
        stored = list(await session.scalars(select(ChatMessage).where(ChatMessage.direction == "in")))
        assert len(stored) == 4
        bodies = await state.broker.reveal_rows(
            session,
            Principal.system("test"),
            stored,
            "body",
            purpose=Purpose.send_message,
            action="test.reveal",
            object_type="conversation",
            object_id="test",
        )
    assert sorted(b or "" for b in bodies) == ["first", "second", "third", "via fallback"]


async def test_messaging_routes_leak_no_plaintext(
    app: FastAPI, client: httpx.AsyncClient, settings: Settings, captured_logs: LogCapture
) -> None:
    scan = CanaryScan(app.state.database, captured_logs)
    caller = scan.canaries.phone(0)
    responses = []
    for body in (scan.canaries.note, "2", scan.canaries.name):
        responses.append(
            await post(client, settings, "/twilio/messaging/incoming", message_params(body, from_=caller))
        )
    responses.append(
        await post(
            client,
            settings,
            "/twilio/messaging/fallback",
            message_params(scan.canaries.facility, from_=caller),
        )
    )
    spooled = b"".join(p.read_bytes() for p in app.state.spool.files())
    scan.responses = [r.content for r in responses] + [spooled]
    assert await scan.hits() == []
