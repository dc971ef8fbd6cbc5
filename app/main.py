"""The FastAPI application factory and its lifespan (database, checks, jobs runner)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import stat
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.staticfiles import StaticFiles

import app.audit.jobs
import app.calls.jobs
import app.chats.jobs
import app.keys.jobs
import app.referrals.jobs
import app.reports.jobs
import app.retention.jobs
import app.routing.jobs  # noqa: F401 — registers offer timeouts and escalations
from app.access.broker import AccessBroker
from app.access.router import router as break_glass_router
from app.accounts.admin_router import router as users_router
from app.accounts.auth import AuthService
from app.accounts.router import router as accounts_router
from app.audit import service as audit
from app.audit.router import router as audit_router
from app.calls.api import router as telephony_router
from app.calls.intake import call_intake
from app.calls.router import install as install_voice_webhooks
from app.cases.router import router as cases_router
from app.chats.api import router as chats_router
from app.chats.router import signed as messaging_webhooks
from app.chats.spool import Spool
from app.clock import Clock, SystemClock
from app.console.router import router as console_router
from app.db import migrate
from app.db.engine import Database, create_database
from app.db.grants import service_role_problems
from app.errors import install_error_handlers
from app.events.hub import LiveHub, listen_postgres
from app.events.router import router as events_router
from app.health.router import router as health_router
from app.jobs.runner import JobRunner
from app.keys.service import KeyCustodyError, load_or_create_keys, recorded_as_development
from app.keys.store import KeyStore, Sealer
from app.logging import configure_logging
from app.metrics import Metrics
from app.middleware import DeadlineMiddleware, RequestContextMiddleware
from app.referrals.router import router as organisations_router
from app.reports.api import router as reports_router
from app.retention.router import router as retention_router
from app.rights.router import router as rights_router
from app.security_headers import SecurityHeadersMiddleware
from app.settings import Settings, load_settings
from app.volunteers.router import router as volunteers_router
from crypto.keyfile import KeyMaterial
from telephony.rest import TwilioRestClient

log = logging.getLogger("hotline")


API_PREFIX = "/api/v1"
API_ROUTERS = (
    accounts_router,
    cases_router,
    break_glass_router,
    audit_router,
    users_router,
    volunteers_router,
    telephony_router,
    chats_router,
    rights_router,
    retention_router,
    reports_router,
    organisations_router,
    events_router,
)


class StartupError(RuntimeError):
    """The service must not start; the message is one line for the operator."""


async def startup_checks(settings: Settings, database: Database) -> None:
    problems = settings.production_problems()
    if problems:
        raise StartupError("; ".join(problems))
    await database.assert_sqlite_pragmas()
    if not await migrate.is_at_head(database):
        raise StartupError("the database schema is not at the latest revision: run `hotline db upgrade`")
    if settings.is_production:
        problems = await service_role_problems(database)
        if problems:
            raise StartupError("; ".join(problems))


async def open_keys(settings: Settings, database: Database, clock: Clock) -> KeyMaterial:
    """Load the key file (creating it on a first development start) and audit a creation."""
    async with database.sessionmaker() as session, session.begin():
        try:
            keys, created = await load_or_create_keys(
                settings.keyring_file, production=settings.is_production, session=session
            )
        except KeyCustodyError as exc:
            raise StartupError(str(exc)) from None
        if not created and settings.is_production:
            # A session of its own, as `unknown_keks` uses: on SQLite a read in the outer transaction
            # would hold the write lock against theirs.
            async with database.sessionmaker() as reading:
                recorded = await recorded_as_development(reading, keys)
            if recorded:
                raise StartupError(
                    f"key file {settings.keyring_file} was created by a development start (the access "
                    f"log recorded its signing key {recorded}); production needs keys made with "
                    "`hotline keys init`"
                )
        if not created:
            from app.keys.rotation import unknown_keks

            missing = await unknown_keks(database, keys)
            if missing:
                raise StartupError(
                    f"the database has data keys wrapped by {', '.join(missing)}, which the key file "
                    f"{settings.keyring_file} lacks (or destroyed): restore the right key file"
                )
        if created:
            audit.record(
                session,
                clock,
                actor=audit.Actor("system:startup"),
                action="keys.file_created",
                object_type="key_file",
                details={"development": True, "signing_key": keys.signer.key_id},
            )
    return keys


def twilio_client(settings: Settings) -> TwilioRestClient | None:
    """The REST client the jobs runner uses, when Twilio credentials are configured."""
    if not settings.twilio_account_sid:
        return None
    if settings.twilio_api_key and settings.twilio_api_secret:
        return TwilioRestClient(
            settings.twilio_account_sid,
            api_key=settings.twilio_api_key,
            api_secret=settings.twilio_api_secret.get_secret_value(),
            api_base_url=settings.twilio_api_url,
        )
    if settings.twilio_auth_token:
        return TwilioRestClient(
            settings.twilio_account_sid,
            auth_token=settings.twilio_auth_token.get_secret_value(),
            api_base_url=settings.twilio_api_url,
        )
    return None


def key_file_readiness(path: str) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        try:
            mode = os.stat(path).st_mode
        except OSError:
            return False
        return stat.S_ISREG(mode) and not mode & 0o077

    return check


@contextlib.contextmanager
def streams_end_on_exit_signal(hub: LiveHub) -> Iterator[None]:
    """uvicorn waits for open responses before it shuts the app down, and a live-event stream never
    ends by itself: when uvicorn's own SIGTERM/SIGINT handler is installed, chain it so the streams
    end first (browsers reconnect to another worker)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    loop = asyncio.get_running_loop()
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    chained = {}
    for sig, handler in previous.items():
        if callable(handler) and getattr(handler, "__name__", "") == "handle_exit":

            def on_exit(signum: int, frame: Any, handler: Any = handler) -> None:
                loop.call_soon_threadsafe(hub.close)
                handler(signum, frame)

            chained[sig] = on_exit
            signal.signal(sig, on_exit)
    try:
        yield
    finally:
        for sig in chained:
            if signal.getsignal(sig) is chained[sig]:
                signal.signal(sig, previous[sig])


def create_app(
    settings: Settings | None = None,
    *,
    clock: Clock | None = None,
    database: Database | None = None,
    keys: KeyMaterial | None = None,
    run_jobs: bool | None = None,
    freeze_gc: bool = False,
) -> FastAPI:
    settings = settings or load_settings()
    clock = clock or SystemClock()
    owns_database = database is None
    database = database or create_database(
        settings.database_url, sqlite_busy_timeout_ms=settings.sqlite_busy_timeout_ms
    )
    run_jobs = settings.jobs_enabled if run_jobs is None else run_jobs

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await startup_checks(settings, database)
        material = keys or await open_keys(settings, database, clock)
        keystore = KeyStore(material, settings.keyring_file)
        sealer = Sealer(keystore, clock, cache_ttl=settings.data_key_cache_seconds)
        app.state.keys = keystore
        app.state.spool = Spool(settings.spool_dir, keystore)
        app.state.call_intake = call_intake(lambda: app.state.database, sealer)
        app.state.sealer = sealer
        app.state.broker = AccessBroker(sealer, clock)
        app.state.services.update(
            keys=keystore, sealer=sealer, broker=app.state.broker, spool=app.state.spool
        )
        app.state.auth = AuthService(settings, clock, keystore, sealer, app.state.broker)
        telephony = twilio_client(settings)
        if telephony is not None:
            app.state.services["telephony"] = telephony
        app.state.readiness_checks["keyring"] = key_file_readiness(settings.keyring_file)
        stop = asyncio.Event()
        runner_task: asyncio.Task[None] | None = None
        if run_jobs:
            runner = JobRunner(
                database,
                clock,
                lease_seconds=settings.jobs_lease_seconds,
                poll_seconds=settings.jobs_poll_seconds,
                batch_size=settings.jobs_concurrency,
                services=app.state.services,
            )
            app.state.job_runner = runner
            runner_task = asyncio.create_task(runner.run_forever(stop), name="jobs-runner")
        database.hub.closing.clear()
        listener: asyncio.Task[None] | None = None
        if not database.is_sqlite:
            listener = asyncio.create_task(
                listen_postgres(database.hub, database.listen_conninfo(), stop), name="live-events"
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(database.hub.listening.wait(), timeout=5)
        # What start-up built (routes, models, compiled prompts) lives as long as the process: keep it
        # out of the collector's full passes, which otherwise scan it all and stall requests.
        if freeze_gc:
            gc.collect()
            gc.freeze()
        log.info("service started", extra={"env": settings.env.value, "database": database.dialect})
        try:
            with streams_end_on_exit_signal(database.hub):
                yield
        finally:
            stop.set()
            await app.state.call_intake.close()
            database.hub.close()
            if listener is not None:
                listener.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await listener
            if runner_task is not None:
                try:
                    await asyncio.wait_for(runner_task, timeout=10)
                except TimeoutError:
                    runner_task.cancel()
            if telephony is not None:
                await telephony.aclose()
            if owns_database:
                await database.dispose()
            log.info("service stopped")

    docs = settings.docs_open
    app = FastAPI(
        title="Hotline case intake",
        # Any JSON route can meet a body that is not JSON (or not UTF-8): a clear 400, documented.
        responses={400: {"description": "The request body could not be parsed."}},
        version="0.1.0",
        lifespan=lifespan,
        debug=settings.debug and not settings.is_production,
        openapi_url="/openapi.json" if docs else None,
        docs_url="/docs" if docs else None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.clock = clock
    app.state.database = database
    app.state.services = {"settings": settings, "database": database}
    app.state.metrics = Metrics()
    app.state.readiness_checks = {}
    install_error_handlers(app)
    app.add_middleware(DeadlineMiddleware, seconds=settings.api_deadline_seconds)
    app.add_middleware(SecurityHeadersMiddleware, hsts=settings.public_url.startswith("https://"))
    app.add_middleware(RequestContextMiddleware)
    # Twilio's webhooks first: routes are matched in order, and a surge is all webhooks.
    install_voice_webhooks(app)
    app.include_router(messaging_webhooks)
    app.include_router(health_router)
    api = APIRouter(prefix=API_PREFIX)
    for router in API_ROUTERS:
        api.include_router(router)
    app.include_router(api)
    app.include_router(console_router)
    static = Path(__file__).parent / "static"
    app.mount("/console/static", StaticFiles(directory=static / "console"), name="console-static")
    app.mount("/static", StaticFiles(directory=static), name="static")
    return app


def app_factory() -> FastAPI:
    """Entry point for uvicorn workers (`--factory`): settings from the environment."""
    settings = load_settings()
    configure_logging(settings.log_level)
    return create_app(settings, freeze_gc=True)
