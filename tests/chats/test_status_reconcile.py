"""A delivery status callback that never reached us: the periodic job asks Twilio and catches up."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from app.chats import service
from app.chats.models import ChatMessage, Conversation
from app.clock import FrozenClock
from app.db.engine import Database
from app.jobs.runner import JobRunner, registry
from app.jobs.service import enqueue
from app.main import create_app
from telephony.fake import FakeTwilio

HOTLINE = "+12125550199"
CALLER = "+12025550164"


@pytest.fixture
def fake() -> Iterator[FakeTwilio]:
    with FakeTwilio() as running:
        yield running


async def test_a_lost_delivery_status_is_reconciled(
    fake: FakeTwilio, make_settings: Any, clock: FrozenClock, database: Database
) -> None:
    settings = make_settings(
        twilio_account_sid=fake.account_sid,
        twilio_auth_token=fake.auth_token,
        twilio_api_url=fake.base_url,
        twilio_number=HOTLINE,
    )
    app = create_app(settings, clock=clock, database=database, run_jobs=False)
    async with app.router.lifespan_context(app):
        state = app.state
        async with database.sessionmaker() as session:
            await service.receive(
                state, session, message_sid="SM" + "1" * 32, from_address=CALLER, body="hola"
            )
            await session.commit()
        async with database.sessionmaker() as session:
            conversation = (await session.scalars(select(Conversation))).one()
            reply = await service.system_reply(state, session, conversation, "Gracias")
            await session.commit()
        runner = JobRunner(database, clock, registry=registry, services=state.services)
        await runner.run_until_idle()  # chats.send: Twilio accepts it (status queued here)
        (sent,) = [m for m in fake.store.messages.values() if m.body == "Gracias"]
        fake.store.set_message_status(sent.sid, "delivered")  # its callbacks never arrive
        clock.advance(timedelta(minutes=2))
        async with database.sessionmaker() as session, session.begin():
            await enqueue(session, clock, "chats.reconcile_statuses", {})
        await runner.run_until_idle()
        async with database.sessionmaker() as session:
            message = (
                await session.scalars(select(ChatMessage).where(ChatMessage.public_id == reply.public_id))
            ).one()
        assert message.status == "delivered"
