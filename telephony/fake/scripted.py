"""A stand-in for our app: answers a fixed script of TwiML per path and records every webhook.

Used to test the fake itself (transcripts, Twilio's rules) and in drills that need a
predictable counterpart.  Each request's ``X-Twilio-Signature`` is checked with twilio's
``RequestValidator`` against the URL as received, as a real Twilio customer would.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send
from twilio.request_validator import RequestValidator


@dataclass(frozen=True)
class Reply:
    """One scripted HTTP answer; ``hold`` makes the app wait for the event before answering."""

    body: str | bytes = "<Response/>"
    status: int = 200
    content_type: str | None = "text/xml"
    hold: asyncio.Event | None = None


@dataclass(frozen=True)
class Recorded:
    """A request the scripted app received."""

    method: str
    path: str
    url: str
    form: dict[str, str]
    headers: dict[str, str]
    signature_valid: bool

    def __getitem__(self, key: str) -> str:
        return self.form[key]


Responder = Callable[[Recorded], Awaitable[str | Reply]]
Step = str | Reply | Responder


@dataclass
class _Script:
    steps: list[Step] = field(default_factory=list)
    served: int = 0


class ScriptedApp:
    """ASGI app: ``app.on("/voice", twiml1, twiml2)`` answers successive requests to ``/voice``
    with those steps (the last one repeats); unknown paths answer 404."""

    def __init__(self, auth_token: str, public_url: str = "https://hotline.example.org") -> None:
        self.public_url = public_url.rstrip("/")
        self.requests: list[Recorded] = []
        self._validator = RequestValidator(auth_token)
        self._scripts: dict[str, _Script] = {}

    def url(self, path: str) -> str:
        """The public URL of ``path`` (what to configure on numbers and put in TwiML)."""
        return f"{self.public_url}{path}"

    def on(self, path: str, *steps: Step) -> ScriptedApp:
        """Script the answers for ``path`` (a TwiML string, a :class:`Reply`, or an async callable)."""
        self._scripts[path] = _Script(list(steps))
        return self

    def to(self, path: str) -> list[Recorded]:
        """Requests received on ``path``."""
        return [r for r in self.requests if r.path == path]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        form = {key: value for key, value in (await request.form()).items() if isinstance(value, str)}
        url = str(request.url)
        signature = request.headers.get("x-twilio-signature", "")
        params = form if request.method == "POST" else {}
        recorded = Recorded(
            method=request.method,
            path=request.url.path,
            url=url,
            form=form if request.method == "POST" else dict(request.query_params),
            headers={k.lower(): v for k, v in request.headers.items()},
            signature_valid=bool(signature) and self._validator.validate(url, params, signature),
        )
        self.requests.append(recorded)
        response = await self._answer(recorded)
        await response(scope, receive, send)

    async def _answer(self, recorded: Recorded) -> Response:
        if not recorded.signature_valid:
            return Response("invalid signature", status_code=403)
        script = self._scripts.get(recorded.path)
        if script is None or not script.steps:
            return Response("not found", status_code=404)
        step = script.steps[min(script.served, len(script.steps) - 1)]
        script.served += 1
        if callable(step):
            step = await step(recorded)
        reply = Reply(step) if isinstance(step, str) else step
        if reply.hold is not None:
            await reply.hold.wait()
        headers = {"content-type": reply.content_type} if reply.content_type else None
        # No media_type: Starlette then sends exactly the Content-Type given (or none at all).
        return Response(reply.body, status_code=reply.status, headers=headers)


def twiml(*verbs: str) -> str:
    """``<?xml …?><Response>…</Response>`` around raw verb markup."""
    return '<?xml version="1.0" encoding="UTF-8"?><Response>' + "".join(verbs) + "</Response>"
