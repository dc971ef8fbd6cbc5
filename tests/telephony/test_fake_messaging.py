"""SMS and WhatsApp through the fake: incoming webhooks, replies, delivery, opt-outs, the 24 h window."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta

import pytest

from telephony.fake import CallSimulator, FakeTwilio, NumberConfig, Reply, ScriptedApp, twiml
from telephony.rest import OptedOut, OutsideWhatsAppWindow, TwilioRestClient

HOTLINE = "+18005550100"
TEXTER = "+15551230000"
WA_HOTLINE = f"whatsapp:{HOTLINE}"
WA_TEXTER = f"whatsapp:{TEXTER}"


class Clock:
    """A settable clock for the fake (the WhatsApp window is 24 hours)."""

    def __init__(self) -> None:
        self.now = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(scope="module")
def server() -> Iterator[FakeTwilio]:
    with FakeTwilio() as fake:
        yield fake


@pytest.fixture
def fake(server: FakeTwilio, clock: Clock) -> FakeTwilio:
    return server.reset(clock)


@pytest.fixture
def app(fake: FakeTwilio) -> ScriptedApp:
    app = ScriptedApp(fake.auth_token)
    fake.configure_number(
        NumberConfig(HOTLINE, sms_url=app.url("/sms"), sms_fallback_url=app.url("/sms-fallback"))
    )
    app.on("/message-status", "")
    return app


@pytest.fixture
async def sim(fake: FakeTwilio, app: ScriptedApp) -> AsyncIterator[CallSimulator]:
    async with CallSimulator(fake, app=app, time_scale=0.001, webhook_timeout=1.0) as sim:
        yield sim


@pytest.fixture
async def client(fake: FakeTwilio) -> AsyncIterator[TwilioRestClient]:
    async with TwilioRestClient(
        fake.account_sid, auth_token=fake.auth_token, api_base_url=fake.base_url
    ) as c:
        yield c


async def test_incoming_sms_webhook_and_twiml_reply(
    app: ScriptedApp, sim: CallSimulator, fake: FakeTwilio
) -> None:
    app.on(
        "/sms",
        twiml('<Message statusCallback="/message-status">We are here. Reply STOP to opt out.</Message>'),
    )
    result = await sim.send_message(TEXTER, HOTLINE, "I need to talk to someone")
    await sim.wait_idle()

    request = app.to("/sms")[0]
    assert request.signature_valid
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert request.form == {
        "AccountSid": fake.account_sid,
        "ApiVersion": "2010-04-01",
        "Body": "I need to talk to someone",
        "From": TEXTER,
        "MessageSid": result.sid,
        "NumMedia": "0",
        "NumSegments": "1",
        "SmsMessageSid": result.sid,
        "SmsSid": result.sid,
        "SmsStatus": "received",
        "To": HOTLINE,
    }
    assert result.replies == ["We are here. Reply STOP to opt out."]
    assert sim.inbox(TEXTER) == ["We are here. Reply STOP to opt out."]
    reply = fake.message(result.reply_sids[0])
    assert (reply.direction, reply.status, reply.to, reply.from_) == (
        "outbound-reply",
        "delivered",
        TEXTER,
        HOTLINE,
    )
    statuses = app.to("/message-status")
    assert [r["MessageStatus"] for r in statuses] == ["sent", "delivered"]  # "queued" is never posted
    assert {r["MessageSid"] for r in statuses} == {reply.sid}


async def test_whatsapp_webhooks_carry_profile_and_wa_id(app: ScriptedApp, sim: CallSimulator) -> None:
    app.on("/sms", Reply("", status=204, content_type=None))
    result = await sim.send_message(WA_TEXTER, WA_HOTLINE, "hola", profile_name="Ana")
    request = app.to("/sms")[0]
    assert (request["From"], request["To"]) == (WA_TEXTER, WA_HOTLINE)
    assert (request["ProfileName"], request["WaId"], request["MessageType"]) == (
        "Ana",
        TEXTER.lstrip("+"),
        "text",
    )
    assert result.replies == [] and result.alerts == []


async def test_media_parameters_are_numbered(app: ScriptedApp, sim: CallSimulator) -> None:
    app.on("/sms", twiml())
    await sim.send_message(TEXTER, HOTLINE, "", media_urls=["https://media.example/1.jpg"])
    request = app.to("/sms")[0]
    assert request["NumMedia"] == "1" and request["MediaUrl0"] == "https://media.example/1.jpg"
    assert request["MediaContentType0"] == "image/jpeg"


async def test_freeform_whatsapp_outside_the_window_fails_with_63016(
    app: ScriptedApp, sim: CallSimulator, client: TwilioRestClient, fake: FakeTwilio, clock: Clock
) -> None:
    app.on("/sms", Reply("", status=204, content_type=None))
    callback = app.url("/message-status")

    cold = await client.send_message(
        to=WA_TEXTER, from_=WA_HOTLINE, body="Checking in", status_callback=callback
    )
    await sim.wait_idle()
    info = await client.fetch_message(cold)
    assert (info.status, info.error_code) == ("failed", 63016)
    assert isinstance(info.error(), OutsideWhatsAppWindow)
    failed = app.to("/message-status")[-1]
    assert (failed["MessageStatus"], failed["ErrorCode"]) == ("failed", "63016")

    await sim.send_message(WA_TEXTER, WA_HOTLINE, "hi again")  # opens the 24 h window
    clock.now += timedelta(hours=23)
    warm = await client.send_message(
        to=WA_TEXTER, from_=WA_HOTLINE, body="Still here?", status_callback=callback
    )
    await sim.wait_idle()
    assert (await client.fetch_message(warm)).status == "delivered"
    assert sim.inbox(WA_TEXTER) == ["Still here?"]

    clock.now += timedelta(hours=2)
    late = await client.send_message(to=WA_TEXTER, from_=WA_HOTLINE, body="Hello?")
    await sim.wait_idle()
    assert (await client.fetch_message(late)).error_code == 63016
    assert fake.message(late).status == "failed"


async def test_stop_opts_out_and_start_opts_back_in(
    app: ScriptedApp, sim: CallSimulator, client: TwilioRestClient
) -> None:
    app.on("/sms", twiml())
    await sim.send_message(TEXTER, HOTLINE, "stop")
    assert app.to("/sms")[0]["OptOutType"] == "STOP"  # the app still hears about it
    with pytest.raises(OptedOut) as raised:
        await client.send_message(to=TEXTER, from_=HOTLINE, body="Are you safe?")
    assert raised.value.code == 21610 and TEXTER not in str(raised.value) and "safe" not in str(raised.value)
    await sim.send_message(TEXTER, HOTLINE, "START")
    sid = await client.send_message(to=TEXTER, from_=HOTLINE, body="Welcome back")
    await sim.wait_idle()
    assert (await client.fetch_message(sid)).status == "delivered"


async def test_delivery_failures_report_undelivered(
    app: ScriptedApp, sim: CallSimulator, client: TwilioRestClient, fake: FakeTwilio
) -> None:
    fake.fail_delivery(TEXTER, 30003)
    sid = await client.send_message(
        to=TEXTER, from_=HOTLINE, body="Call us back", status_callback=app.url("/message-status")
    )
    await sim.wait_idle()
    assert [(r["MessageStatus"], r.form.get("ErrorCode")) for r in app.to("/message-status")] == [
        ("sent", None),
        ("undelivered", "30003"),
    ]
    assert (await client.fetch_message(sid)).error_code == 30003 and sim.inbox(TEXTER) == []


async def test_messaging_failure_goes_to_the_fallback(app: ScriptedApp, sim: CallSimulator) -> None:
    app.on("/sms", Reply("boom", status=500, content_type="text/plain"))
    app.on("/sms-fallback", twiml("<Message>Sorry, please try again later.</Message>"))
    result = await sim.send_message(TEXTER, HOTLINE, "hello?")
    await sim.wait_idle()
    fallback = app.to("/sms-fallback")[0]
    assert (fallback["ErrorCode"], fallback["ErrorUrl"]) == ("11200", app.url("/sms"))
    assert fallback["MessageSid"] == result.sid and len(app.to("/sms")) == 1
    assert result.alerts == [11200] and sim.inbox(TEXTER) == ["Sorry, please try again later."]


async def test_invalid_messaging_twiml_without_fallback_is_only_an_alert(fake: FakeTwilio) -> None:
    app = ScriptedApp(fake.auth_token)
    fake.configure_number(NumberConfig(HOTLINE, sms_url=app.url("/sms")))
    app.on("/sms", "<Response><Message>a & b</Message></Response>")
    async with CallSimulator(fake, app=app, time_scale=0.001) as sim:
        result = await sim.send_message(TEXTER, HOTLINE, "hi")
    assert result.alerts == [12100] and result.replies == []
    assert [e["code"] for e in fake.events.of("alert", result.sid)] == [12100]
