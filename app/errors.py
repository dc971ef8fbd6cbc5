"""Expected failures carry their status; one handler turns them into JSON.

Error bodies never echo what the client sent: FastAPI's default 422 handler returns the offending
input, which could be a caller's name or number, so it is replaced with locations and error types.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.logging import request_id_var

log = logging.getLogger("hotline.errors")


class DomainError(Exception):
    status_code = 400
    code = "bad_request"
    message = "The request cannot be processed."

    def __init__(self, message: str | None = None, *, code: str | None = None) -> None:
        super().__init__(message or self.message)
        if message:
            self.message = message
        if code:
            self.code = code


class NotFound(DomainError):
    """Also used for records the principal may not see: forbidden looks exactly like missing."""

    status_code = 404
    code = "not_found"
    message = "Not found."


class Unauthenticated(DomainError):
    status_code = 401
    code = "unauthenticated"
    message = "Sign in first."


class Forbidden(DomainError):
    status_code = 403
    code = "forbidden"
    message = "Not allowed."


class Conflict(DomainError):
    status_code = 409
    code = "conflict"
    message = "The record changed; reload and try again."


class Erased(DomainError):
    """The data was crypto-shredded (retention policy or the caller's erasure request)."""

    status_code = 410
    code = "erased"


class InvalidInput(DomainError):
    status_code = 422
    code = "invalid_input"


class Unavailable(DomainError):
    status_code = 503
    code = "unavailable"
    message = "Temporarily unavailable."


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"code": code, "message": message, **extra}
    request_id = request_id_var.get()
    if request_id:
        body["request_id"] = request_id
    return {"error": body}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(DomainError)
    async def _domain(_request: Request, exc: DomainError) -> JSONResponse:
        headers = {"Retry-After": str(exc.retry_after)} if hasattr(exc, "retry_after") else None
        return JSONResponse(error_body(exc.code, exc.message), status_code=exc.status_code, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [
            {"loc": [str(part) for part in err.get("loc", ())], "type": err.get("type", "invalid")}
            for err in exc.errors()
        ]
        return JSONResponse(
            error_body("invalid_input", "The request is not valid.", problems=problems), status_code=422
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else "Request failed."
        return JSONResponse(
            error_body(f"http_{exc.status_code}", message), status_code=exc.status_code, headers=exc.headers
        )

    from sqlalchemy.exc import InterfaceError, OperationalError
    from sqlalchemy.exc import TimeoutError as PoolTimeout

    @app.exception_handler(OperationalError)
    @app.exception_handler(InterfaceError)
    @app.exception_handler(PoolTimeout)
    async def _database_unavailable(_request: Request, exc: Exception) -> JSONResponse:
        # The database is down, unreachable or out of connections: say so, plainly, and retryably.
        log.error("database unavailable", extra={"error": type(exc).__name__})
        return JSONResponse(
            error_body("unavailable", "The database is unavailable; try again shortly."),
            status_code=503,
            headers={"Retry-After": "5"},
        )

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled error", exc_info=exc)
        return JSONResponse(error_body("internal", "Internal error."), status_code=500)
