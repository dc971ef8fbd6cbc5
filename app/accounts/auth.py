"""Sign-in, enrolment, sessions and step-up.

* Unknown user and wrong password take the same path, status, body and (argon2) time.
* TOTP codes are good once: the matched time step is stored with a compare-and-set, so two
  concurrent submissions of one code succeed exactly once.
* Throttling never becomes a lock-out tool: delays escalate from the 5th consecutive failure and
  stop hard at 100, but a browser that completed a full sign-in before (hashed device cookie)
  still gets through, and a supervisor can clear the stop. Unknown addresses are throttled the
  same way in memory, so throttling does not reveal which accounts exist.
* Second factors inside a session (step-up, break-glass — and so MFA resets, which need a fresh
  step-up) count on the same per-account counter: refused with 429 while the sign-in delay runs,
  and after `SECOND_FACTOR_SESSION_LIMIT` consecutive failures the session is ended (audited).
* Password hashing runs in worker threads, at most two at a time, so a flood of sign-ins cannot
  starve the event loop that answers Twilio. No transaction is held while waiting for it, the
  queue is bounded (429 at once, without hashing, when it is long, overall or from one address),
  and a sign-in carrying a known-device cookie for the account has its own lane.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import secrets
import time
from collections import defaultdict, deque
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.access.broker import AccessBroker
from app.access.policy import Principal, Purpose
from app.accounts import totp
from app.accounts.models import EnrolmentToken, Role, StaffDevice, StaffSession, User, UserStatus
from app.accounts.passwords import Passwords, check_policy
from app.accounts.service import token_hash
from app.audit import service as audit
from app.audit.service import Actor
from app.clock import Clock
from app.errors import DomainError, InvalidInput, Unauthenticated
from app.events import service as live
from app.keys.store import KeyStore, Sealer
from app.routing.models import Task, TaskState
from app.settings import Settings

SESSION_COOKIE = "__Host-hotline_session"
DEVICE_COOKIE = "__Host-hotline_device"
CSRF_HEADER = "X-CSRF-Token"
DEVICE_LIFETIME = timedelta(days=180)
DELAY_FROM_FAILURE = 5
HARD_STOP_AT = 100
# A wrong step-up or break-glass code that brings the account's consecutive failures (sign-in
# included) to this many ends the session it came from: with the delays from the 5th failure
# (1, 2, 4, 8, 16 s) a stolen session yields at most 10 guesses of a 6-digit code.
SECOND_FACTOR_SESSION_LIMIT = 10
# Sign-ins waiting for or in argon2 at once: beyond these, 429 at once without hashing. Two hashes
# run at a time, so 16 in the queue stay well inside the API deadline (8 s).
HASH_QUEUE_LIMIT = 16
HASH_QUEUE_PER_ADDRESS = 4
SIGN_IN = Principal.system("sign-in")
ANONYMOUS = Actor("anonymous")


class InvalidCredentials(Unauthenticated):
    code = "invalid_credentials"
    message = "Email, password or code is not right."


class TooManyAttempts(DomainError):
    status_code = 429
    code = "too_many_attempts"
    message = "Too many sign-in attempts. Wait a little and try again."

    def __init__(self, retry_after: int) -> None:
        super().__init__()
        self.retry_after = max(1, retry_after)


class StepUpRequired(DomainError):
    status_code = 403
    code = "step_up_required"
    message = "Confirm with a fresh authenticator code first."


def sha256_hex(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def failure_delay(failures: int) -> timedelta:
    """Seconds to wait after the n-th consecutive failure: 0 until the 5th, then 1, 2, 4 … 300."""
    if failures < DELAY_FROM_FAILURE:
        return timedelta(0)
    return timedelta(seconds=min(300, 2 ** (failures - DELAY_FROM_FAILURE)))


class CredentialHasher:
    """argon2id off the event loop, with bounded concurrency and a bounded queue.

    A sign-in joins the queue only while fewer than `queue_limit` are queued (waiting or hashing)
    overall and fewer than `per_address_limit` from its address; otherwise `TooManyAttempts` at
    once, before any hashing. A sign-in with a known-device cookie for the account skips the queue
    and its limits: it hashes in its own lane (`known_device_concurrency`), so a flood from
    elsewhere does not delay a volunteer's own browser.
    """

    def __init__(
        self,
        passwords: Passwords | None = None,
        concurrency: int = 2,
        *,
        queue_limit: int = HASH_QUEUE_LIMIT,
        per_address_limit: int = HASH_QUEUE_PER_ADDRESS,
        known_device_concurrency: int = 1,
    ) -> None:
        self.passwords = passwords or Passwords()
        self._slots = asyncio.Semaphore(concurrency)
        self._known_device_slots = asyncio.Semaphore(known_device_concurrency)
        self.queue_limit = queue_limit
        self.per_address_limit = per_address_limit
        self._queued = 0
        self._queued_from: dict[str, int] = {}

    async def verify(
        self,
        stored_hash: str | None,
        password: str,
        *,
        address: str | None = None,
        known_device: bool = False,
    ) -> bool:
        if known_device:
            async with self._known_device_slots:
                return await asyncio.to_thread(self.passwords.verify, stored_hash, password)
        key = address or "unknown"
        if self._queued >= self.queue_limit or self._queued_from.get(key, 0) >= self.per_address_limit:
            raise TooManyAttempts(1 + self._queued // 2)
        self._queued += 1
        self._queued_from[key] = self._queued_from.get(key, 0) + 1
        try:
            async with self._slots:
                return await asyncio.to_thread(self.passwords.verify, stored_hash, password)
        finally:
            self._queued -= 1
            left = self._queued_from[key] - 1
            if left:
                self._queued_from[key] = left
            else:
                del self._queued_from[key]

    async def hash(self, password: str) -> str:
        async with self._slots:
            return await asyncio.to_thread(self.passwords.hash, password)


class AddressBudget:
    """Sign-in attempts per client address per minute (sliding window, per process)."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._seen: dict[str, deque[float]] = defaultdict(deque)

    def take(self, address: str) -> int | None:
        """Count one attempt; returns seconds to wait when over budget, else None."""
        now = time.monotonic()
        window = self._seen[address]
        while window and now - window[0] > 60:
            window.popleft()
        if len(window) >= self.per_minute:
            return int(60 - (now - window[0])) + 1
        window.append(now)
        if len(self._seen) > 100_000:  # bounded memory under a spray from many addresses
            self._seen.clear()
        return None


@dataclass
class UnknownAccountThrottle:
    """The same escalation for addresses with no account, kept in memory by keyed hash."""

    failures: dict[str, tuple[int, datetime]]

    @classmethod
    def empty(cls) -> UnknownAccountThrottle:
        return cls({})


@dataclass
class SignedIn:
    user: User
    session: StaffSession
    token: str
    device_token: str | None
    csrf: str


class AuthService:
    def __init__(
        self,
        settings: Settings,
        clock: Clock,
        keys: KeyStore,
        sealer: Sealer,
        broker: AccessBroker,
        hasher: CredentialHasher | None = None,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.keys = keys
        self.sealer = sealer
        self.broker = broker
        self.hasher = hasher or CredentialHasher()
        self.addresses = AddressBudget(settings.login_ip_budget_per_minute)
        self.unknown = UnknownAccountThrottle.empty()

    # --- tokens -------------------------------------------------------------------------------

    def csrf_for(self, session_token_hash: str) -> str:
        """The CSRF token of a session: derived from it, so nothing extra is stored."""
        return self.keys.material.keyed_hasher().hash("csrf", session_token_hash.encode()).hex()

    def email_hash(self, email: str) -> str:
        return self.keys.material.keyed_hasher().hash("staff.email", email.strip().lower().encode()).hex()

    # --- TOTP ---------------------------------------------------------------------------------

    async def _totp_secret(self, session: AsyncSession, user: User) -> str | None:
        return await self.broker.reveal_for_system(
            session,
            SIGN_IN,
            user,
            "totp_secret",
            purpose=Purpose.sign_in,
            object_type="user",
            object_id=user.public_id,
        )

    async def check_totp(self, session: AsyncSession, user: User, code: str) -> bool:
        """True once per time step: the step is claimed with a compare-and-set."""
        secret = await self._totp_secret(session, user)
        if not secret:
            return False
        try:
            step = totp.match_step(secret, code, at=self.clock.now())
        except ValueError:
            return False
        if step is None:
            return False
        claimed = await session.execute(
            update(User)
            .where(User.id == user.id, or_(User.totp_last_step.is_(None), User.totp_last_step < step))
            .values(totp_last_step=step)
            .execution_options(synchronize_session=False)
        )
        return claimed.rowcount == 1  # type: ignore[attr-defined]

    # --- sign-in ------------------------------------------------------------------------------

    async def _known_device(
        self, session: AsyncSession, user: User, device_token: str | None
    ) -> StaffDevice | None:
        if not device_token:
            return None
        return await session.scalar(
            select(StaffDevice).where(
                StaffDevice.user_id == user.id, StaffDevice.token_hash == sha256_hex(device_token)
            )
        )

    def _throttle_unknown(self, key: str) -> None:
        count, until = self.unknown.failures.get(key, (0, self.clock.now()))
        if count >= HARD_STOP_AT or until > self.clock.now():
            raise TooManyAttempts(
                int((until - self.clock.now()).total_seconds()) if count < HARD_STOP_AT else 3600
            )

    def _fail_unknown(self, key: str) -> None:
        count = self.unknown.failures.get(key, (0, self.clock.now()))[0] + 1
        self.unknown.failures[key] = (count, self.clock.now() + failure_delay(count))
        if len(self.unknown.failures) > 100_000:
            self.unknown.failures.clear()

    async def login(
        self,
        session: AsyncSession,
        *,
        email: str,
        password: str,
        code: str,
        device_token: str | None,
        address: str,
    ) -> SignedIn:
        wait = self.addresses.take(address)
        if wait is not None:
            raise TooManyAttempts(wait)
        now = self.clock.now()
        user = await session.scalar(select(User).where(User.email == email.strip().lower()))
        email_key = self.email_hash(email)
        device = await self._known_device(session, user, device_token) if user else None
        if user is None:
            self._throttle_unknown(email_key)
        elif device is None:
            if user.login_blocked_at is not None:
                raise TooManyAttempts(3600)
            if user.next_login_at is not None and user.next_login_at > now:
                raise TooManyAttempts(int((user.next_login_at - now).total_seconds()))
        active = user is not None and user.status == UserStatus.active
        stored = user.password_hash if active and user is not None else None
        # Hold no transaction while queued for argon2: on SQLite it is the database's write lock, on
        # PostgreSQL a pooled connection, and a flood must starve neither (read-only so far).
        await session.commit()
        password_ok = await self.hasher.verify(
            stored, password, address=address, known_device=device is not None
        )
        if not password_ok or user is None or not active:
            await self._record_failure(session, user, email_key, reason="password")
            raise InvalidCredentials()
        if not await self.check_totp(session, user, code):
            await self._record_failure(session, user, email_key, reason="totp")
            raise InvalidCredentials()
        return await self._open_session(session, user, password, device)

    async def _record_failure(
        self, session: AsyncSession, user: User | None, email_key: str, *, reason: str
    ) -> None:
        user_id = user.id if user is not None else None
        await session.rollback()
        if user is None:
            self._fail_unknown(email_key)
            audit.record(
                session,
                self.clock,
                actor=ANONYMOUS,
                action="auth.login_failed",
                purpose=None,
                value_hash=email_key,
                details={"reason": "unknown_or_password"},
            )
        else:
            # Locked (PostgreSQL), so concurrent failures are all counted, none lost.
            user = await session.get(User, user_id, populate_existing=True, with_for_update=True)
            assert user is not None
            self._count_failure(user)
            audit.record(
                session,
                self.clock,
                actor=Actor(user.public_id),
                action="auth.login_failed",
                object_type="user",
                object_id=user.public_id,
                # "password" covers unknown/disabled too, so the log cannot be used to enumerate.
                details={
                    "reason": "unknown_or_password" if reason == "password" else "totp",
                    "failures": user.failed_logins,
                },
            )
        await session.commit()

    def _count_failure(self, user: User) -> None:
        """One more consecutive failure on the account's counter (sign-in and second factors)."""
        now = self.clock.now()
        user.failed_logins += 1
        user.next_login_at = now + failure_delay(user.failed_logins)
        if user.failed_logins >= HARD_STOP_AT and user.login_blocked_at is None:
            user.login_blocked_at = now

    async def _open_session(
        self, session: AsyncSession, user: User, password: str, device: StaffDevice | None
    ) -> SignedIn:
        now = self.clock.now()
        user.failed_logins = 0
        user.next_login_at = None
        user.login_blocked_at = None
        if user.password_hash and self.hasher.passwords.needs_rehash(user.password_hash):
            user.password_hash = await self.hasher.hash(password)
        token = secrets.token_urlsafe(32)
        staff_session = StaffSession(
            token_hash=sha256_hex(token),
            user_id=user.id,
            created_at=now,
            last_seen_at=now,
            expires_at=now + timedelta(hours=self.settings.session_absolute_hours),
            stepped_up_at=now,
        )
        session.add(staff_session)
        device_token = None
        if device is None:
            device_token = secrets.token_urlsafe(32)
            session.add(
                StaffDevice(
                    user_id=user.id, token_hash=sha256_hex(device_token), created_at=now, last_used_at=now
                )
            )
        else:
            device.last_used_at = now
        audit.record(
            session,
            self.clock,
            actor=Actor(user.public_id, tuple(sorted(user.roles.split(",")))),
            action="auth.login",
            object_type="user",
            object_id=user.public_id,
            details={"known_device": device is not None},
        )
        await session.flush()
        return SignedIn(user, staff_session, token, device_token, self.csrf_for(staff_session.token_hash))

    # --- sessions -----------------------------------------------------------------------------

    async def resolve(
        self, session: AsyncSession, token: str | None, *, touch: bool = True
    ) -> tuple[User, StaffSession] | None:
        """The live session and its active user, or None. `touch` refreshes the idle timer."""
        if not token or len(token) > 100:
            return None
        staff_session = await session.scalar(
            select(StaffSession).where(StaffSession.token_hash == sha256_hex(token))
        )
        if staff_session is None or staff_session.revoked_at is not None:
            return None
        now = self.clock.now()
        idle = timedelta(minutes=self.settings.session_idle_minutes)
        if now >= staff_session.expires_at:
            return None
        idle_for = now - staff_session.last_seen_at
        if idle_for >= idle and not await holds_contact(session, staff_session.user_id):
            return None
        user = await session.get(User, staff_session.user_id)
        if user is None or user.status != UserStatus.active:
            return None
        if user.sessions_valid_after is not None and staff_session.created_at < user.sessions_valid_after:
            return None
        if touch:
            staff_session.last_seen_at = now
        return user, staff_session

    async def logout(self, session: AsyncSession, user: User, staff_session: StaffSession) -> None:
        staff_session.revoked_at = self.clock.now()
        audit.record(
            session,
            self.clock,
            actor=Actor(user.public_id),
            action="auth.logout",
            object_type="user",
            object_id=user.public_id,
        )

    async def verify_second_factor(
        self,
        session: AsyncSession,
        user: User,
        code: str,
        *,
        staff_session: StaffSession,
        action: str,
        object_type: str,
        object_id: str,
        actor: Actor | None = None,
    ) -> None:
        """A TOTP code inside a session (step-up, break-glass), on the sign-in failure counter.

        Refused with `TooManyAttempts` (429, Retry-After) while the account's sign-in delay runs.
        The attempt is counted *before* the code is checked, with the row locked (PostgreSQL; on
        SQLite `BEGIN IMMEDIATE` serialises writers), so parallel guesses cannot all pass the delay
        check; a right code clears the count again, as a sign-in does (the hard stop stays until a
        known-device sign-in or a supervisor clears it). A wrong code is audited as `action`
        denied with the failure count and committed; at `SECOND_FACTOR_SESSION_LIMIT` failures
        the session is ended too (`auth.session_ended`). Raises `InvalidCredentials` then.
        """
        user_id, public_id, session_id = user.id, user.public_id, staff_session.id
        actor = actor or Actor(public_id)
        row = await session.scalar(
            select(User).where(User.id == user_id).with_for_update().execution_options(populate_existing=True)
        )
        assert row is not None
        now = self.clock.now()
        if row.next_login_at is not None and row.next_login_at > now:
            raise TooManyAttempts(math.ceil((row.next_login_at - now).total_seconds()))
        self._count_failure(row)
        await session.commit()
        if await self.check_totp(session, row, code):
            row.failed_logins = 0
            row.next_login_at = None
            return
        await session.rollback()
        row = await session.get(User, user_id, populate_existing=True)
        assert row is not None
        failures = row.failed_logins
        audit.record(
            session,
            self.clock,
            actor=actor,
            action=action,
            object_type=object_type,
            object_id=object_id,
            outcome="denied",
            details={"failures": failures},
        )
        if failures >= SECOND_FACTOR_SESSION_LIMIT:
            ended = await session.get(StaffSession, session_id, populate_existing=True)
            if ended is not None and ended.revoked_at is None:
                ended.revoked_at = self.clock.now()
                audit.record(
                    session,
                    self.clock,
                    actor=Actor(public_id),
                    action="auth.session_ended",
                    object_type="user",
                    object_id=public_id,
                    details={"reason": "second_factor_failures", "failures": failures},
                )
                await live.session_ended(session, public_id, session_id)
        await session.commit()
        raise InvalidCredentials()

    async def step_up(
        self, session: AsyncSession, user: User, staff_session: StaffSession, code: str
    ) -> None:
        session_id = staff_session.id
        await self.verify_second_factor(
            session,
            user,
            code,
            staff_session=staff_session,
            action="auth.step_up",
            object_type="user",
            object_id=user.public_id,
        )
        staff_session = await session.get(StaffSession, session_id, populate_existing=True)  # type: ignore[assignment]
        staff_session.stepped_up_at = self.clock.now()
        audit.record(
            session,
            self.clock,
            actor=Actor(user.public_id),
            action="auth.step_up",
            object_type="user",
            object_id=user.public_id,
        )

    def stepped_up(self, staff_session: StaffSession) -> bool:
        if staff_session.stepped_up_at is None:
            return False
        return self.clock.now() - staff_session.stepped_up_at < timedelta(
            minutes=self.settings.step_up_minutes
        )

    # --- enrolment ----------------------------------------------------------------------------

    async def _enrolment(self, session: AsyncSession, token: str) -> tuple[EnrolmentToken, User]:
        record = await session.scalar(
            select(EnrolmentToken).where(EnrolmentToken.token_hash == token_hash(token))
        )
        now = self.clock.now()
        if record is None or record.used_at is not None or record.expires_at <= now:
            raise InvalidInput(
                "This enrolment link is not valid any more; ask for a new one.", code="invalid_token"
            )
        user = await session.get(User, record.user_id)
        if user is None or user.status != UserStatus.pending:
            raise InvalidInput(
                "This enrolment link is not valid any more; ask for a new one.", code="invalid_token"
            )
        return record, user

    async def enroll(self, session: AsyncSession, token: str, password: str | None) -> dict[str, Any]:
        _record, user = await self._enrolment(session, token)
        if user.password_hash is None:
            if password is None:
                raise InvalidInput("Choose a password.", code="password_required")
            problems = check_policy(password, email=user.email, name=user.display_name)
            if problems:
                raise InvalidInput("Password refused: " + "; ".join(problems), code="weak_password")
            user.password_hash = await self.hasher.hash(password)
        elif password is not None:
            raise InvalidInput("A password was already set for this account.", code="password_already_set")
        secret = totp.new_secret()
        await self.sealer.seal(session, user, "totp_secret", secret)
        user.totp_last_step = None
        user.updated_at = self.clock.now()
        uri = totp.provisioning_uri(secret, account_name=user.email)
        audit.record(
            session,
            self.clock,
            actor=Actor(user.public_id),
            action="auth.enroll_started",
            object_type="user",
            object_id=user.public_id,
        )
        return {"totp_secret": secret, "otpauth_uri": uri, "qr_svg": totp.qr_svg(uri)}

    async def enroll_confirm(self, session: AsyncSession, token: str, code: str) -> User:
        record, user = await self._enrolment(session, token)
        if user.password_hash is None or user.totp_secret is None:
            raise InvalidInput("Start the enrolment first.", code="enrolment_not_started")
        record_id, user_id = record.id, user.id
        if not await self.check_totp(session, user, code):
            raise InvalidInput(
                "That code did not match; check the authenticator app's clock.", code="invalid_code"
            )
        record = await session.get(EnrolmentToken, record_id, populate_existing=True)  # type: ignore[assignment]
        user = await session.get(User, user_id, populate_existing=True)  # type: ignore[assignment]
        record.used_at = self.clock.now()
        user.status = UserStatus.active
        user.updated_at = self.clock.now()
        audit.record(
            session,
            self.clock,
            actor=Actor(user.public_id),
            action="auth.enrolled",
            object_type="user",
            object_id=user.public_id,
        )
        return user


async def holds_contact(session: AsyncSession, user_id: Any) -> bool:
    """A volunteer on a call or in a chat they accepted is not idle, whatever the browser does
    (the idle timer is suspended; the absolute lifetime still applies)."""
    held = await session.scalar(
        select(Task.id).where(Task.assigned_to_id == user_id, Task.state == TaskState.assigned).limit(1)
    )
    return held is not None


def principal_for(user: User) -> Principal:
    return Principal(
        id=user.public_id, roles=frozenset(Role(r) for r in user.roles.split(",") if r), user_id=user.id
    )
