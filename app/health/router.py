from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse, Response

from app.db.session import get_database
from app.metrics import scrape_access

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    """Ready to serve: the database answers (and, once configured, the keyring is usable)."""
    checks = {"database": await get_database(request).ping()}
    for name, check in getattr(request.app.state, "readiness_checks", {}).items():
        checks[name] = bool(await check())
    ready = all(checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "unavailable", "checks": checks}, status_code=200 if ready else 503
    )


@router.get(
    "/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}, 401: {}, 404: {}}
)
async def metrics(request: Request) -> Response:
    """Prometheus metrics: counts and latencies only, nothing about any person. With
    `HOTLINE_METRICS_TOKEN` set, only for `Authorization: Bearer <token>`; in production without
    one, 404."""
    state = request.app.state
    refused = scrape_access(state.settings, request.headers.get("authorization"))
    if refused == 401:
        raise HTTPException(401, "A bearer token is required.", headers={"WWW-Authenticate": "Bearer"})
    if refused is not None:
        raise HTTPException(refused, "Not Found")  # as for a path that does not exist
    body, content_type = await state.metrics.render(state.database, state.clock)
    return Response(content=body, media_type=content_type)
