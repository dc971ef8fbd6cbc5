"""Shared fixtures: the two test tiers of DESIGN.md section 5.

* Tier 1 (`session`): service tests inside one outer transaction on a shared migrated database,
  rolled back after each test.
* Tier 2 (`database`, `app`, `client`): anything that commits, spans processes or listens gets a fresh
  database cloned from the run's migrated template.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession

from app.clock import FrozenClock
from app.db.engine import Database, create_database
from app.main import create_app
from app.settings import Settings
from tests.support.canary import captured_logs  # noqa: F401 — a shared fixture
from tests.support.databases import TestDatabases, postgres_server_url


def pytest_report_header() -> str:
    return f"hotline test database: {'postgresql' if postgres_server_url() else 'sqlite'}"


@pytest.fixture(scope="session")
def test_databases(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestDatabases]:
    databases = TestDatabases(tmp_path_factory.mktemp("databases"), postgres_server_url())
    yield databases
    databases.drop_all()


@pytest.fixture
def backend(test_databases: TestDatabases) -> str:
    return test_databases.backend


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(datetime(2026, 11, 26, 12, 0, tzinfo=UTC))


@pytest.fixture
def fresh_database_url(test_databases: TestDatabases) -> Iterator[str]:
    url = test_databases.fresh()
    yield url
    test_databases.drop(url)


@pytest.fixture
async def database(fresh_database_url: str) -> AsyncIterator[Database]:
    db = create_database(fresh_database_url)
    yield db
    await db.dispose()


@pytest.fixture(scope="session")
async def shared_database(test_databases: TestDatabases) -> AsyncIterator[Database]:
    db = create_database(test_databases.fresh("shared"))
    yield db
    await db.dispose()


@pytest.fixture
async def session(shared_database: Database) -> AsyncIterator[AsyncSession]:
    """Tier 1: everything the test does is rolled back at the end."""
    async with shared_database.engine.connect() as connection:
        outer = await connection.begin()
        db_session = AsyncSession(
            bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False
        )
        try:
            yield db_session
        finally:
            await db_session.close()
            await outer.rollback()


@pytest.fixture
def make_settings(fresh_database_url: str, tmp_path: Path) -> Any:
    def build(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "database_url": fresh_database_url,
            "keyring_file": str(tmp_path / "keys.json"),
            "spool_dir": str(tmp_path / "spool"),
            "public_url": "https://hotline.test",
            "twilio_account_sid": "AC" + "0" * 32,
            "twilio_auth_token": "test-auth-token-0123456789",
            "twilio_number": "+15005550006",
            "overflow_number": "+15005550001",
            "jobs_enabled": False,
            # In-process clients (httpx) read a response whole: live-event streams end quickly.
            "events_keepalive_seconds": 0.05,
            "events_max_seconds": 0.2,
        }
        values.update(overrides)
        return Settings(_env_file=None, **values)  # type: ignore[call-arg]

    return build


@pytest.fixture
def settings(make_settings: Any) -> Settings:
    built: Settings = make_settings()
    return built


@pytest.fixture
async def app(settings: Settings, clock: FrozenClock, database: Database) -> AsyncIterator[FastAPI]:
    application = create_app(settings, clock=clock, database=database, run_jobs=False)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    # Like a real server: an unhandled error becomes the 500 response rather than a test exception.
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="https://hotline.test") as http:
        yield http
