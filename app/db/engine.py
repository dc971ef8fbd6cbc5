"""Engine construction for the two supported databases.

* SQLite (embedded default): aiosqlite, WAL, `synchronous=FULL`, `secure_delete=ON`, a busy timeout,
  and every transaction opened with `BEGIN IMMEDIATE` so writers queue on the lock up front instead
  of failing on upgrade from a read lock. The pragmas are read back and asserted at start.
* PostgreSQL: psycopg 3 (async), which also serves LISTEN/NOTIFY.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from app.events.hub import HUB_KEY, LiveHub

R = TypeVar("R")


class DatabaseConfigError(ValueError):
    """The database URL or its settings cannot be used; the message is one line for operators."""


SQLITE_PRAGMAS_EXPECTED = {"journal_mode": "wal", "synchronous": 2, "secure_delete": 1, "foreign_keys": 1}


def async_url(raw: str) -> URL:
    """Map an operator's `sqlite:///PATH` / `postgresql://…` to the async driver the app uses."""
    try:
        url = make_url(raw)
    except ArgumentError as exc:
        raise DatabaseConfigError("HOTLINE_DATABASE_URL is not a valid database URL") from exc
    backend = url.get_backend_name()
    if backend == "sqlite":
        if not url.database or url.database == ":memory:":
            raise DatabaseConfigError("HOTLINE_DATABASE_URL: SQLite needs a file path (sqlite:///PATH)")
        return url.set(drivername="sqlite+aiosqlite")
    if backend in {"postgresql", "postgres"}:
        return url.set(drivername="postgresql+psycopg")
    raise DatabaseConfigError("HOTLINE_DATABASE_URL must start with sqlite:/// or postgresql://")


def sync_url(raw: str) -> URL:
    """The same database through a synchronous driver (CLI tools, admin commands in tests)."""
    url = async_url(raw)
    return url.set(drivername="sqlite" if url.get_backend_name() == "sqlite" else "postgresql+psycopg")


def _install_sqlite_hooks(engine: AsyncEngine | Engine, busy_timeout_ms: int, path: str) -> None:
    sync_engine = engine.sync_engine if isinstance(engine, AsyncEngine) else engine

    @event.listens_for(sync_engine, "connect")
    def _configure(dbapi_connection: Any, _record: Any) -> None:
        # The file holds sealed data and its metadata: owner-only, like the key file.
        with contextlib.suppress(OSError):
            os.chmod(path, 0o600)
        # Take transaction control away from the driver so we can issue BEGIN IMMEDIATE ourselves.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = FULL")
        cursor.execute("PRAGMA secure_delete = ON")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(sync_engine, "begin")
    def _begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


@dataclass
class Database:
    """The engine and session factory one process uses."""

    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    # Live console events of this process; its sessions deliver to it after commit (SQLite).
    hub: LiveHub = field(default_factory=LiveHub)
    sqlite_busy_timeout_ms: int = 5000
    _writer: tuple[Engine, ThreadPoolExecutor] | None = None

    async def run_in_writer(self, work: Callable[[Connection], R]) -> R:
        """Run `work` in one transaction on this process's writer thread, committed on return.

        One thread hop for the whole transaction, where the async driver pays one per statement
        (aiosqlite runs every call on its own thread): for group commits (`app.db.batch`). The
        writer is one synchronous connection with the same settings and hooks as the engine."""
        if self._writer is None:
            url = self.engine.url.set(drivername="sqlite" if self.is_sqlite else "postgresql+psycopg")
            kwargs: dict[str, Any] = {"pool_pre_ping": True, "pool_size": 1, "max_overflow": 0}
            if not self.is_sqlite:
                kwargs["connect_args"] = {"connect_timeout": 3}
            engine = create_engine(url, **kwargs)
            if self.is_sqlite:
                _install_sqlite_hooks(engine, self.sqlite_busy_timeout_ms, url.database or "")
            self._writer = (engine, ThreadPoolExecutor(1, thread_name_prefix="db-writer"))
        engine, thread = self._writer

        def transaction() -> R:
            with engine.begin() as connection:
                return work(connection)

        return await asyncio.get_running_loop().run_in_executor(thread, transaction)

    def listen_conninfo(self) -> str:
        """A libpq connection string for the LISTEN connection (PostgreSQL only)."""
        url = self.engine.url.set(drivername="postgresql")
        return url.render_as_string(hide_password=False)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    async def ping(self, timeout: float = 2.0) -> bool:
        """True when a query round-trips within `timeout` seconds."""
        try:
            async with asyncio.timeout(timeout):
                async with self.engine.connect() as conn:
                    await conn.execute(text("SELECT 1"))
            return True
        except Exception:
            return False

    async def assert_sqlite_pragmas(self) -> None:
        """Refuse to serve if SQLite did not accept the durability and secure-delete settings."""
        if not self.is_sqlite:
            return
        async with self.engine.connect() as conn:
            for pragma, expected in SQLITE_PRAGMAS_EXPECTED.items():
                value = (await conn.exec_driver_sql(f"PRAGMA {pragma}")).scalar()
                if str(value).lower() != str(expected):
                    raise DatabaseConfigError(f"SQLite refused PRAGMA {pragma} (got {value!r})")

    async def dispose(self) -> None:
        if self._writer is not None:
            engine, thread = self._writer
            self._writer = None
            await asyncio.get_running_loop().run_in_executor(thread, engine.dispose)
            thread.shutdown(wait=False)
        await self.engine.dispose()


def create_database(raw_url: str, *, sqlite_busy_timeout_ms: int = 5000, pool_size: int = 10) -> Database:
    url = async_url(raw_url)
    kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if url.get_backend_name() == "postgresql":
        # A database that is gone must fail fast (the API answers 503), not hang on a connect. A pool
        # that is merely busy is waited for: whoever is in a hurry has its own deadline (API requests,
        # voice webhooks), and work left to finish after its answer (a surge's enqueue steps) must
        # not be thrown away after a few seconds' queueing — the caller was told they are queued.
        kwargs.update(
            pool_size=pool_size, max_overflow=pool_size, pool_timeout=30, connect_args={"connect_timeout": 3}
        )
    engine = create_async_engine(url, **kwargs)
    if url.get_backend_name() == "sqlite":
        _install_sqlite_hooks(engine, sqlite_busy_timeout_ms, url.database or "")
    hub = LiveHub()
    return Database(
        sqlite_busy_timeout_ms=sqlite_busy_timeout_ms,
        engine=engine,
        sessionmaker=async_sessionmaker(engine, expire_on_commit=False, info={HUB_KEY: hub}),
        hub=hub,
    )
