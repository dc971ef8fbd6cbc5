"""Intake drafts: autosaved sealed on the server, read back only through the audited reveal, gone
once the intake is saved; nobody else's draft is ever shown."""

from __future__ import annotations

from fastapi import FastAPI
from sqlalchemy import select

from app.audit.models import AuditEntry
from app.cases.models import IntakeDraft
from app.keys.sealed import Sealed
from tests.console.test_pages import make_assigned_case
from tests.support.staff import sign_in

TYPED = {"caller_name": "Ana Borrador", "a_number": "A12", "note": "husband detained at"}


async def test_a_draft_round_trip(app: FastAPI) -> None:
    volunteer = await sign_in(app, roles="volunteer")
    other = await sign_in(app, roles="volunteer")
    case_id = await make_assigned_case(app, volunteer.user_public_id)
    url = f"/api/v1/cases/{case_id}/draft"
    for _ in range(2):  # replaced, not duplicated
        saved = await volunteer.http.put(url, json={"fields": TYPED}, headers=volunteer.headers())
        assert saved.status_code == 200, saved.text
    assert (await other.http.put(url, json={"fields": TYPED}, headers=other.headers())).status_code == 404
    assert (await volunteer.http.put(url, json={"fields": TYPED})).status_code == 403  # no CSRF header
    async with app.state.database.sessionmaker() as session:
        drafts = list(await session.scalars(select(IntakeDraft)))
        assert len(drafts) == 1 and isinstance(drafts[0].fields, Sealed)
        started = list(
            await session.scalars(select(AuditEntry).where(AuditEntry.action == "case.draft_started"))
        )
        assert len(started) == 1
    revealed = await volunteer.http.post(
        f"/api/v1/cases/{case_id}/reveal",
        json={"fields": ["caller_name", "notes", "draft"], "purpose": "intake"},
        headers=volunteer.headers(),
    )
    assert revealed.status_code == 200, revealed.text
    assert revealed.json()["draft"] == TYPED
    async with app.state.database.sessionmaker() as session:
        audited = list(await session.scalars(select(AuditEntry).where(AuditEntry.action == "case.reveal")))
        # One entry for the whole reveal: the field, the notes and the draft.
        assert [(e.fields, e.purpose) for e in audited] == [("caller_name,draft,notes", "intake")]
    # Saving the intake removes the draft.
    patched = await volunteer.http.patch(
        f"/api/v1/cases/{case_id}", json={"fields": {"caller_name": "Ana"}}, headers=volunteer.headers()
    )
    assert patched.status_code == 200, patched.text
    again = await volunteer.http.post(
        f"/api/v1/cases/{case_id}/reveal",
        json={"fields": ["draft"], "purpose": "intake"},
        headers=volunteer.headers(),
    )
    assert again.status_code == 200 and again.json()["draft"] is None
    assert (await volunteer.http.delete(url, headers=volunteer.headers())).status_code == 204
    for staff in (volunteer, other):
        await staff.http.aclose()
