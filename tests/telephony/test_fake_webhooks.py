"""Twilio's webhook delivery rules as the fake applies them: signing, headers, retries, fallback, limits."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from twilio.request_validator import RequestValidator

from telephony.fake import (
    APPLICATION_ERROR,
    CallSimulator,
    FakeTwilio,
    NumberConfig,
    Party,
    Reply,
    ScriptedApp,
    WebhookSender,
    sign,
    twiml,
)

HOTLINE = "+18005550100"
CALLER = "+15551230000"

# Twilio's published vector (twilio-python tests/unit/test_request_validator.py).
VECTOR_URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
VECTOR_PARAMS = {
    "CallSid": "CA1234567890ABCDE",
    "Caller": "+14158675309",
    "Digits": "1234",
    "From": "+14158675309",
    "To": "+18005551212",
}
VECTOR_SIGNATURE = "RSOYDt4T1cUTdK1PDd93/VVr8B8="


@pytest.fixture(scope="module")
def server() -> Iterator[FakeTwilio]:
    with FakeTwilio() as fake:
        yield fake


@pytest.fixture
def fake(server: FakeTwilio) -> FakeTwilio:
    return server.reset()


@pytest.fixture
def app(fake: FakeTwilio) -> ScriptedApp:
    app = ScriptedApp(fake.auth_token)
    fake.configure_number(
        NumberConfig(HOTLINE, voice_url=app.url("/voice"), voice_fallback_url=app.url("/fallback"))
    )
    app.on("/fallback", twiml("<Say>Fallback speaking.</Say>"))
    return app


@pytest.fixture
async def sim(fake: FakeTwilio, app: ScriptedApp) -> AsyncIterator[CallSimulator]:
    async with CallSimulator(fake, app=app, time_scale=0.001, webhook_timeout=0.3) as sim:
        yield sim


def test_signing_matches_twilios_published_vector() -> None:
    assert sign("12345", VECTOR_URL, VECTOR_PARAMS) == VECTOR_SIGNATURE
    assert RequestValidator("12345").validate(VECTOR_URL, VECTOR_PARAMS, VECTOR_SIGNATURE)


async def test_sender_puts_the_vector_signature_on_the_wire(fake: FakeTwilio) -> None:
    target = ScriptedApp("12345", public_url="https://mycompany.com")
    target.on("/myapp.php", twiml())
    sender = WebhookSender("12345", fake.events, app=target)
    try:
        result = await sender.send(VECTOR_URL, dict(VECTOR_PARAMS), purpose="test")
    finally:
        await sender.aclose()
    received = target.requests[0]
    assert result.ok and received.signature_valid
    assert received.headers["x-twilio-signature"] == VECTOR_SIGNATURE
    assert received.url == VECTOR_URL and received.form == VECTOR_PARAMS


async def test_webhooks_carry_twilios_headers(app: ScriptedApp, sim: CallSimulator) -> None:
    app.on("/voice", twiml('<Gather numDigits="1"><Say>Key?</Say></Gather>'), twiml("<Hangup/>"))
    await sim.call(CALLER, HOTLINE, Party(digits=("5",)))
    first, second = app.to("/voice")
    for request in (first, second):
        headers = request.headers
        assert request.signature_valid and request.method == "POST"
        assert headers["user-agent"] == "TwilioProxy/1.1"
        assert headers["content-type"].startswith("application/x-www-form-urlencoded")
        assert headers["accept"] == "*/*" and headers["x-home-region"] == "us1"
        uuid.UUID(headers["i-twilio-idempotency-token"])
    assert first.headers["i-twilio-idempotency-token"] != second.headers["i-twilio-idempotency-token"]


async def test_a_timeout_is_retried_once_with_the_same_idempotency_token(
    app: ScriptedApp, sim: CallSimulator, fake: FakeTwilio
) -> None:
    release = asyncio.Event()
    app.on(
        "/voice",
        Reply(twiml("<Say>Slow first answer.</Say>"), hold=release),
        twiml("<Say>Retry answer.</Say>"),
    )
    call = await sim.call(CALLER, HOTLINE)
    release.set()  # the first handler is still running, as on Twilio; let it finish
    first, retry = app.to("/voice")
    token = first.headers["i-twilio-idempotency-token"]
    assert retry.headers["i-twilio-idempotency-token"] == token
    assert retry.headers["x-twilio-signature"] == first.headers["x-twilio-signature"]
    assert call.said == ["Retry answer."] and app.to("/fallback") == []
    attempts = fake.events.of("webhook", call.sid, purpose="voice")
    assert [(e["attempt"], e["outcome"], e["token"]) for e in attempts] == [
        (1, "rt", token),
        (2, "answered", token),
    ]


async def test_two_timeouts_request_the_fallback_with_11205(app: ScriptedApp, sim: CallSimulator) -> None:
    release = asyncio.Event()
    app.on("/voice", Reply(twiml(), hold=release))
    call = await sim.call(CALLER, HOTLINE)
    release.set()
    assert len(app.to("/voice")) == 2
    fallback = app.to("/fallback")[0]
    assert (fallback["ErrorCode"], fallback["ErrorUrl"]) == ("11205", app.url("/voice"))
    assert fallback["CallSid"] == call.sid and call.said == ["Fallback speaking."]


async def test_a_5xx_is_not_retried_and_goes_to_the_fallback(app: ScriptedApp, sim: CallSimulator) -> None:
    app.on("/voice", Reply("database is down", status=500, content_type="text/plain"))
    call = await sim.call(CALLER, HOTLINE)
    assert len(app.to("/voice")) == 1
    fallback = app.to("/fallback")[0]
    assert (fallback["ErrorCode"], fallback["ErrorUrl"]) == ("11200", app.url("/voice"))
    assert call.alerts == [11200] and call.said == ["Fallback speaking."]


async def test_a_failing_fallback_leaves_the_application_error(app: ScriptedApp, sim: CallSimulator) -> None:
    app.on("/voice", Reply("no", status=503))
    app.on("/fallback", Reply("also no", status=500))
    call = await sim.call(CALLER, HOTLINE)
    assert call.alerts == [11200, 11200] and call.said == [APPLICATION_ERROR]


@pytest.mark.parametrize(
    ("reply", "code"),
    [
        (Reply(twiml("<Say>" + "x" * (64 * 1024) + "</Say>")), 11750),
        (Reply(twiml("<Say>Hi</Say>"), content_type="text/plain"), 12300),
        (Reply(twiml("<Say>Hi</Say>"), content_type="application/json"), 12300),
        (Reply(twiml("<Say>Hi</Say>"), content_type=None), 12300),
        (Reply("\n  " + twiml("<Say>leading whitespace before the declaration</Say>")), 12100),
        (Reply(twiml("<Say>Fish & chips</Say>")), 12100),
        (Reply("<Speak>wrong root</Speak>"), 12100),
        (Reply('<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "b">]><Response/>'), 12100),
    ],
    ids=["over-64kB", "text-plain", "json", "no-content-type", "whitespace", "ampersand", "root", "dtd"],
)
async def test_unusable_twiml_raises_twilios_error_and_uses_the_fallback(
    app: ScriptedApp, sim: CallSimulator, reply: Reply, code: int
) -> None:
    app.on("/voice", reply)
    call = await sim.call(CALLER, HOTLINE)
    assert call.alerts == [code]
    assert app.to("/fallback")[0]["ErrorCode"] == str(code)
    assert call.said == ["Fallback speaking."]


async def test_exactly_64_kilobytes_is_accepted(app: ScriptedApp, sim: CallSimulator) -> None:
    head, tail = twiml("<Say>ok</Say>").split("ok")
    padding = 64 * 1024 - len(head) - len(tail)
    app.on("/voice", Reply(head + "ok" + " " * (padding - 2) + tail))
    call = await sim.call(CALLER, HOTLINE)
    assert call.alerts == [] and call.said == ["ok"]


async def test_an_unknown_verb_is_a_warning_and_is_skipped(app: ScriptedApp, sim: CallSimulator) -> None:
    app.on("/voice", twiml("<Say>Before.</Say><Sparkle/><Say>After.</Say>"))
    call = await sim.call(CALLER, HOTLINE)
    assert call.alerts == [12200] and call.said == ["Before.", "After."]
    assert app.to("/fallback") == []


async def test_an_audio_answer_is_played(app: ScriptedApp, sim: CallSimulator) -> None:
    app.on("/voice", Reply(b"ID3\x03\x00", content_type="audio/mpeg"))
    call = await sim.call(CALLER, HOTLINE)
    assert [h.kind for h in call.transcript] == ["play"] and call.alerts == []


async def test_get_webhooks_sign_the_url_with_the_parameters_in_it(fake: FakeTwilio) -> None:
    app = ScriptedApp(fake.auth_token)
    fake.configure_number(NumberConfig(HOTLINE, voice_url=app.url("/voice?lang=en"), voice_method="GET"))
    app.on("/voice", twiml("<Say>Got it by GET.</Say>"))
    async with CallSimulator(fake, app=app, time_scale=0.001) as sim:
        call = await sim.call(CALLER, HOTLINE)
    request = app.to("/voice")[0]
    assert request.method == "GET" and request.signature_valid
    assert request.url.startswith(app.url("/voice?lang=en&"))
    assert request.form["CallSid"] == call.sid and request.form["lang"] == "en"
    assert "content-type" not in request.headers


async def test_connection_override_fragment_changes_the_retry_policy(fake: FakeTwilio) -> None:
    app = ScriptedApp(fake.auth_token)
    fake.configure_number(NumberConfig(HOTLINE, voice_url=app.url("/voice#rp=5xx&rc=2")))
    app.on("/voice", Reply("busy", status=502), Reply("busy", status=502), twiml("<Say>Third time.</Say>"))
    async with CallSimulator(fake, app=app, time_scale=0.001) as sim:
        call = await sim.call(CALLER, HOTLINE)
    assert len(app.to("/voice")) == 3 and all("#" not in r.url for r in app.requests)
    assert call.said == ["Third time."]


async def test_retry_count_zero_gives_up_after_one_timeout(fake: FakeTwilio) -> None:
    app = ScriptedApp(fake.auth_token)
    fake.configure_number(NumberConfig(HOTLINE, voice_url=app.url("/voice#rt=150&rc=0")))
    release = asyncio.Event()
    app.on("/voice", Reply(twiml(), hold=release))
    async with CallSimulator(fake, app=app, time_scale=0.001) as sim:
        call = await sim.call(CALLER, HOTLINE)
        release.set()
    assert len(app.to("/voice")) == 1 and call.alerts == [11205]


async def test_a_failing_status_callback_is_only_a_warning(fake: FakeTwilio) -> None:
    app = ScriptedApp(fake.auth_token)
    fake.configure_number(
        NumberConfig(HOTLINE, voice_url=app.url("/voice"), status_callback=app.url("/status"))
    )
    app.on("/voice", twiml("<Say>Short call.</Say>"))
    app.on("/status", Reply("no", status=500))
    async with CallSimulator(fake, app=app, time_scale=0.001) as sim:
        call = await sim.call(CALLER, HOTLINE)
        await sim.wait_idle()
    assert call.said == ["Short call."] and call.final_status == "completed"
    assert len(app.to("/status")) == 1  # callbacks are not retried on 5xx either
    assert [e["code"] for e in fake.events.of("alert", call.sid)] == [15003]


async def test_an_app_reached_over_real_http(fake: FakeTwilio) -> None:
    """Without an ASGI app the simulator posts over the network (here: a second loopback server)."""
    import threading

    import uvicorn

    app = ScriptedApp(fake.auth_token, public_url="http://127.0.0.1:0")
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        for _ in range(1000):
            if server.started:
                break
            await asyncio.sleep(0.005)
        port = server.servers[0].sockets[0].getsockname()[1]
        app.public_url = f"http://127.0.0.1:{port}"
        app.on("/voice", twiml("<Say>Over the wire.</Say>"))
        fake.configure_number(NumberConfig(HOTLINE, voice_url=app.url("/voice")))
        async with CallSimulator(fake, time_scale=0.001) as sim:
            call = await sim.call(CALLER, HOTLINE)
    finally:
        server.should_exit = True
        await asyncio.to_thread(thread.join, 10)
    assert call.said == ["Over the wire."] and app.requests[0].signature_valid
