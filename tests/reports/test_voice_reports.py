"""Anonymous reports by voice through the fake Twilio: 8 at the emergency question, a category,
the facts recorded; the caller hears a reference code and nothing links the report to them — no
number, no caller row, no routing task, and Twilio's call record and recording are deleted. A
second call adds to the report with the code; wrong codes end the call after three tries."""

from __future__ import annotations

import asyncio
import re
from typing import Any

from fastapi import FastAPI
from sqlalchemy import select

from app.callers.models import Caller
from app.calls.models import Call
from app.cases.models import Case
from app.contacts.models import Contact
from app.reports.models import Report, ReportCodeAttempt, ReportEntry, TwilioCleanup
from app.routing.models import Task
from telephony.fake import CallSimulator, FakeTwilio, Party
from tests.support.voice import HOTLINE

CALLER = "+12025550181"
WITHHELD = "+266696687"


async def until(predicate: Any, timeout: float = 20.0) -> bool:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        if await predicate():
            return True
        await asyncio.sleep(0.05)
    return False


async def rows(app: FastAPI, model: Any) -> list[Any]:
    async with app.state.database.sessionmaker() as session:
        return list(await session.scalars(select(model)))


async def settled(app: FastAPI) -> bool:
    """Every recording stored and every Twilio record deleted."""
    entries = await rows(app, ReportEntry)
    cleanups = await rows(app, TwilioCleanup)
    return (
        bool(entries)
        and all(e.state == "stored" for e in entries)
        and bool(cleanups)
        and all(c.state == "done" for c in cleanups)
    )


def spoken_code(said: list[str]) -> str:
    for line in said:
        digits = re.sub(r"[^0-9]", "", line)
        if len(digits) == 10 and re.fullmatch(r"(\d, ){9}\d", line.strip()):
            return digits
    raise AssertionError(f"no reference code spoken: {said}")


async def report_call(sim: CallSimulator, number: str, digits: tuple[str | None, ...]) -> Any:
    return await sim.call(number, HOTLINE, Party(digits=digits, record_seconds=4), timeout=60)


async def test_an_anonymous_voice_report_leaves_no_trace_of_the_caller(
    live_app: FastAPI, fake: FakeTwilio
) -> None:
    async with CallSimulator(fake, app=live_app, time_scale=0.02) as sim:
        # Spanish, 8 (report anonymously), 2 (enforcement activity), record, no callback number.
        call = await report_call(sim, CALLER, ("2", "8", "2", None))
        assert await until(lambda: settled(live_app)), "recording not stored or Twilio records not deleted"
        await sim.wait_idle(10)
    said = " ".join(call.said)
    assert "sin dar su nombre, oprima 8" in said and "código de referencia" in said
    code = spoken_code(call.said)
    assert said.count(", ".join(code)) == 2  # said twice
    report = (await rows(live_app, Report))[0]
    entries = await rows(live_app, ReportEntry)
    assert report.channel == "voice" and report.category == "enforcement_report" and report.language == "es"
    assert [(e.kind, e.source, e.state) for e in entries] == [("audio", "report", "stored")]
    assert entries[0].audio is not None and entries[0].recording_sid is None
    # Nothing names the caller: no caller row, contact or task; the call's number is wiped and
    # its row no longer points at the report; Twilio holds neither the call nor the recording.
    assert await rows(live_app, Caller) == [] and await rows(live_app, Contact) == []
    assert await rows(live_app, Task) == []
    (call_row,) = await rows(live_app, Call)
    assert call_row.from_number is None and call_row.case_id is None
    case = (await rows(live_app, Case))[0]
    assert case.caller_id is None and case.callback_number is None
    assert call.sid not in fake.store.calls
    assert not fake.store.recordings


async def test_a_withheld_caller_reports_asks_for_a_callback_and_adds_later(
    live_app: FastAPI, fake: FakeTwilio
) -> None:
    async with CallSimulator(fake, app=live_app, time_scale=0.02) as sim:
        first = await report_call(sim, WITHHELD, ("1", "8", "1", "2125550100#"))
        code = spoken_code(first.said)
        added = await report_call(sim, WITHHELD, ("1", "8", "3", f"{code}#"))
        assert "added to your report" in " ".join(added.said)
        assert await until(lambda: settled(live_app))
        await sim.wait_idle(10)
    (report,) = await rows(live_app, Report)
    assert report.category == "abuse_report" and report.additions == 1
    entries = await rows(live_app, ReportEntry)
    assert sorted(e.source for e in entries) == ["addition", "report"]
    (case,) = await rows(live_app, Case)
    assert case.callback_number is not None  # asked for: sealed on the report's case
    assert await rows(live_app, Caller) == []
    assert not [c for c in fake.store.calls.values() if c.from_ == WITHHELD]


async def test_wrong_codes_end_the_call_and_are_throttled(live_app: FastAPI, fake: FakeTwilio) -> None:
    async with CallSimulator(fake, app=live_app, time_scale=0.02) as sim:
        refused = await report_call(sim, CALLER, ("1", "8", "3", "1111111111#", "2222222222#", "3333333333#"))
        await sim.wait_idle(10)
    said = " ".join(refused.said)
    assert said.count("Enter your 10-digit reference code") == 3
    assert "was not recognised" in said
    async with live_app.state.database.sessionmaker() as session:
        attempts = {
            a.scope.split(":")[0]: a.failures for a in await session.scalars(select(ReportCodeAttempt))
        }
    assert attempts == {"call": 3, "number": 3, "global": 3}
    assert await rows(live_app, Report) == []


async def test_a_voice_report_leaves_no_plaintext(
    live_app: FastAPI, fake: FakeTwilio, captured_logs: Any
) -> None:
    """Canaries: the caller's number and the callback number they type appear nowhere — not in
    the database, the logs, or any TwiML we answered."""
    from tests.support.canary import CanaryScan

    scan = CanaryScan(live_app.state.database, captured_logs)
    caller, callback = scan.canaries.phone(0), scan.canaries.phone(1)
    answered: list[bytes] = []

    async def recording_app(scope: Any, receive: Any, send: Any) -> None:
        async def capture(message: Any) -> None:
            if message["type"] == "http.response.body":
                answered.append(message.get("body", b""))
            await send(message)

        await live_app(scope, receive, capture)

    async with CallSimulator(fake, app=recording_app, time_scale=0.02) as sim:
        await sim.call(
            caller, HOTLINE, Party(digits=("1", "8", "2", f"{callback[2:]}#"), record_seconds=3), timeout=60
        )
        assert await until(lambda: settled(live_app))
        await sim.wait_idle(10)
    scan.responses = answered
    assert len(answered) >= 5
    assert await scan.hits() == []
