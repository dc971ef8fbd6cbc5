"""Sign-in under a flood (security review, finding 6).

40 parallel sign-ins from one address used to queue behind argon2 (and, on SQLite, behind the
write lock each of them held while waiting) until the API deadline: 401s, 503s and 429s, and
volunteers could not sign in. Now the queue is bounded — 429 at once, without hashing, when it is
long overall or from one address — no transaction is held while waiting, and a sign-in with a
known-device cookie has its own lane.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from app.accounts.auth import CredentialHasher, TooManyAttempts
from app.accounts.passwords import Passwords
from tests.support.staff import PASSWORD, next_code, sign_in, user_row

LOGIN = "/api/v1/auth/login"
FLOOD = "flood-"


class GatedPasswords(Passwords):
    """Cheap argon2 for everyone, except that flood passwords block until the gate opens: the
    flood's hashes are as slow as the test needs, the volunteer's are fast."""

    def __init__(self) -> None:
        super().__init__(time_cost=1, memory_cost=1024, allow_below_floor=True)
        self.gate = threading.Event()
        self.lock = threading.Lock()
        self.flood_hashed = 0
        self.others_hashed = 0

    def verify(self, stored_hash: str | None, password: str) -> bool:
        if password.startswith(FLOOD):
            with self.lock:
                self.flood_hashed += 1
            self.gate.wait(timeout=30)
        else:
            with self.lock:
                self.others_hashed += 1
        return super().verify(stored_hash, password)


@pytest.fixture
def gated(app: FastAPI) -> GatedPasswords:
    passwords = GatedPasswords()
    app.state.auth.hasher.passwords = passwords
    return passwords


@pytest.fixture
def settings(make_settings: Any) -> Any:
    # The flood's queued requests are held in argon2 on purpose until the test opens the gate: a
    # loaded machine must not turn them into deadline 503s first.
    return make_settings(api_deadline_seconds=60)


async def until(condition: Callable[[], bool], seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def test_a_flood_is_refused_at_once_and_a_known_device_signs_in(
    app: FastAPI, gated: GatedPasswords
) -> None:
    volunteer = await sign_in(app)  # this browser now holds a known-device cookie
    hasher: CredentialHasher = app.state.auth.hasher
    flood = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, raise_app_exceptions=False, client=("203.0.113.9", 40000)),
        base_url="https://hotline.test",
    )
    body = {"email": volunteer.email, "totp": "123456"}
    tasks = [
        asyncio.create_task(flood.post(LOGIN, json={**body, "password": f"{FLOOD}{i:02d}-guess"}))
        for i in range(40)
    ]
    try:
        # Everything beyond the per-address queue is answered 429 while the queued ones are still
        # stuck in argon2 (the gate is shut): those answers did not wait for, or do, any hashing.
        await until(lambda: sum(t.done() for t in tasks) >= 40 - hasher.per_address_limit)
        refused = [t.result() for t in tasks if t.done()]
        assert len(refused) == 40 - hasher.per_address_limit
        assert {r.status_code for r in refused} == {429}
        assert all(int(r.headers["retry-after"]) >= 1 for r in refused)
        assert {r.json()["error"]["code"] for r in refused} == {"too_many_attempts"}
        assert gated.flood_hashed <= 2  # two hashing slots, both held by the flood

        # The volunteer's own browser (known device, another address) signs in meanwhile.
        before = gated.others_hashed
        started = time.monotonic()
        mine = await volunteer.http.post(
            LOGIN,
            json={"email": volunteer.email, "password": PASSWORD, "totp": next_code(app, volunteer.secret)},
        )
        elapsed = time.monotonic() - started
        assert mine.status_code == 200, mine.text
        assert gated.others_hashed == before + 1 and not gated.gate.is_set()
        assert elapsed < 2, elapsed
    finally:
        gated.gate.set()
        rest = await asyncio.gather(*tasks)
    # The queued flood attempts are answered once their hashes finish: wrong password, 401.
    queued = [r for r in rest if r.status_code != 429]
    assert [r.status_code for r in queued] == [401] * hasher.per_address_limit
    assert gated.flood_hashed == hasher.per_address_limit
    assert (await user_row(app, volunteer.user_public_id)).failed_logins == hasher.per_address_limit


async def test_the_global_queue_is_bounded_too() -> None:
    passwords = GatedPasswords()
    hasher = CredentialHasher(passwords, queue_limit=3, per_address_limit=2)
    stored = passwords.hash("something else entirely")
    pending = [
        asyncio.create_task(hasher.verify(stored, f"{FLOOD}{i}", address=address))
        for i, address in enumerate(["192.0.2.1", "192.0.2.1", "192.0.2.2"])
    ]
    try:
        await until(lambda: passwords.flood_hashed == 2)
        with pytest.raises(TooManyAttempts):  # per address: 192.0.2.1 has two queued
            await hasher.verify(stored, "x", address="192.0.2.1")
        with pytest.raises(TooManyAttempts):  # overall: three queued
            await hasher.verify(stored, "x", address="192.0.2.3")
        assert passwords.others_hashed == 0
        # A known-device sign-in skips the queue and its limits.
        assert await hasher.verify(stored, "something else entirely", known_device=True)
    finally:
        passwords.gate.set()
        assert await asyncio.gather(*pending) == [False, False, False]
    # Queue places are given back.
    assert await hasher.verify(stored, "something else entirely", address="192.0.2.1")
