"""Console pages without a browser (both databases): templates render, every unsafe form carries the
CSRF token, the same headers as the API (CSP without inline scripts, no-store), nothing sensitive in
titles or URLs, and a case the volunteer may not see is a 404 like a missing one."""

from __future__ import annotations

import re

import httpx
from fastapi import FastAPI

from app.cases.service import create_case
from app.console.catalogue import STRINGS
from tests.support.factories import SETUP
from tests.support.staff import sign_in, user_row

CANARY_NAME = "Zyxwv Canary-Name"


async def make_assigned_case(app: FastAPI, volunteer_public_id: str) -> str:
    user = await user_row(app, volunteer_public_id)
    async with app.state.database.sessionmaker() as session, session.begin():
        case = await create_case(
            session,
            app.state.sealer,
            app.state.clock,
            actor=SETUP,
            language="es",
            assignee=user,
            fields={"caller_name": CANARY_NAME},
        )
        return case.public_id


def assert_console_headers(response: httpx.Response) -> None:
    assert response.headers["cache-control"] == "no-store"
    csp = response.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "unsafe-inline" not in csp
    assert response.headers["x-frame-options"] == "DENY"


def assert_no_inline_script(html: str) -> None:
    for tag in re.findall(r"<script\b[^>]*>", html):
        assert "src=" in tag, tag
    assert not re.search(r"<script\b[^>]*>\s*[^<\s]", html), "inline script content"
    assert " style=" not in html and "<style" not in html
    assert not re.search(r"\son[a-z]+=", html), "inline event handler"


def assert_forms_carry_csrf(html: str, csrf: str) -> None:
    for form in re.findall(r"<form\b.*?</form>", html, flags=re.S):
        opening = form.split(">", 1)[0]
        method = re.search(r'data-method="([A-Z]+)"', opening)
        if method is None:  # a GET form (filters): no token, it would land in the URL
            assert 'name="csrf_token"' not in form
            continue
        if "/api/v1/auth/login" in opening or "/api/v1/auth/enroll" in opening:
            continue  # before a session exists there is nothing to forge
        assert f'name="csrf_token" value="{csrf}"' in form, opening


async def test_the_catalogue_has_every_string_in_english_and_spanish() -> None:
    assert set(STRINGS["en"]) == set(STRINGS["es"])
    assert all(STRINGS["es"][key] for key in STRINGS["es"])


async def test_signed_out_pages_and_redirects(client: httpx.AsyncClient) -> None:
    login = await client.get("/console/login")
    assert login.status_code == 200
    assert_console_headers(login)
    assert_no_inline_script(login.text)
    assert '<html lang="en">' in login.text
    spanish = await client.get("/console/login", headers={"Accept-Language": "es-US,es;q=0.9"})
    assert '<html lang="es">' in spanish.text and STRINGS["es"]["login.heading"] in spanish.text
    for path in ("/console", "/console/board", "/console/audit", "/console/cases/CS-AAAA-AAAA"):
        response = await client.get(path)
        assert response.status_code == 303 and response.headers["location"] == "/console/login", path
    enrol = await client.get("/console/enroll")
    assert enrol.status_code == 200 and "data-token" in enrol.text
    static = await client.get("/console/static/console.js")
    assert static.status_code == 200 and "no-store" not in static.headers.get("cache-control", "")
    assert "localStorage.setItem" not in static.text and "sessionStorage.setItem" not in static.text


async def test_volunteer_pages_render_metadata_only_with_csrf_on_every_form(app: FastAPI) -> None:
    volunteer = await sign_in(app, roles="volunteer")
    other = await sign_in(app, roles="volunteer")
    case_id = await make_assigned_case(app, volunteer.user_public_id)
    home = await volunteer.http.get("/console")
    assert home.status_code == 200
    assert_console_headers(home)
    assert_no_inline_script(home.text)
    assert f'<meta name="csrf-token" content="{volunteer.csrf}">' in home.text
    assert_forms_carry_csrf(home.text, volunteer.csrf)
    assert case_id in home.text
    case_page = await volunteer.http.get(f"/console/cases/{case_id}")
    assert case_page.status_code == 200
    assert_no_inline_script(case_page.text)
    assert_forms_carry_csrf(case_page.text, volunteer.csrf)
    assert CANARY_NAME not in case_page.text  # sealed: shown only after the audited reveal
    title = re.search(r"<title>(.*?)</title>", case_page.text, flags=re.S)
    assert title is not None and case_id not in title.group(1)
    for form in ('id="reveal-form"', 'id="intake-form"', 'id="note-form"', 'id="close-form"'):
        assert form in case_page.text
    # The other volunteer: exactly like a case that does not exist.
    hidden = await other.http.get(f"/console/cases/{case_id}")
    missing = await other.http.get("/console/cases/CS-ZZZZ-ZZZZ")
    assert hidden.status_code == missing.status_code == 404
    assert hidden.text == missing.text
    # A volunteer has no board or log.
    assert (await volunteer.http.get("/console/board")).status_code == 404
    assert (await volunteer.http.get("/console/audit")).status_code == 404
    # The reveal itself goes through the API with the page's CSRF token, and is audited.
    revealed = await volunteer.http.post(
        f"/api/v1/cases/{case_id}/reveal",
        json={"fields": ["caller_name"], "purpose": "intake"},
        headers=volunteer.headers(),
    )
    assert revealed.status_code == 200 and revealed.json()["values"]["caller_name"] == CANARY_NAME
    forged = await volunteer.http.post(
        f"/api/v1/cases/{case_id}/reveal", json={"fields": ["caller_name"], "purpose": "intake"}
    )
    assert forged.status_code == 403
    for staff in (volunteer, other):
        await staff.http.aclose()


async def test_supervisor_board_and_audit_viewer(app: FastAPI) -> None:
    supervisor = await sign_in(app, roles="supervisor")
    board = await supervisor.http.get("/console/board")
    assert board.status_code == 200
    assert_no_inline_script(board.text)
    assert 'data-live="board"' in board.text
    assert 'data-alert="alert.nobody_now"' in board.text  # nobody is on call in this test
    fragment = await supervisor.http.get("/console/fragments/board")
    assert fragment.status_code == 200 and "<html" not in fragment.text
    audit_page = await supervisor.http.get("/console/audit", params={"action": "auth.login"})
    assert audit_page.status_code == 200
    assert_forms_carry_csrf(audit_page.text, supervisor.csrf)
    assert "auth.login" in audit_page.text and 'id="verify-form"' in audit_page.text
    assert 'id="export-form"' in audit_page.text and 'data-action="auth.login"' in audit_page.text
    bad_filter = await supervisor.http.get("/console/audit", params={"actor": "<script>"})
    assert bad_filter.status_code == 422
    for path in ("/console/cases?status=open&language=es", "/console/break-glass", "/console/schedule"):
        page = await supervisor.http.get(path)
        assert page.status_code == 200, path
        assert_no_inline_script(page.text)
        assert_forms_carry_csrf(page.text, supervisor.csrf)
    assert "<svg" in board.text and 'role="img"' in board.text  # the charts, server-side
    await supervisor.http.aclose()


async def test_staff_management_page(app: FastAPI) -> None:
    admin = await sign_in(app, roles="admin")
    supervisor = await sign_in(app, roles="supervisor")
    managed = await admin.http.get("/console/users")
    assert managed.status_code == 200
    assert_no_inline_script(managed.text)
    assert_forms_carry_csrf(managed.text, admin.csrf)
    assert 'id="new-user"' in managed.text and "/reset-mfa" in managed.text and "/disable" in managed.text
    assert supervisor.user_public_id in managed.text
    assert f'id="tz-{supervisor.user_public_id}"' in managed.text
    edited = await admin.http.patch(
        f"/api/v1/users/{supervisor.user_public_id}",
        json={"roles": ["supervisor"], "languages": ["en", "ht"], "timezone": "America/Chicago"},
        headers=admin.headers(),
    )
    assert edited.status_code == 200, edited.text
    assert 'value="America/Chicago"' in (await admin.http.get("/console/users")).text
    read_only = await supervisor.http.get("/console/users")
    assert read_only.status_code == 200 and 'id="new-user"' not in read_only.text
    assert "/disable" not in read_only.text
    for staff in (admin, supervisor):
        await staff.http.aclose()


async def test_schedule_editor_lists_shifts_and_date_changes(app: FastAPI) -> None:
    supervisor = await sign_in(app, roles="supervisor")
    volunteer = await sign_in(app, roles="volunteer")
    target = volunteer.user_public_id
    shifts = await supervisor.http.put(
        f"/api/v1/schedule/{target}",
        json={"shifts": [{"weekday": "sat", "start": "22:00", "duration_minutes": 480}]},
        headers=supervisor.headers(),
    )
    assert shifts.status_code == 200, shifts.text
    override = await supervisor.http.post(
        f"/api/v1/schedule/{target}/overrides",
        json={"date": "2026-12-24", "kind": "off"},
        headers=supervisor.headers(),
    )
    assert override.status_code == 201, override.text
    page = await supervisor.http.get("/console/schedule")
    assert page.status_code == 200
    assert_no_inline_script(page.text)
    assert_forms_carry_csrf(page.text, supervisor.csrf)
    assert f'data-volunteer="{target}"' in page.text and 'value="22:00"' in page.text
    assert "2026-12-24" in page.text and f"/overrides/{override.json()['id']}" in page.text
    assert 'class="gap"' in page.text  # the coverage grid marks hours nobody covers
    for staff in (supervisor, volunteer):
        await staff.http.aclose()
