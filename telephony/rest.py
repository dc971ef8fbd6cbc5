"""Twilio REST behind a narrow protocol, with the hotline's retry policy.

``TelephonyClient`` is everything the app asks of Twilio's REST API; ``TwilioRestClient``
implements it with the real ``twilio.rest.Client`` (its async methods) over an httpx-based
twilio ``HttpClient`` (5 s timeouts, no logging of URLs or bodies).  Tests and drills point it
at the in-repo fake (``telephony.fake``) through ``api_base_url``.

Retry policy (bounded attempts, exponential backoff, injectable ``sleep``):

* **Creates** (messages, calls) are retried only when Twilio certainly did not act: HTTP 429,
  or a connect error (the request never left).  A 5xx is *not* retried: Twilio may have acted.
* After an **ambiguous** failure on a create — a read timeout, or the connection dropping after
  the request was sent — the resource may exist.  Before creating again the client *looks it
  up*: it lists the newest resources with the same ``To``/``From`` (20 at most) and takes one
  created since the first attempt began, less ``lookup_skew`` for clock differences; a message
  must also have the same body.  Twilio offers no idempotency key for these creates, so this
  match on natural keys is the best available; its failure mode is a duplicate, never a loss.
  Voice capacity 1 and one offer at a time make a false match on calls unlikely.
* **Reads, updates and deletes** are idempotent and are also retried on 5xx, timeouts, dropped
  connections and Twilio error 20009 ("cannot delete before complete").

Errors surface as :class:`TelephonyError` subclasses carrying the Twilio error code and HTTP
status.  Their messages never include a phone number or a message body (Twilio's own error
text can quote the number, so it is dropped).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Literal, Protocol, TypeVar

import httpx
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http import AsyncHttpClient
from twilio.http.response import Response as TwilioResponse
from twilio.rest import Client

TWILIO_API_BASE_URL = "https://api.twilio.com"
DEFAULT_CALL_EVENTS: tuple[str, ...] = ("initiated", "ringing", "answered", "completed")

_logger = logging.getLogger(__name__)
_T = TypeVar("_T")

_SID_PATTERNS = {
    "message": re.compile(r"(SM|MM)[0-9a-f]{32}"),
    "call": re.compile(r"CA[0-9a-f]{32}"),
    "queue": re.compile(r"QU[0-9a-f]{32}"),
    "recording": re.compile(r"RE[0-9a-f]{32}"),
}


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


class TelephonyError(Exception):
    """A Twilio REST operation failed.  ``code`` is Twilio's error code, ``status`` the HTTP status."""

    def __init__(self, operation: str, *, code: int | None = None, status: int | None = None) -> None:
        detail = f"Twilio {operation} failed"
        if code is not None:
            detail += f": error {code}"
        if status is not None:
            detail += f" (HTTP {status})"
        super().__init__(detail)
        self.operation = operation
        self.code = code
        self.status = status


class NotFound(TelephonyError):
    """20404: the resource does not exist (or is already gone)."""


class OptedOut(TelephonyError):
    """21610: the recipient texted STOP; Twilio refuses to message them."""


class OutsideWhatsAppWindow(TelephonyError):
    """63016: freeform WhatsApp outside the 24-hour window (arrives as a delivery ``ErrorCode``)."""


class CallNotInProgress(TelephonyError):
    """21220: the call already ended, so it cannot be redirected."""


class ResourceNotComplete(TelephonyError):
    """20009: too early to delete (message in flight, call live); retry much later."""


class AuthenticationFailed(TelephonyError):
    """20003 / HTTP 401: wrong account SID, auth token or API key."""


class RateLimited(TelephonyError):
    """HTTP 429 on every attempt."""


class Unavailable(TelephonyError):
    """Twilio could not be reached, timed out, or answered 5xx (on every attempt allowed)."""


_ERRORS_BY_CODE: dict[int, type[TelephonyError]] = {
    20003: AuthenticationFailed,
    20009: ResourceNotComplete,
    20404: NotFound,
    21220: CallNotInProgress,
    21610: OptedOut,
    63016: OutsideWhatsAppWindow,
}


def error_for(operation: str, code: int | None, status: int | None = None) -> TelephonyError:
    """The typed error for a Twilio error code — also for ``ErrorCode`` in status callbacks."""
    if code in _ERRORS_BY_CODE:
        return _ERRORS_BY_CODE[code](operation, code=code, status=status)
    if status == 401:
        return AuthenticationFailed(operation, code=code, status=status)
    if status == 404:
        return NotFound(operation, code=code, status=status)
    if status == 429:
        return RateLimited(operation, code=code, status=status)
    if status is not None and status >= 500:
        return Unavailable(operation, code=code, status=status)
    return TelephonyError(operation, code=code, status=status)


# --------------------------------------------------------------------------------------------
# Values and the protocol
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MessageInfo:
    """What the app needs to know about a message (no numbers, no body)."""

    sid: str
    status: str
    direction: str
    error_code: int | None
    date_created: datetime | None
    date_sent: datetime | None
    date_updated: datetime | None

    def error(self) -> TelephonyError | None:
        """The delivery failure as a typed error (e.g. ``OutsideWhatsAppWindow``), if any."""
        return error_for("message delivery", self.error_code) if self.error_code else None


@dataclass(frozen=True)
class CallInfo:
    """What the app needs to know about a call leg (no numbers)."""

    sid: str
    status: str
    direction: str
    duration: int | None
    answered_by: str | None
    parent_call_sid: str | None
    start_time: datetime | None
    end_time: datetime | None


class TelephonyClient(Protocol):
    """Everything the hotline asks of Twilio's REST API."""

    async def send_message(
        self,
        *,
        to: str,
        from_: str,
        body: str,
        status_callback: str | None = None,
        content_sid: str | None = None,
    ) -> str:
        """Send an SMS or WhatsApp message (``whatsapp:`` addresses); returns the message SID.
        ``content_sid`` sends an approved template instead of ``body`` (WhatsApp outside the
        24-hour window)."""
        ...

    async def create_call(
        self,
        *,
        to: str,
        from_: str,
        url: str,
        status_callback: str | None = None,
        status_callback_events: Sequence[str] = DEFAULT_CALL_EVENTS,
        timeout: int = 20,
        machine_detection: Literal["Enable", "DetectMessageEnd"] | None = None,
        fallback_url: str | None = None,
    ) -> str:
        """Start an outbound leg whose answer fetches ``url``; returns the call SID."""
        ...

    async def redirect_call(self, call_sid: str, url: str) -> None:
        """Make a live call run the TwiML at ``url`` now."""
        ...

    async def hang_up_call(self, call_sid: str) -> None:
        """End a call in any state (a call that already ended is fine)."""
        ...

    async def dequeue_call(self, queue_sid: str, call_sid: str, url: str) -> None:
        """Take one caller out of a queue by CallSid and make it run ``url`` (Queue Members REST)."""
        ...

    async def fetch_message(self, message_sid: str) -> MessageInfo:
        """Look a message up."""
        ...

    async def fetch_call(self, call_sid: str) -> CallInfo:
        """Look a call up."""
        ...

    async def fetch_recording_audio(self, recording_sid: str) -> bytes:
        """Download a recording's audio (WAV) with HTTP auth."""
        ...

    async def delete_message(self, message_sid: str) -> None:
        """Delete a message (and its media) at Twilio."""
        ...

    async def delete_recording(self, recording_sid: str) -> None:
        """Delete a recording at Twilio."""
        ...

    async def delete_call(self, call_sid: str) -> None:
        """Delete a finished call's record at Twilio."""
        ...


# --------------------------------------------------------------------------------------------
# Transport
# --------------------------------------------------------------------------------------------


class HttpxTwilioClient(AsyncHttpClient):
    """twilio's async ``HttpClient`` over httpx.

    Why not twilio's aiohttp client: httpx separates "could not connect" (safe to retry a
    create) from "sent, then no answer" (maybe created), which the retry policy needs, and
    this client never logs URLs (list filters carry phone numbers).
    """

    def __init__(self, http: httpx.AsyncClient, timeout: float) -> None:
        super().__init__(_logger, True, timeout)
        self.http = http

    async def request(
        self,
        method: str,
        uri: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
        allow_redirects: bool = False,
    ) -> TwilioResponse:
        """Perform one request; transport errors propagate as ``httpx`` exceptions."""
        response = await self.http.request(
            method.upper(),
            uri,
            params=params,  # type: ignore[arg-type]
            data=data,
            headers=headers,
            auth=auth,
            timeout=timeout if timeout is not None else self.timeout,
            follow_redirects=allow_redirects,
        )
        return TwilioResponse(response.status_code, response.text, response.headers)

    async def close(self) -> None:
        """Close the underlying connection pool."""
        await self.http.aclose()


@dataclass(frozen=True)
class _Failure:
    kind: Literal["connect", "ambiguous", "rate", "server", "not_complete", "fatal"]
    code: int | None = None
    status: int | None = None


def _classify(exc: BaseException) -> _Failure | None:
    """How a failure bears on retrying; None for errors that are not Twilio's or the network's."""
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout):
        return _Failure("connect")
    if isinstance(exc, httpx.TransportError):
        return _Failure("ambiguous")  # read/write timeout, connection dropped mid-request
    status: int | None
    code: int | None
    if isinstance(exc, TwilioRestException):
        status, code = exc.status, exc.code
    elif isinstance(exc, TwilioException) and len(exc.args) > 1 and isinstance(exc.args[1], TwilioResponse):
        # List pages raise a bare TwilioException carrying the response.
        status, code = exc.args[1].status_code, _error_code(exc.args[1].text)
    elif isinstance(exc, TwilioException) and hasattr(exc, "status") and hasattr(exc, "code"):
        status, code = getattr(exc, "status", None), getattr(exc, "code", None)  # RFC 9457 errors
    else:
        return None
    if status == 429:
        return _Failure("rate", code, status)
    if code == 20009:
        return _Failure("not_complete", code, status)
    if status is not None and status >= 500:
        return _Failure("server", code, status)
    return _Failure("fatal", code, status)


def _error_code(text: str) -> int | None:
    try:
        payload = json.loads(text)
    except ValueError:
        return None
    code = payload.get("code") if isinstance(payload, dict) else None
    return code if isinstance(code, int) else None


def _check_sid(kind: str, sid: str) -> str:
    if not _SID_PATTERNS[kind].fullmatch(sid):
        raise ValueError(f"not a Twilio {kind} SID")
    return sid


def _utcnow() -> datetime:
    return datetime.now(UTC)


# --------------------------------------------------------------------------------------------
# The client
# --------------------------------------------------------------------------------------------


class TwilioRestClient:
    """``TelephonyClient`` over the real twilio client, with the retry policy in the module doc.

    Authenticate with the account's auth token, or with an API key SID and secret (preferred
    for REST: revocable without rotating the webhook-signing token).  ``api_base_url`` is
    Twilio's API origin (the fake's ``base_url`` in tests).  ``sleep`` and ``clock`` are
    injectable for tests.  Close with ``await client.aclose()`` (or ``async with``).
    """

    def __init__(
        self,
        account_sid: str,
        *,
        auth_token: str | None = None,
        api_key: str | None = None,
        api_secret: str | None = None,
        api_base_url: str = TWILIO_API_BASE_URL,
        timeout: float = 5.0,
        max_attempts: int = 4,
        backoff: float = 0.5,
        max_backoff: float = 8.0,
        lookup_skew: timedelta = timedelta(seconds=60),
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        if (auth_token is None) == (api_key is None or api_secret is None):
            raise ValueError("give either auth_token, or api_key and api_secret")
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.account_sid = account_sid
        self._base_url = api_base_url.rstrip("/")
        self._auth: tuple[str, str] = (
            (api_key, api_secret) if api_key and api_secret else (account_sid, auth_token or "")
        )
        self._http = httpx.AsyncClient(timeout=httpx.Timeout(timeout))
        self._client = Client(
            self._auth[0],
            self._auth[1],
            account_sid,
            http_client=HttpxTwilioClient(self._http, timeout),
            # A non-empty mapping, so twilio does not read the process environment (TWILIO_EDGE /
            # TWILIO_REGION would rewrite the host and break a non-Twilio base URL).
            environment={"TWILIO_EDGE": "", "TWILIO_REGION": ""},
        )
        self._client.api.base_url = self._base_url
        self._max_attempts = max_attempts
        self._backoff = backoff
        self._max_backoff = max_backoff
        self._lookup_skew = lookup_skew
        self._sleep = sleep
        self._clock = clock

    async def aclose(self) -> None:
        """Close the HTTP connection pool."""
        await self._http.aclose()

    async def __aenter__(self) -> TwilioRestClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    # -- messages ----------------------------------------------------------------------------

    async def send_message(
        self,
        *,
        to: str,
        from_: str,
        body: str,
        status_callback: str | None = None,
        content_sid: str | None = None,
    ) -> str:
        """Send an SMS/WhatsApp message; returns its SID (see the module doc for retries)."""

        async def create() -> str:
            if content_sid is not None:
                message = await self._client.messages.create_async(
                    to=to, from_=from_, content_sid=content_sid, status_callback=status_callback
                )
            else:
                message = await self._client.messages.create_async(
                    to=to, from_=from_, body=body, status_callback=status_callback
                )
            return str(message.sid)

        async def lookup(since: datetime) -> str | None:
            recent = await self._client.messages.list_async(to=to, from_=from_, limit=20)
            for message in recent:
                if (
                    message.body == body
                    and message.date_created is not None
                    and message.date_created >= since
                ):
                    return str(message.sid)
            return None

        return await self._create("messages.create", create, lookup)

    async def fetch_message(self, message_sid: str) -> MessageInfo:
        """Look a message up (status and error code)."""
        sid = _check_sid("message", message_sid)
        message = await self._retrying("messages.fetch", lambda: self._client.messages(sid).fetch_async())
        return MessageInfo(
            sid=str(message.sid),
            status=str(message.status),
            direction=str(message.direction),
            error_code=message.error_code,
            date_created=message.date_created,
            date_sent=message.date_sent,
            date_updated=message.date_updated,
        )

    async def delete_message(self, message_sid: str) -> None:
        """Delete a message and its media."""
        sid = _check_sid("message", message_sid)
        await self._retrying("messages.delete", lambda: self._client.messages(sid).delete_async())

    # -- calls -------------------------------------------------------------------------------

    async def create_call(
        self,
        *,
        to: str,
        from_: str,
        url: str,
        status_callback: str | None = None,
        status_callback_events: Sequence[str] = DEFAULT_CALL_EVENTS,
        timeout: int = 20,
        machine_detection: Literal["Enable", "DetectMessageEnd"] | None = None,
        fallback_url: str | None = None,
    ) -> str:
        """Start an outbound leg; returns its SID (see the module doc for retries)."""

        async def create() -> str:
            call = await self._client.calls.create_async(
                to=to,
                from_=from_,
                url=url,
                method="POST",
                status_callback=status_callback,
                status_callback_method="POST" if status_callback else None,
                status_callback_event=list(status_callback_events) if status_callback else None,
                timeout=timeout,
                machine_detection=machine_detection,
                fallback_url=fallback_url,
                fallback_method="POST" if fallback_url else None,
            )
            return str(call.sid)

        async def lookup(since: datetime) -> str | None:
            recent = await self._client.calls.list_async(to=to, from_=from_, limit=20)
            for call in recent:
                if call.date_created is not None and call.date_created >= since:
                    return str(call.sid)
            return None

        return await self._create("calls.create", create, lookup)

    async def redirect_call(self, call_sid: str, url: str) -> None:
        """Make a live call fetch and run ``url`` (POST)."""
        sid = _check_sid("call", call_sid)
        await self._retrying(
            "calls.update", lambda: self._client.calls(sid).update_async(url=url, method="POST")
        )

    async def hang_up_call(self, call_sid: str) -> None:
        """End a call: ``completed`` hangs up in any state; an already-ended call is success."""
        sid = _check_sid("call", call_sid)
        try:
            await self._retrying(
                "calls.update", lambda: self._client.calls(sid).update_async(status="completed")
            )
        except CallNotInProgress:
            return  # already over (maybe by our own earlier attempt): the goal is met

    async def fetch_call(self, call_sid: str) -> CallInfo:
        """Look a call leg up."""
        sid = _check_sid("call", call_sid)
        call = await self._retrying("calls.fetch", lambda: self._client.calls(sid).fetch_async())
        return CallInfo(
            sid=str(call.sid),
            status=str(call.status),
            direction=str(call.direction),
            duration=int(call.duration) if call.duration not in (None, "") else None,
            answered_by=call.answered_by,
            parent_call_sid=call.parent_call_sid,
            start_time=call.start_time,
            end_time=call.end_time,
        )

    async def delete_call(self, call_sid: str) -> None:
        """Delete a finished call's record."""
        sid = _check_sid("call", call_sid)
        await self._retrying("calls.delete", lambda: self._client.calls(sid).delete_async())

    async def dequeue_call(self, queue_sid: str, call_sid: str, url: str) -> None:
        """``POST /Queues/{QueueSid}/Members/{CallSid}`` with ``Url``/``Method``.

        ``NotFound`` means the caller is no longer in that queue (hung up, or dequeued by
        someone else): the caller decides what that means for the offer.
        """
        queue = _check_sid("queue", queue_sid)
        sid = _check_sid("call", call_sid)
        await self._retrying(
            "queue_members.update",
            lambda: self._client.queues(queue).members(sid).update_async(url=url, method="POST"),
        )

    # -- recordings --------------------------------------------------------------------------

    async def fetch_recording_audio(self, recording_sid: str) -> bytes:
        """The recording's WAV bytes from its media URL, with HTTP auth.

        Takes a SID, not a URL: the URL is built from the configured API origin so account
        credentials are never sent to a host named in a webhook parameter.
        """
        sid = _check_sid("recording", recording_sid)
        url = f"{self._base_url}/2010-04-01/Accounts/{self.account_sid}/Recordings/{sid}"

        async def download() -> bytes:
            # Media may be served through a redirect; httpx drops the credentials when the
            # redirect leaves the API's origin.
            response = await self._http.get(url, auth=self._auth, follow_redirects=True)
            if response.status_code != 200:
                raise TwilioRestException(
                    response.status_code, url, "Unable to fetch recording", _error_code(response.text), "GET"
                )
            return response.content

        return await self._retrying("recordings.media", download)

    async def delete_recording(self, recording_sid: str) -> None:
        """Delete a recording (after the app has stored its sealed copy)."""
        sid = _check_sid("recording", recording_sid)
        await self._retrying("recordings.delete", lambda: self._client.recordings(sid).delete_async())

    # -- retry machinery ---------------------------------------------------------------------

    def _delay(self, attempt: int) -> float:
        return float(min(self._max_backoff, self._backoff * 2 ** (attempt - 1)))

    async def _create(
        self,
        operation: str,
        create: Callable[[], Awaitable[str]],
        lookup: Callable[[datetime], Awaitable[str | None]],
    ) -> str:
        started = self._clock()
        since = started - self._lookup_skew
        maybe_created = False
        last = _Failure("connect")
        for attempt in range(1, self._max_attempts + 1):
            if maybe_created:
                found = await self._retrying(f"{operation} lookup", lambda: lookup(since))
                if found is not None:
                    _logger.info("twilio %s: found the resource an earlier attempt created", operation)
                    return found
            try:
                return await create()
            except Exception as exc:
                failure = _classify(exc)
                if failure is None:
                    raise
                if failure.kind == "ambiguous":
                    maybe_created = True
                elif failure.kind not in ("connect", "rate"):
                    # `from None`: Twilio's message may quote the phone number.
                    raise error_for(operation, failure.code, failure.status) from None
                last = failure
            _logger.warning("twilio %s attempt %d failed (%s)", operation, attempt, last.kind)
            if attempt < self._max_attempts:
                await self._sleep(self._delay(attempt))
        if maybe_created:
            found = await self._retrying(f"{operation} lookup", lambda: lookup(since))
            if found is not None:
                return found
        raise self._exhausted(operation, last)

    async def _retrying(self, operation: str, action: Callable[[], Awaitable[_T]]) -> _T:
        last = _Failure("connect")
        for attempt in range(1, self._max_attempts + 1):
            try:
                return await action()
            except Exception as exc:
                failure = _classify(exc)
                if failure is None:
                    raise
                if failure.kind == "fatal":
                    raise error_for(operation, failure.code, failure.status) from None
                last = failure
            _logger.warning("twilio %s attempt %d failed (%s)", operation, attempt, last.kind)
            if attempt < self._max_attempts:
                await self._sleep(self._delay(attempt))
        raise self._exhausted(operation, last)

    @staticmethod
    def _exhausted(operation: str, last: _Failure) -> TelephonyError:
        if last.kind == "rate":
            return RateLimited(operation, code=last.code, status=last.status)
        if last.kind == "not_complete":
            return ResourceNotComplete(operation, code=last.code, status=last.status)
        return Unavailable(operation, code=last.code, status=last.status)


def _conforms(client: TwilioRestClient) -> TelephonyClient:
    """Static check (mypy): the implementation satisfies the protocol."""
    return client
