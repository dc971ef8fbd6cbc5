"""Typed webhook payloads: Twilio's parameter names, SID checks, tolerance, privacy in repr."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from typing import Any, get_args

import pytest
from hypothesis import given
from hypothesis import strategies as st
from multidict import MultiDict
from pydantic import ValidationError
from starlette.datastructures import FormData, UploadFile

from telephony.payloads import (
    TERMINAL_CALL_STATUSES,
    TERMINAL_MESSAGE_STATUSES,
    CallStatus,
    CallStatusCallback,
    ConferenceEvent,
    ConferenceStatusCallback,
    DialCallStatus,
    DialResult,
    GatherResult,
    IncomingCall,
    IncomingMessage,
    MessageStatus,
    MessageStatusCallback,
    QueueExit,
    QueueResult,
    QueueWait,
    RecordAction,
    RecordingStatusCallback,
    WhisperRequest,
    call_status_rank,
    message_status_rank,
    parse_form,
    split_address,
)

CALLER = "+14155552671"
HOTLINE = "+14155550123"


def sid(prefix: str, n: int = 1) -> str:
    return prefix + format(n, "032x")


def voice_form(**extra: str) -> dict[str, str]:
    """The standard parameters Twilio sends with every voice request (real-capture shape)."""
    return {
        "CallSid": sid("CA"),
        "AccountSid": sid("AC"),
        "From": CALLER,
        "To": HOTLINE,
        "CallStatus": "ringing",
        "ApiVersion": "2010-04-01",
        "Direction": "inbound",
        "Caller": CALLER,
        "Called": HOTLINE,
        "ForwardedFrom": "",
        "CallerName": "",
        "CallToken": "",
        "FromCity": "SAN FRANCISCO",
        "FromState": "CA",
        "FromZip": "94103",
        "FromCountry": "US",
        "ToCity": "",
        "ToState": "CA",
        "ToZip": "",
        "ToCountry": "US",
        "CalledCity": "",
        "CallerZip": "94103",
        "StirVerstat": "TN-Validation-Passed-A",
        **extra,
    }


def message_form(**extra: str) -> dict[str, str]:
    return {
        "ToCountry": "US",
        "SmsMessageSid": sid("SM", 7),
        "NumMedia": "0",
        "SmsSid": sid("SM", 7),
        "SmsStatus": "received",
        "Body": "I need help",
        "To": HOTLINE,
        "NumSegments": "1",
        "MessageSid": sid("SM", 7),
        "AccountSid": sid("AC"),
        "From": CALLER,
        "ApiVersion": "2010-04-01",
        **extra,
    }


# --- voice ------------------------------------------------------------------------------------


def test_incoming_call_reads_twilio_names() -> None:
    call = parse_form(IncomingCall, voice_form())
    assert call.call_sid == sid("CA")
    assert call.account_sid == sid("AC")
    assert call.from_ == CALLER and call.to == HOTLINE
    assert call.call_status == "ringing"
    assert call.direction == "inbound"
    assert call.api_version == "2010-04-01"
    assert call.caller == CALLER and call.called == HOTLINE
    assert call.from_city == "SAN FRANCISCO" and call.to_state == "CA"
    assert call.stir_verstat == "TN-Validation-Passed-A"
    assert call.from_e164 == CALLER and call.to_e164 == HOTLINE


def test_empty_values_are_absent() -> None:
    call = parse_form(IncomingCall, voice_form())
    assert call.forwarded_from is None and call.caller_name is None and call.call_token is None
    assert call.to_city is None


def test_unknown_parameters_are_ignored() -> None:
    call = parse_form(IncomingCall, voice_form(BrandNewTwilioParam="x", AddOns='{"status":"successful"}'))
    assert call.add_ons == '{"status":"successful"}'
    assert not hasattr(call, "BrandNewTwilioParam")


def test_models_populate_by_python_name_and_are_frozen() -> None:
    call = IncomingCall(call_sid=sid("CA"), account_sid=sid("AC"), call_status="ringing", from_="anonymous")
    assert call.from_e164 is None
    with pytest.raises(ValidationError):
        call.call_status = "completed"  # type: ignore[misc]


@pytest.mark.parametrize("withheld", ["anonymous", "+266696687", "+1266696687", "Restricted", ""])
def test_withheld_caller_parses_but_has_no_number(withheld: str) -> None:
    call = parse_form(IncomingCall, voice_form(From=withheld, Caller=withheld))
    assert call.from_e164 is None


def test_client_and_sip_addresses_are_not_numbers() -> None:
    call = parse_form(WhisperRequest, voice_form(To="client:volunteer-7", From="sip:a@example.org"))
    assert call.to_e164 is None and call.from_e164 is None


def test_repr_and_errors_do_not_leak_personal_data() -> None:
    call = parse_form(IncomingCall, voice_form(CallerName="JANE DOE"))
    text = repr(call) + str(call)
    for secret in (CALLER.lstrip("+"), "4155552671", "SAN FRANCISCO", "94103", "JANE DOE"):
        assert secret not in text
    assert sid("CA") in text  # ids stay visible for debugging

    with pytest.raises(ValidationError) as excinfo:
        parse_form(IncomingCall, voice_form(CallSid="CA-" + CALLER, CallStatus=CALLER))
    assert "4155552671" not in str(excinfo.value)


@pytest.mark.parametrize(
    "bad_sid",
    [
        "CA123",
        sid("CA") + "0",
        sid("CA")[:-1],
        "XX" + sid("CA")[2:],
        "ca" + sid("CA")[2:],
        "CA" + "g" * 32,
        sid("AC"),
        " " + sid("CA"),
        "",
    ],
)
def test_invalid_call_sid_is_rejected(bad_sid: str) -> None:
    with pytest.raises(ValidationError):
        parse_form(IncomingCall, voice_form(CallSid=bad_sid))


def test_sid_accepts_upper_and_lower_hex() -> None:
    assert parse_form(IncomingCall, voice_form(CallSid="CA" + "aBcDeF0123456789" * 2)).call_sid.startswith(
        "CA"
    )


@pytest.mark.parametrize(
    ("model", "field", "form"),
    [
        (IncomingCall, "AccountSid", voice_form()),
        (WhisperRequest, "ParentCallSid", voice_form()),
        (DialResult, "DialCallSid", voice_form(DialCallStatus="completed")),
        (QueueWait, "QueueSid", voice_form(QueuePosition="1", QueueTime="0")),
        (RecordAction, "RecordingSid", voice_form()),
        (IncomingMessage, "MessageSid", message_form()),
        (IncomingMessage, "MessagingServiceSid", message_form()),
        (
            ConferenceStatusCallback,
            "ConferenceSid",
            {
                "AccountSid": sid("AC"),
                "FriendlyName": "t",
                "StatusCallbackEvent": "conference-start",
                "SequenceNumber": "0",
            },
        ),
    ],
)
def test_every_sid_field_is_checked(model: type[Any], field: str, form: dict[str, str]) -> None:
    with pytest.raises(ValidationError):
        parse_form(model, {**form, field: "XY" + "0" * 32})


def test_missing_required_parameter_is_rejected() -> None:
    form = voice_form()
    del form["CallStatus"]
    with pytest.raises(ValidationError):
        parse_form(IncomingCall, form)


@pytest.mark.parametrize("status", get_args(CallStatus))
def test_every_call_status_parses(status: str) -> None:
    assert parse_form(IncomingCall, voice_form(CallStatus=status)).call_status == status


def test_unknown_call_status_and_direction_are_rejected() -> None:
    with pytest.raises(ValidationError):
        parse_form(IncomingCall, voice_form(CallStatus="answered"))
    with pytest.raises(ValidationError):
        parse_form(IncomingCall, voice_form(Direction="sideways"))


def test_gather_result() -> None:
    gather = parse_form(GatherResult, voice_form(CallStatus="in-progress", Digits="2", FinishedOnKey=""))
    assert gather.digits == "2" and gather.finished_on_key is None and gather.speech_result is None
    speech = parse_form(GatherResult, voice_form(SpeechResult="español", Confidence="0.91"))
    assert speech.speech_result == "español" and speech.confidence == pytest.approx(0.91)
    assert "español" not in repr(speech)
    with pytest.raises(ValidationError):
        parse_form(GatherResult, voice_form(Confidence="1.5"))


@pytest.mark.parametrize("status", get_args(DialCallStatus))
def test_dial_result(status: str) -> None:
    dial = parse_form(
        DialResult,
        voice_form(
            CallStatus="in-progress",
            DialCallStatus=status,
            DialCallSid=sid("CA", 2),
            DialCallDuration="42",
            DialBridged="true",
        ),
    )
    assert dial.dial_call_status == status
    assert dial.dial_call_sid == sid("CA", 2)
    assert dial.dial_call_duration == 42 and dial.dial_bridged is True


def test_dial_result_requires_a_known_status() -> None:
    with pytest.raises(ValidationError):
        parse_form(DialResult, voice_form())
    with pytest.raises(ValidationError):
        parse_form(DialResult, voice_form(DialCallStatus="ringing"))


def test_whisper_leg_request() -> None:
    leg = parse_form(
        WhisperRequest,
        voice_form(
            CallSid=sid("CA", 3), ParentCallSid=sid("CA"), Direction="outbound-dial", CallStatus="in-progress"
        ),
    )
    assert leg.parent_call_sid == sid("CA") and leg.direction == "outbound-dial"
    api_leg = parse_form(WhisperRequest, voice_form(Direction="outbound-api", CallStatus="in-progress"))
    assert api_leg.parent_call_sid is None


def test_queue_wait() -> None:
    wait = parse_form(
        QueueWait,
        voice_form(
            CallStatus="in-progress",
            QueueSid=sid("QU"),
            QueuePosition="3",
            QueueTime="75",
            AvgQueueTime="40",
            CurrentQueueSize="5",
            MaxQueueSize="1000",
        ),
    )
    assert (wait.queue_sid, wait.queue_position, wait.queue_time) == (sid("QU"), 3, 75)
    assert (wait.avg_queue_time, wait.current_queue_size, wait.max_queue_size) == (40, 5, 1000)
    with pytest.raises(ValidationError):
        parse_form(QueueWait, voice_form(QueueSid=sid("QU"), QueuePosition="1", QueueTime="-1"))


@pytest.mark.parametrize("result", get_args(QueueResult))
def test_queue_exit_results(result: str) -> None:
    exit_ = parse_form(QueueExit, voice_form(QueueResult=result, QueueSid=sid("QU"), QueueTime="12"))
    assert exit_.queue_result == result and exit_.queue_time == 12


def test_queue_exit_without_queue_details() -> None:
    full = parse_form(QueueExit, voice_form(QueueResult="queue-full"))
    assert full.queue_sid is None and full.queue_time is None


@pytest.mark.parametrize("result", ["bridging-in-progress", "system-shutdown", "abandoned"])
def test_queue_exit_rejects_values_twilio_does_not_document(result: str) -> None:
    # Twilio's <Enqueue> reference spells "bridging-in-process" and "system-error".
    with pytest.raises(ValidationError):
        parse_form(QueueExit, voice_form(QueueResult=result))


def test_record_action() -> None:
    record = parse_form(
        RecordAction,
        voice_form(
            CallStatus="completed",
            RecordingSid=sid("RE"),
            RecordingUrl="https://api.twilio.com/2010-04-01/Accounts/AC/Recordings/RE",
            RecordingDuration="17",
            Digits="hangup",
        ),
    )
    assert record.recording_sid == sid("RE") and record.recording_duration == 17 and record.digits == "hangup"
    assert "Recordings" not in repr(record)


def test_call_status_callback() -> None:
    status = parse_form(
        CallStatusCallback,
        voice_form(
            CallStatus="completed",
            CallDuration="93",
            Duration="2",
            SequenceNumber="3",
            Timestamp="Thu, 01 Jun 2017 20:48:32 +0000",
            CallbackSource="call-progress-events",
            SipResponseCode="200",
        ),
    )
    assert status.call_duration == 93 and status.sequence_number == 3
    assert status.timestamp == datetime(2017, 6, 1, 20, 48, 32, tzinfo=UTC)
    assert status.callback_source == "call-progress-events" and status.sip_response_code == 200
    with pytest.raises(ValidationError):
        parse_form(CallStatusCallback, voice_form(Timestamp="yesterday"))


@pytest.mark.parametrize("event", get_args(ConferenceEvent))
def test_conference_status_callback(event: str) -> None:
    conference = parse_form(
        ConferenceStatusCallback,
        {
            "ConferenceSid": sid("CF"),
            "FriendlyName": "task-3f2a",
            "AccountSid": sid("AC"),
            "SequenceNumber": "4",
            "Timestamp": "Thu, 1 Jun 2017 20:48:32 +0000",
            "StatusCallbackEvent": event,
            "CallSid": sid("CA"),
            "Muted": "false",
            "Hold": "false",
            "Coaching": "false",
            "EndConferenceOnExit": "true",
            "StartConferenceOnEnter": "true",
            "ReasonConferenceEnded": "participant-with-end-conference-on-exit-left",
            "CallSidEndingConference": sid("CA", 2),
            "ParticipantCallStatus": "completed",
            "ReasonParticipantLeft": "participant_hung_up",
        },
    )
    assert conference.status_callback_event == event
    assert conference.conference_sid == sid("CF") and conference.friendly_name == "task-3f2a"
    assert (
        conference.sequence_number == 4
        and conference.muted is False
        and conference.end_conference_on_exit is True
    )
    assert conference.call_sid_ending_conference == sid("CA", 2)


def test_recording_status_callback() -> None:
    recording = parse_form(
        RecordingStatusCallback,
        {
            "AccountSid": sid("AC"),
            "CallSid": sid("CA"),
            "RecordingSid": sid("RE"),
            "RecordingUrl": "https://api.twilio.com/2010-04-01/Accounts/AC/Recordings/RE",
            "RecordingStatus": "completed",
            "RecordingDuration": "31",
            "RecordingChannels": "1",
            "RecordingStartTime": "Thu, 01 Jun 2017 20:48:32 +0000",
            "RecordingSource": "RecordVerb",
            "RecordingTrack": "both",
        },
    )
    assert recording.recording_status == "completed" and recording.recording_duration == 31
    assert recording.recording_source == "RecordVerb"
    for status in ("in-progress", "absent", "failed"):
        form = {"AccountSid": sid("AC"), "RecordingSid": sid("RE"), "RecordingStatus": status}
        assert parse_form(RecordingStatusCallback, form).recording_status == status
    with pytest.raises(ValidationError):
        parse_form(
            RecordingStatusCallback,
            {"AccountSid": sid("AC"), "RecordingSid": sid("RE"), "RecordingStatus": "done"},
        )


# --- messaging --------------------------------------------------------------------------------


def test_incoming_sms() -> None:
    message = parse_form(IncomingMessage, message_form())
    assert message.message_sid == sid("SM", 7) and message.sms_sid == sid("SM", 7)
    assert message.body == "I need help" and message.num_media == 0 and message.num_segments == 1
    assert message.media == () and message.channel is None and message.from_e164 == CALLER
    assert message.sms_status == "received"
    assert "I need help" not in repr(message) and "4155552671" not in repr(message)


def test_incoming_mms_collects_media_in_order() -> None:
    message = parse_form(
        IncomingMessage,
        message_form(
            MessageSid=sid("MM", 8),
            NumMedia="3",
            MediaUrl2="https://api.twilio.com/m/2",
            MediaContentType2="audio/ogg",
            MediaUrl0="https://api.twilio.com/m/0",
            MediaContentType0="image/jpeg",
            MediaUrl1="https://api.twilio.com/m/1",
            Body="",
        ),
    )
    assert message.message_sid.startswith("MM")
    assert [item.url for item in message.media] == [f"https://api.twilio.com/m/{n}" for n in range(3)]
    assert [item.content_type for item in message.media] == ["image/jpeg", None, "audio/ogg"]
    assert message.body == ""
    assert "api.twilio.com" not in repr(message)


def test_incoming_whatsapp() -> None:
    message = parse_form(
        IncomingMessage,
        message_form(
            From="whatsapp:" + CALLER,
            To="whatsapp:" + HOTLINE,
            ProfileName="Jane",
            WaId=CALLER.lstrip("+"),
            MessageType="text",
            MessagingServiceSid=sid("MG"),
        ),
    )
    assert message.channel == "whatsapp"
    assert split_address(message.from_) == ("whatsapp", CALLER)
    assert message.from_e164 == CALLER
    assert message.wa_id == "14155552671" and message.profile_name == "Jane"
    assert message.messaging_service_sid == sid("MG")
    assert "Jane" not in repr(message)


@pytest.mark.parametrize("opt_out", ["STOP", "START", "HELP"])
def test_opt_out_type(opt_out: str) -> None:
    assert parse_form(IncomingMessage, message_form(OptOutType=opt_out)).opt_out_type == opt_out


@pytest.mark.parametrize("length", [1600, 5000])
def test_long_bodies_are_accepted(length: int) -> None:
    # 1600 is Twilio's documented limit; longer bodies are still kept rather than dropped.
    body = "é" * length
    assert parse_form(IncomingMessage, message_form(Body=body)).body == body


def test_message_status_callback() -> None:
    status = parse_form(
        MessageStatusCallback,
        {
            "MessageSid": sid("SM", 9),
            "SmsSid": sid("SM", 9),
            "MessageStatus": "undelivered",
            "SmsStatus": "undelivered",
            "AccountSid": sid("AC"),
            "From": HOTLINE,
            "To": CALLER,
            "ApiVersion": "2010-04-01",
            "ErrorCode": "30003",
            "ErrorMessage": "Unreachable destination handset",
            "RawDlrDoneDate": "2306011248",
        },
    )
    assert status.message_status == "undelivered" and status.error_code == 30003
    assert "4155552671" not in repr(status)


@pytest.mark.parametrize("value", get_args(MessageStatus))
def test_every_message_status_parses(value: str) -> None:
    form = {"MessageSid": sid("SM"), "AccountSid": sid("AC"), "MessageStatus": value}
    assert parse_form(MessageStatusCallback, form).message_status == value


# --- parsing from form containers --------------------------------------------------------------


def test_parse_form_from_starlette_formdata_and_multidict() -> None:
    assert parse_form(IncomingCall, FormData(voice_form())).call_sid == sid("CA")
    assert parse_form(IncomingCall, MultiDict(voice_form())).call_sid == sid("CA")


def test_repeated_typed_parameter_is_rejected_not_guessed() -> None:
    pairs: list[tuple[str, str | UploadFile]] = [*voice_form().items(), ("CallSid", sid("CA", 2))]
    with pytest.raises(ValidationError):
        parse_form(IncomingCall, FormData(pairs))


def test_repeated_unknown_parameter_is_ignored() -> None:
    pairs = [*voice_form().items(), ("Unknown", "a"), ("Unknown", "b")]
    assert parse_form(IncomingCall, MultiDict(pairs)).call_sid == sid("CA")


# --- status ranks ---------------------------------------------------------------------------------


def test_message_status_rank_order() -> None:
    rank = message_status_rank
    assert rank("scheduled") < rank("accepted") < rank("queued") < rank("sending") < rank("sent")
    assert rank("sent") < rank("delivered") == rank("undelivered") == rank("failed")
    assert rank("delivered") < rank("read")
    assert rank("receiving") < rank("received")
    assert {status for status in get_args(MessageStatus)} >= TERMINAL_MESSAGE_STATUSES
    assert {"delivered", "undelivered", "failed", "read"} <= TERMINAL_MESSAGE_STATUSES
    assert "sent" not in TERMINAL_MESSAGE_STATUSES


def test_call_status_rank_order() -> None:
    rank = call_status_rank
    assert rank("queued") < rank("initiated") < rank("ringing") < rank("in-progress") < rank("completed")
    assert len({rank(status) for status in ("completed", "busy", "failed", "no-answer", "canceled")}) == 1
    assert TERMINAL_CALL_STATUSES == {"completed", "busy", "failed", "no-answer", "canceled"}


def test_every_status_has_a_rank_and_unknown_ones_raise() -> None:
    for status in get_args(MessageStatus):
        message_status_rank(status)
    for status in get_args(CallStatus):
        call_status_rank(status)
    with pytest.raises(ValueError):
        message_status_rank("teleported")
    with pytest.raises(ValueError):
        call_status_rank("answered")


@given(st.permutations(["queued", "sending", "sent", "delivered", "read"]), st.randoms())
def test_out_of_order_callbacks_converge_to_the_latest_status(order: list[str], rnd: random.Random) -> None:
    # Keep-the-highest-rank, the rule the app applies per MessageSid, ends on the last lifecycle
    # state whatever order (and duplication) the callbacks arrive in.
    deliveries = order + rnd.sample(order, k=2)
    stored = "accepted"
    for status in deliveries:
        if message_status_rank(status) > message_status_rank(stored):
            stored = status
    assert stored == "read"
