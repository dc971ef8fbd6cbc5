"""A whole SMS conversation through the fake Twilio: menu, language, a volunteer's chat offer,
replies sent by the jobs runner with delivery statuses arriving out of order; WhatsApp outside the
24-hour window (template, then the held reply once the caller writes back); STOP (21610)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import select

from app.accounts.models import User
from app.audit.service import Actor
from app.chats import service
from app.chats.models import ChatMessage, Conversation
from app.clock import SystemClock
from app.db.engine import Database
from app.main import create_app
from app.routing import service as routing
from app.routing.models import Offer
from telephony.fake import CallSimulator, FakeTwilio, NumberConfig
from tests.support.voice import HOTLINE, PUBLIC_URL, on_call_volunteer

CALLER = "+12025550162"
TEMPLATE = "HX" + "0" * 31 + "1"
VOLUNTEER = Actor("U-TEST-TEST", ("volunteer",))


@pytest.fixture
def fake() -> Iterator[FakeTwilio]:
    with FakeTwilio() as running:
        running.configure_number(NumberConfig.hotline(HOTLINE, PUBLIC_URL))
        yield running


@pytest.fixture
async def live_app(fake: FakeTwilio, make_settings: Any, database: Database) -> AsyncIterator[FastAPI]:
    settings = make_settings(
        public_url=PUBLIC_URL,
        twilio_account_sid=fake.account_sid,
        twilio_auth_token=fake.auth_token,
        twilio_api_url=fake.base_url,
        twilio_number=HOTLINE,
        jobs_enabled=True,
        jobs_poll_seconds=0.05,
        whatsapp_template_sid=TEMPLATE,
    )
    app = create_app(settings, clock=SystemClock(), database=database, run_jobs=True)
    async with app.router.lifespan_context(app):
        yield app


async def until(predicate: Any, timeout: float = 10.0) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await predicate()
        if value or asyncio.get_running_loop().time() > deadline:
            return value
        await asyncio.sleep(0.05)


async def accept_chat_offer(app: FastAPI) -> Conversation:
    async with app.state.database.sessionmaker() as session, session.begin():
        offer = (await session.scalars(select(Offer).where(Offer.channel == "chat"))).one()
        task = await routing.accept(session, app.state.clock, offer)
        assert task is not None
        await service.task_accepted(session, task)
        return (await session.scalars(select(Conversation))).one()


async def volunteer_replies(app: FastAPI, volunteer: str, body: str) -> str:
    async with app.state.database.sessionmaker() as session:
        conversation = (await session.scalars(select(Conversation))).one()
        author = (await session.scalars(select(User).where(User.public_id == volunteer))).one()
        message = await service.reply(app.state, session, conversation, author, body, actor=VOLUNTEER)
        await session.commit()
        return message.public_id


async def status_of(app: FastAPI, public_id: str) -> str:
    async with app.state.database.sessionmaker() as session:
        message = (await session.scalars(select(ChatMessage).where(ChatMessage.public_id == public_id))).one()
        return message.status


@pytest.mark.parametrize("order", ["reversed", "shuffled"])
async def test_an_sms_conversation_with_a_volunteer(live_app: FastAPI, fake: FakeTwilio, order: str) -> None:
    volunteer = await on_call_volunteer(live_app, "+12125550131", "es,en")
    async with CallSimulator(fake, app=live_app, time_scale=0.02, status_callback_order=order) as sim:
        menu = await sim.send_message(CALLER, HOTLINE, "necesito ayuda")
        assert menu.replies and "Español" in menu.replies[0]
        chosen = await sim.send_message(CALLER, HOTLINE, "2")
        assert chosen.replies and "voluntario" in chosen.replies[0]
        conversation = await accept_chat_offer(live_app)
        assert conversation.state == "active" and conversation.language == "es"
        first = await volunteer_replies(live_app, volunteer, "Hola, soy voluntaria. ¿Dónde está su esposo?")
        second = await volunteer_replies(live_app, volunteer, "Le puedo ayudar a encontrarlo.")

        async def both_delivered() -> bool:
            return {await status_of(live_app, first), await status_of(live_app, second)} == {"delivered"}

        assert await until(both_delivered), "replies not delivered"
        await sim.send_message(CALLER, HOTLINE, "En el centro de detención de Elizabeth")
        await sim.wait_idle(10)
    inbox = sim.inbox(CALLER)
    assert (
        "Hola, soy voluntaria. ¿Dónde está su esposo?" in inbox and "Le puedo ayudar a encontrarlo." in inbox
    )
    async with live_app.state.database.sessionmaker() as session:
        messages = list(await session.scalars(select(ChatMessage).order_by(ChatMessage.created_at)))
    assert [m.direction for m in messages] == ["in", "in", "out", "out", "in"]
    assert all(m.status == "delivered" for m in messages if m.direction == "out")


async def test_whatsapp_outside_the_window_gets_the_template_then_the_held_reply(
    live_app: FastAPI, fake: FakeTwilio
) -> None:
    volunteer = await on_call_volunteer(live_app, "+12125550132", "en")
    caller = f"whatsapp:{CALLER}"
    async with CallSimulator(fake, app=live_app, time_scale=0.02) as sim:
        await sim.send_message(caller, f"whatsapp:{HOTLINE}", "hello")
        await sim.send_message(caller, f"whatsapp:{HOTLINE}", "1")
        await accept_chat_offer(live_app)
        # A day passes without the caller writing (both our record and Twilio's window).
        async with live_app.state.database.sessionmaker() as session, session.begin():
            conversation = (await session.scalars(select(Conversation))).one()
            conversation.last_inbound_at -= timedelta(hours=25)
        with fake.store.lock:
            for key in list(fake.store.whatsapp_last_inbound):
                fake.store.whatsapp_last_inbound[key] -= timedelta(hours=25)
        held = await volunteer_replies(live_app, volunteer, "We found your brother.")

        async def template_sent() -> bool:
            return any(m.content_sid == TEMPLATE for m in fake.store.messages.values())

        assert await until(template_sent), "no template sent"
        assert await status_of(live_app, held) == "held"
        await sim.send_message(caller, f"whatsapp:{HOTLINE}", "yes?")

        async def delivered() -> bool:
            return await status_of(live_app, held) == "delivered"

        assert await until(delivered), "the held reply was not sent after the caller wrote back"
        await sim.wait_idle(10)
    assert "We found your brother." in sim.inbox(caller)


async def test_a_reply_to_a_caller_who_texted_stop_is_refused(live_app: FastAPI, fake: FakeTwilio) -> None:
    volunteer = await on_call_volunteer(live_app, "+12125550133", "en")
    async with CallSimulator(fake, app=live_app, time_scale=0.02) as sim:
        await sim.send_message(CALLER, HOTLINE, "hi")
        await sim.send_message(CALLER, HOTLINE, "1")
        await accept_chat_offer(live_app)
        # Twilio knows about the opt-out before we do (e.g. the STOP webhook was lost).
        fake.store.opt_out(CALLER)
        sent = await volunteer_replies(live_app, volunteer, "Are you safe?")

        async def failed() -> bool:
            return await status_of(live_app, sent) == "failed"

        assert await until(failed)
        await sim.wait_idle(5)
    async with live_app.state.database.sessionmaker() as session:
        message = (await session.scalars(select(ChatMessage).where(ChatMessage.public_id == sent))).one()
        assert message.error_code == 21610
        from app.callers.models import Caller

        assert (await session.scalars(select(Caller))).one().opted_out_at is not None
    with pytest.raises(Exception, match="STOP"):
        await volunteer_replies(live_app, volunteer, "Hello?")


async def test_messages_are_deleted_at_twilio_once_stored_when_configured(
    fake: FakeTwilio, make_settings: Any, database: Database
) -> None:
    settings = make_settings(
        public_url=PUBLIC_URL,
        twilio_account_sid=fake.account_sid,
        twilio_auth_token=fake.auth_token,
        twilio_api_url=fake.base_url,
        twilio_number=HOTLINE,
        jobs_enabled=True,
        jobs_poll_seconds=0.05,
        delete_messages_at_twilio=True,
    )
    app = create_app(settings, clock=SystemClock(), database=database, run_jobs=True)
    async with app.router.lifespan_context(app):
        volunteer = await on_call_volunteer(app, "+12125550134", "en")
        async with CallSimulator(fake, app=app, time_scale=0.02) as sim:
            await sim.send_message(CALLER, HOTLINE, "hello")
            await sim.send_message(CALLER, HOTLINE, "1")
            await accept_chat_offer(app)
            await volunteer_replies(app, volunteer, "How can we help?")

            async def all_gone() -> bool:
                async with app.state.database.sessionmaker() as session:
                    rows = list(await session.scalars(select(ChatMessage).where(ChatMessage.kind == "text")))
                return len(rows) == 3 and all(m.deleted_at_twilio is not None for m in rows)

            assert await until(all_gone, timeout=15), "messages not deleted at Twilio"
            await sim.wait_idle(10)
        remaining = [m for m in fake.store.messages.values() if m.body in ("hello", "1", "How can we help?")]
        assert remaining == []


async def test_nothing_is_texted_to_a_caller_marked_unsafe_to_text(
    live_app: FastAPI, fake: FakeTwilio
) -> None:
    from app.callers.models import Caller

    async with CallSimulator(fake, app=live_app, time_scale=0.02) as sim:
        await sim.send_message(CALLER, HOTLINE, "hi")
        async with live_app.state.database.sessionmaker() as session, session.begin():
            (await session.scalars(select(Caller))).one().safe_to_text = False
            conversation = (await session.scalars(select(Conversation))).one()
            automatic = await service.system_reply(live_app.state, session, conversation, "Automatic reply")

        async def failed() -> bool:
            return await status_of(live_app, automatic.public_id) == "failed"

        assert await until(failed)
        await sim.wait_idle(5)
    assert not [m for m in fake.store.messages.values() if m.body == "Automatic reply"]
