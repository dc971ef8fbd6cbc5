"""``hotline simulate call|sms``: play Twilio against a running server and print what people get.

The command starts the in-repo fake Twilio (:mod:`telephony.fake`) on loopback, gives it the
hotline number with the server's public webhook paths, and drives
:class:`telephony.fake.CallSimulator` over real HTTP against the server: webhooks are signed
with ``TWILIO_AUTH_TOKEN`` exactly as Twilio signs them, TwiML is followed as Twilio follows it,
and each line of the transcript is printed as it happens — what the caller hears and presses,
and what each volunteer leg the server dials gets. It is the drill mode for training
volunteers and a smoke test for a deployment.

Rules written down here (and in the commands' help):

* **Signed URL.** ``--url`` (default ``HOTLINE_PUBLIC_URL``) is where the webhooks go *and* what
  is signed, so it must be the server's ``HOTLINE_PUBLIC_URL``.
* **Volunteer legs and replies.** The server's REST calls (dialling volunteers, texting) reach
  this fake only when the server runs with ``HOTLINE_TWILIO_API_URL`` pointing at it; the
  command prints that URL (``--twilio-port`` fixes the port so the server can be configured
  once). Legs dialled with ``<Dial><Number>`` need nothing extra.
* **When ``--drill`` is required.** The server does not reveal its environment over HTTP
  (``/healthz`` only says it is up), so the rule is local and conservative: ``--drill`` is
  required whenever the target is not a loopback address (``127.0.0.0/8``, ``::1``,
  ``localhost``) or the local ``HOTLINE_ENV`` is ``production``. It is checked before anything
  is started or sent.
* **How a drill is marked.** With ``--drill`` every webhook URL configured on the fake number
  carries the query parameter ``drill=1`` (``/twilio/voice/incoming?drill=1``,
  ``/twilio/messaging/incoming?drill=1``, the status and fallback URLs likewise). Twilio's
  signature covers the full URL, so the flag cannot be forged or stripped without breaking the
  signature; the server reads it with ``app.webhooks.deps.webhook_context(request).drill`` and
  records the contact as a drill so statistics leave it out.
* **Phone numbers.** Only what the operator typed (``--from``, ``--to``) and what the caller
  hears are printed; volunteer numbers appear masked to their last two digits (``+1…42``).
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any, NoReturn
from urllib.parse import urlsplit

import click
import httpx

from telephony.fake import (
    Call,
    CallSimulator,
    Event,
    EventLog,
    FakeTwilio,
    Heard,
    NumberConfig,
    Party,
    SimulatedCall,
)

__all__ = [
    "DEFAULT_CALLER",
    "DRILL_QUERY",
    "mask_number",
    "needs_drill",
    "simulate",
]

#: A fictional North American number (555-0100 … 555-0199 are reserved for fiction).
DEFAULT_CALLER = "+12025550123"
#: Appended to every webhook URL of a drill (signed with the URL; see the module docstring).
DRILL_QUERY = "drill=1"
VOICE_PATH = "/twilio/voice/incoming"
MESSAGING_PATH = "/twilio/messaging/incoming"
# Twilio alerts that mean the server gave Twilio nothing usable.
_UNREACHABLE = 11205
_FATAL_ALERTS = frozenset({11100, 11200, 11205, 11750, 12100, 12300})
_SID_RE = re.compile(r"^AC[0-9a-f]{32}$")
_DIGITS_RE = re.compile(r"^[0-9*#w]*$")


def _fail(message: str, code: int = 2) -> NoReturn:
    from app.cli import fail  # imported late: app.cli imports this module

    fail(message, code)


def mask_number(number: str) -> str:
    """``+15557770042`` → ``+1…42``: a volunteer's number shown by its last two digits only."""
    address = number.split(":", 1)[1] if ":" in number else number
    if len(address) < 4:
        return "…"
    head = address[:2] if address.startswith("+") else ""
    return f"{head}…{address[-2:]}"


def is_loopback(url: str) -> bool:
    host = (urlsplit(url).hostname or "").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def needs_drill(url: str, *, production: bool) -> bool:
    """Whether ``--drill`` is required: a non-loopback target, or a production configuration."""
    return production or not is_loopback(url)


def parse_digits(text: str) -> tuple[str | None, ...]:
    """``"1,,2#"`` → ``("1", None, "2#")``: one entry per ``<Gather>``; empty stays silent."""
    if not text:
        return ()
    entries = [item.strip() for item in text.split(",")]
    for entry in entries:
        if not _DIGITS_RE.match(entry):
            raise click.BadParameter("use digits, * and # separated by commas, e.g. 2 or 1,,3#")
    return tuple(entry or None for entry in entries)


def _base_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        _fail(f"--url must be an absolute http(s) URL, not {url!r}")
    if parts.query or parts.fragment or parts.username or parts.password:
        _fail("--url must be the server's base URL (no query, fragment or credentials)")
    return url.rstrip("/")


def _number_config(number: str, base: str, drill: bool) -> NumberConfig:
    config = NumberConfig.hotline(number, base)
    if not drill:
        return config

    def mark(url: str | None) -> str | None:
        return None if url is None else f"{url}{'&' if '?' in url else '?'}{DRILL_QUERY}"

    return replace(
        config,
        voice_url=mark(config.voice_url),
        voice_fallback_url=mark(config.voice_fallback_url),
        status_callback=mark(config.status_callback),
        sms_url=mark(config.sms_url),
        sms_fallback_url=mark(config.sms_fallback_url),
    )


class _AnnouncedTranscript(list[Heard]):
    """A leg's transcript that also records each item in the event log, so the printer sees
    what was heard in one total order with key presses, rings and hang-ups."""

    def __init__(self, events: EventLog, sid: str) -> None:
        super().__init__()
        self._events = events
        self._sid = sid

    def append(self, item: Heard) -> None:
        super().append(item)
        self._events.add("heard", self._sid, heard=item)


class DrillSimulator(CallSimulator):
    """The fake's simulator with one script for every leg the server dials.

    Numbers given to :meth:`add_party` (the caller's, for call-backs) keep their party; any
    other number the server calls is a volunteer and answers as ``volunteer`` says.
    """

    def __init__(self, fake: FakeTwilio, *, volunteer: Party, **options: Any) -> None:
        super().__init__(fake, **options)
        self.volunteer = volunteer
        self._scripted_numbers: set[str] = set()

    def add_party(self, number: str, party: Party) -> None:
        self._scripted_numbers.add(number)
        super().add_party(number, party)

    def _register(self, record: Call, party: Party, parent: SimulatedCall | None = None) -> SimulatedCall:
        if record.direction != "inbound" and record.to not in self._scripted_numbers:
            party = self.volunteer
        leg = super()._register(record, party, parent)
        leg.transcript = _AnnouncedTranscript(self.events, leg.sid)
        return leg


class TranscriptPrinter:
    """Turns the fake's event log into readable lines, each printed once, in order."""

    def __init__(self, sim: CallSimulator, caller: str, echo: Callable[[str], None]) -> None:
        self.sim = sim
        self.caller = caller
        self.echo = echo
        self._seen = 0

    def flush(self) -> None:
        events = self.sim.events.all()
        for event in events[self._seen :]:
            line = self.render(event)
            if line:
                self.echo(line)
        self._seen = len(events)

    def who(self, sid: str | None) -> str:
        if sid is None:
            return "twilio"
        try:
            leg = self.sim.leg(sid)
        except KeyError:
            return "a call leg"
        if leg.direction == "inbound" or leg.to == self.caller:
            return "caller"
        return f"volunteer {mask_number(leg.to)}"

    def _is_caller(self, sid: str | None) -> bool:
        return self.who(sid) == "caller"

    def heard(self, who: str, item: Heard) -> str:
        if item.kind == "say":
            language = f" ({item.language})" if item.language else ""
            return f"{who} hears: {item.text}{language}"
        if item.kind == "play":
            return f"{who} hears: audio {item.text}"
        if item.kind == "pause":
            return f"{who} hears: silence ({item.seconds:g}s)"
        if item.kind == "ringback":
            return f"{who} hears: ringing"
        if item.kind == "hold-music":
            return f"{who} hears: hold music"
        if item.kind == "beep":
            return f"{who} hears: a beep"
        if item.kind == "connected":
            others = ", ".join(self.who(sid) for sid in item.text.split(",") if sid) or "nobody"
            return f"{who} is connected to {others}"
        return f"{who} hears: {item.kind}"

    def render(self, event: Event) -> str | None:
        who = self.who(event.sid)
        kind = event.kind
        if kind == "heard":
            return self.heard(who, event["heard"])
        if kind == "gather.input":
            return f"{who} presses {event['digits']}"
        if kind == "gather.timeout":
            return f"{who} presses nothing"
        if kind == "call.ringing" and not self._is_caller(event.sid):
            return f"{who} rings"
        if kind == "call.answered" and not self._is_caller(event.sid):
            machine = str(event.data.get("answered_by") or "").startswith("machine")
            if not machine and event.sid is not None:
                machine = self.sim.leg(event.sid).party.answer == "machine"
            return f"{who} answers" + (" (voicemail)" if machine else "")
        if kind == "call.completed":
            return f"{who} leg ends: {event['status']}"
        if kind == "queue.join":
            return f"{who} waits in a queue"
        if kind == "queue.leave":
            return f"{who} leaves the queue: {event['result']}"
        if kind == "conference.join":
            return f"{who} joins a conference"
        if kind == "conference.leave":
            return f"{who} leaves the conference"
        if kind == "alert":
            return f"twilio alert {event['code']} on {who}: {event['detail']}"
        if kind == "sim.step-limit":
            return f"{who}: too many TwiML requests, the call was stopped"
        if kind == "sim.crash":
            return f"the simulator failed on {who}"
        return None


def _start_fake(settings: Any, token: str, port: int) -> FakeTwilio:
    account = settings.twilio_account_sid if _SID_RE.match(settings.twilio_account_sid or "") else None
    fake = FakeTwilio(account_sid=account, auth_token=token, port=port)
    try:
        fake.start()
    except RuntimeError:
        _fail(f"cannot listen on 127.0.0.1:{port} for the fake Twilio (port in use?)")
    click.echo(
        f"hotline: fake Twilio REST API at {fake.base_url} (account {fake.account_sid}); "
        f"run the server with HOTLINE_TWILIO_API_URL={fake.base_url} so its REST calls reach it",
        err=True,
    )
    return fake


async def _probe(base: str) -> None:
    """Fail with one line unless something answers HTTP at ``base``."""
    try:
        async with httpx.AsyncClient(timeout=5.0) as client:
            await client.get(f"{base}/healthz")
    except httpx.HTTPError as exc:
        _fail(f"cannot reach the server at {base} ({type(exc).__name__})", code=1)


def _fail_on_alerts(events: EventLog, sid: str, alerts: Iterable[int], base: str, path: str) -> None:
    """Exit with one line if Twilio got nothing usable from the server for ``sid``."""
    if not any(code in _FATAL_ALERTS for code in alerts):
        return
    found = [event for event in events.of("alert", sid=sid) if event.data.get("code") in _FATAL_ALERTS]
    code = int(found[0]["code"]) if found else next(c for c in alerts if c in _FATAL_ALERTS)
    detail = str(found[0].data.get("detail", "")) if found else ""
    where = (urlsplit(str(found[0].data.get("url", ""))).path if found else "") or path
    if code == _UNREACHABLE:
        _fail(f"cannot reach the server at {base} (Twilio error {code})", code=1)
    if code == 11200 and detail == "HTTP 403":
        _fail(
            f"the server refused the signed webhook to {where} (HTTP 403): check that TWILIO_AUTH_TOKEN "
            "is the server's and --url is its HOTLINE_PUBLIC_URL",
            code=1,
        )
    if code == 11200 and detail.startswith("HTTP "):
        _fail(f"the server answered {where} with {detail} (Twilio error {code})", code=1)
    _fail(f"the server did not answer {where} with usable TwiML (Twilio error {code})", code=1)


class _Setup:
    """Checks shared by both commands, all done before anything starts."""

    def __init__(self, url: str | None, to: str | None, drill: bool) -> None:
        from app.cli import settings_or_exit

        self.settings = settings_or_exit()
        self.base = _base_url(url or self.settings.public_url)
        self.drill = drill
        if needs_drill(self.base, production=self.settings.is_production) and not drill:
            why = (
                "HOTLINE_ENV is production" if self.settings.is_production else "it is not a loopback address"
            )
            _fail(
                f"refusing to simulate against {self.base}: {why}, so it may be a production server; "
                "add --drill to mark the contact as a drill (left out of statistics)"
            )
        secret = self.settings.twilio_auth_token
        self.token = secret.get_secret_value() if secret is not None else ""
        if not self.token:
            _fail("TWILIO_AUTH_TOKEN is not set: webhooks must be signed with the server's auth token")
        hotline_number = to or self.settings.twilio_number
        if not hotline_number:
            _fail("no hotline number: pass --to or set HOTLINE_TWILIO_NUMBER")
        self.to: str = hotline_number


def _common(command: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option("--url", help="Server base URL; must equal its HOTLINE_PUBLIC_URL (the signed URL)."),
        click.option("--to", "to", help="Hotline number called/texted [default: HOTLINE_TWILIO_NUMBER]."),
        click.option(
            "--from",
            "from_",
            default=DEFAULT_CALLER,
            show_default=True,
            help="Caller's number (a fictional 555-01xx number by default).",
        ),
        click.option(
            "--drill",
            is_flag=True,
            help="Mark the contact as a drill: every webhook URL carries the signed query drill=1. "
            "Required unless the server is on loopback and HOTLINE_ENV is not production.",
        ),
        click.option(
            "--twilio-port",
            type=click.IntRange(0, 65535),
            default=0,
            show_default=True,
            help="Loopback port of the fake Twilio REST API (0: any free port).",
        ),
        click.option(
            "--time-scale",
            type=click.FloatRange(0.0001, 10.0),
            default=1.0,
            show_default=True,
            help="Real seconds per simulated second (1: real time; 0.01 for a quick check).",
        ),
        click.option(
            "--timeout",
            type=click.FloatRange(1, 86400),
            default=900,
            show_default=True,
            help="Give up (and hang up) after this many real seconds.",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def simulate() -> None:
    """Play Twilio against a running server and print what the caller and volunteers get.

    Starts a fake Twilio on loopback, signs webhooks with TWILIO_AUTH_TOKEN and follows the
    server's TwiML like Twilio. For volunteer legs and replies sent through Twilio's REST API,
    run the server with HOTLINE_TWILIO_API_URL set to the fake's URL (printed at start).

    Against anything but a loopback server, or with HOTLINE_ENV=production, --drill is
    required. --drill marks the contact as a drill: the webhook URLs carry the query parameter
    drill=1, which Twilio's signature covers, so the server can leave drills out of statistics.
    """


@simulate.command("call")
@_common
@click.option(
    "--digits",
    default="",
    help="Keys the caller presses at successive <Gather>s, comma-separated (empty: stay silent), e.g. 2,,1.",
)
@click.option(
    "--answer", "volunteer", flag_value="human", default=True, help="Volunteer legs answer (default)."
)
@click.option("--no-answer", "volunteer", flag_value="no-answer", help="Volunteer legs ring out.")
@click.option("--machine", "volunteer", flag_value="machine", help="Volunteer legs reach voicemail.")
@click.option(
    "--volunteer-digits",
    default="1",
    show_default=True,
    help="Keys an answering volunteer presses at the whisper (comma-separated per <Gather>).",
)
def simulate_call(
    url: str | None,
    to: str | None,
    from_: str,
    drill: bool,
    twilio_port: int,
    time_scale: float,
    timeout: float,
    digits: str,
    volunteer: str,
    volunteer_digits: str,
) -> None:
    """Place a call to the hotline and print, line by line, what everyone hears.

    Posts to URL/twilio/voice/incoming (URL/twilio/voice/incoming?drill=1 with --drill; the
    query is covered by the signature, so the server can record the call as a drill), follows
    the TwiML, and answers every volunteer leg the server dials as --answer/--no-answer/--machine
    say. Volunteer numbers are shown by their last two digits only.
    """
    caller_digits = parse_digits(digits)
    volunteer_keys = parse_digits(volunteer_digits)
    setup = _Setup(url, to, drill)
    if volunteer == "human":
        volunteer_party = Party(answer="human", digits=volunteer_keys)
    elif volunteer == "machine":
        volunteer_party = Party(answer="machine")  # a voicemail box never presses a key
    else:
        volunteer_party = Party(answer="no-answer")
    asyncio.run(_probe(setup.base))
    fake = _start_fake(setup.settings, setup.token, twilio_port)
    try:
        fake.configure_number(_number_config(setup.to, setup.base, setup.drill))
        click.echo(
            f"hotline: calling {setup.to} from {from_} via {setup.base}{' (drill)' if drill else ''}",
            err=True,
        )
        asyncio.run(
            _run_call(
                fake,
                setup,
                from_,
                Party(digits=caller_digits),
                volunteer_party,
                time_scale=time_scale,
                timeout=timeout,
            )
        )
    except KeyboardInterrupt:
        _fail("interrupted", code=130)
    finally:
        fake.stop()


async def _run_call(
    fake: FakeTwilio,
    setup: _Setup,
    from_: str,
    caller: Party,
    volunteer: Party,
    *,
    time_scale: float,
    timeout: float,
) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    async with DrillSimulator(fake, volunteer=volunteer, time_scale=time_scale) as sim:
        sim.add_party(from_, replace(caller, digits=()))  # a call-back to the caller is answered
        printer = TranscriptPrinter(sim, from_, click.echo)
        leg = await sim.place_call(from_, setup.to, caller)
        while True:
            printer.flush()
            if leg.done:
                try:
                    await sim.wait_idle(timeout=0.05)
                    break
                except TimeoutError:
                    pass
            else:
                await asyncio.sleep(0.02)
            if loop.time() > deadline:
                printer.flush()
                _fail(f"the call was still going after {timeout:g} s; hung up", code=1)
        printer.flush()
        legs = [other for other in sim.legs() if other.sid != leg.sid]
        summary = f"outcome: caller leg {leg.final_status}"
        if legs:
            summary += "; " + ", ".join(f"{printer.who(other.sid)} {other.final_status}" for other in legs)
        click.echo(summary)
        if leg.error is not None:
            _fail(f"the simulator failed: {type(leg.error).__name__}", code=1)
        _fail_on_alerts(sim.events, leg.sid, leg.alerts, setup.base, VOICE_PATH)


@simulate.command("sms")
@_common
@click.option(
    "--text",
    "texts",
    multiple=True,
    required=True,
    help="Message the caller sends; repeat for several messages (sent in order).",
)
@click.option(
    "--listen",
    type=click.FloatRange(0, 86400),
    default=0,
    show_default=True,
    help="Keep printing messages that reach the caller for this many real seconds after the last text.",
)
def simulate_sms(
    url: str | None,
    to: str | None,
    from_: str,
    drill: bool,
    twilio_port: int,
    time_scale: float,
    timeout: float,
    texts: tuple[str, ...],
    listen: float,
) -> None:
    """Text the hotline and print the replies the caller receives.

    Posts each --text to URL/twilio/messaging/incoming (with the signed query drill=1 when
    --drill is given) and prints the <Message> replies, plus messages the server sends the
    caller through the fake's REST API while --listen lasts.
    """
    setup = _Setup(url, to, drill)
    asyncio.run(_probe(setup.base))
    fake = _start_fake(setup.settings, setup.token, twilio_port)
    try:
        fake.configure_number(_number_config(setup.to, setup.base, setup.drill))
        click.echo(
            f"hotline: texting {setup.to} from {from_} via {setup.base}{' (drill)' if drill else ''}",
            err=True,
        )
        asyncio.run(
            _run_sms(fake, setup, from_, texts, time_scale=time_scale, timeout=timeout, listen=listen)
        )
    except KeyboardInterrupt:
        _fail("interrupted", code=130)
    finally:
        fake.stop()


async def _run_sms(
    fake: FakeTwilio,
    setup: _Setup,
    from_: str,
    texts: tuple[str, ...],
    *,
    time_scale: float,
    timeout: float,
    listen: float,
) -> None:
    received = 0
    sent_replies = 0

    def show_inbox(sim: CallSimulator) -> None:
        nonlocal received
        inbox = sim.inbox(from_)
        for body in inbox[received:]:
            click.echo(f"caller receives: {body}")
        received = len(inbox)

    async with DrillSimulator(fake, volunteer=Party(answer="no-answer"), time_scale=time_scale) as sim:
        for text in texts:
            click.echo(f"caller texts: {text}")
            try:
                outcome = await asyncio.wait_for(sim.send_message(from_, setup.to, text), timeout)
                await sim.wait_idle(timeout)  # the replies' delivery
            except TimeoutError:
                _fail(f"no answer within {timeout:g} s", code=1)
            show_inbox(sim)
            sent_replies += len(outcome.replies)
            _fail_on_alerts(sim.events, outcome.sid, outcome.alerts, setup.base, MESSAGING_PATH)
        if listen:
            loop = asyncio.get_running_loop()
            until = loop.time() + listen
            while loop.time() < until:
                await asyncio.sleep(0.1)
                show_inbox(sim)
        show_inbox(sim)
    click.echo(f"outcome: {len(texts)} sent, {received} received ({sent_replies} as direct replies)")
