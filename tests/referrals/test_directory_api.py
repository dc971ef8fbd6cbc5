"""The directory API: admins add, change, verify and deactivate entries (bad input → a clear 4xx and
nothing written); staff search it by need, language, area and opening hours, or from a case."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from app.audit.models import AuditEntry
from app.cases.models import Category
from app.referrals import service
from tests.referrals.support import GOOD_ORGANISATION, case_for, directory
from tests.support.staff import SignedInClient, sign_in

THURSDAY_10_EST = datetime(2026, 11, 26, 15, 0, tzinfo=UTC)


@pytest.fixture
async def admin(app: FastAPI) -> SignedInClient:
    app.state.clock.set(THURSDAY_10_EST)
    return await sign_in(app, roles="admin")


async def audit_count(app: FastAPI) -> int:
    async with app.state.database.sessionmaker() as session:
        return int(await session.scalar(select(func.count()).select_from(AuditEntry)) or 0)


async def create(admin: SignedInClient, **changes: Any) -> dict[str, Any]:
    response = await admin.http.post(
        "/api/v1/organisations", json=GOOD_ORGANISATION | changes, headers=admin.headers()
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_an_admin_adds_an_organisation_unverified_and_audited(
    app: FastAPI, admin: SignedInClient
) -> None:
    created = await create(admin)
    assert created["id"].startswith("OR-")
    assert created["verified"] is False and created["verified_by"] is None and created["active"] is True
    assert created["languages"] == ["en", "es"] and created["service_areas"] == ["brooklyn"]
    assert created["hours"]["known"] is True and len(created["hours"]["windows"]) == 5
    async with app.state.database.sessionmaker() as session:
        entry = (
            await session.scalars(select(AuditEntry).where(AuditEntry.action == "organisation.created"))
        ).one()
    assert entry.object_id == created["id"] and entry.actor_id == admin.user_public_id
    assert GOOD_ORGANISATION["name"] not in json.dumps(entry.details) + str(entry.fields)


BAD_BODIES: list[tuple[str, dict[str, Any]]] = [
    ("phone with spaces", {"intake_phone": "+1 718 555 0100"}),
    ("national phone", {"intake_phone": "7185550100"}),
    ("withheld keypad number", {"intake_phone": "+266696687"}),
    ("impossible phone", {"intake_phone": "+1555"}),
    ("invalid phone", {"intake_phone": "+19995550100"}),
    ("http url", {"intake_url": "http://example.org/intake"}),
    ("javascript url", {"intake_url": "javascript:alert(1)"}),
    ("credentials in url", {"intake_url": "https://user:pw@example.org/"}),
    ("space in host", {"intake_url": "https://exa mple.org/"}),
    ("host without a dot", {"intake_url": "https://localhost/x"}),
    ("url with a newline", {"intake_url": "https://example.org/a\nb"}),
    ("long url", {"intake_url": "https://example.org/" + "a" * 300}),
    ("unknown service", {"services": ["astrology"]}),
    ("no service", {"services": []}),
    ("repeated service", {"services": ["housing", "housing"]}),
    ("unknown language", {"languages": ["xx"]}),
    ("upper-case language", {"languages": ["EN"]}),
    ("unknown area", {"service_areas": ["mars"]}),
    ("no area", {"service_areas": []}),
    ("unknown time zone", {"timezone": "Mars/Olympus_Mons"}),
    ("path as time zone", {"timezone": "../etc/passwd"}),
    ("empty name", {"name": " "}),
    ("NUL in name", {"name": "Legal\x00Aid"}),
    ("control character in name", {"name": "Legal\x1bAid"}),
    ("two-line name", {"name": "Legal\nAid"}),
    ("long name", {"name": "x" * 201}),
    ("hour out of range", {"opening_hours": [{"day": "mon", "open": "25:00", "close": "17:00"}]}),
    ("empty window", {"opening_hours": [{"day": "mon", "open": "09:00", "close": "09:00"}]}),
    ("unknown day", {"opening_hours": [{"day": "someday", "open": "09:00", "close": "17:00"}]}),
    ("extra key in window", {"opening_hours": [{"day": "mon", "open": "09:00", "close": "17:00", "x": 1}]}),
    ("24/7 and windows", {"open_24_7": True}),
    ("setting verification directly", {"verified_by": "U-AAAA-AAAA"}),
    ("not a list", {"services": "legal_defense"}),
]


@pytest.mark.parametrize(("label", "change"), BAD_BODIES, ids=[b[0] for b in BAD_BODIES])
async def test_bad_input_to_create_is_refused_and_writes_nothing(
    app: FastAPI, admin: SignedInClient, label: str, change: dict[str, Any]
) -> None:
    before, audited = await directory(app), await audit_count(app)
    response = await admin.http.post(
        "/api/v1/organisations", json=GOOD_ORGANISATION | change, headers=admin.headers()
    )
    assert response.status_code == 422, (label, response.text)
    error = response.json()["error"]
    assert error["code"] == "invalid_input" and error["problems"]
    for value in change.values():  # the error never echoes what was sent
        if isinstance(value, str) and len(value) > 3:
            assert value not in response.text
    assert await directory(app) == before and await audit_count(app) == audited


async def test_lone_surrogates_and_a_taken_name_are_refused(app: FastAPI, admin: SignedInClient) -> None:
    before = await directory(app)
    raw = json.dumps(GOOD_ORGANISATION | {"name": "PLACEHOLDER"}).replace("PLACEHOLDER", "Bad \\ud800 name")
    surrogate = await admin.http.post(
        "/api/v1/organisations",
        content=raw.encode(),
        headers=admin.headers() | {"Content-Type": "application/json"},
    )
    assert surrogate.status_code == 422
    taken = await admin.http.post(
        "/api/v1/organisations",
        json=GOOD_ORGANISATION | {"name": "Legal Aid Society"},
        headers=admin.headers(),
    )
    assert taken.status_code == 409 and taken.json()["error"]["code"] == "name_taken"
    assert await directory(app) == before


PATCH_BAD: list[tuple[str, dict[str, Any], int]] = [
    ("null name", {"name": None}, 422),
    ("null services", {"services": None}, 422),
    ("http url", {"intake_url": "http://example.org"}, 422),
    ("bad phone", {"intake_phone": "+1 212 555"}, 422),
    ("unknown field", {"public_id": "OR-AAAA-AAAA"}, 422),
    ("24/7 on top of windows", {"open_24_7": True}, 422),
    ("taken name", {"name": "Legal Aid Society"}, 409),
    ("NUL in name", {"name": "A\x00B"}, 422),
]


@pytest.mark.parametrize(("label", "change", "status"), PATCH_BAD, ids=[b[0] for b in PATCH_BAD])
async def test_bad_input_to_patch_is_refused_and_changes_nothing(
    app: FastAPI, admin: SignedInClient, label: str, change: dict[str, Any], status: int
) -> None:
    created = await create(admin)
    before, audited = await directory(app), await audit_count(app)
    response = await admin.http.patch(
        f"/api/v1/organisations/{created['id']}", json=change, headers=admin.headers()
    )
    assert response.status_code == status, (label, response.text)
    assert "error" in response.json()
    assert await directory(app) == before and await audit_count(app) == audited


async def test_unknown_organisations_are_404(admin: SignedInClient) -> None:
    for method, suffix in (("PATCH", ""), ("POST", "/verify"), ("DELETE", "")):
        response = await admin.http.request(
            method, f"/api/v1/organisations/OR-ZZZZ-ZZZZ{suffix}", json={}, headers=admin.headers()
        )
        assert response.status_code == 404, (method, suffix)
    malformed = await admin.http.patch("/api/v1/organisations/not-an-id", json={}, headers=admin.headers())
    assert malformed.status_code == 422


async def test_verification_is_recorded_and_cleared_by_any_change_to_what_is_texted(
    app: FastAPI, admin: SignedInClient
) -> None:
    created = await create(admin)
    url = f"/api/v1/organisations/{created['id']}"
    verified = await admin.http.post(f"{url}/verify", headers=admin.headers())
    assert verified.status_code == 200
    body = verified.json()
    assert body["verified"] is True and body["verified_by"] == admin.user_public_id
    assert body["verified_on"] == "2026-11-26"
    # Not texted to callers: verification stays.
    kept = await admin.http.patch(
        url, json={"services": ["housing"], "languages": ["ht"]}, headers=admin.headers()
    )
    assert kept.json()["verified"] is True
    # The same phone again is no change.
    same = await admin.http.patch(url, json={"intake_phone": "+17185550100"}, headers=admin.headers())
    assert same.json()["verified"] is True
    for change in (
        {"intake_phone": "+17185550199"},
        {"intake_url": None},
        {"name": "Renamed Defenders"},
        {"opening_hours": [], "open_24_7": True},
    ):
        await admin.http.post(f"{url}/verify", headers=admin.headers())
        cleared = await admin.http.patch(url, json=change, headers=admin.headers())
        assert cleared.status_code == 200, cleared.text
        assert cleared.json()["verified"] is False and cleared.json()["verified_by"] is None, change
    async with app.state.database.sessionmaker() as session:
        actions = list(
            await session.scalars(
                select(AuditEntry.action)
                .where(AuditEntry.object_id == created["id"])
                .order_by(AuditEntry.seq)
            )
        )
    assert actions[:3] == ["organisation.created", "organisation.verified", "organisation.updated"]


async def test_nothing_to_verify_and_deactivation(app: FastAPI, admin: SignedInClient) -> None:
    bare = await create(admin, name="No Contact Yet", intake_phone=None, intake_url=None)
    refused = await admin.http.post(f"/api/v1/organisations/{bare['id']}/verify", headers=admin.headers())
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "nothing_to_verify"
    gone = await admin.http.delete(f"/api/v1/organisations/{bare['id']}", headers=admin.headers())
    assert gone.status_code == 204
    again = await admin.http.delete(f"/api/v1/organisations/{bare['id']}", headers=admin.headers())
    assert again.status_code == 204
    listed = await admin.http.get("/api/v1/organisations")
    assert bare["id"] not in [o["id"] for o in listed.json()["items"]]
    with_inactive = await admin.http.get("/api/v1/organisations", params={"include_inactive": "true"})
    assert bare["id"] in [o["id"] for o in with_inactive.json()["items"]]
    await admin.http.patch(
        f"/api/v1/organisations/{bare['id']}", json={"intake_phone": "+12125550100"}, headers=admin.headers()
    )
    inactive = await admin.http.post(f"/api/v1/organisations/{bare['id']}/verify", headers=admin.headers())
    assert inactive.status_code == 409 and inactive.json()["error"]["code"] == "organisation_inactive"


async def test_every_case_category_maps_to_known_services(app: FastAPI) -> None:
    async with app.state.database.sessionmaker() as session:
        categories = set(await session.scalars(select(Category.id)))
    assert set(service.NEEDS_BY_CATEGORY) <= categories


async def build_directory(admin: SignedInClient) -> dict[str, str]:
    """A small directory on top of the seeded (unverified, hours unknown) entries."""
    ids = {}
    ids["verified_es_open"] = (await create(admin, name="A Verified Spanish Open"))["id"]
    await admin.http.post(f"/api/v1/organisations/{ids['verified_es_open']}/verify", headers=admin.headers())
    ids["unverified_es_open"] = (await create(admin, name="B Unverified Spanish Open"))["id"]
    ids["unverified_en_open"] = (await create(admin, name="C Unverified English Open", languages=["en"]))[
        "id"
    ]
    ids["unverified_es_closed"] = (
        await create(
            admin,
            name="D Unverified Spanish Closed",
            opening_hours=[{"day": "sat", "open": "10:00", "close": "14:00"}],
        )
    )["id"]
    ids["statewide_24_7"] = (
        await create(
            admin,
            name="E Statewide Hotline",
            open_24_7=True,
            opening_hours=[],
            service_areas=["statewide"],
            services=["emergency_support"],
            languages=["ht", "en"],
        )
    )["id"]
    ids["queens_housing"] = (
        await create(admin, name="F Queens Housing", services=["housing"], service_areas=["queens"])
    )["id"]
    return ids


async def search(who: SignedInClient, **params: Any) -> httpx.Response:
    return await who.http.get("/api/v1/organisations", params=params)


async def test_search_filters_and_ranks(app: FastAPI, admin: SignedInClient) -> None:
    ids = await build_directory(admin)
    volunteer = await sign_in(app)
    names = lambda r: [o["id"] for o in r.json()["items"]]  # noqa: E731

    ranked = await search(volunteer, need="legal_defense", language="es", area="brooklyn")
    assert ranked.status_code == 200
    assert names(ranked) == [ids["verified_es_open"], ids["unverified_es_open"], ids["unverified_es_closed"]]
    first = ranked.json()["items"][0]
    assert first["open"] is True and first["language_match"] is True and first["verified"] is True
    assert ranked.json()["items"][2]["open"] is False

    open_now = await search(volunteer, need="legal_defense", area="brooklyn", open_now="true")
    assert ids["unverified_es_closed"] not in names(open_now) and ids["unverified_en_open"] in names(open_now)
    # Saturday 11:00 in New York: only the Saturday window (and the 24/7 line) are open.
    saturday = await search(volunteer, area="brooklyn", open_now="true", open_at="2026-11-28T11:00:00-05:00")
    assert set(names(saturday)) == {ids["unverified_es_closed"], ids["statewide_24_7"]}
    # A borough search finds statewide services; a queens one not Brooklyn's.
    assert ids["statewide_24_7"] in names(await search(volunteer, area="bronx"))
    queens = names(await search(volunteer, area="queens"))
    assert ids["queens_housing"] in queens and ids["verified_es_open"] not in queens
    assert names(await search(volunteer, need="housing")) == [ids["queens_housing"]]
    assert names(await search(volunteer, verified="true")) == [ids["verified_es_open"]]
    # Seeded entries (hours unknown) come back with open = null.
    everything = (await search(volunteer, page_size=100)).json()
    assert everything["total"] == len(ids) + 3
    assert any(o["open"] is None for o in everything["items"])


async def test_search_pagination_and_bad_parameters(app: FastAPI, admin: SignedInClient) -> None:
    await build_directory(admin)
    volunteer = await sign_in(app)
    whole = [o["id"] for o in (await search(volunteer, page_size=100)).json()["items"]]
    paged = []
    for page in (1, 2, 3):
        body = (await search(volunteer, page_size=4, page=page)).json()
        assert body["total"] == len(whole) and body["page_size"] == 4
        paged += [o["id"] for o in body["items"]]
    assert paged == whole
    for bad in (
        {"page_size": 0},
        {"page_size": 101},
        {"page": 0},
        {"page": 1001},
        {"need": "astrology"},
        {"language": "xx"},
        {"area": "mars"},
        {"open_at": "2026-11-28T11:00:00"},  # no offset: ambiguous
        {"open_at": "yesterday"},
        {"open_at": "9999-12-31T23:59:59-14:00"},
        {"open_at": "0001-01-01T00:00:00+14:00"},
        {"case": "not-a-case"},
        {"open_now": "maybe"},
    ):
        response = await search(volunteer, **bad)
        assert response.status_code == 422, bad
        assert response.json()["error"]["code"] == "invalid_input"


async def test_search_from_a_case_derives_need_and_language_without_decrypting(
    app: FastAPI, admin: SignedInClient
) -> None:
    ids = await build_directory(admin)
    volunteer = await sign_in(app)
    other = await sign_in(app)
    case = await case_for(
        app, volunteer.user_public_id, category="housing_benefits", language="ht", fields={"caller_name": "X"}
    )
    audited = await audit_count(app)
    found = await search(volunteer, case=case)
    assert found.status_code == 200
    body = found.json()
    assert body["needs"] == ["housing", "benefits"] and body["language"] == "ht"
    assert [o["id"] for o in body["items"]] == [ids["queens_housing"]]
    assert await audit_count(app) == audited  # metadata only: no reveal happened
    detention = await case_for(app, volunteer.user_public_id, phone=None, category="detention", language="ht")
    ranked = (await search(volunteer, case=detention)).json()
    assert ranked["needs"] == ["legal_defense", "emergency_support"]
    # Haitian Creole speakers first among the unverified (the verified entry still leads).
    order = [o["id"] for o in ranked["items"]]
    assert order[0] == ids["verified_es_open"] and order[1] == ids["statewide_24_7"]
    # An explicit need wins over the case's.
    assert (await search(volunteer, case=detention, need="housing")).json()["needs"] == ["housing"]
    # Someone else's case, or an admin (no case access): indistinguishable from a missing case.
    assert (await search(other, case=case)).status_code == 404
    assert (await search(admin, case=case)).status_code == 404
    assert (await search(volunteer, case="HX-ZZZZ-ZZZZ")).status_code == 404


async def test_the_migration_backfilled_the_seeded_entries(app: FastAPI) -> None:
    from app.referrals.models import Organisation

    async with app.state.database.sessionmaker() as session:
        seeded = list(await session.scalars(select(Organisation).order_by(Organisation.public_id)))
    assert {o.public_id for o in seeded} == {"OR-4GAS-NYSC", "OR-NYCH-2THX", "OR-CACW-K7RS"}
    for organisation in seeded:
        assert organisation.service_areas == ["bronx", "brooklyn", "manhattan", "queens", "staten_island"]
        assert organisation.timezone == "America/New_York" and organisation.opening_hours == []
        assert organisation.active and not organisation.open_24_7 and not organisation.verified
