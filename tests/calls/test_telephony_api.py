"""The volunteer-facing telephony endpoints: offers and callbacks (metadata only, canaries checked)."""

from __future__ import annotations

from datetime import timedelta

from fastapi import FastAPI
from sqlalchemy import select

from app.accounts.models import User
from app.audit.service import Actor
from app.callers.service import find_or_create_caller
from app.calls.models import Callback, CallbackState
from app.cases.models import Case
from app.cases.service import create_case
from app.jobs.models import Job
from app.publicid import new_public_id
from app.routing import service as routing
from app.routing.models import Offer, Task, TaskState
from tests.support.canary import CanaryScan, LogCapture
from tests.support.staff import SignedInClient, sign_in

SETUP = Actor("cli:test")


async def give_verified_phone(app: FastAPI, who: SignedInClient, phone: str) -> None:
    async with app.state.database.sessionmaker() as session, session.begin():
        user = (await session.scalars(select(User).where(User.public_id == who.user_public_id))).one()
        await app.state.sealer.seal(session, user, "phone", phone)
        user.phone_verified_at = app.state.clock.now()


async def open_callback(app: FastAPI, caller_phone: str, name: str) -> str:
    async with app.state.database.sessionmaker() as session:
        caller, _ = await find_or_create_caller(
            session, app.state.sealer, app.state.broker, app.state.clock, caller_phone
        )
        await session.commit()
    async with app.state.database.sessionmaker() as session, session.begin():
        case = await create_case(
            session,
            app.state.sealer,
            app.state.clock,
            actor=SETUP,
            language="es",
            caller=caller,
            fields={"caller_name": name},
        )
        callback = Callback(
            public_id=new_public_id("CB"),
            case_id=case.id,
            language="es",
            emergency=True,
            state=CallbackState.open,
            created_at=app.state.clock.now(),
        )
        session.add(callback)
    return callback.public_id


async def chat_offer(app: FastAPI, to: SignedInClient) -> str:
    async with app.state.database.sessionmaker() as session, session.begin():
        owner = (await session.scalars(select(User).where(User.public_id == to.user_public_id))).one()
        task = await routing.create_task(
            session, app.state.clock, routing.RoutingTimes(), channel="chat", language="es"
        )
        task.state = TaskState.offered
        now = app.state.clock.now()
        offer = Offer(
            public_id=new_public_id("OF"),
            task_id=task.id,
            volunteer_id=owner.id,
            channel="chat",
            state="pending",
            created_at=now,
            expires_at=now + timedelta(seconds=30),
        )
        session.add(offer)
    return offer.public_id


async def test_callbacks_one_claim_wins_and_the_case_becomes_the_claimers(
    app: FastAPI, captured_logs: LogCapture
) -> None:
    scan = CanaryScan(app.state.database, captured_logs)
    first, second = await sign_in(app), await sign_in(app)
    await give_verified_phone(app, first, scan.canaries.phone(1))
    callback = await open_callback(app, scan.canaries.phone(0), scan.canaries.name)
    responses = []
    listed = await first.http.get("/api/v1/callbacks")
    responses.append(listed)
    assert listed.status_code == 200
    (item,) = listed.json()["callbacks"]
    assert item["id"] == callback and item["emergency"] and item["state"] == "open"
    no_phone = await second.http.post(f"/api/v1/callbacks/{callback}/claim", headers=second.headers())
    assert no_phone.status_code == 409 and no_phone.json()["error"]["code"] == "phone_not_verified"
    await give_verified_phone(app, second, scan.canaries.phone(2))
    won = await first.http.post(f"/api/v1/callbacks/{callback}/claim", headers=first.headers())
    lost = await second.http.post(f"/api/v1/callbacks/{callback}/claim", headers=second.headers())
    responses += [no_phone, won, lost]
    assert won.status_code == 200 and won.json()["claimed_by"] == first.user_public_id
    assert lost.status_code == 409 and lost.json()["error"]["code"] == "already_claimed"
    missing = await first.http.post("/api/v1/callbacks/CB-2222-2222/claim", headers=first.headers())
    assert missing.status_code == 404
    # The claimer now holds the case, and a job will ring them.
    async with app.state.database.sessionmaker() as session:
        case = (await session.scalars(select(Case))).one()
        owner = (await session.scalars(select(User).where(User.public_id == first.user_public_id))).one()
        assert case.assignee_id == owner.id
        kinds = list(await session.scalars(select(Job.kind)))
        assert "calls.place_callback" in kinds
    assert (await first.http.get(f"/api/v1/cases/{item['case']}")).status_code == 200
    assert (await second.http.get(f"/api/v1/cases/{item['case']}")).status_code == 404
    responses.append(await first.http.get("/api/v1/callbacks"))
    scan.responses = [r.content for r in responses]
    assert await scan.hits() == []


async def test_a_caller_who_said_calling_back_is_unsafe_cannot_be_claimed(app: FastAPI) -> None:
    volunteer = await sign_in(app)
    await give_verified_phone(app, volunteer, "+12125550191")
    callback = await open_callback(app, "+12025550192", "Someone")
    from app.callers.models import Caller

    async with app.state.database.sessionmaker() as session, session.begin():
        (await session.scalars(select(Caller))).one().safe_to_call = False
    refused = await volunteer.http.post(f"/api/v1/callbacks/{callback}/claim", headers=volunteer.headers())
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "unsafe_to_call"


async def test_offers_are_listed_and_answered_by_their_volunteer_only(
    app: FastAPI, captured_logs: LogCapture
) -> None:
    scan = CanaryScan(app.state.database, captured_logs)
    mine, other = await sign_in(app), await sign_in(app)
    offer = await chat_offer(app, mine)
    listed = await mine.http.get("/api/v1/offers")
    assert [o["id"] for o in listed.json()["offers"]] == [offer]
    assert (await other.http.get("/api/v1/offers")).json()["offers"] == []
    assert (
        await other.http.post(f"/api/v1/offers/{offer}/accept", headers=other.headers())
    ).status_code == 404
    accepted = await mine.http.post(f"/api/v1/offers/{offer}/accept", headers=mine.headers())
    assert accepted.status_code == 200 and accepted.json()["state"] == "accepted"
    again = await mine.http.post(f"/api/v1/offers/{offer}/decline", headers=mine.headers())
    assert again.status_code == 409
    declined_offer = await chat_offer(app, mine)
    declined = await mine.http.post(f"/api/v1/offers/{declined_offer}/decline", headers=mine.headers())
    assert declined.status_code == 200
    async with app.state.database.sessionmaker() as session:
        states = dict((await session.execute(select(Offer.public_id, Offer.state))).all())
        assert states[offer] == "accepted" and states[declined_offer] == "declined"
        tasks = {t.public_id: t.state for t in await session.scalars(select(Task))}
        assert TaskState.assigned in tasks.values()
    scan.responses = [listed.content, accepted.content, declined.content]
    assert await scan.hits() == []
