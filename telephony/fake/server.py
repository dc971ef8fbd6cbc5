"""The fake Twilio REST API: a Starlette app on loopback, served by uvicorn in a background thread.

Paths, JSON shapes, status codes and error bodies follow Twilio's v2010 API closely enough that
the real ``twilio`` client (pointed here with ``client.api.base_url``) works unmodified.
Basic auth is enforced (AccountSid/AuthToken or an API key SID/secret), and faults can be
injected per operation to exercise a client's retry paths.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from types import TracebackType
from typing import Any
from urllib.parse import urlencode

import uvicorn
from starlette.applications import Starlette
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from telephony.fake.store import (
    API_VERSION,
    Call,
    Event,
    EventLog,
    FakeTwilioStore,
    FaultPlan,
    Message,
    NumberConfig,
    Queue,
    Recording,
    TwilioApiError,
    new_sid,
    not_found,
)

ACCOUNT = f"/{API_VERSION}/Accounts/{{account}}"
Handler = Callable[[Request, FormData], tuple[int, Any]]


def _form_value(form: FormData, name: str, default: str | None = None) -> str | None:
    value = form.get(name)
    return value if isinstance(value, str) else default


def _form_list(form: FormData, name: str) -> list[str]:
    return [value for value in form.getlist(name) if isinstance(value, str)]


def _credentials(request: Request) -> tuple[str, str] | None:
    header = request.headers.get("authorization", "")
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        username, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return username, password


def _error(exc: TwilioApiError, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=exc.status, headers=headers)


def _page(request: Request, key: str, items: list[dict[str, Any]]) -> dict[str, Any]:
    """Twilio v2010 list page with ``PageSize``/``Page`` and a ``next_page_uri``."""
    query = dict(request.query_params)
    size = int(query.get("PageSize", "50") or 50)
    number = int(query.get("Page", "0") or 0)
    start = number * size
    chunk = items[start : start + size]

    def uri(page: int) -> str:
        return f"{request.url.path}?{urlencode({**query, 'PageSize': size, 'Page': page})}"

    return {
        key: chunk,
        "end": start + max(len(chunk) - 1, 0),
        "first_page_uri": uri(0),
        "next_page_uri": uri(number + 1) if start + size < len(items) else None,
        "page": number,
        "page_size": size,
        "previous_page_uri": uri(number - 1) if number > 0 else None,
        "start": start,
        "uri": uri(number),
    }


class _DroppedResponse(Response):
    """Starts an answer and abandons it: uvicorn closes the connection mid-body."""

    def __init__(self) -> None:
        super().__init__(b"")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(b"content-type", b"application/json"), (b"content-length", b"4096")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b'{"sid": "', "more_body": True})


class StopSignal:
    """Wakes handlers holding an injected delay when the server stops (set from any thread)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stopped = False
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()

    def set(self) -> None:
        """Release every current and future waiter."""
        with self._lock:
            self._stopped = True
            waiters = list(self._waiters)
        for loop, event in waiters:
            loop.call_soon_threadsafe(event.set)

    def clear(self) -> None:
        """Arm again (the server is starting)."""
        with self._lock:
            self._stopped = False

    async def wait(self, timeout: float) -> None:
        """Return after ``timeout`` seconds, or at once when the server stops."""
        entry = (asyncio.get_running_loop(), asyncio.Event())
        with self._lock:
            if self._stopped:
                return
            self._waiters.add(entry)
        try:
            await asyncio.wait_for(entry[1].wait(), timeout)
        except TimeoutError:
            pass
        finally:
            with self._lock:
                self._waiters.discard(entry)


def build_rest_app(store: FakeTwilioStore, stopping: StopSignal) -> Starlette:
    """The Starlette app implementing the REST resources over ``store``."""

    async def run(request: Request, operation: str, handler: Handler) -> Response:
        creds = _credentials(request)
        if creds is None or not store.check_credentials(*creds):
            store.events.add("rest", None, op=operation, status=401, method=request.method)
            return _error(
                TwilioApiError(401, 20003, "Authenticate"), {"WWW-Authenticate": 'Basic realm="Twilio API"'}
            )
        if request.path_params.get("account") != store.account_sid:
            return _error(not_found(request.url.path))
        form = await request.form() if request.method == "POST" else FormData()
        fault = store.faults.take(operation)
        if fault is not None and fault.kind == "error":
            store.events.add(
                "rest", None, op=operation, status=fault.status, method=request.method, fault=True
            )
            return _error(TwilioApiError(fault.status, fault.code, fault.message))
        if fault is not None and fault.kind == "drop" and not fault.apply:
            store.events.add("rest", None, op=operation, status=None, method=request.method, fault=True)
            return _DroppedResponse()
        if fault is not None and not fault.apply:
            await _hold(fault.seconds)
            store.events.add("rest", None, op=operation, status=503, method=request.method, fault=True)
            return _error(TwilioApiError(503, 20503, "Service Unavailable"))
        try:
            status, payload = handler(request, form)
        except TwilioApiError as exc:
            response: Response = _error(exc)
            status = exc.status
        else:
            if status == 204:
                response = Response(status_code=204)
            elif isinstance(payload, Response):
                response = payload
            else:
                response = JSONResponse(payload, status_code=status)
        store.events.add("rest", None, op=operation, status=status, method=request.method)
        if fault is not None and fault.kind == "drop":
            return _DroppedResponse()  # the request took effect; the answer never arrives whole
        if fault is not None:
            # The request took effect; the answer arrives too late for the client.
            await _hold(fault.seconds)
        return response

    async def _hold(seconds: float) -> None:
        await stopping.wait(seconds)

    # -- messages ----------------------------------------------------------------------------

    def create_message(request: Request, form: FormData) -> tuple[int, Any]:
        message = store.create_message(
            to=_form_value(form, "To", "") or "",
            from_=_form_value(form, "From", "") or "",
            body=_form_value(form, "Body", "") or "",
            status_callback=_form_value(form, "StatusCallback"),
            media_urls=_form_list(form, "MediaUrl"),
            content_sid=_form_value(form, "ContentSid"),
        )
        return 201, message.to_json()

    def list_messages(request: Request, form: FormData) -> tuple[int, Any]:
        found = store.list_messages(dict(request.query_params))
        return 200, _page(request, "messages", [m.to_json() for m in found])

    def fetch_message(request: Request, form: FormData) -> tuple[int, Any]:
        return 200, store.get_message(request.path_params["sid"]).to_json()

    def update_message(request: Request, form: FormData) -> tuple[int, Any]:
        sid = request.path_params["sid"]
        if "Body" not in form:
            return 200, store.get_message(sid).to_json()
        return 200, store.redact_message(sid, _form_value(form, "Body", "") or "").to_json()

    def delete_message(request: Request, form: FormData) -> tuple[int, Any]:
        store.delete_message(request.path_params["sid"])
        return 204, None

    # -- calls -------------------------------------------------------------------------------

    def create_call(request: Request, form: FormData) -> tuple[int, Any]:
        timeout = _form_value(form, "Timeout", "60") or "60"
        if not timeout.isdigit():
            raise TwilioApiError(400, 21216, "Timeout must be an integer")
        call = store.create_call(
            to=_form_value(form, "To", "") or "",
            from_=_form_value(form, "From", "") or "",
            direction="outbound-api",
            url=_form_value(form, "Url"),
            method=_form_value(form, "Method", "POST") or "POST",
            twiml=_form_value(form, "Twiml"),
            fallback_url=_form_value(form, "FallbackUrl"),
            fallback_method=_form_value(form, "FallbackMethod", "POST") or "POST",
            status_callback=_form_value(form, "StatusCallback"),
            status_callback_method=_form_value(form, "StatusCallbackMethod", "POST") or "POST",
            status_callback_events=_form_list(form, "StatusCallbackEvent") or ("completed",),
            timeout=min(int(timeout), 600),
            machine_detection=_form_value(form, "MachineDetection"),
            notify=True,
        )
        return 201, call.to_json()

    def list_calls(request: Request, form: FormData) -> tuple[int, Any]:
        found = store.list_calls(dict(request.query_params))
        return 200, _page(request, "calls", [c.to_json() for c in found])

    def fetch_call(request: Request, form: FormData) -> tuple[int, Any]:
        return 200, store.get_call(request.path_params["sid"]).to_json()

    def update_call(request: Request, form: FormData) -> tuple[int, Any]:
        call = store.update_call(
            request.path_params["sid"],
            url=_form_value(form, "Url"),
            method=_form_value(form, "Method", "POST") or "POST",
            twiml=_form_value(form, "Twiml"),
            status=_form_value(form, "Status"),
        )
        return 200, call.to_json()

    def delete_call(request: Request, form: FormData) -> tuple[int, Any]:
        store.delete_call(request.path_params["sid"])
        return 204, None

    # -- queues ------------------------------------------------------------------------------

    def list_queues(request: Request, form: FormData) -> tuple[int, Any]:
        with store.lock:
            queues = [q.to_json() for q in store.queues.values()]
        return 200, _page(request, "queues", queues)

    def fetch_queue(request: Request, form: FormData) -> tuple[int, Any]:
        return 200, store.get_queue(request.path_params["sid"]).to_json()

    def list_members(request: Request, form: FormData) -> tuple[int, Any]:
        with store.lock:
            queue = store.get_queue(request.path_params["queue"])
            members = [queue.member_json(m, store.clock()) for m in queue.members]
        return 200, _page(request, "queue_members", members)

    def fetch_member(request: Request, form: FormData) -> tuple[int, Any]:
        with store.lock:
            queue, member = store.get_member(request.path_params["queue"], request.path_params["sid"])
            return 200, queue.member_json(member, store.clock())

    def update_member(request: Request, form: FormData) -> tuple[int, Any]:
        payload = store.dequeue_member(
            request.path_params["queue"],
            request.path_params["sid"],
            _form_value(form, "Url", "") or "",
            _form_value(form, "Method", "POST") or "POST",
        )
        return 200, payload

    # -- recordings --------------------------------------------------------------------------

    def list_recordings(request: Request, form: FormData) -> tuple[int, Any]:
        call_sid = request.query_params.get("CallSid")
        with store.lock:
            found = [r for r in reversed(store.recordings.values()) if call_sid in (None, r.call_sid)]
        return 200, _page(request, "recordings", [r.to_json(store.base_url) for r in found])

    def fetch_recording(request: Request, form: FormData) -> tuple[int, Any]:
        return 200, store.get_recording(request.path_params["sid"]).to_json(store.base_url)

    def delete_recording(request: Request, form: FormData) -> tuple[int, Any]:
        store.delete_recording(request.path_params["sid"])
        return 204, None

    def recording_media(request: Request, form: FormData) -> tuple[int, Any]:
        sid = request.path_params["sid"]
        if "." in sid:
            raise not_found(request.url.path)  # only WAV is served (no extension or .wav)
        recording = store.get_recording(sid)
        return 200, Response(recording.audio, media_type="audio/x-wav")

    # -- routing -----------------------------------------------------------------------------

    def endpoint(handlers: dict[str, tuple[str, Handler]]) -> Callable[[Request], Any]:
        async def handle(request: Request) -> Response:
            operation, handler = handlers[request.method]
            return await run(request, operation, handler)

        return handle

    def route(path: str, **handlers: tuple[str, Handler]) -> Route:
        return Route(ACCOUNT + path, endpoint(handlers), methods=list(handlers))

    routes = [
        route(
            "/Messages.json", GET=("messages.list", list_messages), POST=("messages.create", create_message)
        ),
        route(
            "/Messages/{sid}.json",
            GET=("messages.fetch", fetch_message),
            POST=("messages.update", update_message),
            DELETE=("messages.delete", delete_message),
        ),
        route("/Calls.json", GET=("calls.list", list_calls), POST=("calls.create", create_call)),
        route(
            "/Calls/{sid}.json",
            GET=("calls.fetch", fetch_call),
            POST=("calls.update", update_call),
            DELETE=("calls.delete", delete_call),
        ),
        route("/Queues.json", GET=("queues.list", list_queues)),
        route("/Queues/{sid}.json", GET=("queues.fetch", fetch_queue)),
        route("/Queues/{queue}/Members.json", GET=("queue_members.list", list_members)),
        route(
            "/Queues/{queue}/Members/{sid}.json",
            GET=("queue_members.fetch", fetch_member),
            POST=("queue_members.update", update_member),
        ),
        route("/Recordings.json", GET=("recordings.list", list_recordings)),
        route(
            "/Recordings/{sid}.json",
            GET=("recordings.fetch", fetch_recording),
            DELETE=("recordings.delete", delete_recording),
        ),
        route("/Recordings/{sid}.wav", GET=("recordings.media", recording_media)),
        route("/Recordings/{sid}", GET=("recordings.media", recording_media)),
    ]

    async def http_error(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        if status == 405:
            return _error(TwilioApiError(405, 20004, "Method not allowed"))
        if status == 404:
            return _error(not_found(request.url.path))
        return _error(TwilioApiError(status, 20500, "Internal Server Error"))

    return Starlette(routes=routes, exception_handlers={HTTPException: http_error})


class FakeTwilio:
    """One fake Twilio account: state, REST server and the knobs tests turn.

    Use as a context manager (``with FakeTwilio() as fake:``) or ``start()``/``stop()``.
    ``stop()`` keeps the state and the port, so ``start()`` again models an outage that ends.
    """

    def __init__(
        self,
        *,
        account_sid: str | None = None,
        auth_token: str | None = None,
        api_keys: Mapping[str, str] | None = None,
        clock: Callable[[], datetime] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.store = FakeTwilioStore(
            account_sid or new_sid("AC"),
            auth_token or secrets.token_hex(16),
            clock=clock,
            api_keys=api_keys,
        )
        self._host = host
        self._port = port
        self._stopping = StopSignal()
        self._app = build_rest_app(self.store, self._stopping)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> FakeTwilio:
        """Serve on ``host:port`` (a free port the first time) and wait until it accepts."""
        if self._server is not None:
            return self
        self._stopping.clear()
        config = uvicorn.Config(
            self._app, host=self._host, port=self._port, log_level="warning", access_log=False, lifespan="off"
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, name="fake-twilio", daemon=True)
        thread.start()
        deadline = time.monotonic() + timeout
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                server.should_exit = True
                raise RuntimeError(f"fake Twilio could not listen on {self._host}:{self._port}")
            time.sleep(0.005)
        self._port = server.servers[0].sockets[0].getsockname()[1]
        self._server, self._thread = server, thread
        self.store.base_url = self.base_url
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop serving (state and port are kept for a later ``start()``)."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        self._stopping.set()
        server.should_exit = True
        # Idle keep-alive connections from clients would otherwise be waited for.
        server.force_exit = True
        thread.join(timeout)
        self._server = self._thread = None

    def __enter__(self) -> FakeTwilio:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        """Whether the REST server is up."""
        return self._server is not None

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT`` — give it to the REST client as the API base URL."""
        return f"http://{self._host}:{self._port}"

    # -- account -----------------------------------------------------------------------------

    @property
    def account_sid(self) -> str:
        """The fake account's SID (``AC…``)."""
        return self.store.account_sid

    @property
    def auth_token(self) -> str:
        """The account's auth token (also the webhook signing key)."""
        return self.store.auth_token

    @property
    def events(self) -> EventLog:
        """The time-ordered event log."""
        return self.store.events

    @property
    def faults(self) -> FaultPlan:
        """Injectable REST faults."""
        return self.store.faults

    def reset(self, clock: Callable[[], datetime] | None = None) -> FakeTwilio:
        """Start over with an empty account (same credentials and URL) — between tests or drills."""
        self.store.reset(clock)
        return self

    def create_api_key(self) -> tuple[str, str]:
        """A new API key (SID ``SK…``, secret) accepted for REST basic auth."""
        sid, secret = new_sid("SK"), secrets.token_hex(16)
        self.store.api_keys[sid] = secret
        return sid, secret

    def configure_number(self, config: NumberConfig) -> NumberConfig:
        """Own a number and set its webhooks."""
        self.store.configure_number(config)
        return config

    # -- scripted conditions -----------------------------------------------------------------

    def opt_out(self, recipient: str, sender: str | None = None) -> None:
        """As if ``recipient`` had texted STOP (to ``sender`` or all our numbers): 21610 after."""
        self.store.opt_out(recipient, sender)

    def fail_delivery(self, recipient: str, error_code: int = 30003) -> None:
        """Messages delivered to ``recipient`` end ``undelivered`` with ``error_code``."""
        with self.store.lock:
            self.store.delivery_failures[recipient] = error_code

    def set_message_status(self, sid: str, status: str, error_code: int | None = None) -> Message:
        """Move a message's status (e.g. to ``delivered`` so it can be deleted)."""
        return self.store.set_message_status(sid, status, error_code)

    def finish_call(self, sid: str, status: str = "completed") -> Call:
        """End a call that no simulator drives (e.g. so it can be deleted)."""
        return self.store.set_call_status(sid, status)

    def add_recording(self, call_sid: str, audio: bytes, duration: int = 1) -> Recording:
        """A recording with the given audio bytes."""
        return self.store.create_recording(call_sid, duration, audio)

    # -- inspection --------------------------------------------------------------------------

    def messages(self) -> list[Message]:
        """Every message, oldest first."""
        with self.store.lock:
            return list(self.store.messages.values())

    def calls(self) -> list[Call]:
        """Every call leg, oldest first."""
        with self.store.lock:
            return list(self.store.calls.values())

    def recordings(self) -> list[Recording]:
        """Every recording, oldest first."""
        with self.store.lock:
            return list(self.store.recordings.values())

    def queue(self, name: str) -> Queue:
        """The queue with this friendly name (created on demand, like ``<Enqueue>``)."""
        return self.store.queue_by_name(name)

    def message(self, sid: str) -> Message:
        """One message (raises ``TwilioApiError`` 20404)."""
        return self.store.get_message(sid)

    def call(self, sid: str) -> Call:
        """One call leg (raises ``TwilioApiError`` 20404)."""
        return self.store.get_call(sid)

    def rest_requests(self, operation: str | None = None) -> list[Event]:
        """REST requests the fake answered (optionally of one operation)."""
        return self.events.of("rest", op=operation) if operation else self.events.of("rest")
