from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.callers.models import Caller
from app.clock import Clock
from app.contacts.models import Channel, Contact
from app.keys.store import KeyStore, Sealer
from app.publicid import new_public_id


def sid_hash(keys: KeyStore, sid: str) -> str:
    """Keyed hash of a Twilio SID: finds the contact from a webhook without storing the SID in clear."""
    return keys.material.keyed_hasher().hash("twilio.sid", sid.encode()).hex()


async def create_contact(
    session: AsyncSession,
    sealer: Sealer,
    clock: Clock,
    *,
    channel: Channel,
    twilio_sid: str,
    caller: Caller | None = None,
    language: str | None = None,
    drill: bool = False,
) -> Contact:
    contact = Contact(
        public_id=new_public_id("CT"),
        channel=channel,
        caller_id=caller.id if caller else None,
        language=language,
        started_at=clock.now(),
        drill=drill,
        twilio_sid_hash=sid_hash(sealer.keys, twilio_sid),
    )
    await sealer.seal(session, contact, "twilio_sid", twilio_sid)
    session.add(contact)
    await session.flush()
    return contact


async def contact_by_sid(session: AsyncSession, keys: KeyStore, twilio_sid: str) -> Contact | None:
    return await session.scalar(select(Contact).where(Contact.twilio_sid_hash == sid_hash(keys, twilio_sid)))
