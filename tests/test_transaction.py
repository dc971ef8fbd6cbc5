"""One transaction per request, committed before the response: a failed commit never answers 2xx."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI
from pydantic import BaseModel, Field
from sqlalchemy import event, func, select
from sqlalchemy.orm import Session

from app.clock import FrozenClock
from app.db.session import DbSession
from app.jobs.models import Job
from app.jobs.service import enqueue


class Body(BaseModel):
    name: str = Field(max_length=5)
    age: int


@pytest.fixture
def write_route(app: FastAPI, clock: FrozenClock) -> None:
    @app.post("/_test/write")
    async def write(session: DbSession) -> dict[str, str]:
        await enqueue(session, clock, "test.noop", {"n": 1})
        return {"status": "written"}


async def count_jobs(app: FastAPI) -> int:
    async with app.state.database.sessionmaker() as session:
        return int(await session.scalar(select(func.count()).select_from(Job)) or 0)


@pytest.mark.usefixtures("write_route")
async def test_write_is_committed_before_the_response(app: FastAPI, client: httpx.AsyncClient) -> None:
    response = await client.post("/_test/write")
    assert response.status_code == 200
    # Visible to another connection as soon as the client has the answer.
    assert await count_jobs(app) == 1


@pytest.mark.usefixtures("write_route")
async def test_failed_commit_never_answers_2xx(app: FastAPI, client: httpx.AsyncClient) -> None:
    def refuse(_session: Session) -> None:
        raise RuntimeError("simulated commit failure")

    event.listen(Session, "before_commit", refuse)
    try:
        response = await client.post("/_test/write")
    finally:
        event.remove(Session, "before_commit", refuse)
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "internal"
    assert await count_jobs(app) == 0


async def test_validation_errors_do_not_echo_input(app: FastAPI, client: httpx.AsyncClient) -> None:
    @app.post("/_test/validate")
    async def validate(body: Body) -> dict[str, str]:
        return {"ok": "yes"}

    response = await client.post("/_test/validate", json={"name": "CANARY-Maria-Lopez", "age": "x+15551234"})
    assert response.status_code == 422
    assert "CANARY" not in response.text and "15551234" not in response.text
    problems = response.json()["error"]["problems"]
    assert {tuple(p["loc"]) for p in problems} == {("body", "name"), ("body", "age")}
