"""Twilio's webhook delivery engine: signing, headers, timeouts, the one retry, connection overrides.

A request is signed with ``twilio.request_validator.RequestValidator`` over the exact URL sent
(fragment removed) and the POST parameters, and carries the headers Twilio sends.  Twilio's
defaults are reproduced: a timeout or refused connection is retried once with the *same*
``I-Twilio-Idempotency-Token``; an HTTP error is not retried.  The ``#ct=…&rt=…&tt=…&rc=…&rp=…``
fragment overrides those defaults per URL, as on Twilio.

A request that times out is *not* cancelled: like Twilio's, it stays in flight and the app's
handler runs to completion, so the retry can overlap it (the at-least-once case the app must
deduplicate).  Works against a real base URL or an in-process ASGI app (``httpx.ASGITransport``).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from dataclasses import dataclass, field, replace
from urllib.parse import parse_qsl, urlencode

import httpx
from starlette.types import ASGIApp
from twilio.request_validator import RequestValidator

from telephony.fake.documents import HTTP_CONNECTION_FAILURE, HTTP_RETRIEVAL_FAILURE, INVALID_URL
from telephony.fake.store import EventLog

USER_AGENT = "TwilioProxy/1.1"


@dataclass(frozen=True)
class ConnectionOverrides:
    """Per-URL delivery settings (Twilio "connection overrides"), in seconds."""

    connect_timeout: float = 5.0
    read_timeout: float = 15.0
    total_timeout: float = 15.0
    retry_count: int = 1
    retry_policy: frozenset[str] = field(default_factory=lambda: frozenset({"ct", "rt"}))

    def with_fragment(self, fragment: str) -> ConnectionOverrides:
        """Apply a ``ct=1000&rt=3000&tt=9000&rc=2&rp=ct,rt,5xx`` fragment (ms; Twilio's ranges)."""
        if not fragment:
            return self
        values = dict(parse_qsl(fragment, keep_blank_values=True))
        updated = self

        def millis(key: str, low: int, high: int) -> float | None:
            if key not in values or not values[key].isdigit():
                return None
            return min(max(int(values[key]), low), high) / 1000

        if (ct := millis("ct", 100, 10000)) is not None:
            updated = replace(updated, connect_timeout=ct)
        if (rt := millis("rt", 100, 15000)) is not None:
            updated = replace(updated, read_timeout=rt)
        if (tt := millis("tt", 100, 15000)) is not None:
            updated = replace(updated, total_timeout=tt)
        if values.get("rc", "").isdigit():
            updated = replace(updated, retry_count=min(int(values["rc"]), 5))
        if "rp" in values:
            updated = replace(
                updated, retry_policy=frozenset(p.strip() for p in values["rp"].split(",") if p)
            )
        return updated

    def retries(self, reason: str) -> bool:
        """Whether the policy retries after ``reason`` (``ct``, ``rt``, ``4xx`` or ``5xx``)."""
        return "all" in self.retry_policy or reason in self.retry_policy


@dataclass(frozen=True)
class WebhookResult:
    """What one logical webhook delivery ended with."""

    url: str
    method: str
    params: dict[str, str]
    token: str
    attempts: int
    status: int | None = None
    content_type: str = ""
    body: bytes = b""
    failure: int | None = None  # 11200 / 11205 when Twilio would raise an alert

    @property
    def ok(self) -> bool:
        """A 2xx answer arrived."""
        return self.status is not None and 200 <= self.status < 300


def sign(auth_token: str, url: str, params: dict[str, str]) -> str:
    """``X-Twilio-Signature`` for a POST to ``url`` with form ``params`` (GET: pass ``{}``)."""
    return str(RequestValidator(auth_token).compute_signature(url, params))


class WebhookSender:
    """Sends signed webhooks like Twilio and records each attempt in the event log."""

    def __init__(
        self,
        auth_token: str,
        events: EventLog,
        *,
        app: ASGIApp | None = None,
        defaults: ConnectionOverrides | None = None,
    ) -> None:
        self.auth_token = auth_token
        self.events = events
        self.defaults = defaults or ConnectionOverrides()
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False) if app is not None else None
        # The client's own timeout only bounds orphaned requests; the delivery timeouts are
        # enforced around each attempt so a timed-out request can keep running.
        self._client = httpx.AsyncClient(transport=transport, timeout=60.0, follow_redirects=False)
        self._orphans: set[asyncio.Task[httpx.Response]] = set()

    async def send(
        self,
        url: str,
        params: dict[str, str],
        *,
        method: str = "POST",
        purpose: str,
        sid: str | None = None,
        voice: bool = True,
    ) -> WebhookResult:
        """Deliver one webhook (with Twilio's retry) and return how it ended."""
        target, _, fragment = url.partition("#")
        overrides = self.defaults.with_fragment(fragment)
        method = method.upper() if method.upper() in ("GET", "POST") else "POST"
        token = str(uuid.uuid4())
        if method == "GET":
            # GET webhooks carry the parameters in the query; the signature covers that URL.
            target = f"{target}{'&' if '?' in target else '?'}{urlencode(params)}"
            signature, content = sign(self.auth_token, target, {}), None
        else:
            signature, content = sign(self.auth_token, target, params), urlencode(params).encode()
        headers = {
            "X-Twilio-Signature": signature,
            "I-Twilio-Idempotency-Token": token,
            "User-Agent": USER_AGENT,
            "Accept": "*/*",
            "Accept-Encoding": "gzip",
            "X-Home-Region": "us1",
        }
        if content is not None:
            headers["Content-Type"] = (
                "application/x-www-form-urlencoded; charset=UTF-8"
                if voice
                else "application/x-www-form-urlencoded"
            )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + overrides.total_timeout
        attempts = 0
        while True:
            attempts += 1
            # The answer must start within the read timeout (connecting is bounded separately
            # by httpx, which reports it as a connect error).
            budget = max(0.001, min(overrides.read_timeout, deadline - loop.time()))
            sent_at = loop.time()
            reason, response = await self._attempt(method, target, headers, content, budget, overrides)
            status = response.status_code if response is not None else None
            self.events.add(
                "webhook",
                sid,
                url=url.partition("#")[0],
                method=method,
                purpose=purpose,
                status=status,
                attempt=attempts,
                token=token,
                outcome=reason or "answered",
                elapsed=round(loop.time() - sent_at, 4),  # how long the app took to answer
            )
            if response is not None and reason is None:
                return WebhookResult(
                    url=url.partition("#")[0],
                    method=method,
                    params=params,
                    token=token,
                    attempts=attempts,
                    status=status,
                    content_type=response.headers.get("content-type", ""),
                    body=response.content,
                    failure=None if response.is_success else HTTP_RETRIEVAL_FAILURE,
                )
            can_retry = (
                attempts <= overrides.retry_count
                and reason is not None
                and overrides.retries(reason)
                and loop.time() < deadline
            )
            if not can_retry:
                failure = {
                    "4xx": HTTP_RETRIEVAL_FAILURE,
                    "5xx": HTTP_RETRIEVAL_FAILURE,
                    "url": INVALID_URL,
                }.get(reason or "", HTTP_CONNECTION_FAILURE)
                return WebhookResult(
                    url=url.partition("#")[0],
                    method=method,
                    params=params,
                    token=token,
                    attempts=attempts,
                    status=status,
                    content_type=response.headers.get("content-type", "") if response is not None else "",
                    body=response.content if response is not None else b"",
                    failure=failure,
                )

    async def _attempt(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        content: bytes | None,
        budget: float,
        overrides: ConnectionOverrides,
    ) -> tuple[str | None, httpx.Response | None]:
        """One HTTP attempt → (failure reason or None, response or None)."""
        timeout = httpx.Timeout(max(budget, 60.0), connect=overrides.connect_timeout)
        task = asyncio.ensure_future(
            self._client.request(method, url, headers=headers, content=content, timeout=timeout)
        )
        done, _ = await asyncio.wait({task}, timeout=budget)
        if not done:
            # Twilio gives up on the answer but the app keeps working on the request.
            self._orphans.add(task)
            task.add_done_callback(self._forget_orphan)
            return "rt", None
        try:
            response = task.result()
        except (httpx.ConnectError, httpx.ConnectTimeout):
            return "ct", None
        except (httpx.UnsupportedProtocol, httpx.InvalidURL, ValueError):
            return "url", None
        except httpx.TransportError:
            return "rt", None
        if response.status_code >= 500:
            return "5xx", response
        if response.status_code >= 400:
            return "4xx", response
        return None, response

    def _forget_orphan(self, task: asyncio.Task[httpx.Response]) -> None:
        self._orphans.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved so asyncio does not warn; the outcome is irrelevant

    async def aclose(self, grace: float = 5.0) -> None:
        """Let requests Twilio gave up on finish (bounded), then close the HTTP client."""
        if self._orphans:
            _, pending = await asyncio.wait(set(self._orphans), timeout=grace)
            for task in pending:
                task.cancel()
            for task in pending:
                with contextlib.suppress(BaseException):
                    await task
        await self._client.aclose()
