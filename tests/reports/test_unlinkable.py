"""An anonymous report is unlinkable to its reporter, even when the reporter is a known caller.

The finding this plays: a caller with an identified chat (name and A-number on file) texts
`REPORT`, then files a report. Before, the access log named their caller row (`caller_match`)
and their own conversation (`anonymise`) right around `report.filed`, for six years. Now the
report keyword is recognised before any caller matching, so nothing the report does reads or
writes the caller's rows, and nothing it leaves behind names them.

Played over SMS, over WhatsApp, and by voice from a number that has an identified case. After
each, everything a supervisor could look at is searched for anything that identifies the
reporter's caller row, conversation, case or contact (row ids in both spellings, public ids,
the blind index, the number in every form): every database row the report added or changed
(job payloads and access-log entries included), every log line since, `/metrics`, and every API
response and console page a supervisor can fetch about the report or the access log.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, inspect, select, text

from app.audit.models import AuditEntry
from app.audit.service import Actor
from app.callers.models import Caller
from app.callers.service import find_or_create_caller
from app.cases.models import Case
from app.cases.service import create_case, seal_fields
from app.chats.models import ChatMessage, Conversation
from app.clock import FrozenClock
from app.contacts.models import Channel, Contact
from app.contacts.service import create_contact
from app.db.engine import Database
from app.reports.models import Report, ReportDialogue, ReportEntry, TwilioCleanup
from telephony.fake import CallSimulator, FakeTwilio, Party
from tests.chats.test_messaging_webhooks import message_params, post
from tests.support.canary import LogCapture
from tests.support.staff import SignedInClient, sign_in
from tests.support.voice import HOTLINE

NAME = "Zqxlink Marisol Quispe"
A_NUMBER = "A204518873"
FACTS = "Two ICE vans outside the laundromat on 5th Ave and 44th St, 6am"
# The report's own tables: what the report is. Everything else it touched is searched.
REPORT_TABLES = {"anonymous_reports", "anonymous_report_entries"}

Snapshot = dict[str, set[tuple[str, ...]]]


@pytest.fixture(autouse=True)
def cheap_hashing(app: FastAPI) -> None:
    from app.accounts.passwords import Passwords

    app.state.auth.hasher.passwords = Passwords(time_cost=1, memory_cost=1024, allow_below_floor=True)


async def snapshot(database: Database) -> Snapshot:
    """Every row of every table, as text (bytes as hex, which is how a leak would be searched)."""
    found: Snapshot = {}
    async with database.engine.connect() as conn:
        tables = await conn.run_sync(lambda sync: inspect(sync).get_table_names())
        for table in tables:
            rows = (await conn.execute(text(f'SELECT * FROM "{table}"'))).all()
            found[table] = {tuple(_as_text(value) for value in row) for row in rows}
    return found


def _as_text(value: Any) -> str:
    if isinstance(value, bytes | memoryview):
        return bytes(value).hex()
    return "" if value is None else str(value)


def new_rows(before: Snapshot, after: Snapshot) -> dict[str, set[tuple[str, ...]]]:
    return {table: rows - before.get(table, set()) for table, rows in after.items()}


def needles_of(
    number: str, callers: Iterable[Caller], rows: Iterable[Any], extra: Iterable[str] = ()
) -> dict[str, str]:
    """Everything that identifies the reporter's rows, in the spellings it could take."""
    found: dict[str, str] = {
        "number": number,
        "number digits": number.lstrip("+"),
        "national number": number[2:],
    }
    for caller in callers:
        found[f"caller {caller.public_id}"] = caller.public_id
        if caller.phone_index:
            found["blind index"] = caller.phone_index
    for row in [*callers, *rows]:
        kind = type(row).__name__
        found[f"{kind} row id"] = str(row.id)
        found[f"{kind} row id (hex)"] = row.id.hex
        public_id = getattr(row, "public_id", None)
        if public_id:
            found[f"{kind} public id"] = public_id
    for index, value in enumerate(extra):
        found[f"extra {index}"] = value
    return found


def hits_in(blob: str, needles: dict[str, str], where: str) -> list[str]:
    lowered = blob.lower()
    return [f"{label} in {where}" for label, value in needles.items() if value.lower() in lowered]


async def until(predicate: Any, timeout: float = 30.0) -> bool:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        if await predicate():
            return True
        await asyncio.sleep(0.05)
    return False


async def settled(app: FastAPI) -> bool:
    """Every recording stored and every Twilio record deleted (the report's jobs are done)."""
    async with app.state.database.sessionmaker() as session:
        entries = list(await session.scalars(select(ReportEntry.state)))
        cleanups = list(await session.scalars(select(TwilioCleanup.state)))
    return bool(cleanups) and all(s == "stored" for s in entries) and all(s == "done" for s in cleanups)


async def identified_chat(sim: CallSimulator, app: FastAPI, address: str) -> list[Any]:
    """A chat conversation whose case carries a name and an A-number: the caller is known."""
    await sim.send_message(address, _hotline(address), "Necesito ayuda, detuvieron a mi esposo")
    await sim.send_message(address, _hotline(address), "2")  # español
    async with app.state.database.sessionmaker() as session:
        conversation = (await session.scalars(select(Conversation))).one()
        case = await session.get(Case, conversation.case_id)
        contact = await session.get(Contact, conversation.contact_id)
        caller = await session.get(Caller, conversation.caller_id)
        assert case is not None and contact is not None and caller is not None
        await seal_fields(session, app.state.sealer, case, {"caller_name": NAME, "a_number": A_NUMBER})
        await session.commit()
        messages = list(await session.scalars(select(ChatMessage)))
    return [caller, conversation, case, contact, *messages]


def _hotline(address: str) -> str:
    return f"whatsapp:{HOTLINE}" if address.startswith("whatsapp:") else HOTLINE


async def identified_voice_caller(app: FastAPI, number: str) -> list[Any]:
    """A number with an identified case from an earlier call (caller row, case, contact)."""
    async with app.state.database.sessionmaker() as session:
        caller, _ = await find_or_create_caller(
            session, app.state.sealer, app.state.broker, app.state.clock, number
        )
        assert caller is not None
        case = await create_case(
            session,
            app.state.sealer,
            app.state.clock,
            actor=Actor("cli:test"),
            language="es",
            category="detention",
            caller=caller,
            fields={"caller_name": NAME, "a_number": A_NUMBER},
        )
        contact = await create_contact(
            session,
            app.state.sealer,
            app.state.clock,
            channel=Channel.voice,
            twilio_sid="CA" + uuid.uuid4().hex,
            caller=caller,
        )
        contact.case_id = case.id
        await session.commit()
    return [caller, case, contact]


async def supervisor_views(supervisor: SignedInClient, since_seq: int) -> dict[str, str]:
    """What a supervisor can fetch about the report and the access log written since `since_seq`."""
    http = supervisor.http
    views: dict[str, str] = {}
    read = await http.get("/api/v1/audit", params={"page_size": 500})
    assert read.status_code == 200, read.text
    audit = read.json()
    views["GET /api/v1/audit (entries since the report)"] = repr(
        [entry for entry in audit["items"] if entry["seq"] > since_seq]
    )
    exported = await http.post("/api/v1/audit/exports", json={}, headers=supervisor.headers())
    if exported.status_code == 200:
        lines = exported.text.splitlines()
        views["POST /api/v1/audit/exports (rows since)"] = "\n".join(
            line for line in lines[1:] if int(line.split(",", 1)[0]) > since_seq
        )
    cases = (await http.get("/api/v1/cases", params={"limit": 200})).json()["items"]
    for case in cases:
        if case["category"] in ("enforcement_report", "abuse_report"):
            views[f"GET /api/v1/cases/{case['id']}"] = (await http.get(f"/api/v1/cases/{case['id']}")).text
            revealed = await http.post(
                f"/api/v1/cases/{case['id']}/report/reveal",
                json={"purpose": "follow_up"},
                headers=supervisor.headers(),
            )
            assert revealed.status_code == 200, revealed.text
            views[f"POST /api/v1/cases/{case['id']}/report/reveal"] = revealed.text
    for path in ("/api/v1/erasures", "/api/v1/holds", "/api/v1/access/reviews", "/metrics"):
        views[f"GET {path}"] = (await http.get(path)).text
    views["GET /console/audit"] = "\n".join(
        line for line in (await http.get("/console/audit")).text.splitlines() if "report" in line
    )
    return views


async def assert_unlinkable(
    app: FastAPI,
    before: Snapshot,
    seq_before: int,
    logs: LogCapture,
    log_mark: int,
    identified: list[Any],
    needles: dict[str, str],
) -> None:
    after = await snapshot(app.state.database)
    hits: list[str] = []
    async with app.state.database.sessionmaker() as session:
        report_cases = {str(c) for c in await session.scalars(select(Report.case_id))}
    for table, rows in new_rows(before, after).items():
        if table in REPORT_TABLES:
            continue
        for row in rows:
            if table == "cases" and row[-1] in report_cases | {uuid.UUID(c).hex for c in report_cases}:
                continue  # the report's own case (its id is the first column)
            hits += hits_in(" ".join(row), needles, f"new or changed row of {table}")
    # Nothing of the reporter's own rows was written: each is exactly as before.
    for row in identified:
        table = type(row).__tablename__
        mine = [r for r in after[table] if str(row.id) in r or row.id.hex in r]
        assert mine and set(mine) <= before[table], f"the report wrote the reporter's {table} row"
    hits += hits_in("\n".join(logs.lines[log_mark:]), needles, "logs since the report")
    async with app.state.database.sessionmaker() as session:
        entries = list(await session.scalars(select(AuditEntry).where(AuditEntry.seq > seq_before)))
    assert entries, "the report wrote no access-log entry at all"
    assert {e.action for e in entries} >= {"report.filed"}
    assert not any(e.object_type in {"caller", "conversation", "contact"} for e in entries), [
        (e.action, e.object_type) for e in entries
    ]
    assert hits == []


async def audit_head(app: FastAPI) -> int:
    async with app.state.database.sessionmaker() as session:
        return int(await session.scalar(select(AuditEntry.seq).order_by(AuditEntry.seq.desc()).limit(1)) or 0)


@pytest.mark.parametrize("channel", ["sms", "whatsapp"])
async def test_a_known_chat_caller_files_an_unlinkable_report(
    channel: str, app: FastAPI, live_app: FastAPI, fake: FakeTwilio, captured_logs: LogCapture
) -> None:
    number = "+12025550143"
    address = f"whatsapp:{number}" if channel == "whatsapp" else number
    async with CallSimulator(fake, app=live_app, time_scale=0.02) as sim:
        identified = await identified_chat(sim, live_app, address)
        await sim.wait_idle(10)
        before, seq_before, log_mark = (
            await snapshot(live_app.state.database),
            await audit_head(live_app),
            len(captured_logs.lines),
        )
        menu = await sim.send_message(address, _hotline(address), "REPORTAR")
        assert "anónima" in menu.replies[0].lower() or "anonymous" in menu.replies[0].lower(), menu.replies
        filed = await sim.send_message(address, _hotline(address), f"2 {FACTS}")
        code = re.search(r"\b(\d{10})\b", filed.replies[0])
        assert code is not None, filed.replies
        assert await until(lambda: settled(live_app)), "Twilio records not deleted"
        await sim.wait_idle(10)
    async with live_app.state.database.sessionmaker() as session:
        assert (await session.scalars(select(Report))).one().channel == channel
        assert list(await session.scalars(select(ReportDialogue))) == []  # the dialogue is gone
    needles = needles_of(number, [identified[0]], identified[1:], extra=[code.group(1)])
    await assert_unlinkable(live_app, before, seq_before, captured_logs, log_mark, identified, needles)
    supervisor = await sign_in(app, roles="supervisor")
    for where, body in (await supervisor_views(supervisor, seq_before)).items():
        assert hits_in(body, needles, where) == []
    # The reporter's own chat is untouched and says nothing of the report.
    case_public_id = identified[2].public_id
    detail = (await supervisor.http.get(f"/api/v1/cases/{case_public_id}")).text
    assert "RP-" not in detail and "report" not in detail.lower()
    await supervisor.http.aclose()


async def test_a_voice_report_from_a_number_with_an_identified_case_is_unlinkable(
    app: FastAPI, live_app: FastAPI, fake: FakeTwilio, captured_logs: LogCapture
) -> None:
    number = "+12025550144"
    identified = await identified_voice_caller(live_app, number)
    before, seq_before, log_mark = (
        await snapshot(live_app.state.database),
        await audit_head(live_app),
        len(captured_logs.lines),
    )
    async with CallSimulator(fake, app=live_app, time_scale=0.02) as sim:
        # Spanish, 8 (report anonymously), 2 (enforcement activity), record, no callback number.
        call = await sim.call(
            number, HOTLINE, Party(digits=("2", "8", "2", None), record_seconds=4), timeout=60
        )
        assert await until(lambda: settled(live_app)), "recording not stored or Twilio records not deleted"
        await sim.wait_idle(10)
    assert "código de referencia" in " ".join(call.said)
    needles = needles_of(number, [identified[0]], identified[1:])
    await assert_unlinkable(live_app, before, seq_before, captured_logs, log_mark, identified, needles)
    supervisor = await sign_in(app, roles="supervisor")
    for where, body in (await supervisor_views(supervisor, seq_before)).items():
        assert hits_in(body, needles, where) == []
    await supervisor.http.aclose()


async def test_a_report_dialogue_is_forgotten_minutes_after_it_began(
    app: FastAPI, client: httpx.AsyncClient, clock: FrozenClock
) -> None:
    """The dialogue's row (a keyed hash of the number) lives minutes: after that, the next text
    is an ordinary chat message, and the hourly purge clears rows nobody came back to."""
    from app.reports.service import MENU_MINUTES, purge_dialogues

    settings = app.state.settings
    menu = await post(client, settings, "/twilio/messaging/incoming", message_params("REPORT"))
    assert "Reply 1" in menu.text
    async with app.state.database.sessionmaker() as session:
        (dialogue,) = list(await session.scalars(select(ReportDialogue)))
        assert dialogue.channel == "sms" and len(dialogue.number_hash) == 64
        assert await session.scalar(select(func.count()).select_from(Caller)) == 0
    clock.advance(timedelta(minutes=MENU_MINUTES + 1))
    chat = await post(client, settings, "/twilio/messaging/incoming", message_params("2 hola"))
    assert "Reply 1" not in chat.text  # the language menu of a new chat, not the report menu
    async with app.state.database.sessionmaker() as session:
        assert list(await session.scalars(select(ReportDialogue))) == []
        assert await session.scalar(select(func.count()).select_from(Conversation)) == 1
        assert await session.scalar(select(func.count()).select_from(Report)) == 0
    # A dialogue left behind is cleared by the purge once it has expired.
    await post(client, settings, "/twilio/messaging/incoming", message_params("REPORT", from_="+12025550188"))
    clock.advance(timedelta(minutes=MENU_MINUTES + 1))
    async with app.state.database.sessionmaker() as session, session.begin():
        assert await purge_dialogues(session, clock) == 1
