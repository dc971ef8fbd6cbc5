"""TwilioRestClient against the fake Twilio: every operation, the retry policy rule by rule, typed errors."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import timedelta

import pytest

from telephony.fake import CallSimulator, FakeTwilio, Fault, NumberConfig, Party, ScriptedApp, twiml
from telephony.rest import (
    AuthenticationFailed,
    CallNotInProgress,
    NotFound,
    OptedOut,
    OutsideWhatsAppWindow,
    RateLimited,
    ResourceNotComplete,
    TelephonyError,
    TwilioRestClient,
    Unavailable,
    error_for,
)

HOTLINE = "+18005550100"
CALLER = "+15551230000"
VOLUNTEER = "+15557770001"
NO_SUCH_MESSAGE = "SM" + "0" * 32
NO_SUCH_CALL = "CA" + "0" * 32
NO_SUCH_RECORDING = "RE" + "0" * 32


class Sleeps:
    """Injected backoff sleep: records delays, runs an optional hook, never actually waits."""

    def __init__(self) -> None:
        self.delays: list[float] = []
        self.hook: object = None

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        if callable(self.hook):
            self.hook()


@pytest.fixture(scope="module")
def server() -> Iterator[FakeTwilio]:
    with FakeTwilio() as fake:
        yield fake


@pytest.fixture
def fake(server: FakeTwilio) -> FakeTwilio:
    server.reset().configure_number(NumberConfig(HOTLINE))
    return server


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
async def client(fake: FakeTwilio, sleeps: Sleeps) -> AsyncIterator[TwilioRestClient]:
    async with TwilioRestClient(
        fake.account_sid, auth_token=fake.auth_token, api_base_url=fake.base_url, sleep=sleeps, timeout=2.0
    ) as c:
        yield c


def creates(fake: FakeTwilio, operation: str) -> list[int]:
    return [e["status"] for e in fake.rest_requests(operation)]


async def test_messages_send_fetch_delete(client: TwilioRestClient, fake: FakeTwilio) -> None:
    sid = await client.send_message(
        to=CALLER, from_=HOTLINE, body="Hola", status_callback="https://h.example/s"
    )
    stored = fake.message(sid)
    assert (stored.to, stored.from_, stored.body, stored.status_callback) == (
        CALLER,
        HOTLINE,
        "Hola",
        "https://h.example/s",
    )
    info = await client.fetch_message(sid)
    assert (info.sid, info.status, info.direction, info.error_code) == (sid, "queued", "outbound-api", None)
    assert info.date_created is not None and info.error() is None
    fake.set_message_status(sid, "delivered")
    await client.delete_message(sid)
    assert fake.messages() == []


async def test_calls_create_fetch_redirect_hang_up_delete(fake: FakeTwilio, client: TwilioRestClient) -> None:
    app = ScriptedApp(fake.auth_token)
    app.on("/leg", twiml('<Say>Hello.</Say><Pause length="600"/>'))
    app.on("/elsewhere", twiml('<Pause length="600"/>'))
    app.on("/leg-status", "")
    async with CallSimulator(fake, app=app, time_scale=0.001) as sim:
        sim.add_party(VOLUNTEER, Party(answer_after=1))
        sid = await client.create_call(
            to=VOLUNTEER,
            from_=HOTLINE,
            url=app.url("/leg"),
            status_callback=app.url("/leg-status"),
            timeout=25,
            machine_detection="Enable",
            fallback_url=app.url("/fallback"),
        )
        stored = fake.call(sid)
        assert (stored.timeout, stored.machine_detection, stored.fallback_url) == (
            25,
            "Enable",
            app.url("/fallback"),
        )
        assert stored.status_callback_events == ("initiated", "ringing", "answered", "completed")
        await fake.events.wait_for("verb", sid, verb="Pause")
        await client.redirect_call(sid, app.url("/elsewhere"))
        await fake.events.wait_for("webhook", sid, purpose="redirect")
        live = await client.fetch_call(sid)
        assert (live.status, live.direction, live.answered_by) == ("in-progress", "outbound-api", "human")
        with pytest.raises(ResourceNotComplete):
            await client.delete_call(sid)  # 20009 while live: retried, then given up
        await client.hang_up_call(sid)
        await sim.leg(sid).wait()
    done = await client.fetch_call(sid)
    assert done.status == "completed" and done.duration is not None and done.end_time is not None
    assert app.to("/elsewhere")[0]["CallSid"] == sid
    with pytest.raises(CallNotInProgress):
        await client.redirect_call(sid, app.url("/leg"))
    await client.hang_up_call(sid)  # already over: fine
    await client.delete_call(sid)
    with pytest.raises(NotFound):
        await client.fetch_call(sid)


async def test_dequeue_and_recording_audio(fake: FakeTwilio, client: TwilioRestClient) -> None:
    queue = fake.queue("english")
    fake.store.enqueue(queue.sid, NO_SUCH_CALL)
    await client.dequeue_call(queue.sid, NO_SUCH_CALL, "https://h.example/join")
    assert fake.queue("english").members == []
    assert fake.events.of("queue.dequeue_requested", NO_SUCH_CALL)[0]["url"] == "https://h.example/join"
    with pytest.raises(NotFound):
        await client.dequeue_call(queue.sid, NO_SUCH_CALL, "https://h.example/join")

    recording = fake.add_recording(NO_SUCH_CALL, b"RIFF\x00\x01binary\xffaudio", duration=4)
    assert await client.fetch_recording_audio(recording.sid) == b"RIFF\x00\x01binary\xffaudio"
    await client.delete_recording(recording.sid)
    with pytest.raises(NotFound):
        await client.fetch_recording_audio(recording.sid)
    with pytest.raises(NotFound):
        await client.delete_recording(recording.sid)


async def test_api_key_authentication(fake: FakeTwilio) -> None:
    key, secret = fake.create_api_key()
    async with TwilioRestClient(
        fake.account_sid, api_key=key, api_secret=secret, api_base_url=fake.base_url
    ) as c:
        sid = await c.send_message(to=CALLER, from_=HOTLINE, body="via key")
        assert (await c.fetch_message(sid)).sid == sid
        recording = fake.add_recording(NO_SUCH_CALL, b"RIFF")
        assert await c.fetch_recording_audio(recording.sid) == b"RIFF"


async def test_wrong_credentials_fail_at_once(fake: FakeTwilio, sleeps: Sleeps) -> None:
    async with TwilioRestClient(
        fake.account_sid, auth_token="not-the-token", api_base_url=fake.base_url, sleep=sleeps
    ) as c:
        with pytest.raises(AuthenticationFailed) as raised:
            await c.send_message(to=CALLER, from_=HOTLINE, body="x")
    assert (raised.value.code, raised.value.status) == (20003, 401) and sleeps.delays == []


async def test_create_is_retried_after_429(
    client: TwilioRestClient, fake: FakeTwilio, sleeps: Sleeps
) -> None:
    fake.faults.inject("messages.create", Fault.rate_limited(), times=2)
    sid = await client.send_message(to=CALLER, from_=HOTLINE, body="after 429")
    assert [m.sid for m in fake.messages()] == [sid]
    assert creates(fake, "messages.create") == [429, 429, 201]
    assert sleeps.delays == [0.5, 1.0]


async def test_create_is_not_retried_after_500(
    client: TwilioRestClient, fake: FakeTwilio, sleeps: Sleeps
) -> None:
    fake.faults.inject("calls.create", Fault.server_error())
    with pytest.raises(Unavailable) as raised:
        await client.create_call(to=VOLUNTEER, from_=HOTLINE, url="https://h.example/leg")
    assert (raised.value.code, raised.value.status) == (20500, 500)
    assert creates(fake, "calls.create") == [500] and sleeps.delays == []
    assert fake.calls() == []


async def test_create_gives_up_when_rate_limited_throughout(
    client: TwilioRestClient, fake: FakeTwilio, sleeps: Sleeps
) -> None:
    fake.faults.inject("messages.create", Fault.rate_limited(), times=4)
    with pytest.raises(RateLimited) as raised:
        await client.send_message(to=CALLER, from_=HOTLINE, body="x")
    assert raised.value.status == 429 and sleeps.delays == [0.5, 1.0, 2.0]
    assert len(creates(fake, "messages.create")) == 4


async def test_create_is_retried_after_a_connect_error(
    client: TwilioRestClient, fake: FakeTwilio, sleeps: Sleeps
) -> None:
    fake.stop()  # Twilio unreachable: connection refused, the request never left
    sleeps.hook = fake.start  # ... and back by the time the backoff is over
    sid = await client.send_message(to=CALLER, from_=HOTLINE, body="after an outage")
    assert sleeps.delays == [0.5]
    assert [m.sid for m in fake.messages()] == [sid]
    assert creates(fake, "messages.create") == [201]
    assert creates(fake, "messages.list") == []  # a refused connection needs no lookup


async def test_read_timeout_on_create_finds_the_created_message(fake: FakeTwilio, sleeps: Sleeps) -> None:
    fake.faults.inject("messages.create", Fault.timeout(3.0, apply=True))
    async with TwilioRestClient(
        fake.account_sid, auth_token=fake.auth_token, api_base_url=fake.base_url, sleep=sleeps, timeout=0.3
    ) as c:
        fake.store.create_message(to=CALLER, from_=HOTLINE, body="older, different", notify=False)
        sid = await c.send_message(to=CALLER, from_=HOTLINE, body="We will call you back")
    messages = [m for m in fake.messages() if m.body == "We will call you back"]
    assert [m.sid for m in messages] == [sid]  # found, not created twice
    assert len(creates(fake, "messages.create")) == 1 and len(creates(fake, "messages.list")) == 1


async def test_read_timeout_on_create_finds_the_created_call(fake: FakeTwilio, sleeps: Sleeps) -> None:
    fake.faults.inject("calls.create", Fault.timeout(3.0, apply=True))
    async with TwilioRestClient(
        fake.account_sid, auth_token=fake.auth_token, api_base_url=fake.base_url, sleep=sleeps, timeout=0.3
    ) as c:
        sid = await c.create_call(to=VOLUNTEER, from_=HOTLINE, url="https://h.example/leg")
    assert [call.sid for call in fake.calls()] == [sid]
    assert len(creates(fake, "calls.create")) == 1


async def test_read_timeout_without_effect_creates_again(fake: FakeTwilio, sleeps: Sleeps) -> None:
    fake.faults.inject("messages.create", Fault.timeout(3.0, apply=False))
    async with TwilioRestClient(
        fake.account_sid, auth_token=fake.auth_token, api_base_url=fake.base_url, sleep=sleeps, timeout=0.3
    ) as c:
        sid = await c.send_message(to=CALLER, from_=HOTLINE, body="second try")
    assert [m.sid for m in fake.messages()] == [sid]
    assert len(creates(fake, "messages.list")) == 1 and sleeps.delays == [0.5]


async def test_connection_dropped_mid_answer_on_create_finds_the_message(
    client: TwilioRestClient, fake: FakeTwilio, sleeps: Sleeps
) -> None:
    fake.faults.inject("messages.create", Fault.drop(apply=True))
    sid = await client.send_message(to=CALLER, from_=HOTLINE, body="dropped answer")
    assert [m.sid for m in fake.messages()] == [sid]
    assert len(creates(fake, "messages.create")) == 1 and sleeps.delays == [0.5]


async def test_connection_dropped_before_acting_creates_the_call_again(
    client: TwilioRestClient, fake: FakeTwilio
) -> None:
    fake.faults.inject("calls.create", Fault.drop(apply=False))
    sid = await client.create_call(to=VOLUNTEER, from_=HOTLINE, url="https://h.example/leg")
    assert [call.sid for call in fake.calls()] == [sid]
    assert creates(fake, "calls.create") == [None, 201] and len(creates(fake, "calls.list")) == 1


async def test_lookup_ignores_matches_older_than_the_window(fake: FakeTwilio, sleeps: Sleeps) -> None:
    old = fake.store.create_message(to=CALLER, from_=HOTLINE, body="same words", notify=False)
    old.date_created -= timedelta(hours=1)
    fake.faults.inject("messages.create", Fault.timeout(3.0, apply=False))
    async with TwilioRestClient(
        fake.account_sid, auth_token=fake.auth_token, api_base_url=fake.base_url, sleep=sleeps, timeout=0.3
    ) as c:
        sid = await c.send_message(to=CALLER, from_=HOTLINE, body="same words")
    assert sid != old.sid and len(fake.messages()) == 2


async def test_delete_is_retried_after_500(
    client: TwilioRestClient, fake: FakeTwilio, sleeps: Sleeps
) -> None:
    recording = fake.add_recording(NO_SUCH_CALL, b"RIFF")
    fake.faults.inject("recordings.delete", Fault.server_error(503), times=2)
    await client.delete_recording(recording.sid)
    assert fake.recordings() == [] and sleeps.delays == [0.5, 1.0]
    assert creates(fake, "recordings.delete") == [503, 503, 204]


async def test_delete_is_retried_on_20009_then_succeeds(
    client: TwilioRestClient, fake: FakeTwilio, sleeps: Sleeps
) -> None:
    sid = await client.send_message(to=CALLER, from_=HOTLINE, body="in flight")
    sleeps.hook = lambda: fake.set_message_status(sid, "delivered")  # completes during the backoff
    await client.delete_message(sid)
    assert fake.messages() == [] and sleeps.delays == [0.5]
    assert creates(fake, "messages.delete") == [400, 204]


async def test_reads_are_retried_after_a_timeout_and_5xx(fake: FakeTwilio, sleeps: Sleeps) -> None:
    async with TwilioRestClient(
        fake.account_sid, auth_token=fake.auth_token, api_base_url=fake.base_url, sleep=sleeps, timeout=0.3
    ) as c:
        sid = await c.send_message(to=CALLER, from_=HOTLINE, body="x")
        fake.faults.inject("messages.fetch", Fault.timeout(3.0))
        fake.faults.inject("messages.fetch", Fault.server_error())
        assert (await c.fetch_message(sid)).sid == sid
    assert sleeps.delays == [0.5, 1.0]


async def test_backoff_is_bounded(fake: FakeTwilio, sleeps: Sleeps) -> None:
    fake.faults.inject("calls.fetch", Fault.server_error(), times=6)
    async with TwilioRestClient(
        fake.account_sid,
        auth_token=fake.auth_token,
        api_base_url=fake.base_url,
        sleep=sleeps,
        max_attempts=6,
        backoff=1.0,
        max_backoff=5.0,
    ) as c:
        with pytest.raises(Unavailable):
            await c.fetch_call(NO_SUCH_CALL)
    assert sleeps.delays == [1.0, 2.0, 4.0, 5.0, 5.0]


async def test_opted_out_recipient_raises_without_personal_data(
    client: TwilioRestClient, fake: FakeTwilio
) -> None:
    fake.opt_out(CALLER)
    with pytest.raises(OptedOut) as raised:
        await client.send_message(to=CALLER, from_=HOTLINE, body="Are you safe tonight?")
    error = raised.value
    assert (error.code, error.status) == (21610, 400)
    assert CALLER not in str(error) and "safe" not in str(error)
    assert error.__cause__ is None and error.__suppress_context__  # Twilio's own text is dropped


async def test_missing_resources_raise_not_found(client: TwilioRestClient, sleeps: Sleeps) -> None:
    for action in (
        lambda: client.fetch_message(NO_SUCH_MESSAGE),
        lambda: client.fetch_call(NO_SUCH_CALL),
        lambda: client.delete_message(NO_SUCH_MESSAGE),
        lambda: client.delete_call(NO_SUCH_CALL),
        lambda: client.redirect_call(NO_SUCH_CALL, "https://h.example/x"),
        lambda: client.fetch_recording_audio(NO_SUCH_RECORDING),
    ):
        with pytest.raises(NotFound) as raised:
            await action()
        assert raised.value.code == 20404
    assert sleeps.delays == []  # a 404 is an answer, not a failure to retry


async def test_malformed_sids_are_refused_before_any_request(
    client: TwilioRestClient, fake: FakeTwilio
) -> None:
    with pytest.raises(ValueError):
        await client.fetch_recording_audio("../../Calls")
    with pytest.raises(ValueError):
        await client.dequeue_call("QU123", NO_SUCH_CALL, "https://h.example/x")
    assert fake.rest_requests() == []


def test_error_codes_map_to_the_typed_tree() -> None:
    assert isinstance(error_for("messages.status", 63016), OutsideWhatsAppWindow)
    assert isinstance(error_for("x", 21610, 400), OptedOut)
    assert isinstance(error_for("x", 20404, 404), NotFound)
    assert isinstance(error_for("x", 20429, 429), RateLimited)
    assert isinstance(error_for("x", 20500, 502), Unavailable)
    plain = error_for("calls.create", 21215, 400)
    assert (
        type(plain) is TelephonyError and str(plain) == "Twilio calls.create failed: error 21215 (HTTP 400)"
    )


def test_credentials_must_be_token_or_key_pair() -> None:
    with pytest.raises(ValueError):
        TwilioRestClient("AC" + "0" * 32)
    with pytest.raises(ValueError):
        TwilioRestClient("AC" + "0" * 32, auth_token="t", api_key="SK1", api_secret="s")
