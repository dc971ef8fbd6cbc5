"""Safe anonymous reporting: a report keeps the facts a caller chose to give and nothing that
names them.

* By SMS/WhatsApp: `REPORT` (or the keyword of another language) → the menu; "1 …" (abuse) or
  "2 …" (immigration-enforcement activity) followed by what, where and when files the report.
  `REPORT <code> …` adds information later. By voice: 8 at the emergency question (see
  app/calls/router.py).
* Filing unlinks the report from the caller: the dialogue's messages are re-sealed under the
  report case's own key (its facts) or dropped (the keyword, the menu choices), the conversation
  the report opened is deleted with its contact and empty case, and the caller row — number and
  blind index — is deleted when nothing else uses it (kept, and never linked, otherwise). Every
  Twilio record of it (inbound messages, our replies, the call, the recording) is deleted
  through the jobs runner (`TwilioCleanup`).
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

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.access.policy import Principal, Purpose, system_may_open
from app.audit import service as audit
from app.audit.service import Actor
from app.callers.models import Caller
from app.cases.models import Case
from app.cases.service import create_case
from app.clock import Clock
from app.contacts.models import Contact
from app.contacts.service import sid_hash
from app.db.base import Base
from app.jobs.service import enqueue
from app.keys.models import DataKeyRecord
from app.publicid import new_public_id
from app.reports.models import Report, ReportCodeAttempt, ReportEntry, TwilioCleanup
from telephony.numbers import normalize_e164

log = logging.getLogger("hotline.reports")

REPORTER = Principal.system("anonymous-report")
REPORT_FLOW = Actor("system:anonymous-report")
CATEGORIES = {"1": "abuse_report", "2": "enforcement_report"}
CODE_DIGITS = 10
MENU_MINUTES = 30
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


# -- unlinking -------------------------------------------------------------------------------------


async def _referenced(session: AsyncSession, table: str, row_id: Any) -> bool:
    """Whether any column with a foreign key to `table` still names `row_id`."""
    for other in Base.metadata.sorted_tables:
        for column in other.columns:
            if any(fk.column.table.name == table for fk in column.foreign_keys):
                found = await session.scalar(select(func.count()).select_from(other).where(column == row_id))
                if found:
                    return True
    return False


async def _shred_subject(session: AsyncSession, subject_id: Any, now: datetime) -> None:
    """Destroy a deleted row's data keys (kept as destroyed records, for the backup horizon):
    whatever was ever sealed under them is unreadable everywhere, backups included."""
    await session.execute(
        update(DataKeyRecord)
        .where(DataKeyRecord.subject_id == subject_id, DataKeyRecord.destroyed_at.is_(None))
        .values(wrapped=None, destroyed_at=now)
        .execution_options(synchronize_session=False)
    )


async def unlink_conversation(
    session: AsyncSession, state: Any, conversation: Any, caller: Caller | None
) -> str:
    """After a report took the dialogue's messages: drop what the report opened, and the caller
    row when nothing else uses it. Returns "deleted", "kept" or "none" (for the caller row)."""
    from app.chats.models import ChatMessage

    conversation.report_started_at = None
    conversation.report_language = None
    remaining = await session.scalar(
        select(func.count()).select_from(ChatMessage).where(ChatMessage.conversation_id == conversation.id)
    )
    if conversation.report_opened and not remaining and conversation.task_id is None:
        contact = await session.get(Contact, conversation.contact_id)
        case = await session.get(Case, conversation.case_id)
        await session.delete(conversation)
        await session.flush()
        if contact is not None:
            await session.delete(contact)
            await session.flush()
            await _shred_subject(session, contact.id, state.clock.now())
        if case is not None and not await _referenced(session, "cases", case.id):
            await session.delete(case)
            await session.flush()
            await _shred_subject(session, case.id, state.clock.now())
    else:
        conversation.report_opened = False
    if caller is None:
        return "none"
    if await _referenced(session, "callers", caller.id):
        return "kept"
    await session.delete(caller)
    await session.flush()
    await _shred_subject(session, caller.id, state.clock.now())
    return "deleted"


async def take_dialogue(session: AsyncSession, state: Any, conversation: Any, current: Any) -> None:
    """Take the report dialogue out of the conversation: every message's SID to the Twilio
    clean-up, the rows deleted (their facts, if any, were given to the report by the caller of
    this function, from the webhook's own text)."""
    from app.chats.models import ChatMessage

    since = min(conversation.report_started_at or current.created_at, current.created_at)
    earlier = list(
        await session.scalars(
            select(ChatMessage)
            .where(
                ChatMessage.conversation_id == conversation.id,
                ChatMessage.direction == "in",
                ChatMessage.created_at >= since,
                ChatMessage.id != current.id,
            )
            .order_by(ChatMessage.created_at)
        )
    )
    if earlier:
        if not system_may_open(REPORTER, Purpose.anonymise, {"chat_message.sid"}):
            raise PermissionError("policy does not allow anonymising")
        sids = await state.broker.reveal_rows(
            session,
            REPORTER,
            earlier,
            "message_sid",
            purpose=Purpose.anonymise,
            action="system.reveal",
            object_type="conversation",
            object_id=conversation.public_id,
        )
        for sid in sids:
            if sid:
                await delete_at_twilio(session, state, "message", sid)
    for message in [*earlier, current]:
        await session.delete(message)
    await session.flush()


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


async def sms_step(
    state: Any,
    session: AsyncSession,
    *,
    caller: Caller,
    conversation: Any,
    message: Any,
    message_sid: str,
    from_number: str,
    body: str,
    opened: bool,
    now: datetime,
) -> Reply | Literal[False] | None:
    """One inbound text, if it belongs to an anonymous report: returns the reply (None: nothing
    to send, the caller is marked unsafe to text); False when the text is not about a report."""
    words = body.strip().split(maxsplit=1)
    keyword_lang = keyword_language(words[0].upper(), state.settings) if words else None
    in_dialogue = (
        conversation.report_started_at is not None
        and now - conversation.report_started_at <= timedelta(minutes=MENU_MINUTES)
    )
    if keyword_lang is None and not in_dialogue:
        return False
    language = keyword_lang or conversation.report_language or conversation.language or "en"
    # What follows the keyword (or, inside the dialogue, the whole text).
    rest = (words[1].strip() if len(words) > 1 else "") if keyword_lang else body.strip()

    def answer(key: str, **values: str) -> Reply | None:
        return _reply(state, key, language, **values) if caller.safe_to_text is not False else None

    async def finish() -> None:
        await _finish(session, state, conversation, caller, message, message_sid, opened_here=opened)

    code_match = _CODE_IN_TEXT.match(rest) if keyword_lang else None
    if code_match is not None:
        # REPORT <code> <information>: an addition, never a read.
        scopes = [scope for scope in [number_scope(state.keys, from_number)] if scope]
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
            session,
            state,
            channel=conversation.channel,
            category=CATEGORIES[rest[:1]],
            language=language,
            drill=conversation.drill,
        )
        await add_text(session, state, report, rest[1:].strip(), source="report")
        code = await issue_code(session, state.keys, report)
        await finish()
        return answer("report_filed", code=code)
    if rest == "0" and in_dialogue:
        await finish()
        return answer("report_cancelled")
    # The keyword alone, or anything else while the menu is open: the menu (again).
    if not in_dialogue:
        conversation.report_started_at = message.created_at
        conversation.report_opened = opened
    conversation.report_language = language
    return answer("report_menu")


async def _finish(
    session: AsyncSession,
    state: Any,
    conversation: Any,
    caller: Caller,
    message: Any,
    message_sid: str,
    *,
    opened_here: bool,
) -> None:
    """The dialogue is over (filed, added to, refused or cancelled): nothing of it stays linked."""
    if opened_here:
        conversation.report_opened = True
    await take_dialogue(session, state, conversation, message)
    await delete_at_twilio(session, state, "message", message_sid)
    outcome = await unlink_conversation(session, state, conversation, caller)
    audit.record(
        session,
        state.clock,
        actor=REPORT_FLOW,
        action="report.unlinked",
        object_type="report",
        details={"caller_row": outcome},
    )
