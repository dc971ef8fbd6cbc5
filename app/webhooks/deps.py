"""FastAPI dependencies that admit only genuine Twilio webhooks and hand routes a typed event.

Use in webhook routers as::

    router = APIRouter(prefix="/twilio", dependencies=[TwilioSignature])

    @router.post("/voice/incoming")
    async def incoming(event: Annotated[IncomingCall, twilio_webhook(IncomingCall)], session: DbSession): ...

What happens, in order, before the route (or any other dependency of it) does anything:

1. Only ``POST`` is accepted (FastAPI's route methods already answer 405 for the others; the
   dependency refuses them too, in case it is mounted on a multi-method route).
2. The raw ``application/x-www-form-urlencoded`` body is read (at most :data:`MAX_BODY_BYTES`)
   and split into fields exactly as sent, repeated keys included.
3. The URL Twilio signed is rebuilt from ``HOTLINE_PUBLIC_URL`` plus the raw path and raw query
   string (:func:`telephony.signature.rebuild_url`), never from ``Host`` or ``X-Forwarded-*``.
   ``raw_path`` is taken relative to the public URL: a proxy serving the app under a prefix
   (``https://example.org/hotline``) strips that prefix before the app sees the path.
4. ``X-Twilio-Signature`` is checked against the current auth token and every token in
   ``HOTLINE_TWILIO_PREVIOUS_AUTH_TOKENS`` (rotation). A missing or wrong signature, a body that
   is not a form, or no configured token at all answers **403** (``invalid_signature``, a
   generic message) — the route body never runs, so there are no side effects.
5. Only then are the fields validated into the payload model
   (:func:`telephony.payloads.parse_form`).

**Invalid payloads.** A signed request whose fields do not fit the model (a malformed SID, say)
raises :class:`InvalidWebhookPayload`, never a pydantic ``ValidationError`` (which would be a
500) nor FastAPI's 422 (which would echo the input). ``InvalidWebhookPayload`` is a
``DomainError``, so without a specific handler it becomes a 400 JSON body naming only the model
and the fields' locations. Webhook flows must answer Twilio with TwiML instead: register a
handler for it that returns the static fallback (voice: the overflow TwiML in the caller's
language; messaging: an empty ``<Response/>``), e.g.
``app.add_exception_handler(InvalidWebhookPayload, answer_fallback_twiml)``.

**Before any database work.** FastAPI resolves a route's dependencies in order, router-level
dependencies first. Put :data:`TwilioSignature` in the router's ``dependencies`` (or declare
the event parameter before ``DbSession``); the verification result is cached per request, so
the event parameter does not verify twice.

**Drills.** ``hotline simulate … --drill`` appends ``drill=1`` to the webhook URLs it configures
on the fake number. The query string is part of the signed URL, so the flag can neither be
forged nor stripped without breaking the signature; read it with :func:`webhook_context`
(``.drill``) and store it on the contact so statistics can leave drills out.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, Final, TypeVar
from urllib.parse import parse_qs, parse_qsl

from fastapi import Depends, Request
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.errors import DomainError, Forbidden
from app.settings import Settings
from telephony.payloads import TwilioPayload, parse_form
from telephony.signature import SIGNATURE_HEADER, rebuild_url, verify

__all__ = [
    "DRILL_QUERY_PARAM",
    "MAX_BODY_BYTES",
    "InvalidWebhookPayload",
    "TwilioSignature",
    "VerifiedWebhook",
    "twilio_webhook",
    "verified_twilio_request",
    "webhook_context",
]

log = logging.getLogger("hotline.webhooks")

#: Twilio's webhook bodies are a few kilobytes (an SMS body is at most 1,600 characters).
MAX_BODY_BYTES: Final = 64 * 1024
#: Query parameter ``hotline simulate --drill`` puts on the webhook URLs (value ``1``).
DRILL_QUERY_PARAM: Final = "drill"
_MAX_FIELDS: Final = 500
_FORM_TYPE: Final = "application/x-www-form-urlencoded"
_STATE_KEY: Final = "twilio_webhook"

M = TypeVar("M", bound=TwilioPayload)


class InvalidWebhookPayload(DomainError):
    """A correctly signed webhook whose fields do not fit the payload model.

    Carries the model's name and the failing field locations and error types only, never the
    values (they may be a caller's number or words). Webhook flows answer it with fallback TwiML.
    """

    status_code = 400
    code = "invalid_webhook_payload"
    message = "The webhook payload is not valid."

    def __init__(self, model: type[BaseModel], problems: list[dict[str, str]]) -> None:
        super().__init__()
        self.model = model
        self.problems = problems


def _invalid_signature() -> Forbidden:
    return Forbidden("The request could not be verified.", code="invalid_signature")


@dataclass(frozen=True)
class VerifiedWebhook:
    """A request proven to come from Twilio: the URL it signed and the form fields it sent.

    ``params`` may hold personal data (numbers, message text) and stays out of ``repr``.
    """

    url: str
    params: dict[str, list[str]] = field(repr=False)
    drill: bool = False
    idempotency_token: str | None = None


def _form_fields(body: bytes) -> dict[str, list[str]]:
    """Every field of a urlencoded body, in order, repeated keys kept; ``ValueError`` if malformed."""
    text = body.decode("utf-8")  # UnicodeDecodeError is a ValueError
    fields: dict[str, list[str]] = {}
    pairs = parse_qsl(
        text, keep_blank_values=True, strict_parsing=False, errors="strict", max_num_fields=_MAX_FIELDS
    )
    for name, value in pairs:
        fields.setdefault(name, []).append(value)
    return fields


async def _read_body(request: Request) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise StarletteHTTPException(413, "Request body too large.")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise StarletteHTTPException(413, "Request body too large.")
        chunks.append(chunk)
    return b"".join(chunks)


async def verified_twilio_request(request: Request) -> VerifiedWebhook:
    """Verify the request's Twilio signature (403 otherwise) and return what was signed.

    Cached on the request, so using it as a router dependency and again through
    :func:`twilio_webhook` verifies once.
    """
    cached = getattr(request.state, _STATE_KEY, None)
    if isinstance(cached, VerifiedWebhook):
        return cached
    if request.method != "POST":
        raise StarletteHTTPException(405, "Method Not Allowed", headers={"Allow": "POST"})
    settings: Settings = request.app.state.settings
    tokens = settings.twilio_auth_tokens()
    if not tokens:
        log.error("Twilio webhook refused: no TWILIO_AUTH_TOKEN is configured")
        raise _invalid_signature()
    signature = request.headers.get(SIGNATURE_HEADER)
    if not signature:
        log.warning("Twilio webhook refused: no signature", extra={"reason": "missing_signature"})
        raise _invalid_signature()
    content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if content_type not in ("", _FORM_TYPE):
        log.warning("Twilio webhook refused: not a form", extra={"reason": "content_type"})
        raise _invalid_signature()
    body = await _read_body(request)
    try:
        params = _form_fields(body)
        raw_path = request.scope.get("raw_path")
        path = raw_path.decode("latin-1") if isinstance(raw_path, bytes) else request.scope["path"]
        query = request.scope.get("query_string", b"").decode("latin-1")
        url = rebuild_url(settings.public_url, path, query)
    except ValueError:
        log.warning("Twilio webhook refused: malformed request", extra={"reason": "malformed"})
        raise _invalid_signature() from None
    if not verify(url, params, signature, tokens):
        log.warning("Twilio webhook refused: invalid signature", extra={"reason": "invalid_signature"})
        raise _invalid_signature()
    query_params = parse_qs(query, keep_blank_values=True)
    verified = VerifiedWebhook(
        url=url,
        params=params,
        drill=query_params.get(DRILL_QUERY_PARAM, []) == ["1"],
        idempotency_token=request.headers.get("i-twilio-idempotency-token"),
    )
    setattr(request.state, _STATE_KEY, verified)
    return verified


#: Router-level guard: ``APIRouter(dependencies=[TwilioSignature])`` verifies every route first.
TwilioSignature: Any = Depends(verified_twilio_request)


def webhook_context(request: Request) -> VerifiedWebhook:
    """The verified webhook of this request (URL, drill flag, idempotency token).

    Raises ``RuntimeError`` if called on a request no Twilio dependency has verified.
    """
    verified = getattr(request.state, _STATE_KEY, None)
    if not isinstance(verified, VerifiedWebhook):
        raise RuntimeError("webhook_context() needs TwilioSignature or twilio_webhook() on the route")
    return verified


@functools.cache
def _parser(model: type[M]) -> Callable[[VerifiedWebhook], Awaitable[M]]:
    # One function per model, so FastAPI's per-request dependency cache recognises repeats.
    async def parse(verified: Annotated[VerifiedWebhook, Depends(verified_twilio_request)]) -> M:
        try:
            return parse_form(model, verified.params)
        except ValidationError as exc:
            problems = [
                {"loc": ".".join(str(part) for part in err.get("loc", ())), "type": str(err.get("type", ""))}
                for err in exc.errors(include_input=False, include_url=False, include_context=False)
            ]
            log.warning(
                "Twilio webhook payload invalid",
                extra={"model": model.__name__, "problems": problems},
            )
            raise InvalidWebhookPayload(model, problems) from None
        except TypeError:
            raise InvalidWebhookPayload(model, [{"loc": "", "type": "type_error"}]) from None

    parse.__name__ = f"twilio_{model.__name__}"
    return parse


def twilio_webhook(model: type[M]) -> Any:
    """``Depends`` yielding ``model`` parsed from a verified Twilio webhook.

    ``event: Annotated[IncomingCall, twilio_webhook(IncomingCall)]``. 403 on a bad signature
    (nothing else runs), :class:`InvalidWebhookPayload` on a payload that does not validate.
    """
    return Depends(_parser(model))
