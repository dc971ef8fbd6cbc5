"""Anonymous reports by SMS through the fake Twilio: the report keeps the facts and nothing that
names the reporter — no number, no blind index, no conversation, no record left at Twilio — and
accepts additions with its reference code; wrong codes are throttled; a caller who shares their
caller row with another case is unlinked, not deleted."""

from __future__ import annotations

import asyncio
import re
from typing import Any

from fastapi import FastAPI
from sqlalchemy import func, select

from app.callers.models import Caller
from app.cases.models import Case
from app.chats.models import ChatMessage, Conversation
from app.contacts.models import Contact
from app.reports.models import Report, ReportEntry, TwilioCleanup
from telephony.fake import CallSimulator, FakeTwilio
from tests.support.canary import CanaryScan
from tests.support.voice import HOTLINE

CALLER = "+12025550171"
FACTS = "Two ICE vans outside the school in Sunset Park this morning"


async def count(app: FastAPI, model: Any) -> int:
    async with app.state.database.sessionmaker() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def until(predicate: Any, timeout: float = 30.0) -> bool:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        if await predicate():
            return True
        await asyncio.sleep(0.05)
    return False


def all_deleted(app: FastAPI, fake: FakeTwilio, number: str) -> Any:
    """Every clean-up done AND nothing of the number left at the fake: a reply's clean-up row only
    exists once its status callback has arrived, so the rows alone can be 'all done' too early."""

    async def check() -> bool:
        return await cleaned_up(app) and twilio_records_of(fake, number) == []

    return check


async def cleaned_up(app: FastAPI) -> bool:
    async with app.state.database.sessionmaker() as session:
        states = list(await session.scalars(select(TwilioCleanup.state)))
    return bool(states) and all(state == "done" for state in states)


def twilio_records_of(fake: FakeTwilio, number: str) -> list[str]:
    return [m.sid for m in fake.store.messages.values() if number in (m.to, m.from_)]


def code_in(reply: str) -> str:
    found = re.search(r"\b(\d{10})\b", reply)
    assert found, reply
    return found.group(1)


async def test_an_anonymous_sms_report_leaves_nothing_that_names_the_reporter(
    live_app: FastAPI, fake: FakeTwilio, captured_logs: Any
) -> None:
    scan = CanaryScan(live_app.state.database, captured_logs)
    caller, facts = scan.canaries.phone(0), f"{FACTS} {scan.canaries.note}"
    async with CallSimulator(fake, app=live_app, time_scale=0.02) as sim:
        menu = await sim.send_message(caller, HOTLINE, "REPORT")
        assert "Anonymous report" in menu.replies[0] and "Reply 1" in menu.replies[0]
        filed = await sim.send_message(caller, HOTLINE, f"2 {facts}")
        code = code_in(filed.replies[0])
        assert code in filed.replies[0] and "REPORT" in filed.replies[0]
        assert await until(all_deleted(live_app, fake, caller)), "Twilio records not deleted"
        await sim.wait_idle(10)
    # Nothing names the reporter: no caller row (number, blind index), conversation or message.
    for model in (Caller, Conversation, ChatMessage, Contact):
        assert await count(live_app, model) == 0, model.__name__
    assert twilio_records_of(fake, caller) == []  # both texts in, both replies out: deleted
    async with live_app.state.database.sessionmaker() as session:
        report = (await session.scalars(select(Report))).one()
        case = await session.get(Case, report.case_id)
        entries = list(await session.scalars(select(ReportEntry)))
    assert report.category == "enforcement_report" and report.channel == "sms"
    assert case is not None and case.caller_id is None and case.category_id == "enforcement_report"
    assert [(e.kind, e.source, e.length) for e in entries] == [("text", "report", len(facts))]
    assert report.code_hash and code not in report.code_hash
    # The facts are sealed, the number and the code appear nowhere.
    scan.responses = []
    assert await scan.hits() == []
    raw_code_hits = [h for h in await CanaryScan(live_app.state.database, captured_logs).hits() if code in h]
    assert raw_code_hits == []


async def test_additions_with_the_code_and_wrong_codes_throttled(live_app: FastAPI, fake: FakeTwilio) -> None:
    async with CallSimulator(fake, app=live_app, time_scale=0.02) as sim:
        filed = await sim.send_message(CALLER, HOTLINE, "REPORTAR 1 Mi patrón se quedó con mi pasaporte")
        assert "código de referencia" in filed.replies[0]
        code = code_in(filed.replies[0])
        added = await sim.send_message(CALLER, HOTLINE, f"REPORTAR {code} También amenazó a mi vecina")
        assert "se agregó" in added.replies[0]
        wrong = f"{(int(code) + 1) % 10**10:010d}"
        for _ in range(5):
            refused = await sim.send_message(CALLER, HOTLINE, f"REPORT {wrong} more")
            assert "not recognised" in refused.replies[0]
        # Five wrong codes from this number today: even the right code must wait now.
        throttled = await sim.send_message(CALLER, HOTLINE, f"REPORT {code} still more")
        assert "Too many attempts" in throttled.replies[0]
        assert await until(all_deleted(live_app, fake, CALLER))
        await sim.wait_idle(10)
    async with live_app.state.database.sessionmaker() as session:
        report = (await session.scalars(select(Report))).one()
        entries = list(await session.scalars(select(ReportEntry).order_by(ReportEntry.created_at)))
    assert report.category == "abuse_report" and report.language == "es" and report.additions == 1
    assert [e.source for e in entries] == ["report", "addition"]
    for model in (Caller, Conversation, ChatMessage):
        assert await count(live_app, model) == 0
    assert twilio_records_of(fake, CALLER) == []


async def test_a_caller_with_an_identified_chat_reports_like_a_stranger(
    live_app: FastAPI, fake: FakeTwilio
) -> None:
    async with CallSimulator(fake, app=live_app, time_scale=0.02) as sim:
        await sim.send_message(CALLER, HOTLINE, "I need help with my brother's case")
        await sim.send_message(CALLER, HOTLINE, "1")
        menu = await sim.send_message(CALLER, HOTLINE, "report")
        assert "Anonymous report" in menu.replies[0]
        again = await sim.send_message(CALLER, HOTLINE, "what?")
        assert "Anonymous report" in again.replies[0]  # the menu again, still nothing filed
        filed = await sim.send_message(
            CALLER, HOTLINE, "1 The landlord threatens to call ICE, Corona, Monday"
        )
        code_in(filed.replies[0])

        async def only_the_conversation_left() -> bool:
            return await cleaned_up(live_app) and len(twilio_records_of(fake, CALLER)) == 4

        assert await until(only_the_conversation_left)
        await sim.wait_idle(10)
    async with live_app.state.database.sessionmaker() as session:
        caller = (await session.scalars(select(Caller))).one()  # kept: their own case uses it
        conversation = (await session.scalars(select(Conversation))).one()
        kept = list(await session.scalars(select(ChatMessage).order_by(ChatMessage.created_at)))
        report = (await session.scalars(select(Report))).one()
        report_case = await session.get(Case, report.case_id)
    assert conversation.caller_id == caller.id
    assert len(kept) == 2  # the two messages of their own conversation; the dialogue never entered it
    assert report_case is not None and report_case.caller_id is None
    assert report_case.id != conversation.case_id
    # The report dialogue's three texts and our three replies are gone from Twilio; the
    # conversation's own messages are not ours to delete.
    left = [m for m in fake.store.messages.values() if CALLER in (m.to, m.from_)]
    assert len(left) == 4  # "I need help…", "1", and our two replies to them


async def test_a_report_never_reads_the_callers_safety_flags(live_app: FastAPI, fake: FakeTwilio) -> None:
    """The report flow cannot know who is texting (it never looks up the caller), so a caller
    marked unsafe to text still gets the reply to the text they just sent — deleted at Twilio
    once sent, like every reply of a report (the README says so)."""
    async with CallSimulator(fake, app=live_app, time_scale=0.02) as sim:
        await sim.send_message(CALLER, HOTLINE, "hello")
        async with live_app.state.database.sessionmaker() as session, session.begin():
            (await session.scalars(select(Caller))).one().safe_to_text = False
        filed = await sim.send_message(
            CALLER, HOTLINE, "REPORT 2 Checkpoint on Roosevelt Ave, Jackson Heights, now"
        )
        code_in(filed.replies[0])
        await sim.wait_idle(10)
    assert await count(live_app, Report) == 1


async def test_the_cleanup_callback_needs_twilios_signature(live_app: FastAPI) -> None:
    import httpx

    transport = httpx.ASGITransport(app=live_app)
    async with httpx.AsyncClient(transport=transport, base_url="https://hotline.test") as client:
        answer = await client.post(
            "/twilio/messaging/cleanup",
            data={"MessageSid": "SM" + "0" * 32, "MessageStatus": "delivered", "AccountSid": "AC" + "0" * 32},
            headers={"X-Twilio-Signature": "forged"},
        )
    assert answer.status_code == 403
    assert await count(live_app, TwilioCleanup) == 0
