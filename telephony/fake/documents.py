"""How the fake Twilio reads TwiML answers: status, size, Content-Type, XML, and per-context verb rules.

Deliberately independent of our own TwiML builders: the fake plays Twilio and must judge the
app's output the way Twilio would, with a strict XML parser and Twilio's error codes.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Literal

MAX_TWIML_BYTES = 64 * 1024

#: Twilio error codes the fake raises as alerts.
INVALID_URL = 11100  # not an absolute http(s) URL
HTTP_RETRIEVAL_FAILURE = 11200  # non-2xx from the app
HTTP_CONNECTION_FAILURE = 11205  # timeout / connection refused
RESPONSE_TOO_LARGE = 11750  # body over 64 kB
DOCUMENT_PARSE_FAILURE = 12100  # bad XML, wrong root, verb not allowed in this document
SCHEMA_WARNING = 12200  # unknown verb (warning; the verb is skipped)
INVALID_CONTENT_TYPE = 12300
DIAL_IN_DIAL_SEGMENT = 13201  # <Dial> inside a <Number url> (whisper) document
STATUS_CALLBACK_FAILED = 15003  # warning only

VOICE_VERBS = frozenset(
    {
        "Say",
        "Play",
        "Pause",
        "Gather",
        "Dial",
        "Enqueue",
        "Leave",
        "Redirect",
        "Record",
        "Hangup",
        "Reject",
        "Sms",
        "Connect",
        "Start",
        "Stop",
        "Pay",
        "Prompt",
        "Refer",
        "Echo",
    }
)
GATHER_CHILDREN = frozenset({"Say", "Play", "Pause"})
DIAL_NOUNS = frozenset({"Number", "Client", "Sip", "Conference", "Queue", "Sim", "Application", "WhatsApp"})

Context = Literal["main", "wait", "whisper"]

#: Verbs each kind of document may contain.  ``wait`` is an ``<Enqueue waitUrl>`` document
#: (Twilio: Play, Say, Pause, Hangup, Redirect, Leave, Gather).  ``whisper`` is a
#: ``<Number url>`` document run on the called party before the bridge: Twilio forbids
#: ``<Dial>`` there (13201, changelog 2021-07-01) and documents it for screening with
#: Play/Say/Pause/Gather/Hangup; we also allow Redirect and refuse the rest.
ALLOWED_VERBS: dict[str, frozenset[str]] = {
    "main": VOICE_VERBS,
    "wait": frozenset({"Play", "Say", "Pause", "Hangup", "Redirect", "Leave", "Gather"}),
    "whisper": frozenset({"Play", "Say", "Pause", "Gather", "Hangup", "Redirect"}),
}

XML_TYPES = frozenset({"text/xml", "application/xml", "text/html"})


@dataclass(frozen=True)
class TwimlProblem:
    """Why Twilio could not use a response (an alert code plus a human detail)."""

    code: int
    detail: str


@dataclass(frozen=True)
class TwimlDocument:
    """A parsed ``<Response>``: its verbs, or an audio file to play."""

    url: str
    verbs: list[ET.Element] = field(default_factory=list)
    audio: bool = False
    warnings: tuple[TwimlProblem, ...] = ()


def media_type(content_type: str) -> str:
    """``text/xml; charset=utf-8`` → ``text/xml``."""
    return content_type.split(";", 1)[0].strip().lower()


def parse_xml(body: bytes) -> ET.Element | TwimlProblem:
    """Strict parse of a ``<Response>`` document (12100 on any defect)."""
    if b"<!DOCTYPE" in body or b"<!ENTITY" in body:
        # Twilio accepts plain TwiML only; refusing DTDs also keeps entity expansion out.
        return TwimlProblem(DOCUMENT_PARSE_FAILURE, "DTDs are not allowed in TwiML")
    try:
        root = ET.fromstring(body)  # noqa: S314 - DTDs refused above; input is the app under test
    except ET.ParseError as exc:
        return TwimlProblem(DOCUMENT_PARSE_FAILURE, f"invalid XML: {exc}")
    if root.tag != "Response":
        return TwimlProblem(DOCUMENT_PARSE_FAILURE, f"root element is <{root.tag}>, not <Response>")
    return root


def parse_voice_response(
    status: int, content_type: str, body: bytes, url: str
) -> TwimlDocument | TwimlProblem:
    """Judge an HTTP answer to a voice webhook as Twilio does."""
    if not 200 <= status < 300:
        return TwimlProblem(HTTP_RETRIEVAL_FAILURE, f"HTTP {status}")
    if len(body) > MAX_TWIML_BYTES:
        return TwimlProblem(RESPONSE_TOO_LARGE, f"response is {len(body)} bytes (limit 64 kB)")
    kind = media_type(content_type)
    if kind.startswith("audio/"):
        return TwimlDocument(url, audio=True)
    if kind not in XML_TYPES:
        return TwimlProblem(INVALID_CONTENT_TYPE, f"Content-Type {content_type!r} is not TwiML")
    root = parse_xml(body)
    if isinstance(root, TwimlProblem):
        return root
    verbs: list[ET.Element] = []
    warnings: list[TwimlProblem] = []
    for element in root:
        if element.tag in VOICE_VERBS:
            verbs.append(element)
        else:
            warnings.append(TwimlProblem(SCHEMA_WARNING, f"unknown verb <{element.tag}> skipped"))
    return TwimlDocument(url, verbs, warnings=tuple(warnings))


def check_context(document: TwimlDocument, context: Context) -> TwimlProblem | None:
    """Refuse a document that uses a verb its context does not allow."""
    allowed = ALLOWED_VERBS[context]
    for verb in document.verbs:
        if verb.tag not in allowed:
            code = (
                DIAL_IN_DIAL_SEGMENT
                if context == "whisper" and verb.tag == "Dial"
                else DOCUMENT_PARSE_FAILURE
            )
            return TwimlProblem(code, f"<{verb.tag}> is not allowed in a {context} document")
        if verb.tag == "Gather":
            for child in verb:
                if child.tag not in GATHER_CHILDREN:
                    return TwimlProblem(
                        DOCUMENT_PARSE_FAILURE, f"<{child.tag}> is not allowed inside <Gather>"
                    )
        if verb.tag == "Dial":
            for child in verb:
                if child.tag not in DIAL_NOUNS:
                    return TwimlProblem(DOCUMENT_PARSE_FAILURE, f"<{child.tag}> is not allowed inside <Dial>")
    return None


@dataclass(frozen=True)
class OutboundReply:
    """A ``<Message>`` in a messaging webhook answer."""

    body: str
    to: str | None
    from_: str | None
    media_urls: tuple[str, ...]
    status_callback: str | None


def parse_messaging_response(
    status: int, content_type: str, body: bytes
) -> list[OutboundReply] | TwimlProblem:
    """Judge an HTTP answer to a messaging webhook: replies to send, or why it failed."""
    if not 200 <= status < 300:
        return TwimlProblem(HTTP_RETRIEVAL_FAILURE, f"HTTP {status}")
    if status == 204 or not body.strip():
        return []  # "no reply" is a valid answer for messaging
    if len(body) > MAX_TWIML_BYTES:
        return TwimlProblem(RESPONSE_TOO_LARGE, f"response is {len(body)} bytes (limit 64 kB)")
    if media_type(content_type) not in XML_TYPES:
        return TwimlProblem(INVALID_CONTENT_TYPE, f"Content-Type {content_type!r} is not TwiML")
    root = parse_xml(body)
    if isinstance(root, TwimlProblem):
        return root
    replies = []
    for element in root:
        if element.tag != "Message":
            continue
        body_el = element.find("Body")
        text = (body_el.text if body_el is not None else element.text) or ""
        media = tuple((m.text or "").strip() for m in element.findall("Media"))
        replies.append(
            OutboundReply(
                body=text,
                to=element.get("to"),
                from_=element.get("from"),
                media_urls=media,
                status_callback=element.get("statusCallback"),
            )
        )
    return replies
