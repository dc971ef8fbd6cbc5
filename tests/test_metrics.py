"""GET /metrics: Prometheus text, hotline-wide values from the database, request latency by route
template — and nothing about any person."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from app.clock import FrozenClock
from app.db.engine import Database
from app.main import create_app
from app.routing import service as routing
from tests.calls.test_voice_webhooks import call_params, new_sid, post
from tests.support.canary import CanaryScan, LogCapture


async def test_metrics_report_queues_routes_and_jobs_without_personal_data(
    app: FastAPI, client: httpx.AsyncClient, captured_logs: LogCapture
) -> None:
    scan = CanaryScan(app.state.database, captured_logs)
    settings = app.state.settings
    sid = new_sid()
    caller = scan.canaries.phone(0)
    await post(client, settings, "/twilio/voice/incoming", call_params(sid, From=caller))
    await post(
        client, settings, "/twilio/voice/language?attempt=1", call_params(sid, From=caller, Digits="2")
    )
    await post(
        client,
        settings,
        "/twilio/voice/emergency?attempt=1&language=es",
        call_params(sid, From=caller, Digits="9"),
    )
    async with app.state.database.sessionmaker() as session, session.begin():
        await routing.create_task(
            session, app.state.clock, routing.RoutingTimes(), channel="chat", language="ru"
        )
    app.state.clock.advance(42)
    response = await client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert 'hotline_queue_length{channel="voice",language="es"} 1.0' in text
    assert 'hotline_queue_length{channel="chat",language="ru"} 1.0' in text
    assert 'hotline_queue_oldest_wait_seconds{channel="voice",language="es"} 42.0' in text
    assert 'route="/twilio/voice/incoming"' in text and 'route="/twilio/voice/emergency"' in text
    assert "hotline_jobs{" in text and "hotline_contacts_total" in text
    scan.responses = [response.content]
    assert await scan.hits() == []
    assert sid.encode() not in response.content


async def test_metrics_still_answer_with_the_database_down(
    app: FastAPI, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    await client.get("/healthz")

    def broken() -> None:
        raise ConnectionError("down")

    monkeypatch.setattr(app.state.database, "sessionmaker", broken)
    response = await client.get("/metrics")
    assert response.status_code == 200 and "hotline_http_request_duration_seconds" in response.text


TOKEN = "metrics-token-" + "7f3a9c2e" * 4


async def scrape(app: FastAPI, path: str = "/metrics", **headers: str | bytes) -> httpx.Response:
    # No lifespan needed: the route reads the database and the settings only.
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="https://hotline.test") as http:
        return await http.get(path, headers=headers)


async def test_metrics_are_private_in_production(
    make_settings: Any, clock: FrozenClock, database: Database
) -> None:
    closed = create_app(make_settings(env="production", docs_enabled=False), clock=clock, database=database)
    hidden, absent = await scrape(closed), await scrape(closed, "/no-such-path")
    assert hidden.status_code == 404 and hidden.json()["error"]["code"] == absent.json()["error"]["code"]
    assert "hotline_" not in hidden.text
    assert (await scrape(closed, authorization=f"Bearer {TOKEN}")).status_code == 404

    production = make_settings(env="production", docs_enabled=False, metrics_token=TOKEN)
    assert production.production_problems() == []
    guarded = create_app(production, clock=clock, database=database)
    for refused in (
        await scrape(guarded),
        await scrape(guarded, authorization=f"Bearer {TOKEN[:-1]}x"),
        await scrape(guarded, authorization=f"Basic {TOKEN}"),
        await scrape(guarded, authorization=TOKEN),
        await scrape(guarded, authorization="Bearer "),
        await scrape(guarded, authorization="Bearer ünïcode".encode()),
    ):
        assert refused.status_code == 401 and "hotline_" not in refused.text
        assert refused.headers["www-authenticate"] == "Bearer"
    allowed = await scrape(guarded, authorization=f"Bearer {TOKEN}")
    assert allowed.status_code == 200 and "hotline_metrics_scraped_at_seconds" in allowed.text


async def test_a_metrics_token_is_required_in_development_too_once_set(
    make_settings: Any, clock: FrozenClock, database: Database
) -> None:
    assert (await scrape(create_app(make_settings(), clock=clock, database=database))).status_code == 200
    guarded = create_app(make_settings(metrics_token=TOKEN), clock=clock, database=database)
    assert (await scrape(guarded)).status_code == 401
    assert (await scrape(guarded, authorization=f"bearer {TOKEN}")).status_code == 200


@pytest.mark.parametrize("token", ["changeme", "short-but-not-a-placeholder"])
def test_production_refuses_a_weak_metrics_token(make_settings: Any, token: str) -> None:
    settings = make_settings(env="production", docs_enabled=False, metrics_token=token)
    assert settings.production_problems() == [
        "HOTLINE_METRICS_TOKEN is a placeholder or shorter than 32 characters"
    ]
