"""Request id and access log as plain ASGI middleware (safe for streaming responses)."""

from __future__ import annotations

import logging
import re
import time
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.logging import request_id_var

log = logging.getLogger("hotline.http")
_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope.get("headers") or []).get(b"x-request-id", b"").decode("latin-1")
        request_id = incoming if _SAFE_REQUEST_ID.match(incoming) else uuid.uuid4().hex
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            route = scope.get("route")
            # The route template, never the raw path or query string.
            path = getattr(route, "path", None) or "unmatched"
            metrics = getattr(scope.get("app"), "state", None)
            metrics = getattr(metrics, "metrics", None)
            if metrics is not None:
                full = path
                if str(scope.get("path", "")).startswith("/api/v1/") and not path.startswith("/api/v1"):
                    full = "/api/v1" + path
                metrics.observe(full, str(scope.get("method")), time.perf_counter() - started)
            log.info(
                "request",
                extra={
                    "method": scope.get("method"),
                    "route": path,
                    "status": status,
                    "ms": round((time.perf_counter() - started) * 1000, 1),
                },
            )
            request_id_var.reset(token)


class DeadlineMiddleware:
    """API requests that have not started answering within `seconds` get a clear 503 (a database
    that is down or very slow must not leave the console hanging); the work is cancelled, so
    nothing it did is committed. Streams (server-sent events) are unaffected once started."""

    def __init__(self, app: ASGIApp, *, seconds: float, prefix: str = "/api/") -> None:
        self.app = app
        self.seconds = seconds
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not str(scope.get("path", "")).startswith(self.prefix):
            await self.app(scope, receive, send)
            return
        import asyncio
        import json

        started = asyncio.Event()

        async def watch(message: Message) -> None:
            if message["type"] == "http.response.start":
                started.set()
            await send(message)

        async def run() -> None:
            await self.app(scope, receive, watch)

        task: asyncio.Task[None] = asyncio.create_task(run())
        waiter = asyncio.create_task(started.wait())
        done, _ = await asyncio.wait(
            {task, waiter}, timeout=self.seconds, return_when=asyncio.FIRST_COMPLETED
        )
        if not done:
            task.cancel()
            waiter.cancel()
            log.error("request deadline exceeded", extra={"seconds": self.seconds})
            body = json.dumps(
                {
                    "error": {
                        "code": "unavailable",
                        "message": "The service is temporarily unavailable; try again shortly.",
                        "request_id": request_id_var.get(),
                    }
                }
            ).encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": 503,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"retry-after", b"5"),
                        (b"cache-control", b"no-store"),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        waiter.cancel()
        await task
