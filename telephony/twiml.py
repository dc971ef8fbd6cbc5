"""TwiML builders for the hotline's call and message flows, plus a context validator.

Every builder returns the document as ``str`` exactly as twilio-python serialises it
(``<?xml version="1.0" encoding="UTF-8"?><Response>…``) and has already passed
:func:`check_context` for the place Twilio will run it, so a builder cannot emit a verb Twilio
would reject there or a body over Twilio's size limit.

Free text (prompt text, message bodies) only ever becomes XML character data: the XML
serialiser escapes it, and characters XML 1.0 cannot carry are stripped first
(:func:`sanitize_text`), so no text can turn into a verb or an attribute.

URLs (``action``, ``waitUrl``, callbacks, whisper) are built by the caller from the public base
URL and passed in. They must never carry a phone number or other personal data: Twilio logs
them and sends them back in clear. Builders refuse a URL containing an E.164-looking number
(``+1415…`` or ``%2B1415…``) as a backstop, and refuse callback URLs whose query keys are not
in sorted order, because Twilio may re-sort the query before signing and the signature would
then fail.

``<Gather>`` is always ``input="dtmf"``: speech input would send the caller's words to
Twilio's speech recognition.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal
from urllib.parse import parse_qsl, urlsplit

from twilio.twiml.messaging_response import MessagingResponse
from twilio.twiml.voice_response import Dial, Gather, VoiceResponse

from telephony.numbers import normalize_e164

__all__ = [
    "CONFERENCE_CALLBACK_EVENTS",
    "MAX_MESSAGE_BODY_CHARS",
    "MAX_SAY_CHARS",
    "MAX_TWIML_BYTES",
    "ConferenceCallbackEvent",
    "Prompt",
    "TwimlContext",
    "TwimlError",
    "announce",
    "check_context",
    "dial_conference",
    "dial_number",
    "digits_entry",
    "emergency_option",
    "empty_response",
    "enqueue",
    "hangup",
    "hold",
    "language_menu",
    "leave",
    "message_replies",
    "message_reply",
    "overflow_fallback",
    "pause_then_redirect",
    "record_voicemail",
    "redirect",
    "sanitize_text",
    "split_message",
    "whisper",
]

TwimlContext = Literal["wait_url", "whisper", "voice", "messaging"]
ConferenceCallbackEvent = Literal[
    "start", "end", "join", "leave", "mute", "hold", "modify", "speaker", "announcement"
]
CONFERENCE_CALLBACK_EVENTS: Final[frozenset[str]] = frozenset(
    {"start", "end", "join", "leave", "mute", "hold", "modify", "speaker", "announcement"}
)

# Twilio error 11750: "response body is larger than 64 kB". Read as 64,000 bytes to stay on
# the safe side of either meaning of kB.
MAX_TWIML_BYTES: Final = 64_000
MAX_SAY_CHARS: Final = 4_096
MAX_MESSAGE_BODY_CHARS: Final = 1_600
_MAX_QUEUE_NAME: Final = 64
_MAX_CONFERENCE_NAME: Final = 128

# Characters XML 1.0 cannot carry at all (C0 controls except tab/LF/CR, surrogates, U+FFFE/F).
_XML_ILLEGAL_RE: Final = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_LANGUAGE_RE: Final = re.compile(r"^[a-z]{2,3}(?:-[A-Za-z0-9]{2,8})*\Z")
_VOICE_RE: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")
_NAME_RE: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]*\Z")
_DIGIT_KEYS_RE: Final = re.compile(r"^[0-9*#]{0,12}\Z")
# An E.164-looking number, raw or percent-encoded: the backstop against numbers in URLs.
_PHONE_IN_URL_RE: Final = re.compile(r"(?:\+|%2[Bb])[0-9]{7,15}")
_URL_FORBIDDEN_RE: Final = re.compile(r"[\s\x00-\x1f\x7f]")


class TwimlError(ValueError):
    """A TwiML document is not acceptable in the context it is meant for."""


def sanitize_text(text: str) -> str:
    """Make free text safe to carry as XML character data.

    Drops characters XML 1.0 cannot represent (NUL and other C0 controls, lone surrogates,
    U+FFFE/U+FFFF) and turns CR/CRLF into LF, which is what any XML parser would read back.
    """
    cleaned = _XML_ILLEGAL_RE.sub("", text)
    return cleaned.replace("\r\n", "\n").replace("\r", "\n")


def _check_url(url: str, *, what: str, signed: bool = True) -> str:
    """Validate a URL handed to Twilio; ``signed`` = Twilio will call it with a signature."""
    if not isinstance(url, str) or not url or _URL_FORBIDDEN_RE.search(url):
        raise ValueError(f"{what} must be a URL without spaces or control characters")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{what} must be an absolute http(s) URL")
    if parts.username is not None or parts.password is not None:
        raise ValueError(f"{what} must not contain credentials")
    if _PHONE_IN_URL_RE.search(url):
        # Not echoed: the URL may contain exactly the number we must not log.
        raise ValueError(f"{what} looks like it contains a phone number; URLs must not carry one")
    if signed:
        keys = [key for key, _ in parse_qsl(parts.query, keep_blank_values=True)]
        if keys != sorted(keys):
            raise ValueError(f"{what} query keys must be in sorted order (Twilio may re-sort them)")
    return url


def _check_seconds(value: int, *, what: str, minimum: int = 1, maximum: int = 14_400) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise ValueError(f"{what} must be an integer from {minimum} to {maximum}")
    return value


def _check_name(name: str, *, what: str, max_length: int) -> str:
    # Queue and conference names come from task ids; a strict alphabet keeps personal data and
    # markup out and stays well inside Twilio's length limits.
    if not isinstance(name, str) or len(name) > max_length or not _NAME_RE.match(name):
        raise ValueError(f"{what} must be 1-{max_length} characters of A-Z a-z 0-9 _ . : -")
    if _PHONE_IN_URL_RE.search(name) or normalize_e164(name) is not None:
        raise ValueError(f"{what} must not be a phone number")
    return name


def _check_e164(number: str, *, what: str) -> str:
    if normalize_e164(number) != number:
        raise ValueError(f"{what} must be a valid E.164 number")
    return number


@dataclass(frozen=True, slots=True)
class Prompt:
    """Something the caller hears: text spoken in a voice and language, or a recording.

    Build with :meth:`say` or :meth:`play`. Text is sanitised on construction
    (:func:`sanitize_text`) and limited to Twilio's 4,096 characters per ``<Say>``.
    """

    text: str | None = None
    voice: str | None = None
    language: str | None = None
    audio_url: str | None = None

    def __post_init__(self) -> None:
        if (self.text is None) == (self.audio_url is None):
            raise ValueError("a Prompt has either text or an audio URL")
        if self.audio_url is not None:
            if self.voice is not None or self.language is not None:
                raise ValueError("a recorded prompt has no voice or language")
            # Audio is fetched, not signed by Twilio: any query order is fine.
            _check_url(self.audio_url, what="audio_url", signed=False)
            return
        if not isinstance(self.text, str):
            raise TypeError("prompt text must be str")
        text = sanitize_text(self.text)
        if not text.strip():
            raise ValueError("prompt text must not be blank")
        if len(text) > MAX_SAY_CHARS:
            raise ValueError(f"prompt text must be at most {MAX_SAY_CHARS} characters")
        if not isinstance(self.voice, str) or not _VOICE_RE.match(self.voice):
            raise ValueError("a spoken prompt needs a Twilio voice such as 'Polly.Joanna'")
        if not isinstance(self.language, str) or not _LANGUAGE_RE.match(self.language):
            raise ValueError("a spoken prompt needs a language tag such as 'en-US'")
        object.__setattr__(self, "text", text)

    @classmethod
    def say(cls, text: str, *, voice: str, language: str) -> Prompt:
        """A prompt spoken by Twilio text-to-speech (``<Say voice language>``)."""
        return cls(text=text, voice=voice, language=language)

    @classmethod
    def play(cls, audio_url: str) -> Prompt:
        """A recorded prompt (``<Play>``)."""
        return cls(audio_url=audio_url)


def _add_prompts(parent: Any, prompts: Sequence[Prompt]) -> None:
    for prompt in prompts:
        if not isinstance(prompt, Prompt):
            raise TypeError("prompts must be Prompt values")
        if prompt.audio_url is not None:
            parent.play(prompt.audio_url)
        else:
            parent.say(sanitize_text(prompt.text or ""), voice=prompt.voice, language=prompt.language)


def _render(response: Any, context: TwimlContext) -> str:
    xml = str(response.to_xml())
    check_context(xml, context)
    return xml


def _digit_gather(
    response: VoiceResponse, prompts: Sequence[Prompt], *, action_url: str, timeout: int
) -> None:
    gather: Gather = response.gather(
        input="dtmf",
        num_digits=1,
        action=_check_url(action_url, what="action_url"),
        method="POST",
        timeout=_check_seconds(timeout, what="timeout", maximum=60),
    )
    _add_prompts(gather, prompts)


def language_menu(prompts: Sequence[Prompt], *, action_url: str, no_input_url: str, timeout: int = 5) -> str:
    """The language menu: one key press while each language's prompt plays.

    ``prompts`` are played in order inside ``<Gather numDigits="1">`` (typically "For English,
    press 1" in English, "Para español, oprima 2" in Spanish …). The key goes to ``action_url``
    as ``Digits``. With no key press, Twilio falls through to ``<Redirect>`` to
    ``no_input_url`` (replay the menu or pick the default language there).
    """
    if not prompts:
        raise ValueError("the language menu needs at least one prompt")
    response = VoiceResponse()
    _digit_gather(response, prompts, action_url=action_url, timeout=timeout)
    response.redirect(_check_url(no_input_url, what="no_input_url"), method="POST")
    return _render(response, "voice")


def emergency_option(
    prompts: Sequence[Prompt], *, action_url: str, no_input_url: str, timeout: int = 5
) -> str:
    """The emergency question ("if you are in danger right now, press 9").

    Same shape as :func:`language_menu`: the key press goes to ``action_url``; no key press
    redirects to ``no_input_url`` (the normal, non-emergency path).
    """
    if not prompts:
        raise ValueError("the emergency option needs at least one prompt")
    response = VoiceResponse()
    _digit_gather(response, prompts, action_url=action_url, timeout=timeout)
    response.redirect(_check_url(no_input_url, what="no_input_url"), method="POST")
    return _render(response, "voice")


def digits_entry(
    prompts: Sequence[Prompt],
    *,
    action_url: str,
    no_input_url: str,
    max_digits: int = 20,
    timeout: int = 8,
    finish_on_key: str = "#",
) -> str:
    """Ask for several keys (a reference code, a phone number) ended by ``finish_on_key``.

    The keys go to ``action_url`` as ``Digits``; with none, Twilio falls through to
    ``<Redirect>`` to ``no_input_url``. Speech input is never enabled.
    """
    if not prompts:
        raise ValueError("a digits entry needs at least one prompt")
    if not _DIGIT_KEYS_RE.match(finish_on_key) or len(finish_on_key) > 1:
        raise ValueError("finish_on_key must be one keypad key")
    if not 1 <= max_digits <= 40:
        raise ValueError("max_digits must be 1-40")
    response = VoiceResponse()
    gather: Gather = response.gather(
        input="dtmf",
        num_digits=max_digits,
        finish_on_key=finish_on_key,
        action=_check_url(action_url, what="action_url"),
        method="POST",
        timeout=_check_seconds(timeout, what="timeout", maximum=60),
    )
    _add_prompts(gather, prompts)
    response.redirect(_check_url(no_input_url, what="no_input_url"), method="POST")
    return _render(response, "voice")


def announce(prompts: Sequence[Prompt], *, redirect_url: str | None = None, hang_up: bool = False) -> str:
    """Play prompts (each a ``<Say>`` or ``<Play>``), then redirect, hang up, or end.

    With neither ``redirect_url`` nor ``hang_up`` the call ends when the document runs out.
    """
    if redirect_url is not None and hang_up:
        raise ValueError("choose redirect_url or hang_up, not both")
    response = VoiceResponse()
    _add_prompts(response, prompts)
    if redirect_url is not None:
        response.redirect(_check_url(redirect_url, what="redirect_url"), method="POST")
    elif hang_up:
        response.hangup()
    return _render(response, "voice")


def enqueue(queue_name: str, *, wait_url: str, action_url: str, before: Sequence[Prompt] = ()) -> str:
    """Put the caller in a Twilio queue (no TaskRouter workflow: routing is ours).

    ``wait_url`` serves hold content (:func:`hold`) in a loop; ``action_url`` is requested when
    the caller leaves the queue (``QueueResult``). ``queue_name`` is an id such as the task's,
    at most 64 characters, never a number or a name.
    """
    response = VoiceResponse()
    _add_prompts(response, before)
    response.enqueue(
        _check_name(queue_name, what="queue_name", max_length=_MAX_QUEUE_NAME),
        action=_check_url(action_url, what="action_url"),
        method="POST",
        wait_url=_check_url(wait_url, what="wait_url"),
        wait_url_method="POST",
    )
    return _render(response, "voice")


def hold(
    messages: Sequence[Prompt] = (),
    *,
    music_url: str | None = None,
    pause_seconds: int = 10,
    info_prompts: Sequence[Prompt] = (),
    info_action_url: str | None = None,
    info_timeout: int = 3,
) -> str:
    """Hold content for an ``<Enqueue waitUrl>`` request; Twilio loops it while the caller waits.

    Plays ``messages`` (e.g. our queue position), then optionally offers information
    (``<Gather numDigits="1">`` around ``info_prompts``, key press to ``info_action_url``), then
    hold music from ``music_url`` or, without music, a ``<Pause>`` of ``pause_seconds`` so the
    loop does not poll us continuously. Use :func:`leave` instead to take the caller out.
    """
    response = VoiceResponse()
    _add_prompts(response, messages)
    if info_prompts:
        if info_action_url is None:
            raise ValueError("info_prompts need an info_action_url")
        _digit_gather(response, info_prompts, action_url=info_action_url, timeout=info_timeout)
    elif info_action_url is not None:
        raise ValueError("info_action_url needs info_prompts")
    if music_url is not None:
        response.play(_check_url(music_url, what="music_url", signed=False))
    else:
        response.pause(length=_check_seconds(pause_seconds, what="pause_seconds", maximum=600))
    return _render(response, "wait_url")


def leave(before: Sequence[Prompt] = ()) -> str:
    """Waiting-room TwiML that takes the caller out of the queue (``<Leave/>``).

    Twilio then requests the ``<Enqueue>`` action URL with ``QueueResult=leave``, where the
    overflow ``<Dial>`` or voicemail ``<Record>`` is returned.
    """
    response = VoiceResponse()
    _add_prompts(response, before)
    response.leave()
    return _render(response, "wait_url")


def whisper(prompts: Sequence[Prompt], *, action_url: str, timeout: int = 5) -> str:
    """Whisper for a volunteer's leg: "press 1 to accept", else hang up.

    Runs on the volunteer's phone after they answer and before they are connected. A key press
    goes to ``action_url``; accept only ``Digits == "1"`` there (answer an empty
    ``<Response/>`` to connect a ``<Number url>`` leg). No key press — as when a personal
    voicemail answers — reaches ``<Hangup/>``, so a voicemail never takes a call.
    """
    if not prompts:
        raise ValueError("the whisper needs at least one prompt")
    response = VoiceResponse()
    _digit_gather(response, prompts, action_url=action_url, timeout=timeout)
    response.hangup()
    return _render(response, "whisper")


def dial_conference(
    conference_name: str,
    *,
    status_callback_url: str,
    status_callback_events: Sequence[ConferenceCallbackEvent] = ("start", "end", "join", "leave"),
    start_conference_on_enter: bool = True,
    end_conference_on_exit: bool = False,
    action_url: str | None = None,
    before: Sequence[Prompt] = (),
) -> str:
    """Join the current leg to the conference named ``conference_name`` (the task's id).

    No beep and no hold music (``waitUrl=""``). The conference's ``statusCallback`` and events
    are fixed by the first participant to join; Twilio ignores later ones. With ``action_url``
    Twilio requests it when this leg leaves the conference.
    """
    events = list(status_callback_events)
    if not events or any(event not in CONFERENCE_CALLBACK_EVENTS for event in events):
        raise ValueError(f"status_callback_events must be among {sorted(CONFERENCE_CALLBACK_EVENTS)}")
    response = VoiceResponse()
    _add_prompts(response, before)
    dial: Dial = response.dial(
        action=None if action_url is None else _check_url(action_url, what="action_url"),
        method=None if action_url is None else "POST",
    )
    dial.conference(
        _check_name(conference_name, what="conference_name", max_length=_MAX_CONFERENCE_NAME),
        beep=False,
        wait_url="",
        start_conference_on_enter=bool(start_conference_on_enter),
        end_conference_on_exit=bool(end_conference_on_exit),
        status_callback=_check_url(status_callback_url, what="status_callback_url"),
        status_callback_method="POST",
        status_callback_event=" ".join(events),
    )
    return _render(response, "voice")


def dial_number(
    number: str,
    *,
    caller_id: str,
    action_url: str,
    whisper_url: str | None = None,
    timeout: int = 20,
    answer_on_bridge: bool = True,
    machine_detection: bool = False,
    before: Sequence[Prompt] = (),
) -> str:
    """Dial one phone number from the current call.

    ``number`` and ``caller_id`` must be E.164 (``caller_id`` is the hotline's number).
    ``whisper_url`` runs :func:`whisper` on the answered leg before bridging. ``timeout`` is
    the ring time in seconds; ``DialCallStatus`` goes to ``action_url``. ``answer_on_bridge``
    keeps the caller hearing ringing, not silence, until the legs are bridged.
    ``machine_detection`` asks Twilio whether a person or a machine answered; the answer
    (``AnsweredBy``) reaches ``whisper_url``, which can then hang up on a machine.
    The number appears in the TwiML body, never in a URL.
    """
    response = VoiceResponse()
    _add_prompts(response, before)
    dial: Dial = response.dial(
        action=_check_url(action_url, what="action_url"),
        method="POST",
        timeout=_check_seconds(timeout, what="timeout", minimum=5, maximum=600),
        caller_id=_check_e164(caller_id, what="caller_id"),
        answer_on_bridge=bool(answer_on_bridge),
    )
    dial.number(
        _check_e164(number, what="number"),
        url=None if whisper_url is None else _check_url(whisper_url, what="whisper_url"),
        method=None if whisper_url is None else "POST",
        machine_detection="Enable" if machine_detection else None,
    )
    return _render(response, "voice")


def record_voicemail(
    before: Sequence[Prompt],
    *,
    action_url: str,
    recording_status_callback_url: str,
    max_length: int = 120,
    play_beep: bool = True,
    trim: bool = True,
    timeout: int = 5,
    finish_on_key: str = "#",
) -> str:
    """Prompts, then ``<Record>`` a voicemail.

    ``action_url`` is required: without it Twilio re-requests the current document and records
    again in a loop. ``recording_status_callback_url`` receives ``completed`` (audio ready to
    download, seal and delete at Twilio) and ``absent`` (nothing recorded). Transcription is
    never requested: it would hand the caller's words to another service.
    """
    if not _DIGIT_KEYS_RE.match(finish_on_key):
        raise ValueError("finish_on_key must be keypad keys (0-9 * #) or empty")
    response = VoiceResponse()
    _add_prompts(response, before)
    response.record(
        action=_check_url(action_url, what="action_url"),
        method="POST",
        max_length=_check_seconds(max_length, what="max_length", maximum=14_400),
        play_beep=bool(play_beep),
        trim="trim-silence" if trim else "do-not-trim",
        timeout=_check_seconds(timeout, what="timeout", maximum=60),
        finish_on_key=finish_on_key,
        recording_status_callback=_check_url(
            recording_status_callback_url, what="recording_status_callback_url"
        ),
        recording_status_callback_method="POST",
        recording_status_callback_event="completed absent",
        transcribe=False,
    )
    return _render(response, "voice")


def pause_then_redirect(seconds: int, url: str) -> str:
    """Silence for ``seconds``, then continue with the TwiML at ``url`` (a short wait for our own
    work to finish, e.g. an acceptance still being recorded)."""
    response = VoiceResponse()
    response.pause(length=_check_seconds(seconds, what="seconds", maximum=60))
    response.redirect(_check_url(url, what="url"), method="POST")
    return _render(response, "voice")


def redirect(url: str) -> str:
    """Continue the call with the TwiML at ``url`` (``<Redirect method="POST">``)."""
    response = VoiceResponse()
    response.redirect(_check_url(url, what="url"), method="POST")
    return _render(response, "voice")


def hangup(before: Sequence[Prompt] = ()) -> str:
    """Optional prompts, then ``<Hangup/>``."""
    response = VoiceResponse()
    _add_prompts(response, before)
    response.hangup()
    return _render(response, "voice")


def overflow_fallback(
    unavailable: Sequence[Prompt],
    *,
    overflow_number: str | None,
    caller_id: str | None = None,
    connecting: Sequence[Prompt] = (),
    timeout: int = 30,
    action_url: str | None = None,
) -> str:
    """Static overflow TwiML for when we cannot route: no database, no state, no I/O.

    Serves the database-down path, the Fallback URL and a TwiML Bin. Plays ``connecting``,
    dials ``overflow_number`` (a partner line, E.164) if there is one, then plays
    ``unavailable`` (e.g. "no one can take your call and voicemail is unavailable, please call
    back") and hangs up. Pass prompts in the caller's language.

    Without ``action_url``, Twilio continues after ``<Dial>`` whenever the dialled call ends,
    so ``unavailable`` is also heard if the partner line hangs up first; word it to fit both
    cases, or give an ``action_url`` that checks ``DialCallStatus``.
    """
    if not unavailable:
        raise ValueError("the overflow needs an 'unavailable' prompt")
    response = VoiceResponse()
    if overflow_number is not None:
        _add_prompts(response, connecting)
        response.dial(
            _check_e164(overflow_number, what="overflow_number"),
            timeout=_check_seconds(timeout, what="timeout", minimum=5, maximum=600),
            caller_id=None if caller_id is None else _check_e164(caller_id, what="caller_id"),
            action=None if action_url is None else _check_url(action_url, what="action_url"),
            method=None if action_url is None else "POST",
        )
    _add_prompts(response, unavailable)
    response.hangup()
    return _render(response, "voice")


def message_reply(body: str) -> str:
    """Reply to an incoming message with ``body`` (``<Message>``).

    The body is sanitised and must be 1-1,600 characters (Twilio's limit for one message).
    """
    if not isinstance(body, str):
        raise TypeError("body must be str")
    text = sanitize_text(body)
    if not text.strip():
        raise ValueError("a reply body must not be blank")
    if len(text) > MAX_MESSAGE_BODY_CHARS:
        raise ValueError(f"a reply body must be at most {MAX_MESSAGE_BODY_CHARS} characters")
    response = MessagingResponse()
    response.message(text)
    return _render(response, "messaging")


def message_replies(bodies: Sequence[str], *, status_callback: str | None = None) -> str:
    """Several ``<Message>`` replies in order (a long text split into numbered parts).

    ``status_callback`` (``<Message statusCallback>``) has Twilio report each reply's status,
    with its ``MessageSid`` — how a reply that must not stay at Twilio is found and deleted."""
    if not bodies:
        raise ValueError("at least one message")
    response = MessagingResponse()
    callback = _check_url(status_callback, what="status_callback") if status_callback else None
    for body in bodies:
        text = sanitize_text(body)
        if not text.strip() or len(text) > MAX_MESSAGE_BODY_CHARS:
            raise ValueError(f"each body must be 1 to {MAX_MESSAGE_BODY_CHARS} characters")
        if callback:
            response.message(text, status_callback=callback)
        else:
            response.message(text)
    return _render(response, "messaging")


def split_message(text: str, limit: int = MAX_MESSAGE_BODY_CHARS) -> list[str]:
    """One body when it fits; beyond ``limit``, parts numbered "(1/3) …" split at whitespace."""
    if len(text) <= limit:
        return [text]
    budget = limit - len("(99/99) ")
    parts: list[str] = []
    rest = text
    while rest:
        if len(rest) <= budget:
            parts.append(rest)
            break
        cut = rest.rfind(" ", 0, budget)
        cut = cut if cut > budget // 2 else budget
        parts.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip()
    return [f"({n}/{len(parts)}) {part}" for n, part in enumerate(parts, start=1)]


def empty_response() -> str:
    """``<Response />``: acknowledge a status callback, or answer a message with no reply."""
    return _render(VoiceResponse(), "voice")


# Verbs Twilio accepts at the top of a document in each context.
_VOICE_VERBS: Final = frozenset(
    {
        "Connect", "Dial", "Echo", "Enqueue", "Gather", "Hangup", "Pause", "Pay", "Play",
        "Prompt", "Record", "Redirect", "Refer", "Reject", "Say", "Sms", "Start", "Stop",
    }
)  # fmt: skip
_ALLOWED_TOP_LEVEL: Final[dict[str, frozenset[str]]] = {
    # voice/twiml/enqueue: verbs supported in the waitUrl document.
    "wait_url": frozenset({"Play", "Say", "Pause", "Hangup", "Redirect", "Leave", "Gather"}),
    # voice/twiml/number#url: runs on the answered leg before bridging; no <Dial> (or other
    # call-routing verbs) allowed.
    "whisper": frozenset({"Play", "Say", "Pause", "Gather", "Hangup", "Redirect"}),
    # <Leave> only makes sense while queued, i.e. in waitUrl TwiML.
    "voice": _VOICE_VERBS,
    "messaging": frozenset({"Message", "Redirect"}),
}
_SSML: Final = frozenset({"break", "emphasis", "lang", "p", "phoneme", "prosody", "s", "say-as", "sub", "w"})
# Elements each element may contain (absent = no children).
_ALLOWED_CHILDREN: Final[dict[str, frozenset[str]]] = {
    "Gather": frozenset({"Say", "Play", "Pause"}),
    "Dial": frozenset({"Number", "Conference", "Queue", "Client", "Sip", "Sim", "Application", "WhatsApp"}),
    "Enqueue": frozenset({"Task"}),
    "Say": _SSML,
    **{tag: _SSML for tag in _SSML},
    "Message": frozenset({"Body", "Media"}),
}
_LEADING_ALLOWED: Final = ("<?xml", "<Response")


def _check_element(element: ET.Element, *, depth: int) -> None:
    allowed = _ALLOWED_CHILDREN.get(element.tag, frozenset())
    for child in element:
        if child.tag not in allowed:
            raise TwimlError(f"<{child.tag}> is not allowed inside <{element.tag}>")
        if depth > 8:
            raise TwimlError("TwiML nested too deeply")
        _check_element(child, depth=depth + 1)


def check_context(xml: str, context: TwimlContext) -> None:
    """Raise :class:`TwimlError` unless ``xml`` is TwiML Twilio will run in ``context``.

    Contexts: ``"voice"`` (a call's TwiML), ``"wait_url"`` (``<Enqueue waitUrl>`` hold content:
    Play, Say, Pause, Hangup, Redirect, Leave, Gather only), ``"whisper"`` (``<Number url>`` on the
    answered leg: Play, Say, Pause, Gather, Hangup, Redirect only) and ``"messaging"``
    (Message, Redirect). Checks the size limit (:data:`MAX_TWIML_BYTES`), that it parses as one
    ``<Response>`` with nothing before the declaration, no DTD, no stray text, and that every
    verb and nested noun is one Twilio accepts in that place.
    """
    if context not in _ALLOWED_TOP_LEVEL:
        raise ValueError(f"unknown TwiML context {context!r}")
    if len(xml.encode("utf-8", errors="replace")) > MAX_TWIML_BYTES:
        raise TwimlError(f"TwiML is larger than {MAX_TWIML_BYTES} bytes (Twilio error 11750)")
    if not xml.startswith(_LEADING_ALLOWED):
        # Twilio error 12100 also covers whitespace before the XML declaration.
        raise TwimlError("TwiML must start with the XML declaration or <Response>")
    if "<!DOCTYPE" in xml.upper() or "<!ENTITY" in xml.upper():
        raise TwimlError("TwiML must not contain a DTD")
    try:
        # The document is our own (or the app's under test) and has no DTD; expat expands no
        # external entities.
        root = ET.fromstring(xml)  # noqa: S314
    except ET.ParseError as exc:
        raise TwimlError(f"TwiML is not well-formed XML: {exc}") from None
    if root.tag != "Response":
        raise TwimlError("the root element must be <Response>")
    if (root.text or "").strip() or any((child.tail or "").strip() for child in root):
        raise TwimlError("text outside a verb is not TwiML")
    allowed = _ALLOWED_TOP_LEVEL[context]
    for verb in root:
        if verb.tag not in allowed:
            raise TwimlError(f"<{verb.tag}> is not allowed in {context} TwiML")
        _check_element(verb, depth=1)
