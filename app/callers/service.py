"""Callers: recognising a possible repeat caller by blind index, confirmed by decrypting in-process."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.access.broker import AccessBroker
from app.access.policy import Principal, Purpose
from app.callers.models import Caller
from app.clock import Clock
from app.keys.store import KeyStore, Sealer
from app.publicid import new_public_id
from telephony.numbers import last_two_digits, normalize_e164

MATCHER = Principal.system("caller-match")


def phone_index(keys: KeyStore, e164: str) -> str:
    return keys.material.blind_indexer().phone(e164).hex()


async def find_or_create_caller(
    session: AsyncSession, sealer: Sealer, broker: AccessBroker, clock: Clock, raw_number: str | None
) -> tuple[Caller | None, bool]:
    """The caller for a number, and whether they were seen before. Withheld numbers → (None, False)."""
    e164 = normalize_e164(raw_number)
    if e164 is None:
        return None, False
    index = phone_index(sealer.keys, e164)
    candidates = list(await session.scalars(select(Caller).where(Caller.phone_index == index)))
    for candidate in candidates:
        # The index is a truncated keyed hash: confirm the candidate by its sealed number (audited).
        number = await broker.reveal_for_system(
            session,
            MATCHER,
            candidate,
            "phone",
            purpose=Purpose.caller_match,
            object_type="caller",
            object_id=candidate.public_id,
        )
        if number == e164:
            candidate.last_contact_at = clock.now()
            return candidate, True
    caller = Caller(
        public_id=new_public_id("CL"),
        phone_index=index,
        phone_last2=last_two_digits(e164),
        created_at=clock.now(),
    )
    await sealer.seal(session, caller, "phone", e164)
    caller.last_contact_at = clock.now()
    session.add(caller)
    await session.flush()
    return caller, False
