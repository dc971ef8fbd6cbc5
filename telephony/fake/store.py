"""State of the fake Twilio account: resources, queues, opt-outs, injected faults and the event log.

Everything here is plain Python guarded by one re-entrant lock, because two threads touch it:
the REST server's thread (requests from the app under test) and the simulator's event loop
(calls and messages it drives).  Twilio's rules that decide a REST answer (opt-outs, the
WhatsApp 24-hour window, "cannot delete before complete") live here so the server and the
simulator cannot disagree about them.
"""

from __future__ import annotations

import asyncio
import hmac
import io
import threading
import time
import uuid
import wave
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any, Literal, Protocol

API_VERSION = "2010-04-01"
WHATSAPP_WINDOW = timedelta(hours=24)

#: Inbound keywords Twilio's default opt-out handling acts on (SMS only; WhatsApp has no STOP handling).
OPT_OUT_KEYWORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "OPTOUT", "REVOKE"})
OPT_IN_KEYWORDS = frozenset({"START", "YES", "UNSTOP", "OPTIN"})

#: Message states after which Twilio lets a message be deleted (earlier → 20009).
FINAL_MESSAGE_STATES = frozenset(
    {"delivered", "undelivered", "failed", "received", "read", "canceled", "partially_delivered"}
)
FINAL_CALL_STATES = frozenset({"completed", "busy", "failed", "no-answer", "canceled"})


def new_sid(prefix: str) -> str:
    """A Twilio-shaped SID: two-letter prefix + 32 lowercase hex digits."""
    return prefix + uuid.uuid4().hex


def rfc2822(moment: datetime | None) -> str | None:
    """Twilio's v2010 timestamp format, e.g. ``Wed, 18 Aug 2010 20:01:40 +0000``."""
    if moment is None:
        return None
    return format_datetime(moment.astimezone(UTC).replace(microsecond=0))


def is_whatsapp(address: str) -> bool:
    """True for ``whatsapp:+1555…`` addresses."""
    return address.startswith("whatsapp:")


def synthetic_wav(seconds: float, seed: str) -> bytes:
    """A small, valid 8 kHz 8-bit mono WAV whose samples depend on ``seed``.

    Distinct per recording so a test can tell the downloaded bytes belong to the right one.
    """
    frames = max(1, int(seconds * 8000))
    pattern = seed.encode() or b"\x80"
    body = (pattern * (frames // len(pattern) + 1))[:frames]
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(1)
        out.setframerate(8000)
        out.writeframes(body)
    return buffer.getvalue()


class TwilioApiError(Exception):
    """A REST error exactly as Twilio reports it (HTTP status + Twilio error code)."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message

    def body(self) -> dict[str, Any]:
        """Twilio's JSON error body."""
        return {
            "code": self.code,
            "message": self.message,
            "more_info": f"https://www.twilio.com/docs/errors/{self.code}",
            "status": self.status,
        }


def not_found(path: str) -> TwilioApiError:
    """Twilio's 20404 for a resource that does not exist (or is not this account's)."""
    return TwilioApiError(404, 20404, f"The requested resource {path} was not found")


# --------------------------------------------------------------------------------------------
# Events
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    """One entry of the fake's time-ordered log (what tests and drills assert on)."""

    seq: int
    at: datetime
    kind: str
    sid: str | None
    data: Mapping[str, Any]

    def __getitem__(self, key: str) -> Any:
        return self.data[key]


class EventLog:
    """Append-only, thread-safe, time-ordered event log."""

    def __init__(self, clock: Callable[[], datetime]) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._events: list[Event] = []

    def add(self, kind: str, sid: str | None = None, **data: Any) -> Event:
        """Record an event; ``seq`` gives the total order even when timestamps tie."""
        with self._lock:
            event = Event(len(self._events), self._clock(), kind, sid, dict(data))
            self._events.append(event)
            return event

    def all(self) -> list[Event]:
        """A snapshot of every event so far."""
        with self._lock:
            return list(self._events)

    def of(self, kind: str | None = None, sid: str | None = None, **match: Any) -> list[Event]:
        """Events of ``kind`` (prefix match when it ends with ``.``), for ``sid``, whose data match."""
        out = []
        for event in self.all():
            if kind is not None:
                if kind.endswith(".") and not event.kind.startswith(kind):
                    continue
                if not kind.endswith(".") and event.kind != kind:
                    continue
            if sid is not None and event.sid != sid:
                continue
            if any(event.data.get(key) != value for key, value in match.items()):
                continue
            out.append(event)
        return out

    def kinds(self, sid: str | None = None) -> list[str]:
        """The kinds of all events (optionally for one SID), in order."""
        return [event.kind for event in self.all() if sid is None or event.sid == sid]

    async def wait_for(
        self, kind: str, sid: str | None = None, *, timeout: float = 5.0, count: int = 1, **match: Any
    ) -> Event:
        """Poll until ``count`` matching events exist and return the last of them.

        Raises ``TimeoutError`` after ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        while True:
            found = self.of(kind, sid, **match)
            if len(found) >= count:
                return found[count - 1]
            if time.monotonic() >= deadline:
                raise TimeoutError(f"fewer than {count} {kind!r} events within {timeout} s")
            await asyncio.sleep(0.005)


# --------------------------------------------------------------------------------------------
# Faults
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fault:
    """A failure the REST server injects instead of (or around) handling one request.

    ``kind="error"`` answers ``status``/``code`` without touching state (Twilio did not act).
    ``kind="delay"`` holds the response ``seconds`` long so the client's read timeout fires;
    ``kind="drop"`` starts the answer and closes the connection half-way.  For both, with
    ``apply=True`` the request takes effect first (the dangerous case for creates); otherwise
    nothing happens (a late delay then answers 503).
    """

    kind: Literal["error", "delay", "drop"]
    status: int = 500
    code: int = 20500
    message: str = "Internal Server Error"
    seconds: float = 0.0
    apply: bool = True

    @classmethod
    def server_error(cls, status: int = 500) -> Fault:
        """HTTP 5xx with Twilio code 20500 (or 20503 for 503)."""
        code = 20503 if status == 503 else 20500
        text = "Service Unavailable" if status == 503 else "Internal Server Error"
        return cls("error", status, code, text)

    @classmethod
    def rate_limited(cls) -> Fault:
        """HTTP 429, code 20429: Twilio rejected the request before acting on it."""
        return cls("error", 429, 20429, "Too Many Requests")

    @classmethod
    def not_complete(cls) -> Fault:
        """HTTP 400, code 20009: "Cannot delete this resource before it is complete"."""
        return cls("error", 400, 20009, "Cannot delete this resource before it is complete")

    @classmethod
    def error(cls, status: int, code: int, message: str = "Injected error") -> Fault:
        """Any other Twilio error."""
        return cls("error", status, code, message)

    @classmethod
    def timeout(cls, seconds: float, *, apply: bool = True) -> Fault:
        """Answer only after ``seconds`` (longer than the client's timeout)."""
        return cls("delay", seconds=seconds, apply=apply)

    @classmethod
    def drop(cls, *, apply: bool = True) -> Fault:
        """Close the connection in the middle of the answer."""
        return cls("drop", apply=apply)


class FaultPlan:
    """Per-operation queues of faults ("the next N requests to calls.create → 500").

    Operation names: ``messages.create|list|fetch|update|delete``, ``calls.create|list|fetch|
    update|delete``, ``queues.list|fetch``, ``queue_members.list|fetch|update``,
    ``recordings.list|fetch|delete|media``, or ``*`` for any.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._plans: dict[str, deque[Fault]] = {}

    def inject(self, operation: str, fault: Fault, times: int = 1) -> None:
        """Queue ``fault`` for the next ``times`` requests of ``operation``."""
        with self._lock:
            self._plans.setdefault(operation, deque()).extend([fault] * times)

    def take(self, operation: str) -> Fault | None:
        """Pop the next fault for this operation (specific plans win over ``*``)."""
        with self._lock:
            for key in (operation, "*"):
                queue = self._plans.get(key)
                if queue:
                    return queue.popleft()
            return None

    def pending(self, operation: str) -> int:
        """How many faults are still queued for ``operation``."""
        with self._lock:
            return len(self._plans.get(operation, ()))

    def clear(self) -> None:
        """Drop every queued fault."""
        with self._lock:
            self._plans.clear()


# --------------------------------------------------------------------------------------------
# Resources
# --------------------------------------------------------------------------------------------


@dataclass
class NumberConfig:
    """An incoming phone number's webhook configuration (Twilio console / IncomingPhoneNumbers)."""

    phone_number: str
    voice_url: str | None = None
    voice_method: str = "POST"
    voice_fallback_url: str | None = None
    voice_fallback_method: str = "POST"
    status_callback: str | None = None
    status_callback_method: str = "POST"
    sms_url: str | None = None
    sms_method: str = "POST"
    sms_fallback_url: str | None = None
    sms_fallback_method: str = "POST"
    sid: str = field(default_factory=lambda: new_sid("PN"))

    @classmethod
    def hotline(cls, phone_number: str, public_url: str, fallback_url: str | None = None) -> NumberConfig:
        """A number wired to our app's public webhook paths (DESIGN section 6).

        ``public_url`` must be the app's ``HOTLINE_PUBLIC_URL`` (signatures cover the full URL);
        ``fallback_url`` is the base of the second host serving the fallbacks, if any.
        """
        base = public_url.rstrip("/")
        spare = (fallback_url or public_url).rstrip("/")
        return cls(
            phone_number,
            voice_url=f"{base}/twilio/voice/incoming",
            voice_fallback_url=f"{spare}/twilio/voice/fallback",
            status_callback=f"{base}/twilio/voice/status",
            sms_url=f"{base}/twilio/messaging/incoming",
            sms_fallback_url=f"{spare}/twilio/messaging/fallback",
        )


@dataclass
class Message:
    """A Message resource."""

    sid: str
    account_sid: str
    to: str
    from_: str
    body: str
    direction: str
    status: str
    date_created: datetime
    date_updated: datetime
    date_sent: datetime | None = None
    error_code: int | None = None
    status_callback: str | None = None
    media_urls: tuple[str, ...] = ()
    content_sid: str | None = None

    def uri(self) -> str:
        """The resource's path (Twilio's ``uri`` field)."""
        return f"/{API_VERSION}/Accounts/{self.account_sid}/Messages/{self.sid}.json"

    def to_json(self) -> dict[str, Any]:
        """Twilio's JSON representation."""
        return {
            "account_sid": self.account_sid,
            "api_version": API_VERSION,
            "body": self.body,
            "date_created": rfc2822(self.date_created),
            "date_sent": rfc2822(self.date_sent),
            "date_updated": rfc2822(self.date_updated),
            "direction": self.direction,
            "error_code": self.error_code,
            "error_message": None,
            "from": self.from_,
            "messaging_service_sid": None,
            "num_media": str(len(self.media_urls)),
            "num_segments": str(max(1, -(-len(self.body) // 160))),
            "price": None,
            "price_unit": "USD",
            "sid": self.sid,
            "status": self.status,
            "subresource_uris": {"media": self.uri().replace(".json", "/Media.json")},
            "to": self.to,
            "uri": self.uri(),
        }


@dataclass
class Call:
    """A Call resource (one leg)."""

    sid: str
    account_sid: str
    to: str
    from_: str
    direction: str
    status: str
    date_created: datetime
    date_updated: datetime
    start_time: datetime | None = None
    end_time: datetime | None = None
    duration: int | None = None
    parent_call_sid: str | None = None
    answered_by: str | None = None
    url: str | None = None
    method: str = "POST"
    twiml: str | None = None
    fallback_url: str | None = None
    fallback_method: str = "POST"
    status_callback: str | None = None
    status_callback_method: str = "POST"
    status_callback_events: tuple[str, ...] = ("completed",)
    timeout: int = 60
    machine_detection: str | None = None
    queue_time: int = 0

    def uri(self) -> str:
        """The resource's path."""
        return f"/{API_VERSION}/Accounts/{self.account_sid}/Calls/{self.sid}.json"

    def to_json(self) -> dict[str, Any]:
        """Twilio's JSON representation."""
        base = self.uri().removesuffix(".json")
        return {
            "account_sid": self.account_sid,
            "annotation": None,
            "answered_by": self.answered_by,
            "api_version": API_VERSION,
            "caller_name": None,
            "date_created": rfc2822(self.date_created),
            "date_updated": rfc2822(self.date_updated),
            "direction": self.direction,
            "duration": None if self.duration is None else str(self.duration),
            "end_time": rfc2822(self.end_time),
            "forwarded_from": None,
            "from": self.from_,
            "from_formatted": self.from_,
            "group_sid": None,
            "parent_call_sid": self.parent_call_sid,
            "phone_number_sid": None,
            "price": None,
            "price_unit": "USD",
            "queue_time": str(self.queue_time),
            "sid": self.sid,
            "start_time": rfc2822(self.start_time),
            "status": self.status,
            "subresource_uris": {
                "recordings": f"{base}/Recordings.json",
                "notifications": f"{base}/Notifications.json",
            },
            "to": self.to,
            "to_formatted": self.to,
            "trunk_sid": None,
            "uri": self.uri(),
        }


@dataclass
class QueueMember:
    """A call waiting in a queue."""

    call_sid: str
    date_enqueued: datetime


@dataclass
class Queue:
    """A Queue resource and its members, front first."""

    sid: str
    account_sid: str
    friendly_name: str
    max_size: int
    date_created: datetime
    members: list[QueueMember] = field(default_factory=list)
    total_wait: float = 0.0
    total_left: int = 0

    def uri(self) -> str:
        """The resource's path."""
        return f"/{API_VERSION}/Accounts/{self.account_sid}/Queues/{self.sid}.json"

    def average_wait(self) -> int:
        """Average seconds spent by calls that already left."""
        return int(self.total_wait / self.total_left) if self.total_left else 0

    def to_json(self) -> dict[str, Any]:
        """Twilio's JSON representation."""
        return {
            "account_sid": self.account_sid,
            "average_wait_time": self.average_wait(),
            "current_size": len(self.members),
            "date_created": rfc2822(self.date_created),
            "date_updated": rfc2822(self.date_created),
            "friendly_name": self.friendly_name,
            "max_size": self.max_size,
            "sid": self.sid,
            "subresource_uris": {"members": self.uri().replace(".json", "/Members.json")},
            "uri": self.uri(),
        }

    def member_json(self, member: QueueMember, now: datetime) -> dict[str, Any]:
        """Twilio's JSON for one Member."""
        position = self.members.index(member) + 1 if member in self.members else 0
        return {
            "call_sid": member.call_sid,
            "date_enqueued": rfc2822(member.date_enqueued),
            "position": position,
            "queue_sid": self.sid,
            "uri": self.uri().replace(".json", f"/Members/{member.call_sid}.json"),
            "wait_time": max(0, int((now - member.date_enqueued).total_seconds())),
        }


@dataclass
class Recording:
    """A Recording resource with its audio."""

    sid: str
    account_sid: str
    call_sid: str
    duration: int
    date_created: datetime
    audio: bytes
    source: str = "RecordVerb"
    status: str = "completed"

    def uri(self) -> str:
        """The resource's path."""
        return f"/{API_VERSION}/Accounts/{self.account_sid}/Recordings/{self.sid}.json"

    def to_json(self, base_url: str) -> dict[str, Any]:
        """Twilio's JSON representation (``media_url`` points at this fake)."""
        return {
            "account_sid": self.account_sid,
            "api_version": API_VERSION,
            "call_sid": self.call_sid,
            "channels": 1,
            "conference_sid": None,
            "date_created": rfc2822(self.date_created),
            "date_updated": rfc2822(self.date_created),
            "duration": str(self.duration),
            "encryption_details": None,
            "error_code": None,
            "media_url": f"{base_url}{self.uri().removesuffix('.json')}",
            "price": None,
            "price_unit": "USD",
            "sid": self.sid,
            "source": self.source,
            "start_time": rfc2822(self.date_created),
            "status": self.status,
            "subresource_uris": {},
            "track": "both",
            "uri": self.uri(),
        }


# --------------------------------------------------------------------------------------------
# Commands to a live call (REST → simulator)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RedirectCommand:
    """REST ``calls(sid).update(url=…)``: abandon the current TwiML and fetch ``url``."""

    url: str
    method: str = "POST"
    twiml: str | None = None


@dataclass(frozen=True)
class HangupCommand:
    """REST ``calls(sid).update(status=completed|canceled)``."""

    status: str


@dataclass(frozen=True)
class DequeueCommand:
    """REST ``queues(qu).members(ca).update(url=…)``: leave the queue and run ``url``."""

    url: str
    method: str
    queue_sid: str


LiveCommand = RedirectCommand | HangupCommand | DequeueCommand


class StoreListener(Protocol):
    """What the simulator implements to hear about REST-initiated changes.

    Called from whatever thread made the change (usually the REST server's); implementations
    must hand the work over to their own event loop.
    """

    def call_created(self, call: Call) -> None:
        """An outbound call was created through REST."""

    def message_created(self, message: Message) -> None:
        """An outbound message was created through REST."""

    def call_command(self, call_sid: str, command: LiveCommand) -> None:
        """A live call was redirected, hung up or dequeued through REST."""


# --------------------------------------------------------------------------------------------
# The store
# --------------------------------------------------------------------------------------------


class FakeTwilioStore:
    """All resources of one fake account plus Twilio's rules about them."""

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        *,
        clock: Callable[[], datetime] | None = None,
        api_keys: Mapping[str, str] | None = None,
    ) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.api_keys: dict[str, str] = dict(api_keys or {})
        self.lock = threading.RLock()
        self.faults = FaultPlan()
        self.base_url = "https://api.twilio.com"
        self._listeners: list[StoreListener] = []
        self.reset(clock)

    def reset(self, clock: Callable[[], datetime] | None = None) -> None:
        """Forget every resource, number, opt-out, fault, listener and event (credentials stay)."""
        with self.lock:
            self.clock: Callable[[], datetime] = clock or (lambda: datetime.now(UTC))
            self.events = EventLog(self.clock)
            self.faults.clear()
            self.numbers: dict[str, NumberConfig] = {}
            self.messages: dict[str, Message] = {}
            self.calls: dict[str, Call] = {}
            self.queues: dict[str, Queue] = {}
            self.recordings: dict[str, Recording] = {}
            self.opt_outs: set[tuple[str, str | None]] = set()
            self.whatsapp_last_inbound: dict[tuple[str, str], datetime] = {}
            self.delivery_failures: dict[str, int] = {}
            self.live_calls: set[str] = set()
            self._listeners.clear()

    # -- wiring ------------------------------------------------------------------------------

    def add_listener(self, listener: StoreListener) -> None:
        """Subscribe a simulator to REST-initiated changes."""
        with self.lock:
            self._listeners.append(listener)

    def remove_listener(self, listener: StoreListener) -> None:
        """Unsubscribe."""
        with self.lock:
            if listener in self._listeners:
                self._listeners.remove(listener)

    def _listeners_snapshot(self) -> list[StoreListener]:
        with self.lock:
            return list(self._listeners)

    def check_credentials(self, username: str, password: str) -> bool:
        """HTTP basic auth as Twilio accepts it: AccountSid/AuthToken or API key SID/secret."""
        secret = self.auth_token if username == self.account_sid else self.api_keys.get(username)
        return secret is not None and hmac.compare_digest(password.encode(), secret.encode())

    # -- numbers, opt-outs, windows ----------------------------------------------------------

    def configure_number(self, config: NumberConfig) -> None:
        """Add or replace an incoming number's configuration."""
        with self.lock:
            self.numbers[config.phone_number] = config

    def number(self, phone_number: str) -> NumberConfig | None:
        """The configuration of one of our numbers (``whatsapp:`` prefix ignored)."""
        with self.lock:
            return self.numbers.get(phone_number.removeprefix("whatsapp:"))

    def opt_out(self, recipient: str, sender: str | None = None) -> None:
        """Mark ``recipient`` as having replied STOP (to ``sender``, or to all our numbers)."""
        with self.lock:
            self.opt_outs.add((recipient, sender))

    def opt_in(self, recipient: str, sender: str | None = None) -> None:
        """Undo an opt-out (START)."""
        with self.lock:
            self.opt_outs.discard((recipient, sender))
            if sender is None:
                self.opt_outs = {pair for pair in self.opt_outs if pair[0] != recipient}

    def is_opted_out(self, recipient: str, sender: str) -> bool:
        """Whether Twilio would refuse to text ``recipient`` from ``sender`` (21610)."""
        with self.lock:
            return (recipient, sender) in self.opt_outs or (recipient, None) in self.opt_outs

    def whatsapp_window_open(self, user: str, business: str) -> bool:
        """Whether a freeform WhatsApp message may go to ``user`` (inbound within 24 h)."""
        with self.lock:
            last = self.whatsapp_last_inbound.get((user, business))
            return last is not None and self.clock() - last < WHATSAPP_WINDOW

    # -- messages ----------------------------------------------------------------------------

    def create_message(
        self,
        *,
        to: str,
        from_: str,
        body: str,
        status_callback: str | None = None,
        media_urls: Iterable[str] = (),
        content_sid: str | None = None,
        direction: str = "outbound-api",
        notify: bool = True,
    ) -> Message:
        """Create an outbound message, applying Twilio's synchronous checks."""
        media = tuple(media_urls)
        if not to:
            raise TwilioApiError(400, 21604, "A 'To' phone number is required.")
        if not from_:
            raise TwilioApiError(400, 21603, "A 'From' phone number is required.")
        if not body and not media and not content_sid:
            raise TwilioApiError(400, 21602, "Message body is required.")
        if len(body) > 1600:
            raise TwilioApiError(
                400, 21617, "The concatenated message body exceeds the 1600 character limit."
            )
        if is_whatsapp(to) != is_whatsapp(from_):
            raise TwilioApiError(
                400, 63007, "Twilio could not find a Channel with the specified From address"
            )
        with self.lock:
            if self.numbers and self.number(from_) is None:
                raise TwilioApiError(
                    400, 21606, "The From phone number is not a valid, SMS-capable inbound phone number."
                )
            # STOP applies to SMS; WhatsApp users block the business in the app instead.
            if not is_whatsapp(to) and self.is_opted_out(to, from_):
                raise TwilioApiError(400, 21610, "Attempt to send to unsubscribed recipient")
            now = self.clock()
            message = Message(
                sid=new_sid("MM" if media else "SM"),
                account_sid=self.account_sid,
                to=to,
                from_=from_,
                body=body if not content_sid else body or f"[template {content_sid}]",
                direction=direction,
                status="queued",
                date_created=now,
                date_updated=now,
                status_callback=status_callback,
                media_urls=media,
                content_sid=content_sid,
            )
            self.messages[message.sid] = message
        self.events.add("message.created", message.sid, direction=direction, to=to, channel=_channel(to))
        if notify:
            for listener in self._listeners_snapshot():
                listener.message_created(message)
        return message

    def receive_message(self, *, from_: str, to: str, body: str, media_urls: Iterable[str] = ()) -> Message:
        """Record an inbound message and apply opt-out keywords / the WhatsApp window."""
        media = tuple(media_urls)
        with self.lock:
            now = self.clock()
            message = Message(
                sid=new_sid("MM" if media else "SM"),
                account_sid=self.account_sid,
                to=to,
                from_=from_,
                body=body,
                direction="inbound",
                status="received",
                date_created=now,
                date_updated=now,
                date_sent=now,
                media_urls=media,
            )
            self.messages[message.sid] = message
            if is_whatsapp(from_):
                self.whatsapp_last_inbound[(from_, to)] = now
            else:
                keyword = body.strip().upper()
                if keyword in OPT_OUT_KEYWORDS:
                    self.opt_outs.add((from_, to))
                elif keyword in OPT_IN_KEYWORDS:
                    self.opt_outs.discard((from_, to))
                    self.opt_outs.discard((from_, None))
        self.events.add("message.received", message.sid, channel=_channel(from_))
        return message

    def set_message_status(self, sid: str, status: str, error_code: int | None = None) -> Message:
        """Move a message along its lifecycle (the simulator's delivery, or a test)."""
        with self.lock:
            message = self._message(sid)
            message.status = status
            message.date_updated = self.clock()
            if status == "sent" and message.date_sent is None:
                message.date_sent = message.date_updated
            if error_code is not None:
                message.error_code = error_code
        self.events.add("message.status", sid, status=status, error_code=error_code)
        return message

    def get_message(self, sid: str) -> Message:
        """Fetch, or 20404."""
        with self.lock:
            return self._message(sid)

    def _message(self, sid: str) -> Message:
        message = self.messages.get(sid)
        if message is None:
            raise not_found(f"/{API_VERSION}/Accounts/{self.account_sid}/Messages/{sid}.json")
        return message

    def redact_message(self, sid: str, body: str) -> Message:
        """``update(body="")``: Twilio only allows redaction, i.e. an empty body."""
        with self.lock:
            message = self._message(sid)
            if body != "":
                raise TwilioApiError(400, 21220, "Message body can only be updated to an empty string")
            message.body = ""
            message.date_updated = self.clock()
            return message

    def delete_message(self, sid: str) -> None:
        """Delete; a message still in flight answers 20009."""
        with self.lock:
            message = self._message(sid)
            if message.status not in FINAL_MESSAGE_STATES:
                raise TwilioApiError(400, 20009, "Cannot delete this resource before it is complete")
            del self.messages[sid]
        self.events.add("message.deleted", sid)

    def list_messages(self, filters: Mapping[str, str]) -> list[Message]:
        """Newest first, filtered like Twilio (To, From, DateSent, DateSent<, DateSent>)."""
        with self.lock:
            found = list(reversed(self.messages.values()))
        if "To" in filters:
            found = [m for m in found if m.to == filters["To"]]
        if "From" in filters:
            found = [m for m in found if m.from_ == filters["From"]]
        for key, test in (
            ("DateSent", lambda d, bound: d.date() == bound.date()),
            ("DateSent<", lambda d, bound: d <= bound),
            ("DateSent>", lambda d, bound: d >= bound),
        ):
            if key in filters:
                bound = _parse_filter_date(filters[key])
                found = [m for m in found if m.date_sent is not None and test(m.date_sent, bound)]
        return found

    # -- calls -------------------------------------------------------------------------------

    def create_call(
        self,
        *,
        to: str,
        from_: str,
        direction: str,
        url: str | None = None,
        method: str = "POST",
        twiml: str | None = None,
        fallback_url: str | None = None,
        fallback_method: str = "POST",
        status_callback: str | None = None,
        status_callback_method: str = "POST",
        status_callback_events: Iterable[str] = ("completed",),
        timeout: int = 60,
        machine_detection: str | None = None,
        parent_call_sid: str | None = None,
        status: str = "queued",
        notify: bool = False,
    ) -> Call:
        """Create a call leg (REST ``calls.create``, an incoming call, or a ``<Dial>`` child)."""
        if direction == "outbound-api":
            if not to:
                raise TwilioApiError(400, 21201, "No 'To' number is specified")
            if not from_:
                raise TwilioApiError(400, 21213, "No 'From' number is specified")
            if not url and not twiml:
                raise TwilioApiError(400, 21205, "Url parameter is required.")
            if machine_detection not in (None, "Enable", "DetectMessageEnd"):
                raise TwilioApiError(400, 21215, "MachineDetection must be Enable or DetectMessageEnd")
        with self.lock:
            if direction == "outbound-api" and self.numbers and self.number(from_) is None:
                raise TwilioApiError(400, 21210, "The source phone number provided is not yet verified")
            now = self.clock()
            call = Call(
                sid=new_sid("CA"),
                account_sid=self.account_sid,
                to=to,
                from_=from_,
                direction=direction,
                status=status,
                date_created=now,
                date_updated=now,
                parent_call_sid=parent_call_sid,
                url=url,
                method=method,
                twiml=twiml,
                fallback_url=fallback_url,
                fallback_method=fallback_method,
                status_callback=status_callback,
                status_callback_method=status_callback_method,
                status_callback_events=tuple(status_callback_events),
                timeout=timeout,
                machine_detection=machine_detection,
            )
            self.calls[call.sid] = call
        self.events.add("call.created", call.sid, direction=direction, to=to, parent_call_sid=parent_call_sid)
        if notify:
            for listener in self._listeners_snapshot():
                listener.call_created(call)
        return call

    def get_call(self, sid: str) -> Call:
        """Fetch, or 20404."""
        with self.lock:
            return self._call(sid)

    def _call(self, sid: str) -> Call:
        call = self.calls.get(sid)
        if call is None:
            raise not_found(f"/{API_VERSION}/Accounts/{self.account_sid}/Calls/{sid}.json")
        return call

    def set_call_status(
        self, sid: str, status: str, *, answered_by: str | None = None, duration: int | None = None
    ) -> Call:
        """Move a call along its lifecycle (the simulator, or a test finishing a call)."""
        with self.lock:
            call = self._call(sid)
            now = self.clock()
            call.status = status
            call.date_updated = now
            if status == "in-progress" and call.start_time is None:
                call.start_time = now
            if answered_by is not None:
                call.answered_by = answered_by
            if status in FINAL_CALL_STATES:
                call.end_time = call.end_time or now
                if duration is not None:
                    call.duration = duration
                elif call.duration is None:
                    started = call.start_time or now
                    call.duration = int((now - started).total_seconds())
                self.live_calls.discard(sid)
                self._drop_from_queues(sid)
            return call

    def update_call(
        self,
        sid: str,
        *,
        url: str | None = None,
        method: str = "POST",
        twiml: str | None = None,
        status: str | None = None,
    ) -> Call:
        """REST ``calls(sid).update``: redirect (Url/Twiml) or end (Status)."""
        command: LiveCommand | None = None
        with self.lock:
            call = self._call(sid)
            if status is not None:
                if status not in ("completed", "canceled"):
                    raise TwilioApiError(400, 21218, "Invalid Status: must be 'completed' or 'canceled'")
                if call.status in FINAL_CALL_STATES:
                    raise TwilioApiError(400, 21220, "Call is not in-progress. Cannot redirect.")
                if status == "canceled" and call.status == "in-progress":
                    # 'canceled' only affects calls that have not been answered yet.
                    return call
                final = "canceled" if call.status in ("queued", "ringing") else "completed"
                command = HangupCommand(final)
                if sid not in self.live_calls:
                    self.set_call_status(sid, final)
            elif url or twiml:
                if call.status in FINAL_CALL_STATES:
                    raise TwilioApiError(400, 21220, "Call is not in-progress. Cannot redirect.")
                call.url, call.method, call.twiml = url, method, twiml
                call.date_updated = self.clock()
                if call.status == "in-progress":
                    command = RedirectCommand(url or "", method, twiml)
            else:
                raise TwilioApiError(400, 21205, "Url parameter is required.")
        self.events.add("call.updated", sid, status=status, url=url)
        if command is not None and sid in self.live_calls:
            for listener in self._listeners_snapshot():
                listener.call_command(sid, command)
        return self.get_call(sid)

    def delete_call(self, sid: str) -> None:
        """Delete a call record; only finished calls can be deleted (else 20009)."""
        with self.lock:
            call = self._call(sid)
            if call.status not in FINAL_CALL_STATES:
                raise TwilioApiError(400, 20009, "Cannot delete this resource before it is complete")
            del self.calls[sid]
        self.events.add("call.deleted", sid)

    def list_calls(self, filters: Mapping[str, str]) -> list[Call]:
        """Newest first, filtered by To, From, Status, ParentCallSid."""
        with self.lock:
            found = list(reversed(self.calls.values()))
        for key, attr in (
            ("To", "to"),
            ("From", "from_"),
            ("Status", "status"),
            ("ParentCallSid", "parent_call_sid"),
        ):
            if key in filters:
                found = [c for c in found if getattr(c, attr) == filters[key]]
        return found

    # -- queues ------------------------------------------------------------------------------

    def queue_by_name(self, name: str, max_size: int = 1000) -> Queue:
        """The queue ``<Enqueue>name</Enqueue>`` uses, created on demand."""
        with self.lock:
            for queue in self.queues.values():
                if queue.friendly_name == name:
                    return queue
            queue = Queue(new_sid("QU"), self.account_sid, name, max_size, self.clock())
            self.queues[queue.sid] = queue
            return queue

    def get_queue(self, sid: str) -> Queue:
        """Fetch, or 20404."""
        with self.lock:
            queue = self.queues.get(sid)
            if queue is None:
                raise not_found(f"/{API_VERSION}/Accounts/{self.account_sid}/Queues/{sid}.json")
            return queue

    def enqueue(self, queue_sid: str, call_sid: str) -> int:
        """Put a call at the back of a queue; returns its 1-based position (0 if full)."""
        with self.lock:
            queue = self.get_queue(queue_sid)
            if len(queue.members) >= queue.max_size:
                return 0
            queue.members.append(QueueMember(call_sid, self.clock()))
            return len(queue.members)

    def queue_position(self, queue_sid: str, call_sid: str) -> int:
        """1-based position, or 0 when not a member."""
        with self.lock:
            queue = self.get_queue(queue_sid)
            for position, member in enumerate(queue.members, 1):
                if member.call_sid == call_sid:
                    return position
            return 0

    def leave_queue(self, queue_sid: str, call_sid: str, waited: float) -> bool:
        """Remove a call (if still there) and account its wait; True if it was a member."""
        with self.lock:
            queue = self.get_queue(queue_sid)
            before = len(queue.members)
            queue.members = [m for m in queue.members if m.call_sid != call_sid]
            removed = len(queue.members) < before
            if removed:
                queue.total_wait += waited
                queue.total_left += 1
            return removed

    def _drop_from_queues(self, call_sid: str) -> None:
        for queue in self.queues.values():
            queue.members = [m for m in queue.members if m.call_sid != call_sid]

    def get_member(self, queue_sid: str, call_sid: str) -> tuple[Queue, QueueMember]:
        """A member by CallSid or ``Front``; 20404 when not in the queue."""
        with self.lock:
            queue = self.get_queue(queue_sid)
            members = (
                queue.members[:1]
                if call_sid == "Front"
                else [m for m in queue.members if m.call_sid == call_sid]
            )
            if not members:
                raise not_found(
                    f"/{API_VERSION}/Accounts/{self.account_sid}/Queues/{queue_sid}/Members/{call_sid}.json"
                )
            return queue, members[0]

    def dequeue_member(self, queue_sid: str, call_sid: str, url: str, method: str) -> dict[str, Any]:
        """REST Members update: take the call out of the queue and make it run ``url``.

        The member leaves the queue here, under the lock, so two concurrent dequeues of the
        same caller cannot both succeed (the second sees 20404).
        """
        if not url:
            raise TwilioApiError(400, 21205, "Url parameter is required.")
        with self.lock:
            queue, member = self.get_member(queue_sid, call_sid)
            payload = queue.member_json(member, self.clock())
            queue.members.remove(member)
            waited = (self.clock() - member.date_enqueued).total_seconds()
            queue.total_wait += waited
            queue.total_left += 1
            target = member.call_sid
        self.events.add("queue.dequeue_requested", target, queue_sid=queue_sid, url=url)
        for listener in self._listeners_snapshot():
            listener.call_command(target, DequeueCommand(url, method, queue_sid))
        return payload

    # -- recordings --------------------------------------------------------------------------

    def create_recording(
        self, call_sid: str, duration: int, audio: bytes | None = None, source: str = "RecordVerb"
    ) -> Recording:
        """A finished recording with downloadable audio."""
        sid = new_sid("RE")
        with self.lock:
            recording = Recording(
                sid=sid,
                account_sid=self.account_sid,
                call_sid=call_sid,
                duration=duration,
                date_created=self.clock(),
                audio=audio if audio is not None else synthetic_wav(min(duration, 5), sid),
                source=source,
            )
            self.recordings[sid] = recording
        self.events.add("recording.created", sid, call_sid=call_sid, duration=duration)
        return recording

    def get_recording(self, sid: str) -> Recording:
        """Fetch, or 20404."""
        with self.lock:
            recording = self.recordings.get(sid)
            if recording is None:
                raise not_found(f"/{API_VERSION}/Accounts/{self.account_sid}/Recordings/{sid}.json")
            return recording

    def delete_recording(self, sid: str) -> None:
        """Delete a recording and its audio."""
        with self.lock:
            self.get_recording(sid)
            del self.recordings[sid]
        self.events.add("recording.deleted", sid)

    def recording_url(self, sid: str) -> str:
        """The media URL Twilio puts in ``RecordingUrl`` (no extension: WAV)."""
        return f"{self.base_url}/{API_VERSION}/Accounts/{self.account_sid}/Recordings/{sid}"


def _channel(address: str) -> str:
    return "whatsapp" if is_whatsapp(address) else "sms"


def _parse_filter_date(value: str) -> datetime:
    """Twilio list filters come as ``YYYY-MM-DD`` or ``YYYY-MM-DDTHH:MM:SSZ``."""
    if len(value) == 10:
        return datetime.fromisoformat(value).replace(tzinfo=UTC)
    return datetime.fromisoformat(value.replace("Z", "+00:00"))
