"""Schemathesis in-process: cases generated from the app's own OpenAPI document, sent through the ASGI app.

The app and its database live on the test's event loop, so cases are generated first (Hypothesis, seeded)
and then sent one by one with an `httpx.AsyncClient` over `ASGITransport`; each response goes through
schemathesis' own checks (`case.validate_response`). Signed-in calls carry a real session: staff are
enrolled (password + TOTP) and signed in through the HTTP API, and every call sends the session cookie and
the `X-CSRF-Token` header; an expired or idle session is signed in again before it is used.
"""

from __future__ import annotations

import json
import logging
import os
import traceback
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx
import hypothesis
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, Phase
from hypothesis.errors import Unsatisfiable
from schemathesis import Case, GenerationMode, checks
from schemathesis.core import NotSet
from schemathesis.core.failures import Failure
from schemathesis.errors import FailureGroup
from sqlalchemy import select

from app.accounts.auth import SESSION_COOKIE
from app.accounts.models import User
from app.accounts.passwords import Passwords
from tests.support.staff import PASSWORD, create_staff, enrol, next_code

BASE_URL = "https://hotline.test"
# CI runs 100 examples per operation; by hand, e.g. HOTLINE_FUZZ_EXAMPLES=1000 (issue 12).
EXAMPLES = int(os.environ.get("HOTLINE_FUZZ_EXAMPLES", "100"))
# The checks the issue asks for: no 5xx, documented status, documented content type, body matches schema.
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
]
NOT_REACHED = frozenset({401, 403})


def cheapen_hashing(app: FastAPI) -> None:
    """argon2 at test cost (hundreds of enrolments and sign-ins) and no per-address sign-in budget."""
    app.state.auth.hasher.passwords = Passwords(time_cost=1, memory_cost=1024, allow_below_floor=True)
    app.state.auth.addresses.per_minute = 1_000_000


def generate(operation: Any, mode: GenerationMode, examples: int = EXAMPLES) -> list[Case]:
    """Up to `examples` cases from the operation's strategy; reproducible (derandomized), no example database.

    An operation with nothing to vary (no parameters, no body) exhausts its strategy after one example, and
    has no negative form at all (Hypothesis reports `Unsatisfiable`): the caller repeats what there is.
    """
    drawn: list[Case] = []

    @hypothesis.settings(
        max_examples=examples,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
    )
    @hypothesis.given(operation.as_strategy(generation_mode=mode))
    def draw(case: Case) -> None:
        drawn.append(case)

    try:
        draw()
    except Unsatisfiable:
        return []
    return drawn


# --- signed-in staff ------------------------------------------------------------------------------------


@dataclass
class Identity:
    """A staff member the fuzzer signs in as."""

    role: str
    email: str
    secret: str
    user_id: str
    token: str = ""
    csrf: str = ""
    expires_at: datetime | None = None
    seen_at: datetime | None = None
    stepped_up_at: datetime | None = None


class StaffAuth:
    """The auth hook: real enrolment and sign-in, then the session cookie + CSRF header on every call."""

    def __init__(self, app: FastAPI, http: httpx.AsyncClient) -> None:
        self.app = app
        self.http = http
        self.settings = app.state.settings
        self.clock = app.state.clock
        self.identities: dict[str, Identity] = {}

    def code(self, identity: Identity) -> str:
        """A TOTP code for a step not used yet (the frozen clock moves on 30 s)."""
        return next_code(self.app, identity.secret)

    async def enrol(self, role: str, roles: str) -> Identity:
        email, token = await create_staff(self.app, roles=roles)
        secret = await enrol(self.http, self.app, token)
        self.http.cookies.clear()
        async with self.app.state.database.sessionmaker() as session:
            user_id = await session.scalar(select(User.public_id).where(User.email == email))
        assert user_id is not None
        identity = Identity(role, email, secret, user_id)
        self.identities[role] = identity
        return identity

    async def sign_in(self, identity: Identity) -> None:
        body = {"email": identity.email, "password": PASSWORD, "totp": self.code(identity)}
        response = await self.http.post("/api/v1/auth/login", json=body)
        assert response.status_code == 200, response.text
        identity.token = response.cookies[SESSION_COOKIE]
        self.http.cookies.clear()
        me = response.json()
        identity.csrf = me["csrf_token"]
        identity.expires_at = datetime.fromisoformat(me["session_expires_at"])
        identity.seen_at = identity.stepped_up_at = self.clock.now()

    async def ensure_session(self, identity: Identity) -> None:
        """Sign in again when the session is gone, idle for too long, or near its absolute expiry."""
        now = self.clock.now()
        margin = timedelta(minutes=3)
        idle = timedelta(minutes=self.settings.session_idle_minutes)
        if (
            not identity.token
            or identity.seen_at is None
            or identity.expires_at is None
            or now - identity.seen_at >= idle - margin
            or now >= identity.expires_at - margin
        ):
            await self.sign_in(identity)

    async def ensure_stepped_up(self, identity: Identity) -> None:
        await self.ensure_session(identity)
        assert identity.stepped_up_at is not None
        if self.clock.now() - identity.stepped_up_at < timedelta(minutes=self.settings.step_up_minutes - 1):
            return
        response = await self.http.post(
            "/api/v1/auth/step-up", json={"totp": self.code(identity)}, headers=self.headers(identity)
        )
        assert response.status_code == 200, response.text
        identity.seen_at = identity.stepped_up_at = self.clock.now()

    def headers(self, identity: Identity) -> dict[str, str]:
        return {"Cookie": f"{SESSION_COOKIE}={identity.token}", "X-CSRF-Token": identity.csrf}

    def set(self, case: Case, identity: Identity) -> None:
        """Like schemathesis' `AuthProvider.set`: credentials go into the case, so repros include them."""
        case.cookies = {**case.cookies, SESSION_COOKIE: identity.token}
        case.headers["X-CSRF-Token"] = identity.csrf


# --- running and counting -------------------------------------------------------------------------------


@dataclass
class Finding:
    kind: str
    mode: str
    request: str
    status: int
    detail: str
    count: int = 1


@dataclass
class OperationStats:
    label: str
    generated: dict[str, int] = field(default_factory=lambda: {"positive": 0, "negative": 0})
    calls: int = 0
    reached: int = 0
    positive_calls: int = 0
    positive_reached: int = 0
    server_errors: int = 0
    violations: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    findings: dict[tuple[Any, ...], Finding] = field(default_factory=dict)
    """One example (the first) of each kind of failure, with how often it happened."""

    @property
    def reached_ratio(self) -> float:
        return self.reached / self.calls if self.calls else 0.0

    @property
    def positive_ratio(self) -> float:
        return self.positive_reached / self.positive_calls if self.positive_calls else 0.0


class ErrorLog(logging.Handler):
    """Keeps the unhandled exceptions the app logs, to show a traceback summary for a 500."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def summary_since(self, start: int) -> str:
        lines = []
        for record in self.records[start:]:
            if record.exc_info and record.exc_info[1] is not None:
                exc = record.exc_info[1]
                frames = traceback.extract_tb(exc.__traceback__)[-3:]
                where = " <- ".join(
                    f"{'/'.join(f.filename.rsplit('/', 2)[-2:])}:{f.lineno} {f.name}"
                    for f in reversed(frames)
                )
                lines.append(f"{type(exc).__name__}: {str(exc)[:300]} at {where}")
        return "; ".join(lines)


Prepare = Callable[[Case, int], Awaitable[None]]
"""Fills in what generation cannot know: real ids, fresh TOTP codes."""
SUBSTITUTE_EVERY = 10
"""Positive case i keeps its generated ids and codes when i % SUBSTITUTE_EVERY == 0, else `prepare` runs."""


@dataclass
class Plan:
    role: str | None
    """Who sends the cases (None: nobody signed in)."""
    prepare: Prepare | None = None
    setup: Callable[[], Awaitable[None]] | None = None
    """Runs before every case, positive or negative (re-creates what the previous case destroyed)."""
    stepped_up: bool = False
    """The operation needs a recent step-up: step up first whenever the last one is getting old."""


class Fuzzer:
    def __init__(self, app: FastAPI, auth: StaffAuth, http: httpx.AsyncClient) -> None:
        self.app = app
        self.auth = auth
        self.http = http
        self.schema = schemathesis.openapi.from_dict(app.openapi())
        self.errors = ErrorLog()

    def operations(self) -> dict[str, Any]:
        found = {}
        for result in self.schema.get_all_operations():
            operation = result.ok()
            found[operation.label] = operation
        return found

    async def send(self, case: Case, identity: Identity | None) -> httpx.Response:
        if identity is not None:
            self.auth.set(case, identity)
        kwargs = case.as_transport_kwargs(base_url=BASE_URL)
        headers = dict(kwargs.get("headers") or {})
        cookies = kwargs.get("cookies") or {}
        if cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())
        request: dict[str, Any] = {"params": kwargs.get("params") or None, "headers": headers}
        if "json" in kwargs:
            request["json"] = kwargs["json"]
        elif isinstance(kwargs.get("data"), (bytes, str)):
            request["content"] = kwargs["data"]
        elif kwargs.get("data") is not None:
            request["data"] = kwargs["data"]
        try:
            return await self.http.request(kwargs["method"], kwargs["url"], **request)
        finally:
            self.http.cookies.clear()

    async def run(self, plans: dict[str, Plan]) -> dict[str, OperationStats]:
        logger = logging.getLogger("hotline.errors")
        logger.addHandler(self.errors)
        try:
            operations = self.operations()
            missing = sorted(set(plans) - set(operations))
            assert missing == [], f"plans for operations the schema does not have: {missing}"
            return {label: await self.run_operation(operations[label], plans[label]) for label in plans}
        finally:
            logger.removeHandler(self.errors)

    async def run_operation(self, operation: Any, plan: Plan) -> OperationStats:
        stats = OperationStats(operation.label)
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            cases = generate(operation, mode)
            stats.generated[mode.value] = len(cases)
            if not cases and mode is GenerationMode.NEGATIVE:
                continue
            # At least EXAMPLES calls per operation: an operation with nothing to vary repeats its one case.
            count = max(EXAMPLES, len(cases)) if mode is GenerationMode.POSITIVE else len(cases)
            for index in range(count):
                case = cases[index % len(cases)].derive()
                identity = self.auth.identities.get(plan.role) if plan.role else None
                if plan.setup:
                    await plan.setup()
                if mode is GenerationMode.POSITIVE and plan.prepare and index % SUBSTITUTE_EVERY:
                    await plan.prepare(case, index)
                if identity is not None:
                    if plan.stepped_up:
                        await self.auth.ensure_stepped_up(identity)
                    else:
                        await self.auth.ensure_session(identity)
                await self.check(stats, case, identity, mode)
        return stats

    async def check(self, stats: OperationStats, case: Case, identity: Identity | None, mode: Any) -> None:
        logged = len(self.errors.records)
        response = await self.send(case, identity)
        stats.calls += 1
        stats.statuses[response.status_code] += 1
        reached = response.status_code not in NOT_REACHED
        stats.reached += reached
        if mode is GenerationMode.POSITIVE:
            stats.positive_calls += 1
            stats.positive_reached += reached
        if identity is not None and response.is_success:
            identity.seen_at = self.auth.clock.now()
        try:
            case.validate_response(response, checks=CHECKS)
        except FailureGroup as group:
            self.record(stats, case, response, mode, group.exceptions, logged)
        except Failure as failure:
            self.record(stats, case, response, mode, [failure], logged)

    def record(
        self,
        stats: OperationStats,
        case: Case,
        response: httpx.Response,
        mode: Any,
        failures: Iterable[Failure],
        logged: int,
    ) -> None:
        server_error = response.status_code >= 500
        stats.server_errors += server_error
        stats.violations += not server_error
        failures = list(failures)
        kind = "5xx" if server_error else "violation"
        signature = (kind, response.status_code, *sorted(f.title for f in failures))
        if signature in stats.findings:
            stats.findings[signature].count += 1
            return
        try:
            shown_body = "-" if isinstance(case.body, NotSet) else json.dumps(case.body, default=repr)[:200]
        except (TypeError, ValueError):
            shown_body = repr(case.body)[:200]
        request = f"{case.method} {case.formatted_path} query={case.query or {}} body={shown_body}"
        detail = " | ".join(f"{f.title}: {' '.join(f.message.split())[:200]}" for f in failures)
        if server_error:
            detail += " | " + (self.errors.summary_since(logged) or response.text[:300])
        else:
            detail += f" | response: {response.text[:160]}"
        stats.findings[signature] = Finding(kind, str(mode.value), request, response.status_code, detail)


def table(results: dict[str, OperationStats]) -> str:
    lines = [
        f"{'operation':<50} {'gen +/-':>9} {'calls':>5} {'reached':>8} {'pos.reached':>11} "
        f"{'5xx':>4} {'viol':>4}  statuses",
    ]
    for label, s in results.items():
        statuses = " ".join(f"{code}:{n}" for code, n in sorted(s.statuses.items()))
        generated = f"{s.generated['positive']}/{s.generated['negative']}"
        lines.append(
            f"{label:<50} {generated:>9} {s.calls:>5} {s.reached_ratio:>8.0%} {s.positive_ratio:>11.0%} "
            f"{s.server_errors:>4} {s.violations:>4}  {statuses}"
        )
    for s in results.values():
        for f in s.findings.values():
            lines.append(f"  ! {s.label}: {f.count}x {f.kind} ({f.mode}), e.g. {f.status} for {f.request}")
            lines.append(f"      {f.detail}")
    return "\n".join(lines)


def problems(results: dict[str, OperationStats], *, min_reached: float = 0.8) -> list[str]:
    found = []
    for label, s in results.items():
        if s.calls < EXAMPLES:
            found.append(f"{label}: only {s.calls} calls")
        if s.server_errors:
            found.append(f"{label}: {s.server_errors} server errors")
        if s.violations:
            found.append(f"{label}: {s.violations} schema violations")
        if s.reached_ratio < min_reached or s.positive_ratio < min_reached:
            found.append(
                f"{label}: only {s.reached_ratio:.0%} of calls ({s.positive_ratio:.0%} of positive ones) "
                "reached the handler"
            )
    return found
