"""Know-your-rights texts: placeholders shipped but never served; versions by admins; a review by a
second admin makes a version the served one; stale reviews flagged; bad input refused with no change."""

from __future__ import annotations

import json
from datetime import timedelta

from fastapi import FastAPI
from sqlalchemy import func, select

from app.rights import service
from app.rights.models import RightsText, RightsTopic
from tests.support.staff import sign_in


async def count(app: FastAPI) -> int:
    async with app.state.database.sessionmaker() as session:
        return int(await session.scalar(select(func.count()).select_from(RightsText)) or 0)


async def test_placeholders_ship_for_every_topic_and_language_and_are_never_served(app: FastAPI) -> None:
    assert await count(app) == len(RightsTopic) * 7
    async with app.state.database.sessionmaker() as session:
        assert await service.current(session, RightsTopic.at_the_door, "es") is None
        assert await service.servable_topics(session, "ht") == []


async def test_a_version_is_served_only_after_another_admin_reviews_it(app: FastAPI) -> None:
    author, reviewer = await sign_in(app, roles="admin"), await sign_in(app, roles="admin")
    volunteer = await sign_in(app)
    body = {
        "topic": "at_the_door",
        "language": "es",
        "title": "Si agentes de inmigración llegan a su puerta",
        "body": "No abra la puerta. Pida que le muestren una orden judicial por debajo de la puerta.",
    }
    created = await author.http.post("/api/v1/rights", json=body, headers=author.headers())
    assert created.status_code == 201, created.text
    draft = created.json()
    assert draft["version"] == 2 and draft["served"] is False and draft["reviewed_at"] is None
    async with app.state.database.sessionmaker() as session:
        assert await service.current(session, "at_the_door", "es") is None  # a draft is never served
    own = await author.http.post(f"/api/v1/rights/{draft['id']}/review", json={}, headers=author.headers())
    assert own.status_code == 409 and own.json()["error"]["code"] == "own_text"
    by_volunteer = await volunteer.http.post(
        f"/api/v1/rights/{draft['id']}/review", json={}, headers=volunteer.headers()
    )
    assert by_volunteer.status_code == 403
    reviewed = await reviewer.http.post(
        f"/api/v1/rights/{draft['id']}/review",
        json={"note": "Checked with counsel"},
        headers=reviewer.headers(),
    )
    assert reviewed.status_code == 200
    assert reviewed.json()["served"] is True and reviewed.json()["reviewed_by"] == reviewer.user_public_id
    assert reviewed.json()["voice_ready"] is True  # Spanish has a Twilio voice
    again = await reviewer.http.post(
        f"/api/v1/rights/{draft['id']}/review", json={}, headers=reviewer.headers()
    )
    assert again.status_code == 409
    async with app.state.database.sessionmaker() as session:
        served = await service.current(session, "at_the_door", "es")
        assert served is not None and served.public_id == draft["id"]
        assert await service.servable_topics(session, "es") == ["at_the_door"]
    listed = await volunteer.http.get("/api/v1/rights", params={"topic": "at_the_door", "language": "es"})
    assert [t["version"] for t in listed.json()["texts"]] == [2, 1]
    # Half a year later the review is stale and supervisors see it flagged.
    app.state.clock.advance(timedelta(days=181))
    supervisor = await sign_in(app, roles="supervisor")
    fresh = await supervisor.http.get("/api/v1/rights", params={"stale": "false"})
    assert fresh.json()["texts"] == []
    stale = await supervisor.http.get("/api/v1/rights", params={"stale": "true"})
    assert [t["id"] for t in stale.json()["texts"]] == [draft["id"]]


async def test_a_placeholder_cannot_be_reviewed_and_bad_input_changes_nothing(app: FastAPI) -> None:
    admin = await sign_in(app, roles="admin")
    async with app.state.database.sessionmaker() as session:
        placeholder = (
            await session.scalars(select(RightsText).where(RightsText.placeholder.is_(True)))
        ).first()
        assert placeholder is not None
    refused = await admin.http.post(
        f"/api/v1/rights/{placeholder.public_id}/review", json={}, headers=admin.headers()
    )
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "placeholder"
    before = await count(app)
    good = {"topic": "at_work", "language": "en", "title": "At work", "body": "Stay calm."}
    for bad in (
        good | {"language": "fr"},
        good | {"topic": "weather"},
        good | {"body": ""},
        good | {"body": "x" * 4001},
        good | {"title": ""},
        good | {"audio_url": "http://insecure.example.org/a.mp3"},
        good | {"extra": 1},
    ):
        answer = await admin.http.post("/api/v1/rights", json=bad, headers=admin.headers())
        assert answer.status_code == 422, bad
    assert await count(app) == before
    missing = await admin.http.post("/api/v1/rights/RT-2222-2222/review", json={}, headers=admin.headers())
    assert missing.status_code == 404
    haitian = await admin.http.post(
        "/api/v1/rights", json=good | {"language": "ht", "body": "Rete kalm."}, headers=admin.headers()
    )
    assert haitian.status_code == 201 and haitian.json()["voice_ready"] is False  # no voice, no audio yet


async def test_rights_routes_leak_no_plaintext(app: FastAPI, captured_logs: object) -> None:
    from tests.support.canary import CanaryScan, LogCapture

    assert isinstance(captured_logs, LogCapture)
    scan = CanaryScan(app.state.database, captured_logs)
    admin = await sign_in(app, roles="admin")
    responses = [
        await admin.http.get("/api/v1/rights"),
        await admin.http.post(
            "/api/v1/rights",
            json={"topic": "at_work", "language": "en", "title": "At work", "body": "Stay calm."},
            headers=admin.headers(),
        ),
        # Invalid input carrying a canary is refused without echoing it.
        await admin.http.post(
            "/api/v1/rights",
            json={
                "topic": "at_work",
                "language": "xx",
                "title": scan.canaries.name,
                "body": scan.canaries.note,
            },
            headers=admin.headers(),
        ),
    ]
    scan.responses = [r.content for r in responses]
    assert await scan.hits() == []


async def test_control_characters_and_broken_text_are_refused(app: FastAPI) -> None:
    """Found by fuzzing on PostgreSQL (which refuses NUL in text): a clear 422, nothing written."""
    admin = await sign_in(app, roles="admin")
    before = await count(app)
    good = {"topic": "at_work", "language": "en", "title": "At work", "body": "Stay calm."}
    for bad in (
        good | {"body": "Stay\x00calm"},
        good | {"title": "At\nwork"},
        good | {"audio_url": "https://example.org/\x00a.mp3"},
        good | {"body": "broken \ud83c text"},
    ):
        answer = await admin.http.post(
            "/api/v1/rights",
            content=json.dumps(bad),  # ASCII-escaped, as a client may send a lone surrogate
            headers=admin.headers() | {"Content-Type": "application/json"},
        )
        assert answer.status_code == 422, bad
    assert await count(app) == before
