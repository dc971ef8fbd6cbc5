"""The Twilio webhook dependency: signed like Twilio → typed event; anything else → 403, nothing runs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any
from urllib.parse import urlencode

import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import Response
from sqlalchemy import func, select
from twilio.request_validator import RequestValidator

from app.clock import FrozenClock
from app.db.session import DbSession
from app.jobs.models import Job
from app.jobs.service import enqueue
from app.settings import Settings
from app.webhooks.deps import (
    InvalidWebhookPayload,
    TwilioSignature,
    twilio_webhook,
    webhook_context,
)
from telephony.payloads import IncomingCall, IncomingMessage
from tests.support.canary import LogCapture

TOKEN = "test-auth-token-0123456789"  # tests/conftest.py make_settings
CALLER = "+15555550142"
CALL_SID = "CA" + "a" * 32
ACCOUNT_SID = "AC" + "0" * 32


def call_params(**overrides: str) -> dict[str, str]:
    params = {
        "AccountSid": ACCOUNT_SID,
        "ApiVersion": "2010-04-01",
        "CallSid": CALL_SID,
        "CallStatus": "ringing",
        "Called": "+15005550006",
        "Caller": CALLER,
        "Direction": "inbound",
        "From": CALLER,
        "To": "+15005550006",
    }
    params.update(overrides)
    return params


def twilio_signature(token: str, url: str, params: dict[str, str]) -> str:
    return str(RequestValidator(token).compute_signature(url, params))


@dataclass
class Recorder:
    events: list[Any] = field(default_factory=list)
    touched: list[str] = field(default_factory=list)
    contexts: list[Any] = field(default_factory=list)


@pytest.fixture
def settings(make_settings: Any, request: pytest.FixtureRequest) -> Settings:
    """The conftest settings, with per-test overrides through indirect parametrisation."""
    built: Settings = make_settings(**getattr(request, "param", {}))
    return built


@pytest.fixture
def recorder(app: FastAPI, clock: FrozenClock) -> Recorder:
    seen = Recorder()

    @app.post("/_test/twilio/voice")
    async def voice(
        request: Request, event: Annotated[IncomingCall, twilio_webhook(IncomingCall)]
    ) -> dict[str, str]:
        seen.events.append(event)
        seen.contexts.append(webhook_context(request))
        return {"call_sid": event.call_sid, "status": event.call_status}

    @app.post("/_test/twilio/sms")
    async def sms(event: Annotated[IncomingMessage, twilio_webhook(IncomingMessage)]) -> dict[str, str]:
        seen.events.append(event)
        return {"message_sid": event.message_sid}

    def touch() -> None:
        seen.touched.append("dependency ran")

    # The documented pattern: the signature guard at router level runs before every other
    # dependency of the route, database session included.
    router = APIRouter(prefix="/_test/guarded", dependencies=[TwilioSignature])

    @router.post("/write")
    async def write(
        session: DbSession,
        _touch: None = Depends(touch),  # a local: declared by default value, not Annotated
        *,
        event: Annotated[IncomingCall, twilio_webhook(IncomingCall)],
    ) -> dict[str, str]:
        await enqueue(session, clock, "test.noop", {"n": 1})
        seen.events.append(event)
        return {"status": "written"}

    app.include_router(router)
    return seen


async def post(
    client: httpx.AsyncClient,
    path: str,
    params: dict[str, str],
    *,
    signature: str | None,
    extra_headers: dict[str, str] | None = None,
) -> httpx.Response:
    headers = {"Content-Type": "application/x-www-form-urlencoded; charset=UTF-8"}
    if signature is not None:
        headers["X-Twilio-Signature"] = signature
    headers.update(extra_headers or {})
    return await client.post(path, content=urlencode(params).encode(), headers=headers)


async def count_jobs(app: FastAPI) -> int:
    async with app.state.database.sessionmaker() as session:
        return int(await session.scalar(select(func.count()).select_from(Job)) or 0)


def assert_refused(response: httpx.Response) -> None:
    assert response.status_code == 403
    error = response.json()["error"]
    assert error["code"] == "invalid_signature"
    assert CALLER not in response.text and TOKEN not in response.text


async def test_a_request_signed_like_twilio_yields_the_typed_event(
    client: httpx.AsyncClient, recorder: Recorder
) -> None:
    params = call_params()
    path = "/_test/twilio/voice?attempt=2&step=menu"
    url = "https://hotline.test" + path
    response = await post(client, path, params, signature=twilio_signature(TOKEN, url, params))

    assert response.status_code == 200, response.text
    assert response.json() == {"call_sid": CALL_SID, "status": "ringing"}
    [event] = recorder.events
    assert isinstance(event, IncomingCall)
    assert event.from_ == CALLER and event.direction == "inbound"
    [context] = recorder.contexts
    assert context.url == url and context.drill is False


async def test_a_messaging_webhook_yields_its_model(client: httpx.AsyncClient, recorder: Recorder) -> None:
    params = {
        "AccountSid": ACCOUNT_SID,
        "MessageSid": "SM" + "b" * 32,
        "From": CALLER,
        "To": "+15005550006",
        "Body": "I need to talk to someone & it's late",
        "NumMedia": "0",
    }
    url = "https://hotline.test/_test/twilio/sms"
    response = await post(client, "/_test/twilio/sms", params, signature=twilio_signature(TOKEN, url, params))
    assert response.status_code == 200
    [event] = recorder.events
    assert isinstance(event, IncomingMessage) and event.body == params["Body"]


async def test_repeated_form_keys_are_signed_and_kept(client: httpx.AsyncClient, recorder: Recorder) -> None:
    # Twilio signs every value of a repeated key; the dependency must verify them all.
    pairs = [*call_params().items(), ("StirVerstat", "TN-Validation-Passed-A")]
    body = urlencode([*pairs, ("SipHeader_X-Trace", "one"), ("SipHeader_X-Trace", "two")])
    url = "https://hotline.test/_test/twilio/voice"
    multi = {key: [value] for key, value in pairs} | {"SipHeader_X-Trace": ["one", "two"]}

    class Multi(dict[str, list[str]]):
        def getall(self, key: str) -> list[str]:
            return self[key]

    signature = RequestValidator(TOKEN).compute_signature(url, Multi(multi))
    response = await client.post(
        "/_test/twilio/voice",
        content=body.encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": signature},
    )
    assert response.status_code == 200
    tampered = body.replace("Trace=two", "Trace=three")
    response = await client.post(
        "/_test/twilio/voice",
        content=tampered.encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": signature},
    )
    assert_refused(response)
    assert len(recorder.events) == 1


@pytest.mark.parametrize(
    "case",
    [
        "wrong signature",
        "missing header",
        "empty header",
        "other url",
        "other query",
        "body changed",
        "other host",
    ],
)
async def test_anything_but_a_valid_signature_is_refused_before_the_route_runs(
    app: FastAPI, client: httpx.AsyncClient, recorder: Recorder, case: str
) -> None:
    params = call_params()
    path = "/_test/guarded/write?attempt=1"
    url = "https://hotline.test" + path
    signature: str | None = twilio_signature(TOKEN, url, params)
    sent = dict(params)
    if case == "wrong signature":
        signature = twilio_signature("not-the-token", url, params)
    elif case == "missing header":
        signature = None
    elif case == "empty header":
        signature = ""
    elif case == "other url":
        signature = twilio_signature(TOKEN, "https://hotline.test/_test/twilio/voice?attempt=1", params)
    elif case == "other query":
        signature = twilio_signature(TOKEN, "https://hotline.test/_test/guarded/write?attempt=2", params)
    elif case == "body changed":
        sent["CallStatus"] = "in-progress"
    elif case == "other host":
        # Signed for the address the app happens to be reached at, not HOTLINE_PUBLIC_URL.
        signature = twilio_signature(TOKEN, "http://127.0.0.1:8000" + path, params)

    response = await post(client, path, sent, signature=signature)

    assert_refused(response)
    assert recorder.events == [] and recorder.touched == []
    assert await count_jobs(app) == 0


async def test_the_guarded_route_runs_once_verified(
    app: FastAPI, client: httpx.AsyncClient, recorder: Recorder
) -> None:
    params = call_params()
    url = "https://hotline.test/_test/guarded/write"
    response = await post(
        client, "/_test/guarded/write", params, signature=twilio_signature(TOKEN, url, params)
    )
    assert response.status_code == 200, response.text
    assert recorder.touched == ["dependency ran"] and len(recorder.events) == 1
    assert await count_jobs(app) == 1


async def test_forwarded_headers_do_not_change_the_signed_url(
    client: httpx.AsyncClient, recorder: Recorder
) -> None:
    params = call_params()
    path = "/_test/twilio/voice"
    forged_host = {"X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "http", "Host": "evil.example"}
    signature = twilio_signature(TOKEN, "http://evil.example" + path, params)
    assert_refused(await post(client, path, params, signature=signature, extra_headers=forged_host))
    signature = twilio_signature(TOKEN, "https://hotline.test" + path, params)
    response = await post(client, path, params, signature=signature, extra_headers=forged_host)
    assert response.status_code == 200


async def test_the_raw_path_and_query_are_signed_as_sent(
    client: httpx.AsyncClient, recorder: Recorder
) -> None:
    params = call_params()
    path = "/_test/twilio/voice?note=It%27s&b=2&a=1"
    signature = twilio_signature(TOKEN, "https://hotline.test" + path, params)
    assert (await post(client, path, params, signature=signature)).status_code == 200
    # The same query decoded (or re-ordered) is a different URL to Twilio.
    decoded = twilio_signature(TOKEN, "https://hotline.test/_test/twilio/voice?note=It's&b=2&a=1", params)
    assert_refused(await post(client, path, params, signature=decoded))


async def test_the_drill_flag_comes_from_the_signed_query(
    client: httpx.AsyncClient, recorder: Recorder
) -> None:
    params = call_params()
    path = "/_test/twilio/voice?drill=1"
    signature = twilio_signature(TOKEN, "https://hotline.test" + path, params)
    assert (await post(client, path, params, signature=signature)).status_code == 200
    assert recorder.contexts[-1].drill is True
    # Adding the flag to a request signed without it breaks the signature.
    plain = twilio_signature(TOKEN, "https://hotline.test/_test/twilio/voice", params)
    assert_refused(await post(client, path, params, signature=plain))


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
async def test_other_methods_are_refused(client: httpx.AsyncClient, recorder: Recorder, method: str) -> None:
    url = "https://hotline.test/_test/twilio/voice"
    signature = twilio_signature(TOKEN, url, {})
    response = await client.request(method, "/_test/twilio/voice", headers={"X-Twilio-Signature": signature})
    assert response.status_code == 405
    assert recorder.events == []


async def test_a_multi_method_route_still_refuses_get(app: FastAPI, client: httpx.AsyncClient) -> None:
    ran: list[str] = []

    @app.api_route("/_test/twilio/any", methods=["GET", "POST"])
    async def anything(event: Annotated[IncomingCall, twilio_webhook(IncomingCall)]) -> dict[str, str]:
        ran.append(event.call_sid)
        return {}

    url = "https://hotline.test/_test/twilio/any?" + urlencode(call_params())
    response = await client.get(url, headers={"X-Twilio-Signature": twilio_signature(TOKEN, url, {})})
    assert response.status_code == 405 and response.headers["allow"] == "POST"
    assert ran == []


@pytest.mark.parametrize(
    "settings", [{"twilio_previous_auth_tokens": "old-token-aaaa,old-token-bbbb"}], indirect=True
)
async def test_previous_tokens_are_accepted_during_rotation(
    client: httpx.AsyncClient, recorder: Recorder
) -> None:
    params = call_params()
    url = "https://hotline.test/_test/twilio/voice"
    for token in (TOKEN, "old-token-aaaa", "old-token-bbbb"):
        response = await post(
            client, "/_test/twilio/voice", params, signature=twilio_signature(token, url, params)
        )
        assert response.status_code == 200, token
    for token in ("old-token-cccc", "old-token-aaaa,old-token-bbbb", ""):
        signature = twilio_signature(token, url, params) if token else "x"
        assert_refused(await post(client, "/_test/twilio/voice", params, signature=signature))
    assert len(recorder.events) == 3


@pytest.mark.parametrize("settings", [{"twilio_auth_token": None}], indirect=True)
async def test_without_a_configured_token_everything_is_refused(
    client: httpx.AsyncClient, recorder: Recorder
) -> None:
    params = call_params()
    url = "https://hotline.test/_test/twilio/voice"
    for token in (TOKEN, "anything"):
        assert_refused(
            await post(client, "/_test/twilio/voice", params, signature=twilio_signature(token, url, params))
        )
    assert recorder.events == []


@pytest.mark.parametrize("settings", [{"public_url": "https://example.org/hotline/"}], indirect=True)
async def test_a_public_url_with_a_path_prefix(client: httpx.AsyncClient, recorder: Recorder) -> None:
    # The proxy serves the app under /hotline and strips the prefix; Twilio signed the public URL.
    params = call_params()
    path = "/_test/twilio/voice?attempt=1"
    signature = twilio_signature(TOKEN, "https://example.org/hotline" + path, params)
    assert (await post(client, path, params, signature=signature)).status_code == 200
    without_prefix = twilio_signature(TOKEN, "https://example.org" + path, params)
    assert_refused(await post(client, path, params, signature=without_prefix))
    assert recorder.contexts[0].url == "https://example.org/hotline" + path


@pytest.mark.parametrize("settings", [{"public_url": "https://hotline.test:8443"}], indirect=True)
async def test_a_public_url_with_a_port(client: httpx.AsyncClient, recorder: Recorder) -> None:
    params = call_params()
    signature = twilio_signature(TOKEN, "https://hotline.test:8443/_test/twilio/voice", params)
    assert (await post(client, "/_test/twilio/voice", params, signature=signature)).status_code == 200


async def test_non_form_bodies_are_refused(client: httpx.AsyncClient, recorder: Recorder) -> None:
    url = "https://hotline.test/_test/twilio/voice"
    signature = twilio_signature(TOKEN, url, {})
    response = await client.post(
        "/_test/twilio/voice",
        json=call_params(),
        headers={"X-Twilio-Signature": signature},
    )
    assert_refused(response)
    bad_utf8 = await client.post(
        "/_test/twilio/voice",
        content=b"CallSid=%FF%FE",
        headers={"Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": signature},
    )
    assert_refused(bad_utf8)
    huge = await client.post(
        "/_test/twilio/voice",
        content=b"Body=" + b"x" * (70 * 1024),
        headers={"Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": signature},
    )
    assert huge.status_code == 413
    assert recorder.events == []


async def test_an_invalid_signed_payload_is_a_distinct_error_that_echoes_nothing(
    client: httpx.AsyncClient, recorder: Recorder, captured_logs: LogCapture
) -> None:
    params = call_params(CallSid="CA-CANARY-+15555550142", CallStatus="CANARY-status")
    url = "https://hotline.test/_test/twilio/voice"
    response = await post(
        client, "/_test/twilio/voice", params, signature=twilio_signature(TOKEN, url, params)
    )

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_webhook_payload"
    assert "CANARY" not in response.text and CALLER not in response.text
    logged = b"\n".join(line.encode() for line in captured_logs.lines if '"logger": "hotline' in line)
    assert b"payload invalid" in logged
    assert b"CANARY" not in logged and CALLER.encode() not in logged
    assert recorder.events == []


async def test_webhook_routes_can_answer_an_invalid_payload_with_fallback_twiml(
    app: FastAPI, client: httpx.AsyncClient, recorder: Recorder
) -> None:
    fallback = '<?xml version="1.0" encoding="UTF-8"?><Response><Say>Please hold.</Say></Response>'
    seen: list[InvalidWebhookPayload] = []

    async def answer_fallback(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, InvalidWebhookPayload)
        seen.append(exc)
        return Response(fallback, media_type="text/xml")

    app.add_exception_handler(InvalidWebhookPayload, answer_fallback)
    params = call_params(CallStatus="not-a-status")
    url = "https://hotline.test/_test/twilio/voice"
    response = await post(
        client, "/_test/twilio/voice", params, signature=twilio_signature(TOKEN, url, params)
    )

    assert response.status_code == 200 and response.text == fallback
    [error] = seen
    assert error.model is IncomingCall
    assert error.problems == [{"loc": "CallStatus", "type": "literal_error"}]
    assert recorder.events == []


async def test_refusals_log_no_request_content(
    client: httpx.AsyncClient, recorder: Recorder, captured_logs: LogCapture
) -> None:
    params = call_params()
    response = await post(client, "/_test/twilio/voice?who=CANARY", params, signature="forged")
    assert_refused(response)
    # The server's own log records (the test client's httpx logger prints the URL it requested).
    logged = b"\n".join(line.encode() for line in captured_logs.lines if '"logger": "hotline' in line)
    assert b"invalid signature" in logged
    assert CALLER.encode() not in logged and b"CANARY" not in logged and b"forged" not in logged
