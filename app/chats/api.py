"""Chat endpoints (DESIGN §6): message metadata by GET; bodies only through the audited reveal (one
audit entry per batch); a volunteer's reply; closing a conversation. `{id}` is the conversation's
public id (`CV-…`). Who may see what is the case's policy: the assigned volunteer; supervisors see
metadata, and content only with break-glass.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from sqlalchemy import select

from app.access.content import check_content
from app.access.permissions import Permission
from app.access.policy import Purpose
from app.accounts.deps import Auth, Staff, require
from app.cases.models import Case
from app.cases.router import public_ids, visible_case
from app.cases.schemas import PublicId, StaffPurpose
from app.chats import service
from app.chats.models import ChatMessage, Conversation
from app.db.session import DbSession
from app.errors import NotFound

router = APIRouter(prefix="/chats", tags=["chats"])
ChatReader = Annotated[Staff, require(Permission.cases_read)]
ChatWriter = Annotated[Staff, require(Permission.cases_write)]
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such conversation, or not yours to see (indistinguishable)."}
}
REVEAL_BATCH = 100


class MessageMeta(BaseModel):
    id: str
    direction: str
    kind: str
    status: str
    error_code: int | None
    length: int
    media_count: int
    author: str | None
    created_at: datetime


class ConversationMessages(BaseModel):
    id: str
    case: str
    channel: str
    state: str
    language: str | None
    messages: list[MessageMeta]


class RevealMessagesIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    after: PublicId | None = None
    purpose: StaffPurpose


class RevealedMessage(BaseModel):
    id: str
    direction: str
    created_at: datetime
    body: str | None


class RevealedMessages(BaseModel):
    messages: list[RevealedMessage]
    more: bool


class ReplyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    body: Annotated[str, StringConstraints(min_length=1, max_length=service.MAX_BODY)] = Field(
        description="Up to 1,600 characters (one Twilio message)."
    )


class ReplyOut(BaseModel):
    id: str
    status: str


class ClosedOut(BaseModel):
    id: str
    state: str


async def visible_conversation(
    db: DbSession, staff: Staff, conversation_id: str
) -> tuple[Conversation, Case]:
    conversation = await db.scalar(select(Conversation).where(Conversation.public_id == conversation_id))
    if conversation is None:
        raise NotFound()
    case = await db.get(Case, conversation.case_id)
    if case is None:
        raise NotFound()
    return conversation, await visible_case(db, staff.principal, case.public_id)


async def messages_of(db: DbSession, conversation: Conversation) -> list[ChatMessage]:
    return list(
        await db.scalars(
            select(ChatMessage)
            .where(ChatMessage.conversation_id == conversation.id)
            .order_by(ChatMessage.created_at, ChatMessage.public_id)
        )
    )


@router.get("/{conversation_id}/messages", response_model=ConversationMessages, responses=NOT_FOUND)
async def list_messages(conversation_id: PublicId, staff: ChatReader, db: DbSession) -> ConversationMessages:
    """Metadata of every message (no bodies)."""
    conversation, case = await visible_conversation(db, staff, conversation_id)
    rows = await messages_of(db, conversation)
    authors = await public_ids(db, {m.author_id for m in rows})
    return ConversationMessages(
        id=conversation.public_id,
        case=case.public_id,
        channel=conversation.channel,
        state=conversation.state,
        language=conversation.language,
        messages=[
            MessageMeta(
                id=m.public_id,
                direction=m.direction,
                kind=m.kind,
                status=m.status,
                error_code=m.error_code,
                length=m.length,
                media_count=m.media_count,
                author=authors.get(m.author_id) if m.author_id else None,
                created_at=m.created_at,
            )
            for m in rows
        ],
    )


@router.post("/{conversation_id}/messages/reveal", response_model=RevealedMessages, responses=NOT_FOUND)
async def reveal_messages(
    conversation_id: PublicId, body: RevealMessagesIn, staff: ChatReader, db: DbSession, auth: Auth
) -> RevealedMessages:
    """Bodies of the messages after `after` (up to 100), for a stated purpose: one audit entry."""
    conversation, case = await visible_conversation(db, staff, conversation_id)
    purpose = Purpose(body.purpose)
    access = await check_content(
        db,
        auth.clock,
        staff.principal,
        case,
        action="chat.reveal",
        object_type="conversation",
        object_id=conversation.public_id,
        fields=["body"],
        purpose=purpose,
    )
    rows = await messages_of(db, conversation)
    if body.after is not None:
        index = next((i for i, m in enumerate(rows) if m.public_id == body.after), None)
        if index is None:
            raise NotFound()
        rows = rows[index + 1 :]
    batch, more = rows[:REVEAL_BATCH], len(rows) > REVEAL_BATCH
    revealed = (
        await auth.broker.reveal_content(
            db,
            access,
            purpose=purpose,
            rows=[(str(i), message, "body") for i, message in enumerate(batch)],
            action="chat.reveal",
            object_type="conversation",
            object_id=conversation.public_id,
        )
        if batch
        else None
    )
    bodies = [revealed.values.get(str(i)) if revealed else None for i in range(len(batch))]
    return RevealedMessages(
        messages=[
            RevealedMessage(id=m.public_id, direction=m.direction, created_at=m.created_at, body=b)
            for m, b in zip(batch, bodies, strict=True)
        ],
        more=more,
    )


@router.post(
    "/{conversation_id}/messages",
    response_model=ReplyOut,
    status_code=202,
    responses={**NOT_FOUND, 409: {"description": "Closed, the caller texted STOP, or texting is unsafe."}},
)
async def send_reply(
    conversation_id: PublicId, body: ReplyIn, staff: ChatWriter, db: DbSession, auth: Auth
) -> ReplyOut:
    """Reply to the caller (stored sealed at once, sent by a job). Only the assigned volunteer."""
    conversation, case = await visible_conversation(db, staff, conversation_id)
    await check_content(
        db,
        auth.clock,
        staff.principal,
        case,
        action="chat.reply",
        object_type="conversation",
        object_id=conversation.public_id,
        assigned_only=True,
    )
    message = await service.reply(
        _state(auth), db, conversation, staff.user, body.body, actor=staff.principal.actor
    )
    return ReplyOut(id=message.public_id, status=message.status)


@router.post("/{conversation_id}/close", response_model=ClosedOut, responses=NOT_FOUND)
async def close_conversation(
    conversation_id: PublicId, staff: ChatWriter, db: DbSession, auth: Auth
) -> ClosedOut:
    """End the conversation (the caller can write again any time: that opens a new one)."""
    conversation, case = await visible_conversation(db, staff, conversation_id)
    await check_content(
        db,
        auth.clock,
        staff.principal,
        case,
        action="chat.close",
        object_type="conversation",
        object_id=conversation.public_id,
        assigned_only=True,
    )
    await service.close(_state(auth), db, conversation, reason="volunteer")
    return ClosedOut(id=conversation.public_id, state=conversation.state)


def _state(auth: Any) -> Any:
    from types import SimpleNamespace

    return SimpleNamespace(
        settings=auth.settings, clock=auth.clock, keys=auth.keys, sealer=auth.sealer, broker=auth.broker
    )
