"""Twilio integration for the hotline: webhook signatures, typed payloads, numbers and TwiML.

Framework-free and configuration-free: secrets, URLs and numbers come in as arguments; nothing
here imports ``app``, FastAPI or SQLAlchemy, or reads the environment. The REST client protocol
(``telephony.rest``) and the in-repo fake (``telephony.fake``) are imported from their own
modules.
"""

from telephony.numbers import last_two_digits, mask, normalize_e164, split_address
from telephony.payloads import (
    CallStatusCallback,
    ConferenceStatusCallback,
    DialResult,
    GatherResult,
    IncomingCall,
    IncomingMessage,
    MessageStatusCallback,
    QueueExit,
    QueueWait,
    RecordAction,
    RecordingStatusCallback,
    WhisperRequest,
    call_status_rank,
    message_status_rank,
    parse_form,
)
from telephony.signature import (
    SIGNATURE_HEADER,
    InvalidSignature,
    rebuild_url,
    require_valid_signature,
    sign,
    verify,
)
from telephony.twiml import Prompt, TwimlError, check_context

__all__ = [
    "SIGNATURE_HEADER",
    "CallStatusCallback",
    "ConferenceStatusCallback",
    "DialResult",
    "GatherResult",
    "IncomingCall",
    "IncomingMessage",
    "InvalidSignature",
    "MessageStatusCallback",
    "Prompt",
    "QueueExit",
    "QueueWait",
    "RecordAction",
    "RecordingStatusCallback",
    "TwimlError",
    "WhisperRequest",
    "call_status_rank",
    "check_context",
    "last_two_digits",
    "mask",
    "message_status_rank",
    "normalize_e164",
    "parse_form",
    "rebuild_url",
    "require_valid_signature",
    "sign",
    "split_address",
    "verify",
]
