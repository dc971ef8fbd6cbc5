"""Know-your-rights by SMS: a keyword in the caller's language returns the topic menu of reviewed
texts in that language; a number returns the text (numbered parts beyond 1,600 characters); a
caller marked unsafe to text gets nothing; nothing unreviewed is ever sent."""

from __future__ import annotations

import httpx
from fastapi import FastAPI
from sqlalchemy import select

from app.audit.service import Actor
from app.callers.models import Caller
from app.rights import service as rights
from app.rights.models import RightsText, RightsTopic
from tests.chats.test_messaging_webhooks import message_params, post
from tests.support.factories import make_user
from tests.support.voice import services_of

ADMIN = Actor("U-TEST-ADMN", ("admin",))


async def publish(app: FastAPI, topic: RightsTopic, language: str, title: str, body: str) -> None:
    async with app.state.database.sessionmaker() as session, session.begin():
        author = await make_user(session, services_of(app), roles="admin")
        reviewer = await make_user(session, services_of(app), roles="admin")
        text = await rights.add_version(
            session,
            app.state.clock,
            topic=topic,
            language=language,
            title=title,
            body=body,
            audio_url=None,
            author=author,
            actor=ADMIN,
        )
        await rights.review(session, app.state.clock, text, reviewer, None, actor=ADMIN)


async def test_haitian_creole_keyword_menu_and_text(app: FastAPI, client: httpx.AsyncClient) -> None:
    settings = app.state.settings
    none_yet = await post(client, settings, "/twilio/messaging/incoming", message_params("DWA"))
    assert "poko disponib" in none_yet.text  # no reviewed Haitian Creole text yet: nothing unreviewed is sent
    await publish(app, RightsTopic.at_the_door, "ht", "Si ajan imigrasyon vin lakay ou", "Pa louvri pòt la.")
    await publish(
        app, RightsTopic.right_to_lawyer, "ht", "Dwa ou a yon avoka", "Ou gen dwa pou w gen yon avoka."
    )
    await publish(app, RightsTopic.at_work, "es", "En el trabajo", "Mantenga la calma.")
    menu = await post(client, settings, "/twilio/messaging/incoming", message_params(" dwa "))
    assert "Konnen dwa ou" in menu.text
    assert "1 Si ajan imigrasyon vin lakay ou" in menu.text and "2 Dwa ou a yon avoka" in menu.text
    assert "En el trabajo" not in menu.text
    chosen = await post(client, settings, "/twilio/messaging/incoming", message_params("2"))
    assert "Ou gen dwa pou w gen yon avoka." in chosen.text
    # The menu was answered: the next digit is an ordinary message again (the language menu).
    again = await post(client, settings, "/twilio/messaging/incoming", message_params("2"))
    assert "Ou gen dwa" not in again.text


async def test_long_texts_are_split_and_numbered(app: FastAPI, client: httpx.AsyncClient) -> None:
    long_body = " ".join(["Usted tiene derecho a guardar silencio."] * 70)  # about 2,800 characters
    await publish(app, RightsTopic.in_the_street, "es", "En la calle", long_body)
    settings = app.state.settings
    await post(client, settings, "/twilio/messaging/incoming", message_params("DERECHOS"))
    chosen = await post(client, settings, "/twilio/messaging/incoming", message_params("1"))
    assert chosen.text.count("<Message>") == 2 and "(1/2)" in chosen.text and "(2/2)" in chosen.text


async def test_a_caller_marked_unsafe_to_text_gets_no_sms(app: FastAPI, client: httpx.AsyncClient) -> None:
    await publish(app, RightsTopic.at_work, "en", "At work", "Stay calm.")
    settings = app.state.settings
    await post(client, settings, "/twilio/messaging/incoming", message_params("hello"))
    async with app.state.database.sessionmaker() as session, session.begin():
        (await session.scalars(select(Caller))).one().safe_to_text = False
    asked = await post(client, settings, "/twilio/messaging/incoming", message_params("RIGHTS"))
    assert asked.status_code == 200 and "<Message>" not in asked.text
    async with app.state.database.sessionmaker() as session:
        assert (
            await session.scalars(select(RightsText).where(RightsText.language == "en"))
        ).first() is not None
