"""Know-your-rights texts: versions, reviews, what may be served, what is stale. Services flush."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts.models import User
from app.audit import service as audit
from app.audit.service import Actor
from app.calls.prompts import CATALOGUE_LANGUAGES, catalogue
from app.clock import Clock
from app.errors import Conflict, InvalidInput
from app.publicid import new_public_id
from app.rights.models import RightsText, RightsTopic
from telephony.twiml import Prompt

# A body is spoken by <Say> (at most 4,096 characters, Twilio's limit) and texted (1,600 characters
# a message; longer texts are split and numbered when sent).
MAX_BODY = 4000


def language_has_voice(language: str) -> bool:
    return catalogue()[language].voice is not None


async def add_version(
    session: AsyncSession,
    clock: Clock,
    *,
    topic: RightsTopic,
    language: str,
    title: str,
    body: str,
    audio_url: str | None,
    author: User | None,
    actor: Actor,
) -> RightsText:
    """A new unreviewed version of a topic's text in one language."""
    if language not in CATALOGUE_LANGUAGES:
        raise InvalidInput(
            "Unknown language: use one of the voice menu's languages.", code="unknown_language"
        )
    if not body.strip() or len(body) > MAX_BODY:
        raise InvalidInput(f"The text must be 1 to {MAX_BODY} characters.", code="invalid_body")
    latest = await session.scalar(
        select(func.max(RightsText.version)).where(RightsText.topic == topic, RightsText.language == language)
    )
    text = RightsText(
        public_id=new_public_id("RT"),
        topic=topic.value,
        language=language,
        version=int(latest or 0) + 1,
        title=title,
        body=body,
        audio_url=audio_url,
        placeholder=False,
        created_by_id=author.id if author else None,
        created_at=clock.now(),
    )
    session.add(text)
    await session.flush()
    audit.record(
        session,
        clock,
        actor=actor,
        action="rights.version_added",
        object_type="rights_text",
        object_id=text.public_id,
        details={"topic": topic.value, "language": language, "version": text.version},
    )
    return text


async def review(
    session: AsyncSession, clock: Clock, text: RightsText, reviewer: User, note: str | None, *, actor: Actor
) -> RightsText:
    """Record an admin's review: from now on this version may be served (four eyes: not its author)."""
    if text.reviewed_at is not None:
        raise Conflict(
            "This version has already been reviewed; add a new version to change it.", code="reviewed"
        )
    if text.placeholder:
        raise Conflict(
            "A placeholder cannot be reviewed: add the real text as a new version.", code="placeholder"
        )
    if text.created_by_id == reviewer.id:
        raise Conflict("A text must be reviewed by someone other than its author.", code="own_text")
    text.reviewed_by_id, text.reviewed_at, text.review_note = reviewer.id, clock.now(), note
    audit.record(
        session,
        clock,
        actor=actor,
        action="rights.reviewed",
        object_type="rights_text",
        object_id=text.public_id,
        details={"topic": text.topic, "language": text.language, "version": text.version},
    )
    return text


async def current(session: AsyncSession, topic: RightsTopic | str, language: str) -> RightsText | None:
    """The text to serve: the latest reviewed version (never a draft or a placeholder)."""
    return await session.scalar(
        select(RightsText)
        .where(
            RightsText.topic == str(topic),
            RightsText.language == language,
            RightsText.reviewed_at.is_not(None),
            RightsText.placeholder.is_(False),
        )
        .order_by(RightsText.version.desc())
        .limit(1)
    )


def is_stale(text: RightsText, now: datetime, max_age_days: float) -> bool:
    return text.reviewed_at is not None and now - text.reviewed_at > timedelta(days=max_age_days)


async def servable_topics(session: AsyncSession, language: str) -> list[str]:
    """Topics with a reviewed text in `language`, in the fixed topic order."""
    reviewed = set(
        await session.scalars(
            select(RightsText.topic).where(
                RightsText.language == language,
                RightsText.reviewed_at.is_not(None),
                RightsText.placeholder.is_(False),
            )
        )
    )
    return [topic.value for topic in RightsTopic if topic.value in reviewed]


def describe(
    text: RightsText, users: dict[Any, str], now: datetime, max_age_days: float, served: bool
) -> dict[str, Any]:
    return {
        "id": text.public_id,
        "topic": text.topic,
        "language": text.language,
        "version": text.version,
        "title": text.title,
        "body": text.body,
        "audio_url": text.audio_url,
        "placeholder": text.placeholder,
        "author": users.get(text.created_by_id) if text.created_by_id else None,
        "created_at": text.created_at,
        "reviewed_by": users.get(text.reviewed_by_id) if text.reviewed_by_id else None,
        "reviewed_at": text.reviewed_at,
        "served": served,
        "stale": is_stale(text, now, max_age_days),
        "voice_ready": served and (language_has_voice(text.language) or text.audio_url is not None),
    }


def voice_prompt(text: RightsText) -> Prompt | None:
    """How a reviewed text is heard on a call: its recording when it has one, else the language's
    validated voice; ``None`` when neither exists (e.g. Haitian Creole without a recording)."""
    if text.audio_url:
        return Prompt.play(text.audio_url)
    prompts = catalogue()[text.language]
    if prompts.voice is None or prompts.say_language is None:
        return None
    return Prompt.say(text.body, voice=prompts.voice, language=prompts.say_language)


async def voice_texts(session: AsyncSession, language: str) -> list[RightsText]:
    """The reviewed texts a caller can hear in `language`, in the fixed topic order."""
    # One query (hold content asks on every poll): the latest reviewed version per topic.
    rows = await session.scalars(
        select(RightsText)
        .where(
            RightsText.language == language,
            RightsText.reviewed_at.is_not(None),
            RightsText.placeholder.is_(False),
        )
        .order_by(RightsText.version.desc())
    )
    latest: dict[str, RightsText] = {}
    for text in rows:
        latest.setdefault(text.topic, text)
    ordered = [latest[topic.value] for topic in RightsTopic if topic.value in latest]
    return [text for text in ordered if voice_prompt(text) is not None]
