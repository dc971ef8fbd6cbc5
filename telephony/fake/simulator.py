"""Plays Twilio — and the people holding the phones — against our app.

The simulator places incoming calls and texts, answers the legs our app dials, and follows the
TwiML our app returns the way Twilio does: it signs and POSTs each webhook (via
:class:`~telephony.fake.webhooks.WebhookSender`), judges the answer (status, size,
Content-Type, XML, verbs allowed in that kind of document), falls back to the Fallback URL on
failure, and executes the verbs.  What a caller hears goes to the call's transcript; everything
that happens goes to the fake's event log.

Time is scaled: one simulated second lasts ``time_scale`` real seconds (default 0.01), so a
30-second hold takes 0.3 s.  Each leg keeps its own simulated clock, advanced by what the leg
waits through (speech, pauses, ringing, talk), so the durations Twilio reports (``QueueTime``,
``CallDuration``, ``DialCallDuration`` …) and scripted hang-ups do not depend on how busy the
machine is.  Anything that can interrupt a wait — a REST redirect/hang-up/dequeue from the app,
the other side leaving a bridge or conference — wakes it at once, so tests synchronise on
events, never on sleeps.  Only waits for *other* parties (someone joining a conference) are
real time, scaled: keep ``hold_patience`` generous when the app has work to do first.

Scripted people are :class:`Party` values: the caller of :meth:`CallSimulator.place_call`, and
one per number our app may dial (:meth:`CallSimulator.add_party`).  Choices where Twilio's
documentation is silent are written down where they are made (search for "Choice:").
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import xml.etree.ElementTree as ET
from collections import deque
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal
from urllib.parse import urljoin

from starlette.types import ASGIApp

from telephony.fake.documents import (
    STATUS_CALLBACK_FAILED,
    Context,
    TwimlDocument,
    TwimlProblem,
    check_context,
    parse_messaging_response,
    parse_voice_response,
)
from telephony.fake.server import FakeTwilio
from telephony.fake.store import (
    API_VERSION,
    FINAL_CALL_STATES,
    Call,
    DequeueCommand,
    HangupCommand,
    LiveCommand,
    Message,
    NumberConfig,
    RedirectCommand,
    TwilioApiError,
    is_whatsapp,
    new_sid,
    rfc2822,
)
from telephony.fake.webhooks import ConnectionOverrides, WebhookSender

APPLICATION_ERROR = "We are sorry, an application error has occurred. Goodbye."
DEFAULT_HOLD_MUSIC = "http://com.twilio.sounds.music.s3.amazonaws.com/ClockworkWaltz.mp3"
PLAY_SECONDS = 5.0  # simulated length of any <Play> (the fake never downloads audio)
SPEECH_RATE = 2.5  # words per simulated second for <Say>
SIP_CODES = {"completed": "200", "busy": "486", "no-answer": "487", "canceled": "487", "failed": "500"}

AnswerKind = Literal["human", "machine", "busy", "no-answer", "failed"]


class SimulatorError(Exception):
    """The simulation itself was misconfigured (e.g. a call to a number the fake does not own)."""


@dataclass(frozen=True)
class Party:
    """A scripted person (or voicemail box) on one end of a call.

    ``digits`` answers successive ``<Gather>`` verbs: a string is pressed (``"12#"`` ends with
    the finish key), ``None`` stays silent so the Gather times out.  ``talk_seconds`` is how
    long the party stays in a bridge or conference with someone else before hanging up;
    ``hold_patience`` how long it waits alone in a conference; ``hang_up_after`` (simulated
    seconds on the leg's clock from the moment the call connects) hangs up wherever the call
    is.  ``answer`` and ``answer_after`` only matter for legs that ring this party.
    """

    answer: AnswerKind = "human"
    answer_after: float = 3.0
    digits: tuple[str | None, ...] = ()
    talk_seconds: float = 30.0
    hold_patience: float = 60.0
    hang_up_after: float | None = None
    record_seconds: float = 10.0
    record_finish_key: str | None = "#"
    recording_audio: bytes | None = None


#: A number nobody scripted: it rings out.
UNSCRIPTED = Party(answer="no-answer")


@dataclass(frozen=True)
class Heard:
    """One thing a party heard: ``say`` (text), ``play`` (URL), ``pause``, ``beep``,
    ``ringback`` (while a ``<Dial>`` rings), ``hold-music`` (default queue music),
    ``connected`` (bridged to another party; text = that leg's SID)."""

    kind: str
    text: str = ""
    language: str | None = None
    voice: str | None = None
    seconds: float = 0.0

    def __str__(self) -> str:
        if self.kind == "say":
            return f"say[{self.language or 'en-US'}]: {self.text}"
        if self.kind == "pause":
            return f"pause: {self.seconds:g}s"
        return f"{self.kind}: {self.text}" if self.text else self.kind


# -- internal control flow ---------------------------------------------------------------------


@dataclass(frozen=True)
class _PartyHangsUp:
    """The scripted person hung up."""


_Command = LiveCommand | _PartyHangsUp


class _Interrupt(Exception):
    """A command (REST or scripted) that stops whatever the leg is doing."""

    def __init__(self, command: _Command) -> None:
        super().__init__(type(command).__name__)
        self.command = command


class _AppFailure(Exception):
    """Twilio could not get usable TwiML (the alert code Twilio would log)."""

    def __init__(self, problem: TwimlProblem, url: str, from_fallback: bool) -> None:
        super().__init__(f"{problem.code}: {problem.detail}")
        self.problem = problem
        self.url = url
        self.from_fallback = from_fallback


class _StepLimit(Exception):
    """The call made more TwiML requests than ``max_steps`` (a loop in the app)."""


@dataclass(frozen=True)
class _Fetch:
    url: str
    method: str = "POST"
    extra: Mapping[str, str] = field(default_factory=dict)
    purpose: str = "voice"
    twiml: str | None = None
    fallback: bool = False


@dataclass(frozen=True)
class _Goto:
    fetch: _Fetch


@dataclass(frozen=True)
class _DocEnd:
    pass


@dataclass(frozen=True)
class _Hangup:
    pass


@dataclass(frozen=True)
class _Leave:
    pass


@dataclass(frozen=True)
class _LeaveTo:
    fetch: _Fetch


_Outcome = _Goto | _DocEnd | _Hangup | _Leave | _LeaveTo


def _is_hangup(command: _Command) -> bool:
    return isinstance(command, HangupCommand | _PartyHangsUp)


class SimulatedCall:
    """One call leg the simulator drives, and what its party heard.

    Attributes: ``sid``, ``to``, ``from_``, ``direction`` (``inbound``, ``outbound-api``,
    ``outbound-dial``), ``parent_sid``, ``party``, ``transcript`` (list of :class:`Heard`),
    ``children`` (legs a ``<Dial>`` created), ``recordings`` (SIDs), ``alerts`` (Twilio error
    codes raised during the call), ``final_status``.
    """

    def __init__(self, record: Call, party: Party, parent: SimulatedCall | None = None) -> None:
        self.sid = record.sid
        self.to = record.to
        self.from_ = record.from_
        self.direction = record.direction
        self.parent_sid = parent.sid if parent else None
        self.party = party
        self.transcript: list[Heard] = []
        self.children: list[SimulatedCall] = []
        self.recordings: list[str] = []
        self.alerts: list[int] = []
        self.final_status: str | None = None
        self.error: BaseException | None = None
        self.fallback_url = record.fallback_url
        self.fallback_method = record.fallback_method
        self.status_callback = record.status_callback
        self.status_callback_method = record.status_callback_method
        self.status_callback_events = record.status_callback_events
        self.machine_detection = record.machine_detection
        self._done = asyncio.Event()
        self._commands: asyncio.Queue[_Command] = asyncio.Queue()
        self._digits: deque[str | None] = deque(party.digits)
        self._call_status = record.status
        self._answered_by: str | None = None
        self._clock = 0.0  # simulated seconds this leg has lived (advanced only by its waits)
        self._connected_at: float | None = None
        self._steps = 0
        self._sequence = 0
        self._status_chain: asyncio.Task[Any] | None = None
        self._buffered: list[tuple[str, str, dict[str, str]]] = []

    @property
    def done(self) -> bool:
        """The leg has ended (its final status is set and callbacks are queued)."""
        return self._done.is_set()

    @property
    def said(self) -> list[str]:
        """The ``<Say>`` texts heard, in order."""
        return [h.text for h in self.transcript if h.kind == "say"]

    @property
    def lines(self) -> list[str]:
        """The transcript as readable lines."""
        return [str(h) for h in self.transcript]

    async def wait(self, timeout: float = 10.0) -> SimulatedCall:
        """Wait until the leg ends; re-raise a simulator crash; ``TimeoutError`` if it goes on."""
        await asyncio.wait_for(self._done.wait(), timeout)
        if self.error is not None:
            raise self.error
        return self

    def __repr__(self) -> str:
        return f"SimulatedCall({self.sid}, {self.direction}, status={self.final_status or self._call_status})"


@dataclass
class SimulatedMessage:
    """An inbound text the simulator sent, and the replies our app's TwiML produced."""

    sid: str
    replies: list[str] = field(default_factory=list)
    reply_sids: list[str] = field(default_factory=list)
    alerts: list[int] = field(default_factory=list)


@dataclass
class _Conference:
    name: str
    sid: str
    members: dict[str, tuple[SimulatedCall, bool, bool]] = field(default_factory=dict)
    started: bool = False
    ended: bool = False
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def notify(self) -> None:
        self.changed.set()
        self.changed = asyncio.Event()

    def others(self, sid: str) -> list[str]:
        return [other for other in self.members if other != sid]


class CallSimulator:
    """Drives calls and messages between the fake Twilio and our app.

    ``app`` is an ASGI app called in-process (``httpx.ASGITransport``); without it webhooks go
    over HTTP to the URLs configured on the fake's numbers.  ``auth_token`` signs webhooks
    (defaults to the fake account's).  ``webhook_timeout`` is Twilio's read timeout per attempt
    in real seconds (15 s on Twilio).  ``status_callback_order`` delivers call status callbacks
    ``in-order``, ``reversed`` or ``shuffled`` (seeded) to exercise ``SequenceNumber`` handling.
    Use as ``async with CallSimulator(fake, app=app) as sim:``.
    """

    def __init__(
        self,
        fake: FakeTwilio,
        *,
        app: ASGIApp | None = None,
        auth_token: str | None = None,
        time_scale: float = 0.01,
        webhook_timeout: float = 15.0,
        status_callback_order: Literal["in-order", "reversed", "shuffled"] = "in-order",
        seed: int = 0,
        max_steps: int = 200,
    ) -> None:
        if time_scale <= 0:
            raise ValueError("time_scale must be positive")
        self.fake = fake
        self.store = fake.store
        self.events = fake.store.events
        self.time_scale = time_scale
        self.status_callback_order = status_callback_order
        self.max_steps = max_steps
        self._random = random.Random(seed)  # noqa: S311 - deterministic test shuffling, not security
        self._sender = WebhookSender(
            auth_token or fake.auth_token,
            self.events,
            app=app,
            defaults=ConnectionOverrides(read_timeout=webhook_timeout, total_timeout=webhook_timeout * 2 + 1),
        )
        self._parties: dict[str, Party] = {}
        self._legs: dict[str, SimulatedCall] = {}
        self._conferences: dict[str, _Conference] = {}
        self._inboxes: dict[str, list[str]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> CallSimulator:
        """Bind to the running event loop and listen for REST-created calls and messages."""
        self._loop = asyncio.get_running_loop()
        self.store.add_listener(self)
        return self

    async def aclose(self) -> None:
        """Stop listening, end calls still running, and close the HTTP client."""
        self.store.remove_listener(self)
        # Cancelling a leg finishes it, which may queue a final callback: repeat until quiet.
        for _ in range(5):
            tasks = [task for task in self._tasks if not task.done()]
            if not tasks:
                break
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(BaseException):
                    await task
        await self._sender.aclose()

    async def __aenter__(self) -> CallSimulator:
        return await self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    def add_party(self, number: str, party: Party) -> None:
        """Script who answers when our app (REST or ``<Dial>``) calls ``number``."""
        self._parties[number] = party

    def inbox(self, number: str) -> list[str]:
        """Bodies of messages delivered to ``number`` (``whatsapp:`` prefix kept)."""
        return list(self._inboxes.get(number, []))

    def leg(self, sid: str) -> SimulatedCall:
        """A leg by SID (``KeyError`` if the simulator never drove it)."""
        return self._legs[sid]

    def legs(self, to: str | None = None) -> list[SimulatedCall]:
        """Every leg driven so far (optionally only those to ``to``), oldest first."""
        return [leg for leg in self._legs.values() if to is None or leg.to == to]

    async def wait_for_leg(self, to: str, timeout: float = 5.0) -> SimulatedCall:
        """Poll until our app has called ``to``; returns that leg."""
        deadline = time.monotonic() + timeout
        while not self.legs(to):
            if time.monotonic() > deadline:
                raise TimeoutError(f"no call to {to} within {timeout} s")
            await asyncio.sleep(0.005)
        return self.legs(to)[0]

    async def wait_idle(self, timeout: float = 10.0) -> None:
        """Wait until every call, delivery and callback the simulator started has finished."""
        deadline = time.monotonic() + timeout
        while True:
            pending = [t for t in self._tasks if not t.done()]
            if not pending:
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{len(pending)} simulator tasks still running")
            await asyncio.wait(pending, timeout=remaining)

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._reap)
        return task

    def _reap(self, task: asyncio.Task[Any]) -> None:
        """Forget a finished background task; a crash lands in the event log, not on stderr."""
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.events.add("sim.crash", None, error=repr(task.exception()))

    # -- StoreListener (called from the REST server's thread) ---------------------------------

    def call_created(self, call: Call) -> None:
        """REST created an outbound call: ring the scripted party."""
        self._hand_over(self._start_outbound, call.sid)

    def message_created(self, message: Message) -> None:
        """REST created a message: deliver it."""
        self._hand_over(self._start_delivery, message.sid)

    def call_command(self, call_sid: str, command: LiveCommand) -> None:
        """REST redirected, hung up or dequeued a live call: interrupt it."""
        self._hand_over(self._deliver_command, call_sid, command)

    def _hand_over(self, callback: Callable[..., None], *args: Any) -> None:
        """Run ``callback`` on the simulator's loop (we are on the REST server's thread)."""
        if self._loop is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody is simulating any more
            self._loop.call_soon_threadsafe(callback, *args)

    def _deliver_command(self, call_sid: str, command: LiveCommand) -> None:
        leg = self._legs.get(call_sid)
        if leg is not None and not leg.done:
            leg._commands.put_nowait(command)

    # -- placing calls -----------------------------------------------------------------------

    async def place_call(self, from_: str, to: str, party: Party | None = None) -> SimulatedCall:
        """An incoming call from ``from_`` to our number ``to``; runs in the background."""
        number = self.store.number(to)
        if number is None or not number.voice_url:
            raise SimulatorError(f"the fake owns no voice-enabled number {to}")
        record = self.store.create_call(
            to=to,
            from_=from_,
            direction="inbound",
            status="ringing",
            url=number.voice_url,
            method=number.voice_method,
            fallback_url=number.voice_fallback_url,
            fallback_method=number.voice_fallback_method,
            status_callback=number.status_callback,
            status_callback_method=number.status_callback_method,
            status_callback_events=("completed",),  # a number's status callback only gets completed
        )
        leg = self._register(record, party or Party())
        self._spawn(self._guard(leg, self._run_inbound(leg, number)))
        return leg

    async def call(
        self, from_: str, to: str, party: Party | None = None, timeout: float = 10.0
    ) -> SimulatedCall:
        """Place an incoming call and wait for it to end."""
        leg = await self.place_call(from_, to, party)
        return await leg.wait(timeout)

    def _register(self, record: Call, party: Party, parent: SimulatedCall | None = None) -> SimulatedCall:
        leg = SimulatedCall(record, party, parent)
        self._legs[leg.sid] = leg
        with self.store.lock:
            self.store.live_calls.add(leg.sid)
        if parent is not None:
            parent.children.append(leg)
        return leg

    async def _guard(self, leg: SimulatedCall, body: Coroutine[Any, Any, None]) -> None:
        """Run a leg's coroutine; a crash is recorded and re-raised from ``wait()``."""
        try:
            await body
        except asyncio.CancelledError:
            if not leg.done:
                self._finish(leg, "completed")
            raise
        except Exception as exc:
            leg.error = exc
            self.events.add("sim.crash", leg.sid, error=repr(exc))
            if not leg.done:
                self._finish(leg, "failed")

    async def _run_inbound(self, leg: SimulatedCall, number: NumberConfig) -> None:
        first = _Fetch(number.voice_url or "", number.voice_method, purpose="voice")
        await self._drive(leg, first)

    def _start_outbound(self, call_sid: str) -> None:
        try:
            record = self.store.get_call(call_sid)
        except TwilioApiError:
            return
        if call_sid in self._legs or record.status in FINAL_CALL_STATES:
            return
        leg = self._register(record, self._parties.get(record.to, UNSCRIPTED))
        self._spawn(self._guard(leg, self._run_outbound(leg)))

    async def _run_outbound(self, leg: SimulatedCall) -> None:
        """A REST-created call: initiated → ringing → answered (or not) → TwiML."""
        self._status_event(leg, "initiated", "initiated")
        self._set_status(leg, "ringing")
        self._status_event(leg, "ringing", "ringing")
        record = self.store.get_call(leg.sid)
        outcome = await self._ring(leg, record.timeout)
        if outcome != "answered":
            self._finish(leg, outcome)
            return
        if record.machine_detection:
            if leg.party.answer == "human":
                leg._answered_by = "human"
            else:
                leg._answered_by = (
                    "machine_end_beep" if record.machine_detection == "DetectMessageEnd" else "machine_start"
                )
        self._answer(leg)
        record = self.store.get_call(leg.sid)  # a REST redirect while ringing changes the URL
        await self._drive(leg, _Fetch(record.url or "", record.method, purpose="url", twiml=record.twiml))

    async def _ring(self, leg: SimulatedCall, timeout: float) -> str:
        """Ring the party: ``answered``, or the terminal status (busy/no-answer/failed/canceled)."""
        party = leg.party
        if party.answer in ("busy", "failed"):
            return party.answer
        answers = party.answer in ("human", "machine") and party.answer_after < timeout
        try:
            await self._pause(leg, party.answer_after if answers else timeout)
        except _Interrupt as interrupt:
            if isinstance(interrupt.command, HangupCommand):
                return "canceled"
            raise
        return "answered" if answers else "no-answer"

    def _answer(self, leg: SimulatedCall) -> None:
        leg._connected_at = leg._clock
        self._set_status(leg, "in-progress")
        self.events.add("call.answered", leg.sid, answered_by=leg._answered_by)
        self._status_event(leg, "answered", "in-progress")

    def _set_status(self, leg: SimulatedCall, status: str) -> None:
        leg._call_status = status
        with contextlib.suppress(TwilioApiError):  # the app may have deleted the record
            self.store.set_call_status(leg.sid, status, answered_by=leg._answered_by)
        if status == "ringing":
            self.events.add("call.ringing", leg.sid)

    def _finish(self, leg: SimulatedCall, status: str) -> None:
        """End a leg: final status, completed callback, and wake anyone waiting on it."""
        if leg.done:
            return
        duration = int(leg._clock - leg._connected_at) if leg._connected_at is not None else 0
        leg._call_status = status
        leg.final_status = status
        with contextlib.suppress(TwilioApiError):
            self.store.set_call_status(leg.sid, status, duration=duration)
        self.events.add("call.completed", leg.sid, status=status, duration=duration)
        self._status_event(
            leg,
            "completed",
            status,
            CallDuration=str(duration),
            Duration=str(-(-duration // 60)),
            SipResponseCode=SIP_CODES.get(status, "200"),
        )
        leg._done.set()

    # -- waiting -----------------------------------------------------------------------------

    async def _wait(
        self, leg: SimulatedCall, seconds: float | None, *signals: asyncio.Event, advance: bool = True
    ) -> int | None:
        """Wait ``seconds`` simulated (None: forever) or until a signal; a command interrupts.

        Returns the index of the signal that fired, or None when the time ran out.  The leg's
        clock advances by the simulated time waited: exactly ``seconds`` when the time runs out
        (so durations do not depend on how busy the machine is), else the real time scaled.
        The party's scripted ``hang_up_after`` is measured on that clock.
        """
        limit = seconds
        hangs_up = False
        if leg.party.hang_up_after is not None and leg._connected_at is not None:
            left = leg.party.hang_up_after - (leg._clock - leg._connected_at)
            if left <= 0:
                raise _Interrupt(_PartyHangsUp())
            if limit is None or left < limit:
                limit, hangs_up = left, True
        getter = asyncio.ensure_future(leg._commands.get())
        watchers = [asyncio.ensure_future(signal.wait()) for signal in signals]
        began = time.monotonic()
        try:
            timeout = None if limit is None else max(0.0, limit) * self.time_scale
            done, _ = await asyncio.wait(
                [getter, *watchers], timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for task in (getter, *watchers):
                if not task.done():
                    task.cancel()
        if not done:
            leg._clock += limit or 0.0
        elif advance:
            real = (time.monotonic() - began) / self.time_scale
            leg._clock += real if limit is None else min(real, limit)
        if getter.done() and not getter.cancelled():
            raise _Interrupt(getter.result())  # commands first: a hang-up beats everything
        for index, watcher in enumerate(watchers):
            if watcher.done() and not watcher.cancelled():
                return index
        if hangs_up:
            raise _Interrupt(_PartyHangsUp())
        return None

    async def _pause(self, leg: SimulatedCall, seconds: float) -> None:
        await self._wait(leg, seconds)

    def _check(self, leg: SimulatedCall) -> None:
        if not leg._commands.empty():
            raise _Interrupt(leg._commands.get_nowait())

    # -- webhooks ----------------------------------------------------------------------------

    def _params(self, leg: SimulatedCall, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """Twilio's standard voice request parameters for this leg."""
        params = {
            "AccountSid": self.store.account_sid,
            "ApiVersion": API_VERSION,
            "CallSid": leg.sid,
            "CallStatus": leg._call_status,
            "Called": leg.to,
            "Caller": leg.from_,
            "Direction": leg.direction,
            "From": leg.from_,
            "To": leg.to,
        }
        if leg.parent_sid:
            params["ParentCallSid"] = leg.parent_sid
        if leg._answered_by:
            params["AnsweredBy"] = leg._answered_by
        params.update(extra or {})
        return params

    async def _notify(
        self, leg: SimulatedCall, url: str | None, method: str, purpose: str, extra: dict[str, str]
    ) -> None:
        """A request whose TwiML Twilio ignores (e.g. an action after the caller hung up)."""
        if url:
            await self._sender.send(
                url, self._params(leg, extra), method=method, purpose=purpose, sid=leg.sid
            )

    async def _fetch(self, leg: SimulatedCall, fetch: _Fetch, context: Context) -> TwimlDocument:
        """Request TwiML and judge it; raise ``_AppFailure`` like Twilio's alert."""
        leg._steps += 1
        if leg._steps > self.max_steps:
            raise _StepLimit(f"{leg.sid} exceeded {self.max_steps} TwiML requests")
        if fetch.twiml is not None:
            url = ""
            result: TwimlDocument | TwimlProblem = parse_voice_response(
                200, "text/xml", fetch.twiml.encode(), url
            )
        else:
            url = fetch.url.partition("#")[0]
            sent = await self._sender.send(
                fetch.url,
                self._params(leg, fetch.extra),
                method=fetch.method,
                purpose=fetch.purpose,
                sid=leg.sid,
            )
            if sent.failure is not None and sent.status is None:
                result = TwimlProblem(sent.failure, "no answer from the app")
            else:
                result = parse_voice_response(sent.status or 0, sent.content_type, sent.body, url)
        if isinstance(result, TwimlDocument):
            for warning in result.warnings:
                self._alert(leg, warning, url)
            problem = check_context(result, context)
            if problem is None:
                if leg._call_status == "ringing" and leg.direction == "inbound":
                    self._answer(leg)  # Twilio answers an incoming call once it has TwiML to run
                return result
            result = problem
        self._alert(leg, result, url)
        raise _AppFailure(result, url, fetch.fallback)

    def _alert(self, leg: SimulatedCall, problem: TwimlProblem, url: str) -> None:
        leg.alerts.append(problem.code)
        self.events.add("alert", leg.sid, code=problem.code, url=url, detail=problem.detail)

    # -- status callbacks --------------------------------------------------------------------

    def _status_event(self, leg: SimulatedCall, event: str, call_status: str, **extra: str) -> None:
        """Queue a status callback if the leg subscribed to ``event``."""
        if not leg.status_callback or event not in leg.status_callback_events:
            return
        params = self._params(
            leg,
            {
                "CallStatus": call_status,
                "SequenceNumber": str(leg._sequence),
                "Timestamp": rfc2822(self.store.clock()) or "",
                "CallbackSource": "call-progress-events",
                **extra,
            },
        )
        leg._sequence += 1
        item = (leg.status_callback, leg.status_callback_method, params)
        if self.status_callback_order == "in-order":
            previous = leg._status_chain
            leg._status_chain = self._spawn(self._post_status(leg.sid, [item], previous))
            return
        leg._buffered.append(item)
        if event == "completed":
            batch = list(reversed(leg._buffered))
            if self.status_callback_order == "shuffled":
                self._random.shuffle(batch)
            leg._buffered.clear()
            self._spawn(self._post_status(leg.sid, batch, None))

    async def _post_status(
        self, sid: str, items: Sequence[tuple[str, str, dict[str, str]]], previous: asyncio.Task[Any] | None
    ) -> None:
        if previous is not None:
            with contextlib.suppress(BaseException):
                await previous
        for url, method, params in items:
            result = await self._sender.send(url, params, method=method, purpose="status-callback", sid=sid)
            if not result.ok:
                self.events.add(
                    "alert", sid, code=STATUS_CALLBACK_FAILED, url=url, detail="status callback failed"
                )

    # -- the TwiML interpreter ---------------------------------------------------------------

    async def _drive(self, leg: SimulatedCall, first: _Fetch) -> None:
        """Run TwiML on a connected leg until the call ends, then finish the leg."""
        fetch: _Fetch | None = first
        status = "completed"
        while fetch is not None:
            current, fetch = fetch, None
            try:
                await self._run(leg, current, "main")
            except _Interrupt as interrupt:
                command = interrupt.command
                if isinstance(command, RedirectCommand):
                    fetch = _Fetch(command.url, command.method, purpose="redirect", twiml=command.twiml)
                elif isinstance(command, DequeueCommand):
                    fetch = _Fetch(command.url, command.method, purpose="dequeue")
                elif isinstance(command, HangupCommand):
                    status = command.status
            except _AppFailure as failure:
                if leg.fallback_url and not failure.from_fallback:
                    fetch = _Fetch(
                        leg.fallback_url,
                        leg.fallback_method,
                        {"ErrorCode": str(failure.problem.code), "ErrorUrl": failure.url},
                        purpose="fallback",
                        fallback=True,
                    )
                else:
                    leg.transcript.append(Heard("say", APPLICATION_ERROR, "en-US"))
            except _StepLimit as limit:
                self.events.add("sim.step-limit", leg.sid, detail=str(limit))
        self._finish(leg, status)

    async def _run(self, leg: SimulatedCall, fetch: _Fetch, context: Context) -> _Outcome:
        """Fetch and execute documents in one context until the flow leaves it."""
        while True:
            document = await self._fetch(leg, fetch, context)
            outcome = await self._execute(leg, document, context)
            if isinstance(outcome, _Goto):
                fetch = outcome.fetch
                continue
            return outcome

    async def _execute(self, leg: SimulatedCall, document: TwimlDocument, context: Context) -> _Outcome:
        if document.audio:
            leg.transcript.append(Heard("play", document.url))
            await self._pause(leg, PLAY_SECONDS)
            return _DocEnd()
        for verb in document.verbs:
            self._check(leg)
            self.events.add("verb", leg.sid, verb=verb.tag, context=context)
            outcome = await self._verb(leg, verb, document, context)
            if outcome is not None:
                return outcome
        return _DocEnd()

    async def _verb(
        self, leg: SimulatedCall, verb: ET.Element, document: TwimlDocument, context: Context
    ) -> _Outcome | None:
        tag = verb.tag
        if tag in ("Say", "Play", "Pause"):
            await self._media(leg, verb)
            return None
        if tag == "Hangup":
            return _Hangup()
        if tag == "Redirect":
            target = _Fetch(_resolve(document.url, verb.text), verb.get("method", "POST"), purpose="redirect")
            # Choice: a <Redirect> in a waitUrl document takes the call out of the queue
            # (Twilio's QueueResult "redirected-from-waitUrl"); elsewhere it replaces the document.
            return _LeaveTo(target) if context == "wait" else _Goto(target)
        if tag == "Leave":
            if context == "wait":
                return _Leave()
            self.events.add("verb.ignored", leg.sid, verb=tag, reason="not in a queue")
            return None
        if tag == "Gather":
            return await self._gather(leg, verb, document)
        if tag == "Record":
            return await self._record(leg, verb, document)
        if tag == "Enqueue":
            return await self._enqueue(leg, verb, document)
        if tag == "Dial":
            return await self._dial(leg, verb, document)
        self.events.add("sim.unsupported", leg.sid, verb=tag)
        return None

    async def _media(self, leg: SimulatedCall, verb: ET.Element) -> None:
        """Say / Play / Pause: what the party hears, and how long it takes."""
        loops = max(1, int(verb.get("loop", "1") or 1))  # Choice: loop="0" (forever) plays once
        if verb.tag == "Pause":
            length = float(verb.get("length", "1") or 1)
            leg.transcript.append(Heard("pause", seconds=length))
            await self._pause(leg, length)
            return
        for _ in range(loops):
            if verb.tag == "Say":
                text = " ".join((verb.text or "").split())
                leg.transcript.append(Heard("say", text, verb.get("language"), verb.get("voice")))
                await self._pause(leg, max(1.0, len(text.split()) / SPEECH_RATE))
            else:
                leg.transcript.append(Heard("play", (verb.text or "").strip()))
                await self._pause(leg, PLAY_SECONDS)

    async def _gather(self, leg: SimulatedCall, verb: ET.Element, document: TwimlDocument) -> _Outcome | None:
        action = _resolve(document.url, verb.get("action")) if verb.get("action") else document.url
        method = verb.get("method", "POST")
        finish_key = verb.get("finishOnKey", "#")
        num_digits = int(verb.get("numDigits", "0") or 0)
        timeout = float(verb.get("timeout", "5") or 5)
        for child in verb:
            await self._media(leg, child)
        entry = leg._digits.popleft() if leg._digits else None
        if "dtmf" not in verb.get("input", "dtmf"):
            entry = None  # Choice: speech is not simulated; a speech-only Gather hears silence
        digits, finished_on = _collect_digits(entry or "", finish_key, num_digits)
        if digits:
            self.events.add("gather.input", leg.sid, digits=digits)
            await self._pause(leg, 0.5 * len(digits))
            return _Goto(
                _Fetch(action, method, {"Digits": digits, "FinishedOnKey": finished_on}, purpose="gather")
            )
        await self._pause(leg, timeout)
        self.events.add("gather.timeout", leg.sid)
        if verb.get("actionOnEmptyResult", "false") == "true":
            return _Goto(_Fetch(action, method, {"Digits": "", "FinishedOnKey": ""}, purpose="gather"))
        return None  # Twilio falls through to the next verb

    async def _record(self, leg: SimulatedCall, verb: ET.Element, document: TwimlDocument) -> _Outcome | None:
        # Twilio quirk kept: without an action, the current document URL is requested again.
        action = _resolve(document.url, verb.get("action")) if verb.get("action") else document.url
        method = verb.get("method", "POST")
        max_length = float(verb.get("maxLength", "3600") or 3600)
        finish_keys = verb.get("finishOnKey", "1234567890*#")
        if verb.get("playBeep", "true") != "false":
            leg.transcript.append(Heard("beep"))
        seconds = min(leg.party.record_seconds, max_length)
        if seconds <= 0:
            # Choice: only silence — no recording and no action request; the next verb runs.
            await self._pause(leg, float(verb.get("timeout", "5") or 5))
            return None
        started = leg._clock
        hung_up: _Interrupt | None = None
        try:
            await self._pause(leg, seconds)
        except _Interrupt as interrupt:
            if not _is_hangup(interrupt.command):
                raise
            hung_up = interrupt
        duration = max(1, round(leg._clock - started))
        recording = self.store.create_recording(leg.sid, duration, leg.party.recording_audio)
        leg.recordings.append(recording.sid)
        key = leg.party.record_finish_key
        params = {
            "RecordingUrl": self.store.recording_url(recording.sid),
            "RecordingSid": recording.sid,
            "RecordingDuration": str(duration),
        }
        if hung_up is not None:
            params["Digits"] = "hangup"
        elif key and key in finish_keys and seconds < max_length:
            params["Digits"] = key
        callback = verb.get("recordingStatusCallback")
        if callback:
            self._spawn(
                self._sender.send(
                    _resolve(document.url, callback),
                    {
                        "AccountSid": self.store.account_sid,
                        "CallSid": leg.sid,
                        "RecordingSid": recording.sid,
                        "RecordingUrl": params["RecordingUrl"],
                        "RecordingStatus": "completed",
                        "RecordingDuration": str(duration),
                        "RecordingChannels": "1",
                        "RecordingStartTime": rfc2822(recording.date_created) or "",
                        "RecordingSource": "RecordVerb",
                        "RecordingTrack": "both",
                        "ErrorCode": "0",
                    },
                    method=verb.get("recordingStatusCallbackMethod", "POST"),
                    purpose="recording-status",
                    sid=leg.sid,
                )
            )
        if hung_up is not None:
            leg._call_status = "completed"
            await self._notify(leg, action, method, "record-action", params)
            raise hung_up
        return _Goto(_Fetch(action, method, params, purpose="record"))

    # -- queues ------------------------------------------------------------------------------

    async def _enqueue(
        self, leg: SimulatedCall, verb: ET.Element, document: TwimlDocument
    ) -> _Outcome | None:
        name = (verb.text or "").strip()
        action = _resolve(document.url, verb.get("action")) if verb.get("action") else None
        method = verb.get("method", "POST")
        wait_url = _resolve(document.url, verb.get("waitUrl")) if verb.get("waitUrl") else None
        wait_method = verb.get("waitUrlMethod", "POST")
        queue = self.store.queue_by_name(name, int(verb.get("maxQueueSize", "1000") or 1000))
        if self.store.enqueue(queue.sid, leg.sid) == 0:
            self.events.add("queue.full", leg.sid, queue=name, queue_sid=queue.sid)
            return self._after_queue(action, method, {"QueueResult": "queue-full"})
        self.events.add(
            "queue.join",
            leg.sid,
            queue=name,
            queue_sid=queue.sid,
            position=self.store.queue_position(queue.sid, leg.sid),
        )
        joined = leg._clock

        def leave(result: str) -> dict[str, str]:
            waited = leg._clock - joined
            self.store.leave_queue(queue.sid, leg.sid, waited)
            self.events.add(
                "queue.leave", leg.sid, queue=name, queue_sid=queue.sid, result=result, waited=int(waited)
            )
            return {"QueueResult": result, "QueueSid": queue.sid, "QueueTime": str(int(waited))}

        try:
            outcome: _Outcome = _DocEnd()
            while isinstance(outcome, _DocEnd):
                poll_started = leg._clock
                if wait_url is None:
                    leg.transcript.append(Heard("hold-music", DEFAULT_HOLD_MUSIC))
                    await self._pause(leg, 30.0)
                    continue
                with self.store.lock:
                    current = self.store.get_queue(queue.sid)
                    size, average = len(current.members), current.average_wait()
                params = {
                    "QueueSid": queue.sid,
                    "QueuePosition": str(self.store.queue_position(queue.sid, leg.sid)),
                    "QueueTime": str(int(leg._clock - joined)),
                    "AvgQueueTime": str(average),
                    "CurrentQueueSize": str(size),
                    "MaxQueueSize": str(queue.max_size),
                }
                outcome = await self._run(leg, _Fetch(wait_url, wait_method, params, purpose="wait"), "wait")
                if isinstance(outcome, _DocEnd) and leg._clock - poll_started < 1.0:
                    # Twilio re-requests waitUrl when the document ends; an instant document
                    # would spin, so each poll takes at least a simulated second.
                    await self._pause(leg, 1.0)
        except _Interrupt as interrupt:
            command = interrupt.command
            result = "hangup" if _is_hangup(command) else "redirected"
            params = leave(result)
            if result == "hangup":
                leg._call_status = "completed"
            # Twilio requests the action at once when a call leaves by REST or hangs up; its
            # TwiML is not used (the REST Url, or nothing, runs next).
            await self._notify(leg, action, method, "enqueue-action", params)
            raise
        except (_AppFailure, _StepLimit):
            leave("error")
            raise
        if isinstance(outcome, _Hangup):
            leg._call_status = "completed"
            await self._notify(leg, action, method, "enqueue-action", leave("hangup"))
            return _Hangup()
        if isinstance(outcome, _LeaveTo):
            await self._notify(leg, action, method, "enqueue-action", leave("redirected-from-waitUrl"))
            return _Goto(outcome.fetch)
        return self._after_queue(action, method, leave("leave"))

    def _after_queue(self, action: str | None, method: str, params: dict[str, str]) -> _Outcome | None:
        if action:
            return _Goto(_Fetch(action, method, params, purpose="enqueue-action"))
        return None  # no action: continue after <Enqueue>

    # -- dialing -----------------------------------------------------------------------------

    async def _dial(self, leg: SimulatedCall, verb: ET.Element, document: TwimlDocument) -> _Outcome | None:
        action = _resolve(document.url, verb.get("action")) if verb.get("action") else None
        method = verb.get("method", "POST")
        timeout = float(verb.get("timeout", "30") or 30)
        time_limit = float(verb.get("timeLimit", "14400") or 14400)
        caller_id = verb.get("callerId") or leg.from_
        conference = verb.find("Conference")
        if conference is not None:
            return await self._conference(leg, verb, conference, document, action, method)
        targets: list[ET.Element] = list(verb.findall("Number"))
        if not len(verb) and (verb.text or "").strip():
            plain = ET.Element("Number")
            plain.text = (verb.text or "").strip()
            targets = [plain]
        for noun in verb:
            if noun.tag != "Number":
                # Choice: only <Number> and <Conference> are simulated; other nouns fail the dial.
                self.events.add("sim.unsupported", leg.sid, verb=f"Dial/{noun.tag}")
        if not targets:
            return self._dial_done(action, method, "failed", None, 0)
        leg.transcript.append(Heard("ringback"))
        children = [self._dial_leg(leg, noun, caller_id, document) for noun in targets]
        answering = [
            child
            for child in children
            if child.party.answer in ("human", "machine") and child.party.answer_after < timeout
        ]
        winner = min(answering, key=lambda c: c.party.answer_after) if answering else None
        for child in children:
            if child.party.answer in ("busy", "failed"):
                self._finish(child, child.party.answer)
        rings_out = any(c.party.answer in ("human", "machine", "no-answer") for c in children)
        try:
            await self._pause(leg, winner.party.answer_after if winner else (timeout if rings_out else 0.5))
        except _Interrupt as interrupt:
            for child in children:
                self._finish(child, "canceled")
            if _is_hangup(interrupt.command):
                leg._call_status = "completed"
                await self._notify(
                    leg, action, method, "dial-action", {"DialCallStatus": "canceled", "DialBridged": "false"}
                )
            raise
        for child in children:
            if child is not winner:
                self._finish(child, "canceled" if winner else "no-answer")  # no-op for busy/failed legs
        if winner is None:
            if rings_out:
                status = "no-answer"
            else:
                status = "busy" if any(c.party.answer == "busy" for c in children) else "failed"
            return self._dial_done(action, method, status, None, 0)
        noun = targets[children.index(winner)]
        if noun.get("machineDetection"):
            winner._answered_by = "human" if winner.party.answer == "human" else "machine_start"
        self._answer(winner)
        whisper_url = noun.get("url")
        if whisper_url:
            bridged = await self._whisper(
                leg,
                winner,
                _Fetch(_resolve(document.url, whisper_url), noun.get("method", "POST"), purpose="whisper"),
                action,
                method,
            )
            if not bridged:
                return self._dial_done(
                    action, method, "no-answer" if winner.final_status != "failed" else "failed", winner, 0
                )
        return await self._bridge(leg, winner, action, method, time_limit)

    def _dial_leg(
        self, parent: SimulatedCall, noun: ET.Element, caller_id: str, document: TwimlDocument
    ) -> SimulatedCall:
        events = tuple((noun.get("statusCallbackEvent") or "completed").replace(",", " ").split())
        callback = noun.get("statusCallback")
        record = self.store.create_call(
            to=(noun.text or "").strip(),
            from_=caller_id,
            direction="outbound-dial",
            parent_call_sid=parent.sid,
            status_callback=_resolve(document.url, callback) if callback else None,
            status_callback_method=noun.get("statusCallbackMethod", "POST"),
            status_callback_events=events,
        )
        child = self._register(record, self._parties.get(record.to, UNSCRIPTED), parent)
        self._status_event(child, "initiated", "initiated")
        self._set_status(child, "ringing")
        self._status_event(child, "ringing", "ringing")
        return child

    async def _whisper(
        self, leg: SimulatedCall, child: SimulatedCall, fetch: _Fetch, action: str | None, method: str
    ) -> bool:
        """Run the ``<Number url>`` document on the answered leg; True when it ends in a bridge.

        The caller keeps hearing ringback meanwhile and hears nothing of the whisper.
        Choice: when the whisper hangs up (the volunteer declined, or a voicemail box never
        pressed a key) the parent's <Dial> reports ``no-answer``: no bridge ever formed.
        """
        task = asyncio.ensure_future(self._run(child, fetch, "whisper"))
        try:
            await self._wait_task(leg, task, child)
        except _Interrupt as interrupt:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
            self._finish(child, "completed")
            if _is_hangup(interrupt.command):
                leg._call_status = "completed"
                await self._notify(
                    leg, action, method, "dial-action", {"DialCallStatus": "canceled", "DialBridged": "false"}
                )
            raise
        try:
            outcome = task.result()
        except _AppFailure:
            child.transcript.append(Heard("say", APPLICATION_ERROR, "en-US"))
            self._finish(child, "failed")
            return False
        except _StepLimit:
            self._finish(child, "failed")
            return False
        except _Interrupt as interrupt:
            command = interrupt.command
            if isinstance(command, RedirectCommand | DequeueCommand):
                url = command.url
                self._spawn(
                    self._guard(child, self._drive(child, _Fetch(url, command.method, purpose="redirect")))
                )
                return False
            self._finish(child, command.status if isinstance(command, HangupCommand) else "completed")
            return False
        if isinstance(outcome, _DocEnd):
            return True
        self._finish(child, "completed")
        return False

    async def _wait_task(self, leg: SimulatedCall, task: asyncio.Future[Any], child: SimulatedCall) -> None:
        """Wait for work on ``child`` while ``leg`` stays interruptible; ``leg`` ages as ``child`` did."""
        done = asyncio.Event()
        task.add_done_callback(lambda _: done.set())
        child_began = child._clock
        while not task.done():
            await self._wait(leg, None, done, advance=False)
        leg._clock += child._clock - child_began

    async def _bridge(
        self, leg: SimulatedCall, child: SimulatedCall, action: str | None, method: str, time_limit: float
    ) -> _Outcome | None:
        """Caller and callee talk until one hangs up (the shorter ``talk_seconds``)."""
        self.events.add("bridge", leg.sid, with_sid=child.sid)
        leg.transcript.append(Heard("connected", child.sid))
        child.transcript.append(Heard("connected", leg.sid))
        started = leg._clock
        child_began = child._clock
        child_command = asyncio.Event()
        pending: list[_Command] = []

        async def watch_child() -> None:
            pending.append(await child._commands.get())
            child_command.set()

        def end_bridge(ended_by: str) -> int:
            """Both legs lived through the same talk time; returns it."""
            talked = leg._clock - started
            child._clock = child_began + talked
            self.events.add(
                "bridge.end", leg.sid, with_sid=child.sid, ended_by=ended_by, duration=int(talked)
            )
            return int(talked)

        watcher = asyncio.ensure_future(watch_child())
        talk = min(leg.party.talk_seconds, child.party.talk_seconds, time_limit)
        try:
            fired = await self._wait(leg, talk, child_command)
        except _Interrupt as interrupt:
            talked = end_bridge(leg.sid)
            self._finish(child, "completed")
            if _is_hangup(interrupt.command):
                leg._call_status = "completed"
                await self._notify(leg, action, method, "dial-action", self._dial_params(child, talked))
            raise
        finally:
            if not watcher.done():
                watcher.cancel()
        if fired is None and leg.party.talk_seconds < child.party.talk_seconds and talk < time_limit:
            # The caller hangs up first: the callee's leg ends with it.
            talked = end_bridge(leg.sid)
            self._finish(child, "completed")
            leg._call_status = "completed"
            await self._notify(leg, action, method, "dial-action", self._dial_params(child, talked))
            raise _Interrupt(_PartyHangsUp())
        duration = end_bridge(child.sid)
        command = pending[0] if pending else None
        if isinstance(command, RedirectCommand | DequeueCommand):
            # The callee was redirected out of the bridge: it carries on with its own TwiML.
            redirect = _Fetch(command.url, command.method, purpose="redirect")
            self._spawn(self._guard(child, self._drive(child, redirect)))
        else:
            self._finish(child, "completed")
        return self._dial_done(action, method, "completed", child, duration)

    @staticmethod
    def _dial_params(child: SimulatedCall, duration: int) -> dict[str, str]:
        """Dial action parameters when the caller's side ended a bridge."""
        return {
            "DialCallStatus": "completed",
            "DialBridged": "true",
            "DialCallSid": child.sid,
            "DialCallDuration": str(duration),
        }

    def _dial_done(
        self, action: str | None, method: str, status: str, child: SimulatedCall | None, duration: int
    ) -> _Outcome | None:
        params = {"DialCallStatus": status, "DialBridged": "true" if status == "completed" else "false"}
        if child is not None:
            params["DialCallSid"] = child.sid
        if status == "completed":
            params["DialCallDuration"] = str(duration)
        if action:
            return _Goto(_Fetch(action, method, params, purpose="dial-action"))
        return None  # no action: the next verb runs

    async def _conference(
        self,
        leg: SimulatedCall,
        verb: ET.Element,
        noun: ET.Element,
        document: TwimlDocument,
        action: str | None,
        method: str,
    ) -> _Outcome | None:
        """Join a conference; talk while someone else is there; leave by hang-up or its end."""
        name = (noun.text or "").strip()
        start_on_enter = noun.get("startConferenceOnEnter", "true") != "false"
        end_on_exit = noun.get("endConferenceOnExit", "false") == "true"
        conference = self._conferences.get(name)
        if conference is None or conference.ended:
            conference = _Conference(name, new_sid("CF"))
            self._conferences[name] = conference
        conference.members[leg.sid] = (leg, start_on_enter, end_on_exit)
        conference.started = conference.started or start_on_enter
        self.events.add("conference.join", leg.sid, name=name, conference_sid=conference.sid)
        if conference.started and conference.others(leg.sid):
            self.events.add("bridge", leg.sid, with_sids=conference.others(leg.sid), conference=name)
            leg.transcript.append(Heard("connected", ",".join(conference.others(leg.sid))))
        conference.notify()
        talked = 0.0
        alone = 0.0
        try:
            while not conference.ended:
                talking = conference.started and bool(conference.others(leg.sid))
                budget = leg.party.talk_seconds - talked if talking else leg.party.hold_patience - alone
                if budget <= 0:
                    raise _Interrupt(_PartyHangsUp())
                began = leg._clock
                fired = await self._wait(leg, budget, conference.changed)
                spent = leg._clock - began
                if talking:
                    talked += spent
                else:
                    alone += spent
                if fired is None:
                    raise _Interrupt(_PartyHangsUp())
        except _Interrupt as interrupt:
            self._leave_conference(conference, leg)
            if _is_hangup(interrupt.command):
                leg._call_status = "completed"
                await self._notify(
                    leg, action, method, "dial-action", {"DialCallStatus": "answered", "DialBridged": "true"}
                )
            raise
        self._leave_conference(conference, leg)
        # Choice: Twilio reports conference dials as "answered".
        return self._after_dial_conference(action, method)

    def _leave_conference(self, conference: _Conference, leg: SimulatedCall) -> None:
        entry = conference.members.pop(leg.sid, None)
        if entry is None:
            return
        self.events.add("conference.leave", leg.sid, name=conference.name)
        if entry[2] or not conference.members:
            if not conference.ended:
                conference.ended = True
                self.events.add("conference.end", conference.sid, name=conference.name)
        conference.notify()

    def _after_dial_conference(self, action: str | None, method: str) -> _Outcome | None:
        if action:
            return _Goto(
                _Fetch(
                    action,
                    method,
                    {"DialCallStatus": "answered", "DialBridged": "true"},
                    purpose="dial-action",
                )
            )
        return None

    # -- messaging ---------------------------------------------------------------------------

    async def send_message(
        self,
        from_: str,
        to: str,
        body: str,
        *,
        profile_name: str | None = None,
        media_urls: Sequence[str] = (),
    ) -> SimulatedMessage:
        """An incoming SMS/WhatsApp (``whatsapp:`` addresses) to our number ``to``.

        Posts Twilio's incoming-message webhook, then sends and delivers any ``<Message>``
        replies in the answer (falling back to the number's fallback URL on failure).
        """
        number = self.store.number(to)
        if number is None or not number.sms_url:
            raise SimulatorError(f"the fake owns no messaging-enabled number {to}")
        message = self.store.receive_message(from_=from_, to=to, body=body, media_urls=media_urls)
        params = {
            "AccountSid": self.store.account_sid,
            "ApiVersion": API_VERSION,
            "Body": body,
            "From": from_,
            "MessageSid": message.sid,
            "NumMedia": str(len(media_urls)),
            "NumSegments": str(max(1, -(-len(body) // 160))),
            "SmsMessageSid": message.sid,
            "SmsSid": message.sid,
            "SmsStatus": "received",
            "To": to,
        }
        for index, url in enumerate(media_urls):
            params[f"MediaUrl{index}"] = url
            params[f"MediaContentType{index}"] = "image/jpeg"
        if is_whatsapp(from_):
            params["WaId"] = from_.removeprefix("whatsapp:").lstrip("+")
            params["ProfileName"] = profile_name or ""
            params["MessageType"] = "image" if media_urls else "text"
        else:
            keyword = body.strip().upper()
            if keyword in ("STOP", "START", "HELP"):
                params["OptOutType"] = keyword
        outcome = SimulatedMessage(message.sid)
        sent = await self._sender.send(
            number.sms_url, params, method=number.sms_method, purpose="sms", sid=message.sid, voice=False
        )
        replies = parse_messaging_response(sent.status or 0, sent.content_type, sent.body)
        if isinstance(replies, TwimlProblem) and number.sms_fallback_url:
            outcome.alerts.append(replies.code)
            self.events.add(
                "alert", message.sid, code=replies.code, url=number.sms_url, detail=replies.detail
            )
            fallback = {**params, "ErrorCode": str(replies.code), "ErrorUrl": number.sms_url}
            sent = await self._sender.send(
                number.sms_fallback_url,
                fallback,
                method=number.sms_fallback_method,
                purpose="sms-fallback",
                sid=message.sid,
                voice=False,
            )
            replies = parse_messaging_response(sent.status or 0, sent.content_type, sent.body)
        if isinstance(replies, TwimlProblem):
            outcome.alerts.append(replies.code)
            self.events.add("alert", message.sid, code=replies.code, url=sent.url, detail=replies.detail)
            return outcome
        for reply in replies:
            try:
                created = self.store.create_message(
                    to=reply.to or from_,
                    from_=reply.from_ or to,
                    body=reply.body,
                    status_callback=_resolve(sent.url, reply.status_callback)
                    if reply.status_callback
                    else None,
                    media_urls=reply.media_urls,
                    direction="outbound-reply",
                    notify=False,
                )
            except TwilioApiError as exc:
                outcome.alerts.append(exc.code)
                self.events.add("alert", message.sid, code=exc.code, url=sent.url, detail=exc.message)
                continue
            outcome.replies.append(reply.body)
            outcome.reply_sids.append(created.sid)
            self._start_delivery(created.sid)
        return outcome

    def _start_delivery(self, sid: str) -> None:
        self._spawn(self._deliver(sid))

    async def _deliver(self, sid: str) -> None:
        """queued → sent → delivered (or failed/undelivered), with status callbacks."""
        with contextlib.suppress(TwilioApiError):  # the app deleted the message meanwhile
            await self._deliver_steps(sid)

    async def _deliver_steps(self, sid: str) -> None:
        await asyncio.sleep(0.5 * self.time_scale)
        message = self.store.get_message(sid)
        if (
            is_whatsapp(message.to)
            and not message.content_sid
            and not self.store.whatsapp_window_open(message.to, message.from_)
        ):
            # Twilio accepts the request and fails the message asynchronously.
            self.store.set_message_status(sid, "failed", 63016)
            await self._message_callback(message, "failed", 63016)
            return
        self.store.set_message_status(sid, "sent")
        await self._message_callback(message, "sent", None)
        await asyncio.sleep(0.5 * self.time_scale)
        with self.store.lock:
            failure = self.store.delivery_failures.get(message.to)
        if failure is not None:
            self.store.set_message_status(sid, "undelivered", failure)
            await self._message_callback(message, "undelivered", failure)
            return
        self.store.set_message_status(sid, "delivered")
        self._inboxes.setdefault(message.to, []).append(message.body)
        await self._message_callback(message, "delivered", None)

    async def _message_callback(self, message: Message, status: str, error_code: int | None) -> None:
        if not message.status_callback:
            return
        params = {
            "AccountSid": self.store.account_sid,
            "ApiVersion": API_VERSION,
            "From": message.from_,
            "MessageSid": message.sid,
            "MessageStatus": status,
            "SmsSid": message.sid,
            "SmsStatus": status,
            "To": message.to,
        }
        if error_code is not None:
            params["ErrorCode"] = str(error_code)
        result = await self._sender.send(
            message.status_callback, params, purpose="message-status", sid=message.sid, voice=False
        )
        if not result.ok:
            self.events.add(
                "alert",
                message.sid,
                code=STATUS_CALLBACK_FAILED,
                url=result.url,
                detail="status callback failed",
            )


def _resolve(base: str, url: str | None) -> str:
    """Relative TwiML URLs resolve against the requesting document's URL."""
    return urljoin(base, (url or "").strip())


def _collect_digits(entry: str, finish_key: str, num_digits: int) -> tuple[str, str]:
    """What ``<Gather>`` reports for keys pressed: (Digits, FinishedOnKey)."""
    digits = ""
    for key in entry:
        if finish_key and key == finish_key:
            return digits, key
        digits += key
        if num_digits and len(digits) >= num_digits:
            return digits, ""
    return digits, ""
