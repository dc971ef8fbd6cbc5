"""The voice entry webhooks: signed like Twilio, deduplicated, and never without TwiML."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import sqlite3
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from app.calls.models import Call, WebhookReply
from app.db.engine import create_database
from app.routing.models import Task
from app.settings import Settings
from telephony.signature import sign
from telephony.twiml import check_context
from tests.support.canary import CanaryScan, LogCapture

BASE = "https://hotline.test"
CALLER = "+12025550147"


def call_params(call_sid: str, **extra: str) -> dict[str, str]:
    return {
        "CallSid": call_sid,
        "AccountSid": "AC" + "0" * 32,
        "From": CALLER,
        "To": "+15005550006",
        "CallStatus": "ringing",
        "Direction": "inbound",
        "ApiVersion": "2010-04-01",
        **extra,
    }


async def post(
    client: httpx.AsyncClient, settings: Settings, path: str, params: dict[str, str]
) -> httpx.Response:
    url = BASE + path
    token = settings.twilio_auth_tokens()[0]
    return await client.post(path, data=params, headers={"X-Twilio-Signature": sign(url, params, token)})


@contextlib.contextmanager
def no_collector_pause() -> Iterator[None]:
    """A wall-clock bound on one request should measure the request, not a full collection of the
    garbage a long test session piles up (late in CI that can take a large part of a second)."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def new_sid() -> str:
    return "CA" + uuid.uuid4().hex


def verbs(xml: str) -> list[str]:
    return [element.tag for element in ET.fromstring(xml).iter()][1:]


async def rows(app: FastAPI, model: type) -> int:
    async with app.state.database.sessionmaker() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def test_incoming_call_gets_the_language_menu_and_a_sealed_row(
    app: FastAPI, client: httpx.AsyncClient, settings: Settings
) -> None:
    response = await post(client, settings, "/twilio/voice/incoming", call_params(new_sid()))
    assert response.status_code == 200 and response.headers["content-type"].startswith("application/xml")
    check_context(response.text, "voice")
    gather = ET.fromstring(response.text).find("Gather")
    assert gather is not None and gather.get("action") == f"{BASE}/twilio/voice/language?attempt=1"
    assert CALLER not in response.text and CALLER[1:] not in response.text
    async with app.state.database.sessionmaker() as session:
        call = (await session.scalars(select(Call))).one()
    assert call.from_number is not None and CALLER.encode() not in call.from_number.blob


async def test_language_then_emergency_queues_the_caller(
    app: FastAPI, client: httpx.AsyncClient, settings: Settings
) -> None:
    sid = new_sid()
    await post(client, settings, "/twilio/voice/incoming", call_params(sid))
    spanish = await post(client, settings, "/twilio/voice/language?attempt=1", call_params(sid, Digits="2"))
    check_context(spanish.text, "voice")
    assert "language=es" in spanish.text and "es-" in spanish.text
    urgent = await post(
        client, settings, "/twilio/voice/emergency?attempt=1&language=es", call_params(sid, Digits="9")
    )
    check_context(urgent.text, "voice")
    enqueue = ET.fromstring(urgent.text).find("Enqueue")
    assert enqueue is not None and "&task=TK-" in (enqueue.get("waitUrl") or "")
    assert CALLER not in urgent.text
    async with app.state.database.sessionmaker() as session:
        call = (await session.scalars(select(Call))).one()
        task = await session.get(Task, call.task_id)
    assert (call.language, call.emergency, call.state) == ("es", True, "queued")
    assert task is not None and task.emergency and task.language == "es"


async def test_no_key_replays_the_menu_then_defaults_to_english(
    app: FastAPI, client: httpx.AsyncClient, settings: Settings
) -> None:
    sid = new_sid()
    await post(client, settings, "/twilio/voice/incoming", call_params(sid))
    again = await post(client, settings, "/twilio/voice/language?attempt=1", call_params(sid))
    assert "attempt=2" in again.text and "Gather" in verbs(again.text)
    await post(client, settings, "/twilio/voice/language?attempt=2", call_params(sid))
    last = await post(client, settings, "/twilio/voice/language?attempt=3", call_params(sid))
    assert "language=en" in last.text


async def test_replays_get_the_same_bytes_and_create_one_row(
    app: FastAPI, client: httpx.AsyncClient, settings: Settings
) -> None:
    sid = new_sid()
    responses = await asyncio.gather(
        *[post(client, settings, "/twilio/voice/incoming", call_params(sid)) for _ in range(5)]
    )
    assert {r.status_code for r in responses} == {200}
    assert len({r.content for r in responses}) == 1
    later = await post(client, settings, "/twilio/voice/incoming", call_params(sid))
    assert later.content == responses[0].content
    # The first webhook's answer is the same bytes for every call, so it is recomputed, not stored.
    assert await rows(app, Call) == 1 and await rows(app, WebhookReply) == 0


async def test_bad_signature_is_refused_with_no_side_effects(
    app: FastAPI, client: httpx.AsyncClient, settings: Settings
) -> None:
    params = call_params(new_sid())
    forged = await client.post("/twilio/voice/incoming", data=params, headers={"X-Twilio-Signature": "AAAA"})
    missing = await client.post("/twilio/voice/incoming", data=params)
    assert forged.status_code == missing.status_code == 403
    assert await rows(app, Call) == 0


async def test_malformed_signed_payload_still_gets_twiml(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    response = await post(
        client, settings, "/twilio/voice/incoming", {"From": CALLER, "CallSid": "not-a-sid"}
    )
    assert response.status_code == 200
    check_context(response.text, "voice")
    assert "Hangup" in verbs(response.text)


async def test_database_down_still_answers_in_time(
    app: FastAPI, client: httpx.AsyncClient, settings: Settings
) -> None:
    working = app.state.database
    app.state.database = create_database("postgresql://nobody@127.0.0.1:1/none")
    try:
        with no_collector_pause():
            started = time.monotonic()
            response = await post(client, settings, "/twilio/voice/incoming", call_params(new_sid()))
            elapsed = time.monotonic() - started
        fallback = await post(client, settings, "/twilio/voice/fallback", call_params(new_sid()))
        poll = {"QueueSid": "QU" + "1" * 32, "QueuePosition": "1", "QueueTime": "5", "CurrentQueueSize": "1"}
        holding = await post(
            client, settings, "/twilio/voice/wait?task=TK-2222-2222", call_params(new_sid(), **poll)
        )
    finally:
        await app.state.database.dispose()
        app.state.database = working
    assert response.status_code == 200 and elapsed < 2.0
    assert settings.overflow_number in response.text and "Dial" in verbs(response.text)
    assert fallback.status_code == 200 and fallback.text == response.text
    # A queued caller keeps their place: a wait document may not dial, so it holds instead.
    check_context(holding.text, "wait_url")
    assert "Dial" not in verbs(holding.text) and "Pause" in verbs(holding.text)


async def test_database_locked_answers_within_the_deadline(
    app: FastAPI, client: httpx.AsyncClient, settings: Settings, backend: str
) -> None:
    if backend != "sqlite":
        pytest.skip("holding SQLite's write lock from outside")
    path = make_url(settings.database_url).database or ""
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        with no_collector_pause():
            started = time.monotonic()
            response = await post(client, settings, "/twilio/voice/incoming", call_params(new_sid()))
            elapsed = time.monotonic() - started
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert response.status_code == 200 and 1.4 <= elapsed < 2.0
    assert "Dial" in verbs(response.text)


async def test_voice_webhooks_leak_no_plaintext(
    app: FastAPI, client: httpx.AsyncClient, settings: Settings, captured_logs: LogCapture
) -> None:
    scan = CanaryScan(app.state.database, captured_logs)
    params: dict[str, Any] = call_params(new_sid())
    params["From"] = scan.canaries.phone(0)
    responses = [await post(client, settings, "/twilio/voice/incoming", params)]
    responses.append(
        await post(client, settings, "/twilio/voice/language?attempt=1", {**params, "Digits": "1"})
    )
    scan.responses = [r.content for r in responses]
    assert await scan.hits() == []


async def test_after_the_maximum_wait_the_caller_leaves_for_the_overflow_line(
    app: FastAPI, client: httpx.AsyncClient, settings: Settings
) -> None:
    from datetime import timedelta

    from app.jobs.runner import JobRunner, registry

    sid = new_sid()
    await post(client, settings, "/twilio/voice/incoming", call_params(sid))
    await post(client, settings, "/twilio/voice/language?attempt=1", call_params(sid, Digits="3"))
    queued = await post(client, settings, "/twilio/voice/emergency?attempt=1&language=cmn", call_params(sid))
    wait_url = ET.fromstring(queued.text).find("Enqueue").get("waitUrl")  # type: ignore[union-attr]
    path = wait_url.removeprefix(BASE)  # type: ignore[union-attr]
    poll = {"QueueSid": "QU" + "1" * 32, "QueuePosition": "1", "QueueTime": "5", "CurrentQueueSize": "1"}
    holding = await post(client, settings, path, call_params(sid, **poll))
    check_context(holding.text, "wait_url")
    assert "cmn-CN" in holding.text and "1" in holding.text  # our position, in Mandarin
    # Nobody on call: the task escalates (any volunteer), then to overflow after the maximum wait.
    runner = JobRunner(app.state.database, app.state.clock, registry=registry, services=app.state.services)
    app.state.clock.advance(timedelta(seconds=settings.max_queue_seconds + 1))
    await runner.run_until_idle()
    leaving = await post(client, settings, path, call_params(sid, **{**poll, "QueueTime": "601"}))
    check_context(leaving.text, "wait_url")
    assert verbs(leaving.text) == ["Leave"]
    exit_path = ET.fromstring(queued.text).find("Enqueue").get("action").removeprefix(BASE)  # type: ignore[union-attr]
    overflow = await post(client, settings, exit_path, call_params(sid, QueueResult="leave", QueueTime="601"))
    assert "Dial" in verbs(overflow.text) and settings.overflow_number in overflow.text
    async with app.state.database.sessionmaker() as session:
        task = (await session.scalars(select(Task))).one()
    assert task.state == "overflowed"


async def test_replayed_and_reordered_webhooks_make_one_contact_and_one_case(
    app: FastAPI, client: httpx.AsyncClient, settings: Settings
) -> None:
    from app.cases.models import Case
    from app.contacts.models import Contact

    sid = new_sid()
    await post(client, settings, "/twilio/voice/incoming", call_params(sid))
    # The language answer arrives twice, the second after the emergency answer (reordered).
    await post(client, settings, "/twilio/voice/language?attempt=1", call_params(sid, Digits="2"))
    emergency = "/twilio/voice/emergency?attempt=1&language=es"
    first = await asyncio.gather(
        *[post(client, settings, emergency, call_params(sid, Digits="9")) for _ in range(5)]
    )
    late = await post(client, settings, "/twilio/voice/language?attempt=1", call_params(sid, Digits="2"))
    again = await post(client, settings, emergency, call_params(sid, Digits="9"))
    assert {r.status_code for r in first} == {200} and late.status_code == 200
    assert len({r.content for r in [*first, again]}) == 1
    assert await rows(app, Contact) == 1 and await rows(app, Case) == 1 and await rows(app, Task) == 1
