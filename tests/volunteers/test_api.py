"""Presence, phone verification and schedule endpoints end to end, with signed-in clients."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from fastapi import FastAPI
from sqlalchemy import select

from app.accounts.models import User
from app.audit.models import AuditEntry
from app.clock import FrozenClock
from app.volunteers import service
from app.volunteers.models import PhoneVerification
from tests.support.staff import SignedInClient, sign_in


@pytest.fixture(autouse=True)
def cheap_hashing(app: FastAPI) -> None:
    from app.accounts.passwords import Passwords

    app.state.auth.hasher.passwords = Passwords(time_cost=1, memory_cost=1024, allow_below_floor=True)


async def entries(app: FastAPI, action: str) -> list[AuditEntry]:
    async with app.state.database.sessionmaker() as session:
        return list(
            await session.scalars(
                select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.seq)
            )
        )


async def give_phone(app: FastAPI, who: SignedInClient, number: str = "+12025550123") -> None:
    async with app.state.database.sessionmaker() as session, session.begin():
        user = (await session.scalars(select(User).where(User.public_id == who.user_public_id))).one()
        await app.state.sealer.seal(session, user, "phone", number)


async def latest_verification(app: FastAPI, who: SignedInClient) -> PhoneVerification:
    async with app.state.database.sessionmaker() as session:
        return (
            await session.scalars(
                select(PhoneVerification)
                .join(User, User.id == PhoneVerification.user_id)
                .where(User.public_id == who.user_public_id)
                .order_by(PhoneVerification.created_at.desc())
            )
        ).first()  # type: ignore[return-value]


async def test_availability_rules_through_http(app: FastAPI) -> None:
    volunteer = await sign_in(app)
    http, headers = volunteer.http, volunteer.headers()
    fresh = (await http.get("/api/v1/me/availability")).json()
    assert fresh["state"] == "offline" and (fresh["voice_capacity"], fresh["chat_capacity"]) == (1, 3)
    assert fresh["phone_verified"] is False

    refused = await http.put("/api/v1/me/availability", json={"state": "available"}, headers=headers)
    assert refused.status_code == 422
    assert refused.json()["error"]["code"] == "phone_not_verified"
    assert "Verify your phone" in refused.json()["error"]["message"]

    chat_only = await http.put(
        "/api/v1/me/availability", json={"state": "available", "voice_capacity": 0}, headers=headers
    )
    assert chat_only.status_code == 200, chat_only.text
    assert chat_only.json()["takes_chat"] is True and chat_only.json()["takes_voice"] is False

    too_many = await http.put(
        "/api/v1/me/availability", json={"state": "away", "chat_capacity": 77}, headers=headers
    )
    echoed = {k: v for k, v in too_many.json()["error"].items() if k != "request_id"}  # ids are random hex
    assert too_many.status_code == 422 and "77" not in str(echoed)
    busy = await http.put("/api/v1/me/availability", json={"state": "busy"}, headers=headers)
    assert busy.status_code == 422  # busy belongs to the routing engine
    extra = await http.put("/api/v1/me/availability", json={"state": "away", "mood": "x"}, headers=headers)
    assert extra.status_code == 422
    no_csrf = await http.put("/api/v1/me/availability", json={"state": "offline"})
    assert no_csrf.status_code == 403

    changed = await entries(app, "availability.changed")
    assert [(e.actor_id, e.object_id, e.details["state"]) for e in changed] == [
        (volunteer.user_public_id, volunteer.user_public_id, "available")
    ]
    supervisor = await sign_in(app, roles="supervisor")
    assert (await supervisor.http.get("/api/v1/me/availability")).status_code == 403


async def test_phone_verification_call_then_voice(app: FastAPI) -> None:
    volunteer = await sign_in(app)
    http, headers = volunteer.http, volunteer.headers()
    no_phone = await http.post("/api/v1/me/phone-verification", headers=headers)
    assert no_phone.status_code == 422 and no_phone.json()["error"]["code"] == "no_phone"
    await give_phone(app, volunteer)

    started = await http.post("/api/v1/me/phone-verification", headers=headers)
    assert started.status_code == 202, started.text
    assert started.json()["status"] == "calling" and started.json()["tries"] == 5
    assert "code" not in started.json()
    again = await http.post("/api/v1/me/phone-verification", headers=headers)
    assert again.status_code == 429 and int(again.headers["Retry-After"]) > 0

    verification = await latest_verification(app, volunteer)
    code = service.verification_code(app.state.keys.material.keyed_hasher(), verification.id)
    bad = f"{(int(code) + 1) % 1_000_000:06d}"
    wrong = await http.post("/api/v1/me/phone-verification/confirm", json={"code": bad}, headers=headers)
    assert wrong.status_code == 422 and wrong.json()["error"]["code"] == "wrong_code"
    assert bad not in wrong.text
    # The spent try was committed although the answer was an error.
    assert (await latest_verification(app, volunteer)).attempts == 1
    denied = await entries(app, "volunteer.phone_verification_checked")
    assert [e.outcome for e in denied] == ["denied"]
    malformed = await http.post(
        "/api/v1/me/phone-verification/confirm", json={"code": "12ab56"}, headers=headers
    )
    assert malformed.status_code == 422 and "12ab56" not in malformed.text

    confirmed = await http.post("/api/v1/me/phone-verification/confirm", json={"code": code}, headers=headers)
    assert confirmed.status_code == 200, confirmed.text
    assert confirmed.json()["status"] == "verified"

    available = await http.put("/api/v1/me/availability", json={"state": "available"}, headers=headers)
    assert available.status_code == 200, available.text
    assert available.json()["takes_voice"] is True and available.json()["phone_verified"] is True


async def test_verification_code_expires_over_http(app: FastAPI) -> None:
    volunteer = await sign_in(app)
    await give_phone(app, volunteer)
    http, headers = volunteer.http, volunteer.headers()
    assert (await http.post("/api/v1/me/phone-verification", headers=headers)).status_code == 202
    verification = await latest_verification(app, volunteer)
    code = service.verification_code(app.state.keys.material.keyed_hasher(), verification.id)
    clock: FrozenClock = app.state.clock
    clock.advance(timedelta(minutes=10, seconds=1))
    expired = await http.post("/api/v1/me/phone-verification/confirm", json={"code": code}, headers=headers)
    assert expired.status_code == 422 and expired.json()["error"]["code"] == "expired"


async def test_schedule_management(app: FastAPI) -> None:
    supervisor = await sign_in(app, roles="supervisor")
    volunteer = await sign_in(app)
    colleague = await sign_in(app)
    sup, headers = supervisor.http, supervisor.headers()
    url = f"/api/v1/schedule/{volunteer.user_public_id}"
    body = {
        "shifts": [
            {"weekday": "sat", "start": "22:00", "duration_minutes": 480},
            {"weekday": "mon", "start": "09:00", "duration_minutes": 240},
        ]
    }
    replaced = await sup.put(url, json=body, headers=headers)
    assert replaced.status_code == 200, replaced.text
    shifts = replaced.json()["shifts"]
    assert shifts == [
        {"weekday": "mon", "start": "09:00", "end": "13:00", "duration_minutes": 240, "overnight": False},
        {"weekday": "sat", "start": "22:00", "end": "06:00", "duration_minutes": 480, "overnight": True},
    ]
    assert replaced.json()["timezone"] == "America/New_York"
    await sup.put(
        f"/api/v1/schedule/{colleague.user_public_id}",
        json={"shifts": [{"weekday": "tue", "start": "10:00", "duration_minutes": 60}]},
        headers=headers,
    )

    overlap = {"shifts": [*body["shifts"], {"weekday": "sun", "start": "05:00", "duration_minutes": 120}]}
    refused = await sup.put(url, json=overlap, headers=headers)
    assert refused.status_code == 422 and refused.json()["error"]["code"] == "overlapping_shifts"
    assert "05:00" not in refused.text
    bad_time = await sup.put(
        url, json={"shifts": [{"weekday": "mon", "start": "25:61", "duration_minutes": 60}]}, headers=headers
    )
    assert bad_time.status_code == 422 and "25:61" not in bad_time.text
    missing = await sup.put("/api/v1/schedule/U-ZZZZ-ZZZZ", json=body, headers=headers)
    assert missing.status_code == 404
    not_volunteer = await sup.put(f"/api/v1/schedule/{supervisor.user_public_id}", json=body, headers=headers)
    assert not_volunteer.status_code == 422 and not_volunteer.json()["error"]["code"] == "not_a_volunteer"
    assert (await volunteer.http.put(url, json=body, headers=volunteer.headers())).status_code == 403

    # A volunteer sees only their own schedule, whatever they ask for.
    own = (await volunteer.http.get("/api/v1/schedule")).json()["volunteers"]
    assert [v["user"] for v in own] == [volunteer.user_public_id]
    peek = (await volunteer.http.get(f"/api/v1/schedule?user={colleague.user_public_id}")).json()
    assert peek["volunteers"] == []
    everyone = (await sup.get("/api/v1/schedule")).json()["volunteers"]
    assert {volunteer.user_public_id, colleague.user_public_id} <= {v["user"] for v in everyone}
    assert supervisor.user_public_id not in {v["user"] for v in everyone}
    one = (await sup.get(f"/api/v1/schedule?user={colleague.user_public_id}")).json()["volunteers"]
    assert [v["user"] for v in one] == [colleague.user_public_id]
    assert (await sup.get("/api/v1/schedule?language=fr")).json()["volunteers"] == []

    audited = await entries(app, "schedule.replaced")
    assert [(e.actor_id, e.object_id, e.details["shifts"]) for e in audited] == [
        (supervisor.user_public_id, volunteer.user_public_id, 2),
        (supervisor.user_public_id, colleague.user_public_id, 1),
    ]


async def test_date_overrides(app: FastAPI) -> None:
    admin = await sign_in(app, roles="admin")
    volunteer = await sign_in(app)
    http, headers = admin.http, admin.headers()
    url = f"/api/v1/schedule/{volunteer.user_public_id}/overrides"
    off = await http.post(url, json={"date": "2026-12-24", "kind": "off"}, headers=headers)
    assert off.status_code == 201, off.text
    assert off.json()["kind"] == "off" and off.json()["start"] is None
    extra = await http.post(
        url,
        json={"date": "2026-12-24", "kind": "extra", "start": "20:00", "duration_minutes": 600},
        headers=headers,
    )
    assert extra.status_code == 201 and (extra.json()["start"], extra.json()["end"]) == ("20:00", "06:00")
    duplicate = await http.post(url, json={"date": "2026-12-24", "kind": "off"}, headers=headers)
    assert duplicate.status_code == 409
    for payload, code in (
        ({"date": "2026-12-25", "kind": "extra"}, "invalid_override"),
        ({"date": "2026-12-25", "kind": "off", "start": "10:00"}, "invalid_override"),
        ({"date": "2026-11-01", "kind": "off"}, "date_in_past"),
        ({"date": "2029-01-01", "kind": "off"}, "date_too_far"),
    ):
        response = await http.post(url, json=payload, headers=headers)
        assert response.status_code == 422 and response.json()["error"]["code"] == code, payload
        assert payload["date"] not in response.text
    listed = (await http.get(f"/api/v1/schedule?user={volunteer.user_public_id}")).json()["volunteers"][0]
    assert [o["id"] for o in listed["overrides"]] == [extra.json()["id"], off.json()["id"]]
    removed = await http.delete(f"{url}/{off.json()['id']}", headers=headers)
    assert removed.status_code == 204
    assert (await http.delete(f"{url}/{off.json()['id']}", headers=headers)).status_code == 404
    actions = [e.action for e in await entries(app, "schedule.override_added")]
    actions += [e.action for e in await entries(app, "schedule.override_removed")]
    assert actions == ["schedule.override_added"] * 2 + ["schedule.override_removed"]


async def test_who_is_on_call_now(app: FastAPI) -> None:
    clock: FrozenClock = app.state.clock
    supervisor = await sign_in(app, roles="supervisor")
    on_shift = await sign_in(app)
    off_shift = await sign_in(app)
    # Thursday 2026-11-26 around 12:00 UTC = 07:00 in New York.
    await supervisor.http.put(
        f"/api/v1/schedule/{on_shift.user_public_id}",
        json={"shifts": [{"weekday": "wed", "start": "22:00", "duration_minutes": 600}]},
        headers=supervisor.headers(),
    )
    await supervisor.http.put(
        f"/api/v1/schedule/{off_shift.user_public_id}",
        json={"shifts": [{"weekday": "thu", "start": "09:00", "duration_minutes": 60}]},
        headers=supervisor.headers(),
    )
    await on_shift.http.put(
        "/api/v1/me/availability",
        json={"state": "available", "voice_capacity": 0},
        headers=on_shift.headers(),
    )
    response = await supervisor.http.get("/api/v1/schedule/on-call")
    assert response.status_code == 200, response.text
    listed = response.json()["volunteers"]
    assert [v["user"] for v in listed] == [on_shift.user_public_id]
    (entry,) = listed
    assert entry["languages"] == ["en", "es"] and entry["presence"]["state"] == "available"
    assert entry["on_call_until"].startswith("2026-11-26T13:00:00")  # 08:00 EST
    assert (await supervisor.http.get("/api/v1/schedule/on-call?language=fr")).json()["volunteers"] == []
    clock.set(datetime(2026, 11, 26, 14, 30, tzinfo=UTC))  # 09:30 EST (the old sessions idled out)
    supervisor = await sign_in(app, roles="supervisor")
    later = (await supervisor.http.get("/api/v1/schedule/on-call")).json()["volunteers"]
    assert [v["user"] for v in later] == [off_shift.user_public_id]
    assert later[0]["presence"]["state"] == "offline"
    volunteer = await sign_in(app)
    assert (await volunteer.http.get("/api/v1/schedule/on-call")).status_code == 403
