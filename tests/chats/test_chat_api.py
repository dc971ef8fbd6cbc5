"""The chat endpoints: metadata by GET, bodies only through the audited reveal (one audit entry per
batch), replies stored sealed, closing; access as for the case; canaries everywhere but the reveal."""

from __future__ import annotations

import uuid

import httpx
from fastapi import FastAPI
from sqlalchemy import func, select

from app.audit.models import AuditEntry
from app.chats.models import ChatMessage, Conversation
from app.jobs.models import Job
from tests.chats.test_messaging_webhooks import message_params, post
from tests.support.canary import CanaryScan, LogCapture
from tests.support.staff import sign_in


async def test_chat_api_end_to_end_with_canaries(
    app: FastAPI, client: httpx.AsyncClient, captured_logs: LogCapture
) -> None:
    scan = CanaryScan(app.state.database, captured_logs)
    caller = scan.canaries.phone(0)
    settings = app.state.settings
    hooks = []
    for body in (scan.canaries.note, "2", scan.canaries.name):
        hooks.append(
            await post(client, settings, "/twilio/messaging/incoming", message_params(body, from_=caller))
        )
        app.state.clock.advance(1)  # messages a second apart, as in life
    volunteer = await sign_in(app)
    other = await sign_in(app)
    async with app.state.database.sessionmaker() as session, session.begin():
        from app.accounts.models import User
        from app.cases.models import Case

        conversation = (await session.scalars(select(Conversation))).one()
        case = await session.get(Case, conversation.case_id)
        owner = (await session.scalars(select(User).where(User.public_id == volunteer.user_public_id))).one()
        assert case is not None
        case.assignee_id = owner.id
        conversation_id = conversation.public_id
    listed = await volunteer.http.get(f"/api/v1/chats/{conversation_id}/messages")
    assert listed.status_code == 200
    metas = listed.json()["messages"]
    assert [m["direction"] for m in metas] == ["in", "in", "in"] and "body" not in metas[0]
    assert (await other.http.get(f"/api/v1/chats/{conversation_id}/messages")).status_code == 404

    async def audit_count() -> int:
        async with app.state.database.sessionmaker() as session:
            return int(await session.scalar(select(func.count()).select_from(AuditEntry)) or 0)

    before = await audit_count()
    revealed = await volunteer.http.post(
        f"/api/v1/chats/{conversation_id}/messages/reveal",
        json={"purpose": "intake"},
        headers=volunteer.headers(),
    )
    assert revealed.status_code == 200
    bodies = [m["body"] for m in revealed.json()["messages"]]
    assert bodies == [scan.canaries.note, "2", scan.canaries.name]
    assert await audit_count() == before + 1  # one entry for the batch
    after_first = await volunteer.http.post(
        f"/api/v1/chats/{conversation_id}/messages/reveal",
        json={"purpose": "intake", "after": metas[0]["id"]},
        headers=volunteer.headers(),
    )
    assert [m["body"] for m in after_first.json()["messages"]] == ["2", scan.canaries.name]
    denied = await other.http.post(
        f"/api/v1/chats/{conversation_id}/messages/reveal",
        json={"purpose": "intake"},
        headers=other.headers(),
    )
    assert denied.status_code == 404
    too_long = await volunteer.http.post(
        f"/api/v1/chats/{conversation_id}/messages", json={"body": "x" * 1601}, headers=volunteer.headers()
    )
    assert too_long.status_code == 422
    sent = await volunteer.http.post(
        f"/api/v1/chats/{conversation_id}/messages",
        json={"body": f"Hello {scan.canaries.facility}"},
        headers=volunteer.headers(),
    )
    assert sent.status_code == 202 and sent.json()["status"] == "pending"
    async with app.state.database.sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(ChatMessage)) == 4
        assert "chats.send" in set(await session.scalars(select(Job.kind)))
    closed = await volunteer.http.post(f"/api/v1/chats/{conversation_id}/close", headers=volunteer.headers())
    assert closed.status_code == 200 and closed.json()["state"] == "closed"
    refused = await volunteer.http.post(
        f"/api/v1/chats/{conversation_id}/messages",
        json={"body": "still there?"},
        headers=volunteer.headers(),
    )
    assert refused.status_code == 409
    missing = await volunteer.http.get(f"/api/v1/chats/CV-{uuid.uuid4().hex[:4].upper()}-2222/messages")
    assert missing.status_code in (404, 422)
    scan.responses = [r.content for r in (*hooks, listed, denied, too_long, sent, closed, refused)]
    assert await scan.hits() == []
