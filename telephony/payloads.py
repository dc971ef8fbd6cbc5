"""Typed Twilio webhook payloads.

Each model's field aliases are Twilio's exact parameter names (``CallSid``, ``From``,
``QueueTime`` …); build a model from a verified form with :func:`parse_form`. Unknown
parameters are ignored, because Twilio adds parameters without notice (the signature still
covers them, since it is checked over the raw form before parsing).

Conventions shared by every model:

* Empty values (``CallToken=``, ``FinishedOnKey=``) count as absent, so optional fields are
  ``None`` rather than ``""``; a required field sent empty is an error.
* SIDs are checked by prefix and length (``CA`` + 32 hex digits …); anything else is a
  ``pydantic.ValidationError``.
* Fields that carry personal data (numbers, names, places, message and speech text, media
  and recording URLs) are left out of ``repr`` and validation errors never echo input, so a
  logged model or error leaks none of it. ``model_dump()`` still has everything.
* Models are frozen.

A ``ValidationError`` on a voice webhook must still be answered with valid TwiML (the static
overflow), never a 500: Twilio would play its generic error and drop the caller.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Annotated, Any, Final, Literal, TypeVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from telephony.numbers import normalize_e164, split_address
from telephony.signature import FormParams, form_values

__all__ = [
    "TERMINAL_CALL_STATUSES",
    "TERMINAL_MESSAGE_STATUSES",
    "AccountSid",
    "CallDirection",
    "CallRequest",
    "CallSid",
    "CallStatus",
    "CallStatusCallback",
    "ConferenceEvent",
    "ConferenceSid",
    "ConferenceStatusCallback",
    "DialCallStatus",
    "DialResult",
    "GatherResult",
    "IncomingCall",
    "IncomingMessage",
    "MediaItem",
    "MessageSid",
    "MessageStatus",
    "MessageStatusCallback",
    "MessagingServiceSid",
    "OptOutType",
    "QueueExit",
    "QueueResult",
    "QueueSid",
    "QueueWait",
    "RecordAction",
    "RecordingSid",
    "RecordingStatus",
    "RecordingStatusCallback",
    "TwilioPayload",
    "WhisperRequest",
    "call_status_rank",
    "message_status_rank",
    "parse_form",
    "split_address",
]


# Twilio SIDs: a two-letter type prefix and 32 hex digits.
CallSid = Annotated[str, StringConstraints(pattern=r"^CA[0-9a-fA-F]{32}$")]
AccountSid = Annotated[str, StringConstraints(pattern=r"^AC[0-9a-fA-F]{32}$")]
MessageSid = Annotated[str, StringConstraints(pattern=r"^(?:SM|MM)[0-9a-fA-F]{32}$")]
RecordingSid = Annotated[str, StringConstraints(pattern=r"^RE[0-9a-fA-F]{32}$")]
QueueSid = Annotated[str, StringConstraints(pattern=r"^QU[0-9a-fA-F]{32}$")]
ConferenceSid = Annotated[str, StringConstraints(pattern=r"^CF[0-9a-fA-F]{32}$")]
MessagingServiceSid = Annotated[str, StringConstraints(pattern=r"^MG[0-9a-fA-F]{32}$")]

CallStatus = Literal[
    "queued", "initiated", "ringing", "in-progress", "completed", "busy", "failed", "no-answer", "canceled"
]
CallDirection = Literal[
    "inbound", "outbound-api", "outbound-dial", "trunking-terminating", "trunking-originating"
]
DialCallStatus = Literal["completed", "answered", "busy", "no-answer", "failed", "canceled"]
# Twilio's <Enqueue> reference (voice/twiml/enqueue, "QueueResult values").
QueueResult = Literal[
    "bridged",
    "bridging-in-process",
    "error",
    "hangup",
    "leave",
    "redirected",
    "redirected-from-bridged",
    "queue-full",
    "system-error",
]
ConferenceEvent = Literal[
    "conference-start",
    "conference-end",
    "participant-join",
    "participant-leave",
    "participant-mute",
    "participant-unmute",
    "participant-hold",
    "participant-unhold",
    "participant-modify",
    "participant-speech-start",
    "participant-speech-stop",
    "announcement-end",
    "announcement-fail",
]
RecordingStatus = Literal["in-progress", "completed", "absent", "failed"]
# twilio-python MessageInstance.Status.
MessageStatus = Literal[
    "queued",
    "sending",
    "sent",
    "failed",
    "delivered",
    "undelivered",
    "receiving",
    "received",
    "accepted",
    "scheduled",
    "read",
    "partially_delivered",
    "canceled",
]
OptOutType = Literal["STOP", "START", "HELP"]


def _parse_rfc2822(value: object) -> object:
    # Twilio's Timestamp is RFC 2822 ("Thu, 1 Jun 2017 20:48:32 +0000"), which pydantic's
    # datetime parser does not read.
    if isinstance(value, str):
        try:
            return parsedate_to_datetime(value)
        except (TypeError, ValueError) as exc:
            raise ValueError("expected an RFC 2822 timestamp") from exc
    return value


Rfc2822Datetime = Annotated[datetime, BeforeValidator(_parse_rfc2822)]


class TwilioPayload(BaseModel):
    """Base of every webhook model: Twilio names as aliases, unknown parameters ignored."""

    model_config = ConfigDict(
        populate_by_name=True,
        extra="ignore",
        frozen=True,
        hide_input_in_errors=True,
    )

    @model_validator(mode="before")
    @classmethod
    def _empty_is_absent(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            return {key: value for key, value in data.items() if value != ""}
        return data


class CallRequest(TwilioPayload):
    """Twilio's standard voice request parameters, sent with every voice webhook."""

    call_sid: CallSid = Field(alias="CallSid")
    account_sid: AccountSid = Field(alias="AccountSid")
    # From/To may be withheld or empty; they are never trusted as phone numbers without
    # normalize_e164 (see from_e164).
    from_: str = Field("", alias="From", repr=False)
    to: str = Field("", alias="To", repr=False)
    call_status: CallStatus = Field(alias="CallStatus")
    direction: CallDirection | None = Field(None, alias="Direction")
    api_version: str | None = Field(None, alias="ApiVersion")
    parent_call_sid: CallSid | None = Field(None, alias="ParentCallSid")
    # With answering-machine detection: human, machine_start, machine_end_beep, fax, unknown…
    answered_by: str | None = Field(None, alias="AnsweredBy")
    caller: str | None = Field(None, alias="Caller", repr=False)
    called: str | None = Field(None, alias="Called", repr=False)
    forwarded_from: str | None = Field(None, alias="ForwardedFrom", repr=False)
    caller_name: str | None = Field(None, alias="CallerName", repr=False)
    call_token: str | None = Field(None, alias="CallToken", repr=False)
    stir_verstat: str | None = Field(None, alias="StirVerstat")
    stir_status: str | None = Field(None, alias="StirStatus")
    from_city: str | None = Field(None, alias="FromCity", repr=False)
    from_state: str | None = Field(None, alias="FromState", repr=False)
    from_zip: str | None = Field(None, alias="FromZip", repr=False)
    from_country: str | None = Field(None, alias="FromCountry", repr=False)
    to_city: str | None = Field(None, alias="ToCity", repr=False)
    to_state: str | None = Field(None, alias="ToState", repr=False)
    to_zip: str | None = Field(None, alias="ToZip", repr=False)
    to_country: str | None = Field(None, alias="ToCountry", repr=False)
    add_ons: str | None = Field(None, alias="AddOns", repr=False)

    @property
    def from_e164(self) -> str | None:
        """``From`` as E.164, or ``None`` when withheld, unknown or not a phone number."""
        return normalize_e164(self.from_)

    @property
    def to_e164(self) -> str | None:
        """``To`` as E.164, or ``None`` when it is not a phone number."""
        return normalize_e164(self.to)


class IncomingCall(CallRequest):
    """The first request of an inbound call (the number's voice URL)."""


class WhisperRequest(CallRequest):
    """Request for the TwiML run on a volunteer's leg before it is bridged.

    Sent for ``<Number url=…>`` (then ``ParentCallSid`` is the caller's leg and ``Direction`` is
    ``outbound-dial``) and for a REST-created leg's ``url`` (``outbound-api``).
    """


class GatherResult(CallRequest):
    """``<Gather>`` action request."""

    digits: str | None = Field(None, alias="Digits", repr=False)
    finished_on_key: str | None = Field(None, alias="FinishedOnKey")
    speech_result: str | None = Field(None, alias="SpeechResult", repr=False)
    confidence: float | None = Field(None, alias="Confidence", ge=0, le=1)


class DialResult(CallRequest):
    """``<Dial>`` action request, after the dialled leg ends."""

    dial_call_status: DialCallStatus = Field(alias="DialCallStatus")
    dial_call_sid: CallSid | None = Field(None, alias="DialCallSid")
    dial_call_duration: int | None = Field(None, alias="DialCallDuration", ge=0)
    dial_bridged: bool | None = Field(None, alias="DialBridged")


class QueueWait(CallRequest):
    """``<Enqueue waitUrl>`` request, repeated while the caller waits.

    ``queue_position`` is Twilio's FIFO position; announce our own position from the tasks
    table instead. ``queue_time`` distinguishes successive polls of the same call.
    """

    queue_sid: QueueSid = Field(alias="QueueSid")
    queue_position: int = Field(alias="QueuePosition", ge=0)
    queue_time: int = Field(alias="QueueTime", ge=0)
    avg_queue_time: int | None = Field(None, alias="AvgQueueTime", ge=0)
    current_queue_size: int | None = Field(None, alias="CurrentQueueSize", ge=0)
    max_queue_size: int | None = Field(None, alias="MaxQueueSize", ge=0)


class QueueExit(CallRequest):
    """``<Enqueue action>`` request, when the caller leaves the queue.

    Sent at once for ``<Leave>``, a redirect or an error, but only after both legs hang up
    when the call was bridged. ``QueueSid``/``QueueTime`` are absent if the caller was never
    actually enqueued (``queue-full``, ``system-error``).
    """

    queue_result: QueueResult = Field(alias="QueueResult")
    queue_sid: QueueSid | None = Field(None, alias="QueueSid")
    queue_time: int | None = Field(None, alias="QueueTime", ge=0)


class RecordAction(CallRequest):
    """``<Record>`` action request (the recording may still be processing)."""

    recording_sid: RecordingSid | None = Field(None, alias="RecordingSid")
    recording_url: str | None = Field(None, alias="RecordingUrl", repr=False)
    recording_duration: int | None = Field(None, alias="RecordingDuration")
    # The key that ended the recording, or "hangup".
    digits: str | None = Field(None, alias="Digits")


class CallStatusCallback(CallRequest):
    """Call ``statusCallback`` request. Deliveries may arrive out of order.

    Deduplicate on (``CallSid``, ``SequenceNumber``) when present, else (``CallSid``,
    ``CallStatus``), and only move forward by :func:`call_status_rank`.
    """

    call_duration: int | None = Field(None, alias="CallDuration", ge=0)
    duration: int | None = Field(None, alias="Duration", ge=0)
    sequence_number: int | None = Field(None, alias="SequenceNumber", ge=0)
    timestamp: Rfc2822Datetime | None = Field(None, alias="Timestamp")
    callback_source: str | None = Field(None, alias="CallbackSource")
    sip_response_code: int | None = Field(None, alias="SipResponseCode")


class ConferenceStatusCallback(TwilioPayload):
    """Conference ``statusCallback`` request (one per subscribed event)."""

    conference_sid: ConferenceSid = Field(alias="ConferenceSid")
    account_sid: AccountSid = Field(alias="AccountSid")
    friendly_name: str = Field(alias="FriendlyName")
    status_callback_event: ConferenceEvent = Field(alias="StatusCallbackEvent")
    sequence_number: int = Field(alias="SequenceNumber", ge=0)
    timestamp: Rfc2822Datetime | None = Field(None, alias="Timestamp")
    call_sid: CallSid | None = Field(None, alias="CallSid")
    muted: bool | None = Field(None, alias="Muted")
    hold: bool | None = Field(None, alias="Hold")
    coaching: bool | None = Field(None, alias="Coaching")
    start_conference_on_enter: bool | None = Field(None, alias="StartConferenceOnEnter")
    end_conference_on_exit: bool | None = Field(None, alias="EndConferenceOnExit")
    participant_label: str | None = Field(None, alias="ParticipantLabel")
    call_sid_ending_conference: CallSid | None = Field(None, alias="CallSidEndingConference")
    participant_label_ending_conference: str | None = Field(None, alias="ParticipantLabelEndingConference")
    reason_conference_ended: str | None = Field(None, alias="ReasonConferenceEnded")
    reason: str | None = Field(None, alias="Reason")
    participant_call_status: str | None = Field(None, alias="ParticipantCallStatus")
    reason_participant_left: str | None = Field(None, alias="ReasonParticipantLeft")


class RecordingStatusCallback(TwilioPayload):
    """``recordingStatusCallback`` request (from ``<Record>``, ``<Dial>`` or a conference)."""

    account_sid: AccountSid = Field(alias="AccountSid")
    call_sid: CallSid | None = Field(None, alias="CallSid")
    conference_sid: ConferenceSid | None = Field(None, alias="ConferenceSid")
    recording_sid: RecordingSid = Field(alias="RecordingSid")
    recording_url: str | None = Field(None, alias="RecordingUrl", repr=False)
    recording_status: RecordingStatus = Field(alias="RecordingStatus")
    # Twilio reports -1 while a recording's length is not yet known.
    recording_duration: int | None = Field(None, alias="RecordingDuration")
    recording_channels: int | None = Field(None, alias="RecordingChannels", ge=1)
    recording_start_time: str | None = Field(None, alias="RecordingStartTime")
    recording_source: str | None = Field(None, alias="RecordingSource")
    recording_track: str | None = Field(None, alias="RecordingTrack")
    error_code: int | None = Field(None, alias="ErrorCode")


class MediaItem(BaseModel):
    """One attachment of an incoming message (``MediaUrl{N}``/``MediaContentType{N}``)."""

    model_config = ConfigDict(frozen=True, hide_input_in_errors=True)

    url: str = Field(repr=False)
    content_type: str | None = None


_MEDIA_KEY_RE: Final = re.compile(r"^Media(Url|ContentType)(0|[1-9][0-9]?)\Z")


class IncomingMessage(TwilioPayload):
    """Incoming SMS, MMS or WhatsApp message.

    ``Body`` is not length-checked: Twilio documents up to 1600 characters, but a signed message
    from a person in crisis is never dropped over a length rule.
    """

    message_sid: MessageSid = Field(alias="MessageSid")
    sms_sid: MessageSid | None = Field(None, alias="SmsSid")
    sms_message_sid: MessageSid | None = Field(None, alias="SmsMessageSid")
    account_sid: AccountSid = Field(alias="AccountSid")
    messaging_service_sid: MessagingServiceSid | None = Field(None, alias="MessagingServiceSid")
    from_: str = Field("", alias="From", repr=False)
    to: str = Field("", alias="To", repr=False)
    body: str = Field("", alias="Body", repr=False)
    num_media: int = Field(0, alias="NumMedia", ge=0)
    num_segments: int | None = Field(None, alias="NumSegments", ge=0)
    media: tuple[MediaItem, ...] = Field((), repr=False)
    sms_status: str | None = Field(None, alias="SmsStatus")
    api_version: str | None = Field(None, alias="ApiVersion")
    profile_name: str | None = Field(None, alias="ProfileName", repr=False)
    wa_id: str | None = Field(None, alias="WaId", repr=False)
    message_type: str | None = Field(None, alias="MessageType")
    opt_out_type: OptOutType | None = Field(None, alias="OptOutType")
    button_text: str | None = Field(None, alias="ButtonText", repr=False)
    button_payload: str | None = Field(None, alias="ButtonPayload", repr=False)
    from_city: str | None = Field(None, alias="FromCity", repr=False)
    from_state: str | None = Field(None, alias="FromState", repr=False)
    from_zip: str | None = Field(None, alias="FromZip", repr=False)
    from_country: str | None = Field(None, alias="FromCountry", repr=False)

    @model_validator(mode="before")
    @classmethod
    def _collect_media(cls, data: Any) -> Any:
        # Twilio numbers attachments MediaUrl0..MediaUrl9; gather them into one ordered tuple.
        if not isinstance(data, Mapping) or "media" in data:
            return data
        by_index: dict[int, dict[str, object]] = {}
        for key, value in data.items():
            match = _MEDIA_KEY_RE.match(key) if isinstance(key, str) else None
            if match is None:
                continue
            field = "url" if match.group(1) == "Url" else "content_type"
            by_index.setdefault(int(match.group(2)), {})[field] = value
        media = [by_index[index] for index in sorted(by_index) if "url" in by_index[index]]
        return {**data, "media": media}

    @property
    def channel(self) -> str | None:
        """The sender's channel prefix (``"whatsapp"``), or ``None`` for plain SMS/MMS."""
        return split_address(self.from_)[0]

    @property
    def from_e164(self) -> str | None:
        """``From`` as E.164 (channel prefix dropped), or ``None`` if not a usable number."""
        return normalize_e164(self.from_)


class MessageStatusCallback(TwilioPayload):
    """Outbound message ``StatusCallback`` request. Deliveries may arrive out of order.

    Store a status only if its :func:`message_status_rank` is higher than the stored one.
    """

    message_sid: MessageSid = Field(alias="MessageSid")
    sms_sid: MessageSid | None = Field(None, alias="SmsSid")
    account_sid: AccountSid = Field(alias="AccountSid")
    messaging_service_sid: MessagingServiceSid | None = Field(None, alias="MessagingServiceSid")
    message_status: MessageStatus = Field(alias="MessageStatus")
    sms_status: str | None = Field(None, alias="SmsStatus")
    from_: str = Field("", alias="From", repr=False)
    to: str = Field("", alias="To", repr=False)
    api_version: str | None = Field(None, alias="ApiVersion")
    error_code: int | None = Field(None, alias="ErrorCode")
    error_message: str | None = Field(None, alias="ErrorMessage")
    channel_to_address: str | None = Field(None, alias="ChannelToAddress", repr=False)
    raw_dlr_done_date: str | None = Field(None, alias="RawDlrDoneDate")


P = TypeVar("P", bound=TwilioPayload)


def parse_form(model: type[P], form: FormParams) -> P:
    """Validate a webhook's form fields into ``model``.

    ``form`` may be a dict, a Starlette ``FormData`` or a multidict. A key Twilio sent more than
    once reaches the model as a list, so a repeated typed field (two ``CallSid`` values) is a
    ``ValidationError`` rather than a silent pick. Verify the signature first; parsing does not.
    Raises ``pydantic.ValidationError`` (or ``TypeError`` for non-text values such as uploads).
    """
    values = form_values(form)
    flat: dict[str, str | list[str]] = {
        name: items[0] if len(items) == 1 else items for name, items in values.items()
    }
    return model.model_validate(flat)


# Higher rank = later in the lifecycle. Terminal outcomes share a rank so that none overwrites
# another, except "read", which WhatsApp reports after "delivered" and which implies it.
_MESSAGE_STATUS_RANK: Final[dict[str, int]] = {
    "scheduled": 0,
    "accepted": 1,
    "queued": 2,
    "sending": 3,
    "receiving": 3,
    "sent": 4,
    "delivered": 5,
    "undelivered": 5,
    "failed": 5,
    "partially_delivered": 5,
    "canceled": 5,
    "received": 5,
    "read": 6,
}
_CALL_STATUS_RANK: Final[dict[str, int]] = {
    "queued": 0,
    "initiated": 1,
    "ringing": 2,
    "in-progress": 3,
    "completed": 4,
    "busy": 4,
    "failed": 4,
    "no-answer": 4,
    "canceled": 4,
}
TERMINAL_MESSAGE_STATUSES: Final[frozenset[str]] = frozenset(
    status for status, rank in _MESSAGE_STATUS_RANK.items() if rank >= 5
)
TERMINAL_CALL_STATUSES: Final[frozenset[str]] = frozenset(
    status for status, rank in _CALL_STATUS_RANK.items() if rank == 4
)


def message_status_rank(status: MessageStatus | str) -> int:
    """Order of a message status: queued < sending < sent < delivered/undelivered/failed < read.

    Apply an out-of-order status callback only if its rank is strictly higher than the stored
    one. Raises ``ValueError`` for a status Twilio does not define.
    """
    try:
        return _MESSAGE_STATUS_RANK[status]
    except KeyError:
        raise ValueError("unknown message status") from None


def call_status_rank(status: CallStatus | str) -> int:
    """Order of a call status: queued < initiated < ringing < in-progress < any terminal status.

    Raises ``ValueError`` for a status Twilio does not define.
    """
    try:
        return _CALL_STATUS_RANK[status]
    except KeyError:
        raise ValueError("unknown call status") from None
