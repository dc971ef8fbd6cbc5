"""A possible repeat caller is linked only by the code word, with five tries per contact."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from sqlalchemy import select

from app.audit.models import AuditEntry
from app.audit.service import Actor
from app.callers.service import find_or_create_caller
from app.cases.models import Case
from app.cases.service import create_case
from app.contacts.models import Channel, Contact
from app.contacts.service import create_contact
from tests.support.staff import SignedInClient, sign_in, user_row

SETUP = Actor("cli:test")
NUMBER = "+12025550147"


@pytest.fixture(autouse=True)
def cheap_hashing(app: FastAPI) -> None:
    from app.accounts.passwords import Passwords

    app.state.auth.hasher.passwords = Passwords(time_cost=1, memory_cost=1024, allow_below_floor=True)


async def repeat_call(app: FastAPI, volunteer: SignedInClient) -> tuple[str, str, str]:
    """An earlier case with a code word, and a new case + contact from the same number."""
    async with app.state.database.sessionmaker() as session:
        caller, _ = await find_or_create_caller(
            session, app.state.sealer, app.state.broker, app.state.clock, NUMBER
        )
        await session.commit()
    user = await user_row(app, volunteer.user_public_id)
    async with app.state.database.sessionmaker() as session, session.begin():
        assert caller is not None
        earlier = await create_case(
            session,
            app.state.sealer,
            app.state.clock,
            actor=SETUP,
            language="es",
            caller=caller,
            fields={"code_word": "Girasol", "caller_name": "Earlier Caller"},
        )
        current = await create_case(
            session,
            app.state.sealer,
            app.state.clock,
            actor=SETUP,
            language="es",
            caller=caller,
            assignee=user,
        )
        contact = await create_contact(
            session,
            app.state.sealer,
            app.state.clock,
            channel=Channel.voice,
            twilio_sid="CA" + "1" * 32,
            caller=caller,
        )
        contact.case_id = current.id
        return earlier.public_id, current.public_id, contact.public_id


async def test_the_right_code_word_links_and_grants_access(app: FastAPI) -> None:
    volunteer = await sign_in(app)
    earlier, current, contact = await repeat_call(app, volunteer)
    detail = (await volunteer.http.get(f"/api/v1/cases/{current}")).json()
    assert detail["possible_repeat_caller"] is True and earlier not in str(detail)
    assert (await volunteer.http.get(f"/api/v1/cases/{earlier}")).status_code == 404
    wrong = await volunteer.http.post(
        f"/api/v1/cases/{current}/link-contact",
        json={"contact": contact, "code_word": "tulipan"},
        headers=volunteer.headers(),
    )
    assert wrong.status_code == 422 and "Tries left: 4" in wrong.json()["error"]["message"]
    assert "tulipan" not in wrong.text and "Girasol" not in wrong.text
    right = await volunteer.http.post(
        f"/api/v1/cases/{current}/link-contact",
        json={"contact": contact, "code_word": " girasol "},
        headers=volunteer.headers(),
    )
    assert right.status_code == 200 and right.json() == {"linked": True, "case": earlier}
    assert (await volunteer.http.get(f"/api/v1/cases/{earlier}")).status_code == 200
    async with app.state.database.sessionmaker() as session:
        moved = (await session.scalars(select(Contact).where(Contact.public_id == contact))).one()
        linked_case = (await session.scalars(select(Case).where(Case.public_id == earlier))).one()
        actions = [e.action for e in await session.scalars(select(AuditEntry).order_by(AuditEntry.seq))]
    assert moved.case_id == linked_case.id
    assert actions.count("case.link_refused") == 1 and actions.count("case.contact_linked") == 1


async def test_five_tries_per_contact(app: FastAPI) -> None:
    volunteer = await sign_in(app)
    _earlier, current, contact = await repeat_call(app, volunteer)
    statuses = []
    for _ in range(6):
        response = await volunteer.http.post(
            f"/api/v1/cases/{current}/link-contact",
            json={"contact": contact, "code_word": "wrong word"},
            headers=volunteer.headers(),
        )
        statuses.append(response.status_code)
    assert statuses == [422, 422, 422, 422, 422, 409]
    right = await volunteer.http.post(
        f"/api/v1/cases/{current}/link-contact",
        json={"contact": contact, "code_word": "girasol"},
        headers=volunteer.headers(),
    )
    assert right.status_code == 409  # even the right word: this contact is spent


async def test_only_the_assigned_volunteer_may_try(app: FastAPI) -> None:
    volunteer = await sign_in(app)
    other = await sign_in(app)
    _earlier, current, contact = await repeat_call(app, volunteer)
    response = await other.http.post(
        f"/api/v1/cases/{current}/link-contact",
        json={"contact": contact, "code_word": "girasol"},
        headers=other.headers(),
    )
    assert response.status_code == 404
