"""GET /metrics: Prometheus text, hotline-wide values from the database, request latency by route
template — and nothing about any person."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI

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
