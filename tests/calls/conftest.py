from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from fastapi import FastAPI

from app.clock import SystemClock
from app.db.engine import Database
from app.main import create_app
from telephony.fake import FakeTwilio, NumberConfig
from tests.support.voice import HOTLINE, PUBLIC_URL


@pytest.fixture
def fake() -> Iterator[FakeTwilio]:
    with FakeTwilio() as running:
        running.configure_number(NumberConfig.hotline(HOTLINE, PUBLIC_URL))
        yield running


@pytest.fixture
def live_overrides() -> dict[str, Any]:
    """Settings a test module changes for its live app (override this fixture)."""
    return {}


@pytest.fixture
async def live_app(
    fake: FakeTwilio, make_settings: Any, database: Database, live_overrides: dict[str, Any]
) -> AsyncIterator[FastAPI]:
    settings = make_settings(
        **{
            "public_url": PUBLIC_URL,
            "twilio_account_sid": fake.account_sid,
            "twilio_auth_token": fake.auth_token,
            "twilio_api_url": fake.base_url,
            "twilio_number": HOTLINE,
            "jobs_enabled": True,
            "jobs_poll_seconds": 0.05,
            **live_overrides,
        }
    )
    # Real time: the simulator's calls ring and wait in (scaled) real time.
    app = create_app(settings, clock=SystemClock(), database=database, run_jobs=True)
    async with app.router.lifespan_context(app):
        yield app
