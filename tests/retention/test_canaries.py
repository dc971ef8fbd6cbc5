"""Canaries over the legal-hold and erasure routes: the hold's reason and the number a supervisor
types to find a caller appear in no database column, log line or HTTP response."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI

from app.audit.service import Actor
from app.callers.service import find_or_create_caller
from app.cases.service import create_case
from tests.support.canary import CanaryScan
from tests.support.staff import sign_in

SETUP = Actor("cli:test")


@pytest.fixture(autouse=True)
def cheap_hashing(app: FastAPI) -> None:
    from app.accounts.passwords import Passwords

    app.state.auth.hasher.passwords = Passwords(time_cost=1, memory_cost=1024, allow_below_floor=True)


async def test_holds_and_erasures_leak_no_plaintext(app: FastAPI, captured_logs: Any) -> None:
    scan = CanaryScan(app.state.database, captured_logs)
    phone = scan.canaries.phone(0)
    async with app.state.database.sessionmaker() as session:
        caller, _ = await find_or_create_caller(
            session, app.state.sealer, app.state.broker, app.state.clock, phone
        )
        case = await create_case(
            session, app.state.sealer, app.state.clock, actor=SETUP, language="es", caller=caller
        )
        await session.commit()
        case_id = case.public_id
    first = await sign_in(app, roles="supervisor")
    second = await sign_in(app, roles="supervisor")
    answers = []
    hold = await first.http.post(
        "/api/v1/holds",
        json={"case": case_id, "scope": "case", "reason": scan.canaries.note},
        headers=first.headers(),
    )
    assert hold.status_code == 201
    answers += [hold, await first.http.get("/api/v1/holds")]
    released = await first.http.post(f"/api/v1/holds/{hold.json()['id']}/release", headers=first.headers())
    requested = await first.http.post("/api/v1/erasures", json={"phone": phone}, headers=first.headers())
    assert requested.status_code == 201
    unknown = await first.http.post(
        "/api/v1/erasures", json={"phone": scan.canaries.phone(1)}, headers=first.headers()
    )
    assert unknown.status_code == 404
    approved = await second.http.post(
        f"/api/v1/erasures/{requested.json()['id']}/approve", headers=second.headers()
    )
    assert approved.status_code == 200
    answers += [released, requested, unknown, approved, await second.http.get("/api/v1/erasures")]
    scan.responses = [a.content for a in answers]
    assert await scan.hits() == []
