"""The fake's REST API against the real, unmodified twilio client and raw HTTP."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest
from twilio.base.exceptions import TwilioRestException
from twilio.rest import Client

from telephony.fake import FakeTwilio, Fault, NumberConfig

HOTLINE = "+18005550100"
CALLER = "+15551230000"
RFC2822 = re.compile(r"^[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} \+0000$")


@pytest.fixture(scope="module")
def server() -> Iterator[FakeTwilio]:
    with FakeTwilio() as fake:
        yield fake


@pytest.fixture
def fake(server: FakeTwilio) -> FakeTwilio:
    server.reset().configure_number(NumberConfig(HOTLINE))
    return server


def twilio_client(fake: FakeTwilio, username: str | None = None, password: str | None = None) -> Client:
    client = Client(
        username or fake.account_sid, password or fake.auth_token, fake.account_sid, environment={"X": ""}
    )
    client.api.base_url = fake.base_url
    return client


def test_the_real_client_completes_every_operation(fake: FakeTwilio) -> None:
    client = twilio_client(fake)
    message = client.messages.create(
        to=CALLER, from_=HOTLINE, body="Hola", status_callback="https://h.example/s"
    )
    assert re.fullmatch(r"SM[0-9a-f]{32}", message.sid) and message.status == "queued"
    assert client.messages(message.sid).fetch().body == "Hola"
    assert [m.sid for m in client.messages.list(to=CALLER, limit=5)] == [message.sid]
    assert client.messages(message.sid).update(body="").body == ""
    fake.set_message_status(message.sid, "delivered")
    assert client.messages(message.sid).delete() is True

    call = client.calls.create(
        to=CALLER,
        from_=HOTLINE,
        url="https://h.example/leg",
        status_callback="https://h.example/status",
        status_callback_event=["initiated", "answered", "completed"],
        timeout=20,
    )
    assert fake.call(call.sid).status_callback_events == ("initiated", "answered", "completed")
    assert fake.call(call.sid).timeout == 20
    assert client.calls(call.sid).update(url="https://h.example/other", method="POST").sid == call.sid
    assert client.calls(call.sid).update(status="completed").sid == call.sid
    assert client.calls(call.sid).fetch().status == "canceled"  # it never got past "queued"
    assert client.calls(call.sid).delete() is True

    queue = fake.queue("english")
    fake.store.enqueue(queue.sid, "CA" + "1" * 32)
    member = client.queues(queue.sid).members("Front").fetch()
    assert member.call_sid == "CA" + "1" * 32 and member.position == 1
    dequeued = (
        client.queues(queue.sid).members(member.call_sid).update(url="https://h.example/join", method="POST")
    )
    assert dequeued.call_sid == member.call_sid and fake.queue("english").members == []
    assert [q.friendly_name for q in client.queues.list()] == ["english"]

    recording = fake.add_recording("CA" + "2" * 32, b"RIFF....WAVE", duration=3)
    fetched = client.recordings(recording.sid).fetch()
    assert (fetched.call_sid, fetched.duration, fetched.status) == ("CA" + "2" * 32, "3", "completed")
    assert client.recordings(recording.sid).delete() is True


def test_errors_come_back_as_twilio_error_bodies(fake: FakeTwilio) -> None:
    path = f"/2010-04-01/Accounts/{fake.account_sid}/Messages/SM{'0' * 32}.json"
    response = httpx.get(fake.base_url + path, auth=(fake.account_sid, fake.auth_token))
    assert response.status_code == 404
    assert response.json() == {
        "code": 20404,
        "message": f"The requested resource {path} was not found",
        "more_info": "https://www.twilio.com/docs/errors/20404",
        "status": 404,
    }
    with pytest.raises(TwilioRestException) as raised:
        twilio_client(fake).calls("CA" + "9" * 32).fetch()
    assert (raised.value.status, raised.value.code) == (404, 20404)


def test_basic_auth_accepts_the_token_or_an_api_key_only(fake: FakeTwilio) -> None:
    with pytest.raises(TwilioRestException) as raised:
        twilio_client(fake, password="wrong").calls("CA" + "0" * 32).fetch()
    assert (raised.value.status, raised.value.code) == (401, 20003)
    url = f"{fake.base_url}/2010-04-01/Accounts/{fake.account_sid}/Calls.json"
    anonymous = httpx.get(url)
    assert anonymous.status_code == 401 and anonymous.headers["www-authenticate"].startswith("Basic")
    key, secret = fake.create_api_key()
    assert twilio_client(fake, key, secret).calls.list() == []


def test_resource_json_follows_twilios_shapes(fake: FakeTwilio) -> None:
    auth = (fake.account_sid, fake.auth_token)
    base = f"{fake.base_url}/2010-04-01/Accounts/{fake.account_sid}"
    created = httpx.post(
        f"{base}/Messages.json", data={"To": CALLER, "From": HOTLINE, "Body": "Hi"}, auth=auth
    )
    assert created.status_code == 201
    message = created.json()
    assert message["uri"] == f"/2010-04-01/Accounts/{fake.account_sid}/Messages/{message['sid']}.json"
    assert RFC2822.match(message["date_created"]) and message["date_sent"] is None
    assert (message["direction"], message["num_segments"], message["api_version"]) == (
        "outbound-api",
        "1",
        "2010-04-01",
    )
    call = httpx.post(
        f"{base}/Calls.json", data={"To": CALLER, "From": HOTLINE, "Url": "https://h/x"}, auth=auth
    ).json()
    assert call["status"] == "queued" and call["uri"].endswith(f"/Calls/{call['sid']}.json")
    assert RFC2822.match(call["date_created"]) and call["start_time"] is None
    deleted = httpx.post(f"{base}/Calls/{call['sid']}.json", data={"Status": "completed"}, auth=auth)
    assert deleted.status_code == 200
    gone = httpx.delete(f"{base}/Calls/{call['sid']}.json", auth=auth)
    assert gone.status_code == 204 and gone.content == b""


def test_validation_errors_use_twilios_codes(fake: FakeTwilio) -> None:
    client = twilio_client(fake)
    cases = [
        (lambda: client.messages.create(to=CALLER, from_=HOTLINE), 21602),
        (lambda: client.messages.create(to=CALLER, from_="+19999999999", body="x"), 21606),
        (lambda: client.messages.create(to=CALLER, from_=HOTLINE, body="x" * 1601), 21617),
        (lambda: client.calls.create(to=CALLER, from_=HOTLINE), 21205),
    ]
    for action, code in cases:
        with pytest.raises(TwilioRestException) as raised:
            action()
        assert (raised.value.status, raised.value.code) == (400, code)


def test_opted_out_recipients_get_21610(fake: FakeTwilio) -> None:
    fake.opt_out(CALLER)
    with pytest.raises(TwilioRestException) as raised:
        twilio_client(fake).messages.create(to=CALLER, from_=HOTLINE, body="Are you safe?")
    assert (raised.value.status, raised.value.code) == (400, 21610)
    assert fake.messages() == []


def test_deleting_too_early_is_20009(fake: FakeTwilio) -> None:
    client = twilio_client(fake)
    message = client.messages.create(to=CALLER, from_=HOTLINE, body="x")
    call = client.calls.create(to=CALLER, from_=HOTLINE, url="https://h/x")
    for action in (client.messages(message.sid).delete, client.calls(call.sid).delete):
        with pytest.raises(TwilioRestException) as raised:
            action()
        assert raised.value.code == 20009
    with pytest.raises(TwilioRestException) as raised:
        client.calls(call.sid).update(status="completed")
        client.calls(call.sid).update(url="https://h/too-late")
    assert raised.value.code == 21220


def test_lists_page_like_twilio(fake: FakeTwilio) -> None:
    client = twilio_client(fake)
    sids = [client.messages.create(to=CALLER, from_=HOTLINE, body=f"n{i}").sid for i in range(5)]
    response = httpx.get(
        f"{fake.base_url}/2010-04-01/Accounts/{fake.account_sid}/Messages.json",
        params={"PageSize": 2},
        auth=(fake.account_sid, fake.auth_token),
    ).json()
    assert len(response["messages"]) == 2 and "Page=1" in response["next_page_uri"]
    assert [m.sid for m in client.messages.list(page_size=2)] == list(reversed(sids))
    assert client.messages.list(to="+15550000000") == []


def test_faults_hit_the_named_operation_only(fake: FakeTwilio) -> None:
    client = twilio_client(fake)
    fake.faults.inject("messages.create", Fault.server_error(), times=2)
    fake.faults.inject("calls.fetch", Fault.rate_limited())
    for _ in range(2):
        with pytest.raises(TwilioRestException) as raised:
            client.messages.create(to=CALLER, from_=HOTLINE, body="x")
        assert (raised.value.status, raised.value.code) == (500, 20500)
    assert fake.messages() == []  # an injected error never acts
    message = client.messages.create(to=CALLER, from_=HOTLINE, body="third time")
    assert client.messages(message.sid).fetch().body == "third time"
    assert fake.faults.pending("calls.fetch") == 1
    with pytest.raises(TwilioRestException) as raised:
        client.calls("CA" + "0" * 32).fetch()
    assert (raised.value.status, raised.value.code) == (429, 20429)


def test_recording_media_needs_credentials(fake: FakeTwilio) -> None:
    recording = fake.add_recording("CA" + "3" * 32, b"RIFF-audio-bytes")
    url = f"{fake.base_url}/2010-04-01/Accounts/{fake.account_sid}/Recordings/{recording.sid}"
    assert httpx.get(url).status_code == 401
    for suffix in ("", ".wav"):
        media = httpx.get(url + suffix, auth=(fake.account_sid, fake.auth_token))
        assert media.status_code == 200 and media.content == b"RIFF-audio-bytes"
        assert media.headers["content-type"] == "audio/x-wav"
    assert httpx.get(url + ".mp3", auth=(fake.account_sid, fake.auth_token)).status_code == 404


def test_stop_and_start_keep_state_and_port(fake: FakeTwilio) -> None:
    client = twilio_client(fake)
    sid = client.messages.create(to=CALLER, from_=HOTLINE, body="kept").sid
    url = fake.base_url
    fake.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(url)
    fake.start()
    assert fake.base_url == url and client.messages(sid).fetch().body == "kept"
    assert [e["op"] for e in fake.rest_requests()][-1] == "messages.fetch"
