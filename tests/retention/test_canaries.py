"""Canaries over the legal-hold and erasure routes: the hold's reason and the numbers a supervisor
types in erasure requests (one that called, one that never did, one under a hold) appear in no
database column, log line or HTTP response, before or after the requests are processed."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI

from app.audit.service import Actor
from app.callers.service import find_or_create_caller
from app.cases.service import create_case
from tests.support.canary import Canaries, CanaryScan
from tests.support.staff import sign_in

SETUP = Actor("cli:test")


@pytest.fixture(autouse=True)
def cheap_hashing(app: FastAPI) -> None:
    from app.accounts.passwords import Passwords

    app.state.auth.hasher.passwords = Passwords(time_cost=1, memory_cost=1024, allow_below_floor=True)


class ThreeNumbers(Canaries):
    """The run's canaries plus a third number: a caller kept by a legal hold."""

    def needles(self, extra: tuple[str, ...] = ()) -> dict[str, list[bytes]]:
        return super().needles((self.phone(2), *extra))


async def test_holds_and_erasures_leak_no_plaintext(app: FastAPI, captured_logs: Any) -> None:
    scan = CanaryScan(app.state.database, captured_logs, canaries=ThreeNumbers())
    known, unknown, held = (scan.canaries.phone(n) for n in range(3))
    case_ids = []
    async with app.state.database.sessionmaker() as session:
        for phone in (known, held):
            caller, _ = await find_or_create_caller(
                session, app.state.sealer, app.state.broker, app.state.clock, phone
            )
            case = await create_case(
                session, app.state.sealer, app.state.clock, actor=SETUP, language="es", caller=caller
            )
            case_ids.append(case.public_id)
        await session.commit()
    first = await sign_in(app, roles="supervisor")
    second = await sign_in(app, roles="supervisor")
    answers = []
    hold = await first.http.post(
        "/api/v1/holds",
        json={"case": case_ids[0], "scope": "case", "reason": scan.canaries.note},
        headers=first.headers(),
    )
    assert hold.status_code == 201
    answers += [hold, await first.http.get("/api/v1/holds")]
    released = await first.http.post(f"/api/v1/holds/{hold.json()['id']}/release", headers=first.headers())
    kept = await first.http.post(
        "/api/v1/holds",
        json={"case": case_ids[1], "scope": "caller", "reason": scan.canaries.note},
        headers=first.headers(),
    )
    assert kept.status_code == 201
    answers += [released, kept]
    # The typed numbers: one that called, one that never did, one under a hold. Each is sealed on
    # its request, opened only by the approval, then shredded.
    requested = [
        await first.http.post("/api/v1/erasures", json={"phone": phone}, headers=first.headers())
        for phone in (known, unknown, held)
    ]
    assert [r.status_code for r in requested] == [202, 202, 202]
    answers += [*requested, await first.http.get("/api/v1/erasures")]
    scan.responses = [a.content for a in answers]
    assert await scan.hits() == []  # pending: sealed, never looked up
    approved = [
        await second.http.post(f"/api/v1/erasures/{r.json()['id']}/approve", headers=second.headers())
        for r in requested
    ]
    assert [a.status_code for a in approved] == [200, 200, 200]
    assert [a.json()["outcome"]["matched"] for a in approved] == [1, 0, 1]
    answers += [*approved, await second.http.get("/api/v1/erasures")]
    scan.responses = [a.content for a in answers]
    assert await scan.hits() == []
