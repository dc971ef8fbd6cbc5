"""Know-your-rights texts API: every staff member reads them (with which version is served and
whether its review is stale); admins add versions and record reviews."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints
from sqlalchemy import select

from app.access.permissions import Permission
from app.accounts.deps import Auth, Staff, require
from app.cases.router import public_ids
from app.cases.schemas import PublicId
from app.db.session import DbSession
from app.errors import NotFound
from app.rights import service
from app.rights.models import RightsText, RightsTopic
from app.validation import one_line, printable

router = APIRouter(prefix="/rights", tags=["rights"])
Reader = Annotated[Staff, require(Permission.rights_read)]
Manager = Annotated[Staff, require(Permission.rights_manage)]
TopicName = Literal[
    "at_the_door", "at_work", "in_the_street", "family_detained", "finding_someone", "right_to_lawyer"
]
LanguageName = Literal["en", "es", "cmn", "yue", "ht", "ru", "bn"]
HttpsUrl = Annotated[
    str,
    StringConstraints(pattern=r"^https://[^\s\x00-\x1f\x7f]{3,490}$"),
    AfterValidator(printable),
]


class RightsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    topic: TopicName
    language: LanguageName
    title: Annotated[
        str, StringConstraints(strip_whitespace=True, min_length=1, max_length=80), AfterValidator(one_line)
    ]
    body: Annotated[
        str, StringConstraints(min_length=1, max_length=service.MAX_BODY), AfterValidator(printable)
    ] = Field(description="Spoken by text-to-speech (≤ 4,000 characters) and texted (split beyond 1,600).")
    audio_url: HttpsUrl | None = Field(
        None, description="A recording of the body; required to play it in a language without a Twilio voice."
    )


class ReviewIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    note: (
        Annotated[str, StringConstraints(strip_whitespace=True, max_length=500), AfterValidator(printable)]
        | None
    ) = None


class RightsOut(BaseModel):
    id: str
    topic: str
    language: str
    version: int
    title: str
    body: str
    audio_url: str | None
    placeholder: bool
    author: str | None
    created_at: datetime
    reviewed_by: str | None
    reviewed_at: datetime | None
    served: bool
    stale: bool
    voice_ready: bool


class RightsList(BaseModel):
    texts: list[RightsOut]


async def _out(db: DbSession, auth: Any, rows: list[RightsText]) -> list[RightsOut]:
    users = await public_ids(db, {r.created_by_id for r in rows} | {r.reviewed_by_id for r in rows})
    now, max_age = auth.clock.now(), auth.settings.rights_review_max_days
    served_ids = set()
    for topic, language in {(r.topic, r.language) for r in rows}:
        current = await service.current(db, topic, language)
        if current is not None:
            served_ids.add(current.id)
    return [RightsOut(**service.describe(r, users, now, max_age, r.id in served_ids)) for r in rows]


@router.get("", response_model=RightsList)
async def list_texts(
    staff: Reader,
    db: DbSession,
    auth: Auth,
    topic: Annotated[TopicName | None, Query()] = None,
    language: Annotated[LanguageName | None, Query()] = None,
    stale: Annotated[
        bool | None, Query(description="Only texts served with a review older than the limit")
    ] = None,
) -> RightsList:
    """Every version, newest first (filters by topic and language); `served` marks what callers get."""
    query = select(RightsText).order_by(RightsText.topic, RightsText.language, RightsText.version.desc())
    if topic is not None:
        query = query.where(RightsText.topic == topic)
    if language is not None:
        query = query.where(RightsText.language == language)
    texts = await _out(db, auth, list(await db.scalars(query)))
    if stale is not None:
        texts = [t for t in texts if t.served and t.stale == stale]
    return RightsList(texts=texts)


@router.post("", response_model=RightsOut, status_code=201, responses={422: {}})
async def add_text(body: RightsIn, staff: Manager, db: DbSession, auth: Auth) -> RightsOut:
    """A new version (unreviewed: not served until another admin reviews it)."""
    text = await service.add_version(
        db,
        auth.clock,
        topic=RightsTopic(body.topic),
        language=body.language,
        title=body.title,
        body=body.body,
        audio_url=body.audio_url,
        author=staff.user,
        actor=staff.principal.actor,
    )
    return (await _out(db, auth, [text]))[0]


@router.post(
    "/{text_id}/review",
    response_model=RightsOut,
    responses={404: {}, 409: {"description": "Already reviewed, a placeholder, or your own text."}},
)
async def review_text(
    text_id: PublicId, body: ReviewIn, staff: Manager, db: DbSession, auth: Auth
) -> RightsOut:
    """Record the review: from now on this version is what callers hear and receive."""
    text = await db.scalar(select(RightsText).where(RightsText.public_id == text_id))
    if text is None:
        raise NotFound()
    await service.review(db, auth.clock, text, staff.user, body.note, actor=staff.principal.actor)
    return (await _out(db, auth, [text]))[0]
