"""The coded verification call: hash-only storage, a job with ids only, expiry, tries, throttles."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts.models import User
from app.audit.service import PENDING_KEY, Actor
from app.clock import FrozenClock
from app.errors import InvalidInput
from app.jobs.models import Job
from app.volunteers import service
from app.volunteers.models import PhoneVerification
from app.volunteers.service import VerificationOutcome as Outcome
from crypto.blind_index import KeyedHasher
from tests.support.factories import Services, make_user

ME = Actor("U-TEST-TEST")


@pytest.fixture
def hasher(services: Services) -> KeyedHasher:
    return services.material.keyed_hasher()


def wrong(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


async def start(
    session: AsyncSession, clock: FrozenClock, hasher: KeyedHasher, user: User
) -> tuple[PhoneVerification, str]:
    verification = await service.start_phone_verification(session, clock, hasher, user, actor=ME)
    return verification, service.verification_code(hasher, verification.id)


async def test_start_stores_only_a_keyed_hash_and_enqueues_a_call_with_ids_only(
    session: AsyncSession, services: Services, clock: FrozenClock, hasher: KeyedHasher
) -> None:
    user = await make_user(session, services, phone="+12025550123")
    verification, code = await start(session, clock, hasher, user)
    assert len(code) == 6 and code.isdigit()
    row = await session.scalar(select(PhoneVerification).where(PhoneVerification.user_id == user.id))
    assert row is not None and code not in (row.code_hash, row.phone_fingerprint)
    assert row.expires_at == clock.now() + timedelta(minutes=10) and row.attempts == 0
    job = await session.scalar(select(Job).where(Job.kind == "volunteers.verification_call"))
    assert job is not None and job.payload == {"verification_id": str(verification.id)}
    # The handler can recompute the code from the id with the key, and only with the key.
    assert service.verification_code(hasher, verification.id) == code
    other_key = KeyedHasher(b"k" * 32, key_id="other")
    assert service.verification_code(other_key, verification.id) != code or code == "000000"
    actions = [e["action"] for e in session.sync_session.info[PENDING_KEY]]
    assert "volunteer.phone_verification_started" in actions


async def test_confirm_sets_phone_verified_at(
    session: AsyncSession, services: Services, clock: FrozenClock, hasher: KeyedHasher
) -> None:
    user = await make_user(session, services, phone="+12025550123")
    _, code = await start(session, clock, hasher, user)
    clock.advance(30)
    assert await service.confirm_phone_verification(session, clock, hasher, user, wrong(code), actor=ME) == (
        Outcome.wrong_code
    )
    assert user.phone_verified_at is None
    assert await service.confirm_phone_verification(session, clock, hasher, user, code, actor=ME) == (
        Outcome.verified
    )
    assert user.phone_verified_at == clock.now()
    # Used up: the same code does not verify twice.
    assert await service.confirm_phone_verification(session, clock, hasher, user, code, actor=ME) == (
        Outcome.no_verification
    )


async def test_five_tries_then_even_the_right_code_fails(
    session: AsyncSession, services: Services, clock: FrozenClock, hasher: KeyedHasher
) -> None:
    user = await make_user(session, services, phone="+12025550123")
    _, code = await start(session, clock, hasher, user)
    for _ in range(5):
        outcome = await service.confirm_phone_verification(
            session, clock, hasher, user, wrong(code), actor=ME
        )
        assert outcome == Outcome.wrong_code
    assert await service.confirm_phone_verification(session, clock, hasher, user, code, actor=ME) == (
        Outcome.exhausted
    )
    assert user.phone_verified_at is None


async def test_code_expires_after_ten_minutes(
    session: AsyncSession, services: Services, clock: FrozenClock, hasher: KeyedHasher
) -> None:
    user = await make_user(session, services, phone="+12025550123")
    _, code = await start(session, clock, hasher, user)
    clock.advance(timedelta(minutes=10))
    assert await service.confirm_phone_verification(session, clock, hasher, user, code, actor=ME) == (
        Outcome.expired
    )
    assert user.phone_verified_at is None


async def test_a_new_call_voids_the_previous_code_and_calls_are_throttled(
    session: AsyncSession, services: Services, clock: FrozenClock, hasher: KeyedHasher
) -> None:
    user = await make_user(session, services, phone="+12025550123")
    _, first = await start(session, clock, hasher, user)
    with pytest.raises(service.TooManyVerificationCalls) as throttled:
        await start(session, clock, hasher, user)
    assert throttled.value.status_code == 429 and 1 <= throttled.value.retry_after <= 61
    clock.advance(61)
    _, second = await start(session, clock, hasher, user)
    if first != second:
        assert await service.confirm_phone_verification(session, clock, hasher, user, first, actor=ME) == (
            Outcome.wrong_code
        )
    for _ in range(3):
        clock.advance(61)
        await start(session, clock, hasher, user)
    clock.advance(61)
    with pytest.raises(service.TooManyVerificationCalls) as daily:
        await start(session, clock, hasher, user)  # the sixth call within a day
    assert daily.value.retry_after > 3600
    clock.advance(timedelta(days=1))
    await start(session, clock, hasher, user)


async def test_no_phone_on_file_and_phone_changed_mid_verification(
    session: AsyncSession, services: Services, clock: FrozenClock, hasher: KeyedHasher
) -> None:
    nobody = await make_user(session, services)
    with pytest.raises(InvalidInput) as raised:
        await start(session, clock, hasher, nobody)
    assert raised.value.code == "no_phone"
    user = await make_user(session, services, phone="+12025550123")
    _, code = await start(session, clock, hasher, user)
    await services.sealer.seal(session, user, "phone", "+12025550199")
    assert await service.confirm_phone_verification(session, clock, hasher, user, code, actor=ME) == (
        Outcome.phone_changed
    )
    assert user.phone_verified_at is None
