"""Safe anonymous reporting: a report keeps the facts a caller chose to give and nothing that
names them.

* By SMS/WhatsApp: `REPORT` (or the keyword of another language) → the menu; "1 …" (abuse) or
  "2 …" (immigration-enforcement activity) followed by what, where and when files the report.
  `REPORT <code> …` adds information later. By voice: 8 at the emergency question (see
  app/calls/router.py).
* A report is never linked to its reporter. By text, the report keyword is recognised before
  any caller matching: the dialogue keeps its state in its own short-lived row under a keyed
  hash of the number (`ReportDialogue`), and no caller, conversation, contact or case row is
  read or written for its messages, so no access-log entry names any of them. By voice, the
  call's sealed number is wiped at 8 and no caller, contact or task is created. Every Twilio
  record of it (inbound messages, our replies, the call, the recording) is deleted through the
  jobs runner (`TwilioCleanup`).
* The reporter gets a reference code of 10 random digits. Only its keyed hash is stored; a code
  only ever lets someone *add* to a report, never read it. Wrong codes are throttled per call,
  per keyed number and globally.

Services flush, never commit (the broker's reveals commit their audit entries).
"""

from __future__ import annotations

import logging
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.access.policy import Principal
from app.audit import service as audit
from app.audit.service import Actor
from app.cases.service import create_case
from app.clock import Clock
from app.contacts.service import sid_hash
from app.jobs.service import enqueue
from app.publicid import new_public_id
from app.reports.models import Report, ReportCodeAttempt, ReportDialogue, ReportEntry, TwilioCleanup
from telephony.numbers import normalize_e164

log = logging.getLogger("hotline.reports")

REPORTER = Principal.system("anonymous-report")
REPORT_FLOW = Actor("system:anonymous-report")
CATEGORIES = {"1": "abuse_report", "2": "enforcement_report"}
CODE_DIGITS = 10
# A report dialogue (its row keyed by a hash of the number) is forgotten this long after it began.
MENU_MINUTES = 10
MAX_FACTS = 1600
# Wrong reference codes allowed before that scope must wait: per call, per number a day, and
# for everyone an hour (the last stops a distributed guesser; 10^10 codes make guessing hopeless
# at this rate anyway).
PER_CALL_FAILURES = 3
PER_NUMBER_FAILURES = 5
GLOBAL_FAILURES = 200
_CODE_IN_TEXT = re.compile(r"^\s*(\d{10})(?!\d)\s*(.*)$", re.DOTALL)
_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Reply:
    """A text to the reporter whose Twilio record must be deleted once sent: answered in the
    webhook's TwiML with a status callback that schedules the deletion. Never stored."""

    text: str
    status_callback: str


# -- reference codes and throttling --------------------------------------------------------------


def code_hash(keys: Any, code: str) -> str:
    return str(keys.material.keyed_hasher().hash("report.code", code.encode()).hex())


def number_scope(keys: Any, raw_number: str | None) -> str | None:
    """The throttle scope of a number: a keyed hash (never the number), or None when withheld."""
    e164 = normalize_e164(raw_number)
    if e164 is None:
        return None
    return "number:" + keys.material.keyed_hasher().hash("report.throttle", e164.encode()).hex()[:40]


def call_scope(keys: Any, call_sid: str) -> str:
    return "call:" + sid_hash(keys, call_sid)[:40]


def _window(scope: str, now: datetime) -> datetime:
    if scope.startswith("call:"):
        return _EPOCH  # a call's attempts never reset
    if scope.startswith("number:"):
        return now.replace(hour=0, minute=0, second=0, microsecond=0)
    return now.replace(minute=0, second=0, microsecond=0)


def _limit(scope: str) -> int:
    if scope.startswith("call:"):
        return PER_CALL_FAILURES
    if scope.startswith("number:"):
        return PER_NUMBER_FAILURES
    return GLOBAL_FAILURES


async def throttled(session: AsyncSession, clock: Clock, scopes: list[str]) -> bool:
    now = clock.now()
    for scope in scopes:
        failures = await session.scalar(
            select(ReportCodeAttempt.failures).where(
                ReportCodeAttempt.scope == scope, ReportCodeAttempt.window_start == _window(scope, now)
            )
        )
        if (failures or 0) >= _limit(scope):
            return True
    return False


async def record_failure(session: AsyncSession, clock: Clock, scopes: list[str]) -> None:
    now = clock.now()
    # Old windows go as new failures come: the table never keeps more than a day of hashes.
    await session.execute(
        delete(ReportCodeAttempt).where(
            ReportCodeAttempt.window_start < now - timedelta(days=2),
            ReportCodeAttempt.window_start > _EPOCH,
        )
    )
    for scope in scopes:
        window = _window(scope, now)
        row = await session.scalar(
            select(ReportCodeAttempt).where(
                ReportCodeAttempt.scope == scope, ReportCodeAttempt.window_start == window
            )
        )
        if row is None:
            session.add(ReportCodeAttempt(scope=scope, window_start=window, failures=1))
        else:
            row.failures += 1
    await session.flush()


async def check_code(
    session: AsyncSession, clock: Clock, keys: Any, code: str, scopes: list[str]
) -> Report | str:
    """The report a code names, or "throttled" / "unknown" (each wrong code counts in every scope)."""
    scopes = [*scopes, "global"]
    if await throttled(session, clock, scopes):
        return "throttled"
    report = (
        await session.scalar(select(Report).where(Report.code_hash == code_hash(keys, code)))
        if re.fullmatch(r"\d{10}", code)
        else None
    )
    if report is None:
        await record_failure(session, clock, scopes)
        audit.record(session, clock, actor=REPORT_FLOW, action="report.code_refused", object_type="report")
        return "unknown"
    return report


async def issue_code(session: AsyncSession, keys: Any, report: Report) -> str:
    """A fresh 10-digit code for the report (a new one replaces any earlier); only its hash is kept."""
    while True:
        code = f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"
        hashed = code_hash(keys, code)
        if await session.scalar(select(Report.id).where(Report.code_hash == hashed)) is None:
            report.code_hash = hashed
            await session.flush()
            return code


# -- reports and their entries -------------------------------------------------------------------


async def open_report(
    session: AsyncSession, state: Any, *, channel: str, category: str, language: str, drill: bool = False
) -> Report:
    case = await create_case(
        session,
        state.sealer,
        state.clock,
        actor=REPORT_FLOW,
        language=language,
        category=category,
        drill=drill,
    )
    now = state.clock.now()
    report = Report(
        public_id=new_public_id("RP"),
        case_id=case.id,
        channel=channel,
        category=category,
        language=language,
        created_at=now,
        updated_at=now,
    )
    session.add(report)
    await session.flush()
    audit.record(
        session,
        state.clock,
        actor=REPORT_FLOW,
        action="report.filed",
        object_type="report",
        object_id=report.public_id,
        details={"case": case.public_id, "channel": channel},
    )
    return report


async def add_text(
    session: AsyncSession, state: Any, report: Report, body: str, *, source: str
) -> ReportEntry:
    entry = ReportEntry(
        public_id=new_public_id("RE"),
        report_id=report.id,
        case_id=report.case_id,
        kind="text",
        source=source,
        state="stored",
        length=len(body),
        created_at=state.clock.now(),
    )
    await state.sealer.seal(session, entry, "body", body[:MAX_FACTS])
    session.add(entry)
    await _touch(session, state.clock, report, source)
    return entry


async def add_recording(
    session: AsyncSession, state: Any, report: Report, recording_sid: str, *, source: str
) -> ReportEntry:
    """A recording made for the report: fetched, sealed and stored by a job, then deleted at Twilio."""
    entry = ReportEntry(
        public_id=new_public_id("RE"),
        report_id=report.id,
        case_id=report.case_id,
        kind="audio",
        source=source,
        state="fetching",
        created_at=state.clock.now(),
    )
    await state.sealer.seal(session, entry, "recording_sid", recording_sid)
    session.add(entry)
    await _touch(session, state.clock, report, source)
    await enqueue(
        session,
        state.clock,
        "reports.store_audio",
        {"entry": entry.public_id},
        dedup_key=f"report-audio:{entry.public_id}",
        max_attempts=12,
    )
    return entry


async def _touch(session: AsyncSession, clock: Clock, report: Report, source: str) -> None:
    report.updated_at = clock.now()
    if source == "addition":
        report.additions += 1
        audit.record(
            session,
            clock,
            actor=REPORT_FLOW,
            action="report.added_to",
            object_type="report",
            object_id=report.public_id,
        )
    await session.flush()


# -- deletion at Twilio ---------------------------------------------------------------------------


async def delete_at_twilio(
    session: AsyncSession,
    state: Any,
    kind: str,
    sid: str,
    *,
    after_call_ends: bool = False,
    delay: timedelta | None = None,
) -> TwilioCleanup:
    """Schedule the deletion of a Twilio record (one row per SID: its keyed hash is unique). A
    call is deleted only once it has ended (`call_ended`): Twilio refuses a call in progress. With
    `delay`, the job runs that much later (a reply only "sent", which may still be delivered)."""
    hashed = sid_hash(state.keys, sid)
    row = await session.scalar(select(TwilioCleanup).where(TwilioCleanup.sid_hash == hashed))
    if row is None:
        row = TwilioCleanup(
            public_id=new_public_id("TC"),
            kind=kind,
            sid_hash=hashed,
            state="waiting" if after_call_ends else "pending",
            created_at=state.clock.now(),
        )
        await state.sealer.seal(session, row, "sid", sid)
        session.add(row)
        await session.flush()
    if row.state == "pending":
        await _enqueue_cleanup(session, state.clock, row, delay)
    return row


async def call_ended(session: AsyncSession, state: Any, call_sid: str) -> None:
    row = await session.scalar(
        select(TwilioCleanup).where(TwilioCleanup.sid_hash == sid_hash(state.keys, call_sid))
    )
    if row is not None and row.state == "waiting":
        row.state = "pending"
        await _enqueue_cleanup(session, state.clock, row, None)


async def _enqueue_cleanup(
    session: AsyncSession, clock: Clock, row: TwilioCleanup, delay: timedelta | None
) -> None:
    await enqueue(
        session,
        clock,
        "reports.delete_at_twilio",
        {"cleanup": row.public_id},
        delay=delay,
        dedup_key=f"twilio-cleanup:{row.public_id}:{'later' if delay else 'now'}",
        max_attempts=30,
    )


async def already_received(session: AsyncSession, keys: Any, message_sid: str) -> bool:
    """An inbound message that became part of a report (its row in the chat is gone)."""
    hashed = sid_hash(keys, message_sid)
    return await session.scalar(select(TwilioCleanup.id).where(TwilioCleanup.sid_hash == hashed)) is not None


# -- the SMS/WhatsApp dialogue -----------------------------------------------------------------------


def keyword_language(word: str, settings: Any) -> str | None:
    """The language of a report keyword (`REPORT`, `REPORTAR`, `RAPÒ`…), or None."""
    from app.chats.service import keyword_language as sms_keyword_language

    return sms_keyword_language("report_keywords", word, settings)


def _reply(state: Any, key: str, language: str | None, **values: str) -> Reply:
    from app.chats.service import text

    return Reply(
        text=text(key, language).format(**values),
        status_callback=f"{state.settings.public_url}/twilio/messaging/cleanup",
    )


def dialogue_hash(keys: Any, e164: str) -> str:
    """The report dialogue's key for a number: the generic hash key in its own domain, never the
    callers' blind-index key, so it matches nothing in the `callers` table."""
    return str(keys.material.keyed_hasher().hash("report.dialogue", e164.encode()).hex())


async def end_dialogue(session: AsyncSession, keys: Any, e164: str) -> None:
    """Forget a number's report dialogue (STOP, or the dialogue is over)."""
    await session.execute(
        delete(ReportDialogue).where(ReportDialogue.number_hash == dialogue_hash(keys, e164))
    )


async def purge_dialogues(session: AsyncSession, clock: Clock) -> int:
    """Delete every report dialogue past its expiry; returns how many."""
    result = await session.execute(delete(ReportDialogue).where(ReportDialogue.expires_at <= clock.now()))
    return int(getattr(result, "rowcount", 0) or 0)


async def sms_step(
    state: Any,
    session: AsyncSession,
    *,
    channel: str,
    e164: str,
    message_sid: str,
    body: str,
    drill: bool,
    now: datetime,
) -> Reply | Literal[False]:
    """One inbound text, if it belongs to an anonymous report: returns the reply; False when the
    text is not about a report (then, and only then, the chat flow may look at the caller).

    Runs *before* any caller matching: a report's messages never read or write a caller,
    conversation, contact or case row, and no access-log entry names any of them. A caller who
    was in an identified chat when they texted `REPORT` is treated exactly like a stranger. The
    dialogue's state lives in its own row under `dialogue_hash` for `MENU_MINUTES` at most; every
    message of it is deleted at Twilio at once (inbound) or once sent (our replies)."""
    words = body.strip().split(maxsplit=1)
    keyword_lang = keyword_language(words[0].upper(), state.settings) if words else None
    await purge_dialogues(session, state.clock)
    hashed = dialogue_hash(state.keys, e164)
    dialogue = await session.scalar(select(ReportDialogue).where(ReportDialogue.number_hash == hashed))
    if keyword_lang is None and dialogue is None:
        return False
    # From here on the text is the report's: its Twilio record goes, and replays find it gone.
    await delete_at_twilio(session, state, "message", message_sid)
    language = keyword_lang or (dialogue.language if dialogue is not None else "en")
    drill = drill or (dialogue is not None and dialogue.drill)
    # What follows the keyword (or, inside the dialogue, the whole text).
    rest = (words[1].strip() if len(words) > 1 else "") if keyword_lang else body.strip()

    def answer(key: str, **values: str) -> Reply:
        return _reply(state, key, language, **values)

    async def finish() -> None:
        if dialogue is not None:
            await session.delete(dialogue)
            await session.flush()

    code_match = _CODE_IN_TEXT.match(rest) if keyword_lang else None
    if code_match is not None:
        # REPORT <code> <information>: an addition, never a read.
        scopes = [scope for scope in [number_scope(state.keys, e164)] if scope]
        found = await check_code(session, state.clock, state.keys, code_match.group(1), scopes)
        facts = code_match.group(2).strip()
        if isinstance(found, Report) and facts:
            await add_text(session, state, found, facts, source="addition")
        await finish()
        if isinstance(found, Report):
            return answer("report_added")
        return answer("report_wait" if found == "throttled" else "report_unknown")
    if rest[:1] in CATEGORIES and rest[1:].strip():
        report = await open_report(
            session, state, channel=channel, category=CATEGORIES[rest[:1]], language=language, drill=drill
        )
        await add_text(session, state, report, rest[1:].strip(), source="report")
        code = await issue_code(session, state.keys, report)
        await finish()
        return answer("report_filed", code=code)
    if rest == "0" and dialogue is not None:
        await finish()
        return answer("report_cancelled")
    # The keyword alone, or anything else while the menu is open: the menu (again).
    if dialogue is None:
        dialogue = ReportDialogue(
            number_hash=hashed,
            channel=channel,
            language=language,
            drill=drill,
            started_at=now,
            expires_at=now + timedelta(minutes=MENU_MINUTES),
        )
        session.add(dialogue)
    dialogue.language = language
    await session.flush()
    return answer("report_menu")
