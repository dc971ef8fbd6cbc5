"""The voice webhooks. Rule one: never drop a caller.

Every handler does its database work under a 1.5 s deadline in its own transaction, committed
before the answer is built; anything that goes wrong inside (database down, locked, slow, a bug)
is answered with static overflow TwiML in the caller's language, so Twilio always gets valid
TwiML well inside its 15 s limit. `/twilio/voice/fallback` (the number's Fallback URL) serves
the same static TwiML without touching the database at all.

Replays are answered from the stored reply, byte for byte: the key is the CallSid (as a keyed
hash), the flow step and a discriminator — the attempt counter we put in our own action URLs.
No URL we hand to Twilio carries a phone number or anything personal.

Flow so far: greeting and language menu → emergency question → (routing into the queue lands
with the routing & voice issue; until then every call is connected to the overflow line).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.access.policy import Principal, Purpose
from app.calls import callbacks, flow, prompts
from app.calls.intake import NewCall
from app.calls.models import Call, WebhookReply, daily_key_subject
from app.contacts.service import sid_hash
from app.db.base import new_id
from app.reports import service as reports
from app.rights import service as rights
from app.settings import Settings
from app.volunteers.service import pending_verification_by_reference, verification_code
from app.webhooks.deps import InvalidWebhookPayload, TwilioSignature, twilio_webhook, webhook_context
from telephony import twiml
from telephony.numbers import normalize_e164
from telephony.payloads import (
    CallRequest,
    CallStatusCallback,
    DialResult,
    GatherResult,
    IncomingCall,
    QueueExit,
    QueueWait,
    RecordAction,
    RecordingStatusCallback,
)

log = logging.getLogger("hotline.calls")
signed = APIRouter(
    prefix="/twilio/voice", tags=["twilio"], include_in_schema=False, dependencies=[TwilioSignature]
)
DEADLINE_SECONDS = 1.5
MENU_LANGUAGES = prompts.CATALOGUE_LANGUAGES
DEFAULT_LANGUAGE = "en"
MAX_MENU_ATTEMPTS = 3
REPLAYER = Principal.system("webhook-replay")
TWIML = "application/xml"
# How long a queued caller holds for a task still being created before going to overflow.
TASK_GRACE_SECONDS = 30
# Queued callers hear know-your-rights texts as hold content after this wait, a new one each round.
RIGHTS_HOLD_AFTER_SECONDS = 30
RIGHTS_HOLD_EVERY_SECONDS = 40


def twiml_response(xml: str) -> Response:
    return Response(content=xml, media_type=TWIML)


def static_overflow(settings: Settings, language: str | None) -> str:
    """What a caller hears when nothing else can run: no database, no state, no I/O."""
    spoken = [language] if language in MENU_LANGUAGES else ["en", "es"]
    url = settings.public_url
    return twiml.overflow_fallback(
        [prompts.resolve("unavailable", code, public_url=url) for code in spoken],
        overflow_number=settings.overflow_number,
        caller_id=settings.twilio_number,
        connecting=[prompts.resolve("overflow_connecting", code, public_url=url) for code in spoken],
    )


def step_url(settings: Settings, step: str, attempt: int) -> str:
    return f"{settings.public_url}/twilio/voice/{step}?attempt={attempt}"


async def _stored_reply(
    session: AsyncSession, request: Request, call_hash: str, step: str, disc: str
) -> str | None:
    row = await session.scalar(
        select(WebhookReply).where(
            WebhookReply.call_sid_hash == call_hash,
            WebhookReply.step == step,
            WebhookReply.discriminator == disc,
        )
    )
    if row is None:
        return None
    return await request.app.state.broker.reveal_for_system(
        session,
        REPLAYER,
        row,
        "reply",
        purpose=Purpose.webhook_replay,
        object_type="call_webhook",
        object_id=step,
    )


Work = Callable[[AsyncSession, Call | None], Awaitable[str]]


# Work abandoned at the deadline, kept referenced until it has unwound (its cleanup may wait on a
# locked database long after the caller got their answer).
_stragglers: set[asyncio.Task[str]] = set()


async def answer(
    request: Request,
    *,
    call_sid: str,
    step: str,
    discriminator: str,
    work: Work,
    language: str | None = None,
    store: bool = True,
    fallback: Callable[[], str] | None = None,
    slow: Callable[[], str] | None = None,
) -> Response:
    """Run `work` under the deadline, store its TwiML for replays, or fall back to static TwiML.

    The work runs as its own task: at the deadline the caller is answered at once, and the task is
    cancelled and left to unwind in the background (a rollback can itself wait on a lock). With
    `slow`, a step whose answer is known in advance (the enqueue step names a task derived from the
    CallSid) is answered with `slow()` instead and its work is left to finish: under a surge the
    database is slow, not gone, and cancelling could land after a commit, leaving state the caller
    was never told about. Only an error inside the work falls back to `fallback` / static overflow.
    """
    return await within_deadline(
        request,
        _answer(
            request,
            call_sid=call_sid,
            step=step,
            discriminator=discriminator,
            work=work,
            store=store,
        ),
        step=step,
        language=language,
        fallback=fallback,
        slow=slow,
    )


async def within_deadline(
    request: Request,
    work: Coroutine[Any, Any, str],
    *,
    step: str,
    language: str | None = None,
    fallback: Callable[[], str] | None = None,
    slow: Callable[[], str] | None = None,
) -> Response:
    """`work`'s TwiML if it is ready within the deadline, else static TwiML (see `answer`)."""
    settings: Settings = request.app.state.settings
    task = asyncio.create_task(work)
    done, _pending = await asyncio.wait({task}, timeout=DEADLINE_SECONDS)
    if task in done and task.exception() is None:
        return twiml_response(task.result())
    if task in done:
        error = type(task.exception()).__name__
    elif slow is not None:
        _stragglers.add(task)
        task.add_done_callback(_finish_straggler)
        log.warning("voice webhook answered before its work finished", extra={"step": step})
        return twiml_response(slow())
    else:
        error = "DeadlineExceeded"
        task.cancel()
        _stragglers.add(task)
        task.add_done_callback(_stragglers.discard)
    log.error("voice webhook fell back to static TwiML", extra={"step": step, "error": error})
    return twiml_response(fallback() if fallback is not None else static_overflow(settings, language))


def _finish_straggler(task: asyncio.Task[str]) -> None:
    _stragglers.discard(task)
    if not task.cancelled() and task.exception() is not None:
        log.error(
            "voice webhook work failed after its answer",
            extra={"error": type(task.exception()).__name__},
        )


async def _answer(
    request: Request,
    *,
    call_sid: str,
    step: str,
    discriminator: str,
    work: Work,
    store: bool = True,
) -> str:
    keys = request.app.state.keys
    sealer = request.app.state.sealer
    clock = request.app.state.clock
    call_hash = sid_hash(keys, call_sid)
    async with request.app.state.database.sessionmaker() as session:
        stored = await _stored_reply(session, request, call_hash, step, discriminator) if store else None
        if stored is not None:
            await session.commit()
            return stored
        try:
            call = await session.scalar(select(Call).where(Call.call_sid_hash == call_hash))
            xml = await work(session, call)
            if store:
                reply = WebhookReply(
                    call_sid_hash=call_hash, step=step, discriminator=discriminator, created_at=clock.now()
                )
                await sealer.seal(session, reply, "reply", xml)
                session.add(reply)
            await session.commit()
            return xml
        except IntegrityError:
            # A concurrent delivery of the same webhook won the race: answer what it answered.
            await session.rollback()
            stored = await _stored_reply(session, request, call_hash, step, discriminator)
            await session.commit()
            if stored is None:
                raise
            return stored


@signed.post("/incoming")
async def incoming(
    request: Request, event: Annotated[IncomingCall, twilio_webhook(IncomingCall)]
) -> Response:
    """The number's Voice URL: one row with the sealed number, then greeting and language menu."""
    settings: Settings = request.app.state.settings
    drill = webhook_context(request).drill

    async def work() -> str:
        # One write, group-committed with the other calls arriving now: the row with the sealed
        # number, inserted unless a replay got there first. The answer needs no storing: the menu
        # is the same bytes for every call and every replay.
        now = request.app.state.clock.now()
        row = Call(
            id=new_id(),
            call_sid_hash=sid_hash(request.app.state.keys, event.call_sid),
            key_subject=daily_key_subject("calls", now.date()),
            drill=drill,
            created_at=now,
            updated_at=now,
        )
        await request.app.state.call_intake.submit(NewCall(row, event.from_ or None))
        return menu(settings, attempt=1)

    return await within_deadline(request, work(), step="incoming")


def menu(settings: Settings, *, attempt: int) -> str:
    return _menu(settings.public_url, attempt)


@functools.lru_cache(maxsize=32)
def _menu(url: str, attempt: int) -> str:
    # The prompts are static data: the menu is the same bytes for every call with this attempt.
    # The greeting in the two most common languages; the menu then names every language in itself.
    before = (
        [prompts.resolve("greeting", code, public_url=url) for code in ("en", "es")] if attempt == 1 else []
    )
    return twiml.language_menu(
        [*before, *prompts.menu_prompts(MENU_LANGUAGES, public_url=url)],
        action_url=f"{url}/twilio/voice/language?attempt={attempt}",
        no_input_url=f"{url}/twilio/voice/language?attempt={attempt}",
    )


@signed.post("/language")
async def language(
    request: Request,
    event: Annotated[GatherResult, twilio_webhook(GatherResult)],
    attempt: Annotated[int, Query(ge=1, le=10)] = 1,
) -> Response:
    """The language key (or none): emergency question in that language, or the menu again."""
    settings: Settings = request.app.state.settings
    chosen = prompts.language_for_digit(event.digits or "", MENU_LANGUAGES)

    async def work(session: AsyncSession, call: Call | None) -> str:
        code = chosen
        if code is None and attempt < MAX_MENU_ATTEMPTS:
            return menu(settings, attempt=attempt + 1)
        code = code or DEFAULT_LANGUAGE
        if call is not None:
            call.language = code
            call.state = "emergency_ask"
            call.updated_at = request.app.state.clock.now()
        return twiml.emergency_option(
            [
                prompts.resolve("emergency_option", code, public_url=settings.public_url),
                prompts.resolve("report_option", code, public_url=settings.public_url),
            ],
            action_url=f"{settings.public_url}/twilio/voice/emergency?attempt=1&language={code}",
            no_input_url=f"{settings.public_url}/twilio/voice/emergency?attempt=1&language={code}",
        )

    return await answer(
        request,
        call_sid=event.call_sid,
        step="language",
        discriminator=str(attempt),
        work=work,
        language=chosen,
    )


@signed.post("/emergency")
async def emergency(
    request: Request,
    event: Annotated[GatherResult, twilio_webhook(GatherResult)],
    attempt: Annotated[int, Query(ge=1, le=10)] = 1,
    language: Annotated[str, Query(pattern=r"^[a-z]{2,3}$")] = DEFAULT_LANGUAGE,
) -> Response:
    """Press 9 if someone is being detained right now → caller matched, case and task created,
    the caller queued with our own hold content, the best volunteer rung (a job)."""
    settings: Settings = request.app.state.settings
    code = language if language in MENU_LANGUAGES else DEFAULT_LANGUAGE
    urgent = (event.digits or "") == str(prompts.EMERGENCY_DIGIT)
    report = (event.digits or "") == str(prompts.REPORT_DIGIT)

    planned = flow.task_public_id_for(request.app.state.keys, event.call_sid)

    def queued(task_id: str) -> str:
        return twiml.enqueue(
            flow.QUEUE_NAME,
            wait_url=f"{settings.public_url}/twilio/voice/wait?language={code}&task={task_id}",
            action_url=f"{settings.public_url}/twilio/voice/queue-exit?task={task_id}",
        )

    async def work(session: AsyncSession, call: Call | None) -> str:
        if call is None:
            raise LookupError("no call row for this CallSid")
        if report:
            await start_report(request, session, call, event.call_sid)
            return report_menu(settings, code, attempt=1)
        task = await flow.start_contact(
            request.app,
            session,
            call,
            language=code,
            emergency=urgent,
            call_sid=event.call_sid,
            from_number=event.from_ or None,
            task_public_id=planned,
        )
        return queued(task.public_id)

    return await answer(
        request,
        call_sid=event.call_sid,
        step="emergency",
        discriminator=str(attempt),
        work=work,
        language=code,
        slow=(lambda: report_menu(settings, code, attempt=1)) if report else (lambda: queued(planned)),
    )


@signed.post("/wait")
async def wait(
    request: Request,
    event: Annotated[QueueWait, twilio_webhook(QueueWait)],
    task: Annotated[str, Query(pattern=r"^TK-[0-9A-Z]{4}-[0-9A-Z]{4}$")],
    language: Annotated[str, Query(pattern=r"^[a-z]{2,3}$")] = DEFAULT_LANGUAGE,
) -> Response:
    """The waitUrl, polled while the caller holds: fresh content each time (our position), or
    `<Leave/>` once the task has escalated to overflow."""
    settings: Settings = request.app.state.settings
    spoken = language if language in MENU_LANGUAGES else DEFAULT_LANGUAGE

    async def work(session: AsyncSession, call: Call | None) -> str:
        found = await flow.task_by_public_id(session, task)
        if call is not None and event.queue_sid and call.queue_sid != event.queue_sid:
            call.queue_sid = event.queue_sid
        if found is None and (event.queue_time or 0) < TASK_GRACE_SECONDS:
            # The enqueue step answered before its work finished (a surge): the task is coming.
            return twiml.hold(
                [prompts.resolve("hold_waiting", spoken, public_url=settings.public_url)],
                pause_seconds=5,
            )
        if found is None or found.state in ("abandoned", "overflowed"):
            return twiml.leave()
        if found.escalation_step >= 2 and found.state != "offered":
            # Past the maximum wait (a volunteer still ringing keeps their chance to answer).
            return twiml.leave()
        position = await flow.queue_position(session, found)
        offer_message = await flow.may_offer_voicemail(
            session, found, request.app.state.clock, settings.voicemail_offer_seconds
        )
        texts = await rights.voice_texts(session, found.language)
        info: list[twiml.Prompt] = []
        if texts:
            info.append(prompts.resolve("rights_offer", found.language, public_url=settings.public_url))
            if (event.queue_time or 0) >= RIGHTS_HOLD_AFTER_SECONDS:
                # Hold content: one reviewed text per round, in turn, interruptible by a key.
                turn = (event.queue_time or 0) // RIGHTS_HOLD_EVERY_SECONDS
                spoken_text = rights.voice_prompt(texts[turn % len(texts)])
                if spoken_text is not None:
                    info.append(spoken_text)
        if offer_message:
            info.append(prompts.resolve("voicemail_offer", found.language, public_url=settings.public_url))
        choice = f"{settings.public_url}/twilio/voice/wait-choice?task={task}"
        return twiml.hold(
            [
                prompts.resolve(
                    "hold_position", found.language, public_url=settings.public_url, position=position
                )
            ],
            pause_seconds=8,
            info_prompts=info,
            info_action_url=(f"{choice}&vm=1" if offer_message else choice) if info else None,
        )

    def keep_holding() -> str:
        # A waitUrl document may not <Dial>: under trouble the caller keeps their place instead,
        # up to the maximum wait, and then leaves for the overflow line (the Enqueue action).
        if (event.queue_time or 0) >= settings.max_queue_seconds:
            return twiml.leave()
        return twiml.hold(
            [prompts.resolve("still_waiting", spoken, public_url=settings.public_url)],
            pause_seconds=8,
        )

    return await answer(
        request,
        call_sid=event.call_sid,
        step="wait",
        discriminator=str(event.queue_time or 0),
        work=work,
        store=False,
        fallback=keep_holding,
    )


@signed.post("/wait-choice")
async def wait_choice(
    request: Request,
    event: Annotated[GatherResult, twilio_webhook(GatherResult)],
    task: Annotated[str, Query(pattern=r"^TK-[0-9A-Z]{4}-[0-9A-Z]{4}$")],
    vm: Annotated[int, Query(ge=0, le=1)] = 0,
    topic: Annotated[int, Query(ge=0, le=99)] = 0,
) -> Response:
    """A key pressed during hold content, still inside the queue: 1 (when a message was offered)
    leaves the queue to record one — the caller's consent; 3 plays the next know-your-rights
    text; anything else keeps them waiting. Only `<Leave/>` takes a caller out of the queue, so
    hearing their rights never costs them their place."""
    settings: Settings = request.app.state.settings
    digits = event.digits or ""
    leave_message = vm == 1 and digits == str(prompts.VOICEMAIL_LEAVE_DIGIT)

    async def work(session: AsyncSession, call: Call | None) -> str:
        found = await flow.task_by_public_id(session, task)
        language = found.language if found else DEFAULT_LANGUAGE
        if leave_message and call is not None and found is not None and found.state in ("queued", "offered"):
            call.state = "voicemail"
            call.updated_at = request.app.state.clock.now()
            return twiml.leave()
        if digits == str(prompts.RIGHTS_DIGIT) and found is not None:
            texts = await rights.voice_texts(session, language)
            spoken_text = rights.voice_prompt(texts[topic % len(texts)]) if texts else None
            if spoken_text is not None:
                # The text, then "press 3 for more" (the next topic); when the document ends,
                # Twilio goes back to the waitUrl loop: the caller never left the queue.
                return twiml.hold(
                    [],
                    pause_seconds=1,
                    info_prompts=[
                        spoken_text,
                        prompts.resolve("rights_offer", language, public_url=settings.public_url),
                    ],
                    info_action_url=(
                        f"{settings.public_url}/twilio/voice/wait-choice?task={task}&topic={topic + 1}"
                    ),
                )
        return twiml.hold(
            [prompts.resolve("hold_waiting", language, public_url=settings.public_url)],
            pause_seconds=8,
        )

    def keep_holding() -> str:
        return twiml.hold(
            [prompts.resolve("still_waiting", DEFAULT_LANGUAGE, public_url=settings.public_url)],
            pause_seconds=8,
        )

    return await answer(
        request,
        call_sid=event.call_sid,
        step="wait-choice",
        discriminator=f"{digits}:{topic}",
        work=work,
        store=False,
        fallback=keep_holding,
    )


def record_message(settings: Settings, task: str, language: str) -> str:
    url = settings.public_url
    return twiml.record_voicemail(
        [prompts.resolve("voicemail_prompt", language, public_url=url)],
        action_url=f"{url}/twilio/voice/recorded?task={task}",
        recording_status_callback_url=f"{url}/twilio/voice/recording?task={task}",
        max_length=settings.voicemail_max_seconds,
    )


@signed.post("/queue-exit")
async def queue_exit(
    request: Request,
    event: Annotated[QueueExit, twilio_webhook(QueueExit)],
    task: Annotated[str, Query(pattern=r"^TK-[0-9A-Z]{4}-[0-9A-Z]{4}$")],
) -> Response:
    """The Enqueue action: the caller left the queue. Hung up → abandoned; chose to leave a message
    → `<Record>`; past the maximum wait → the overflow line, or without one a message (only for a
    caller we could call back) or an apology; bridged/redirected (dequeued to a volunteer) → nothing."""
    settings: Settings = request.app.state.settings
    result = event.queue_result

    async def work(session: AsyncSession, call: Call | None) -> str:
        found = await flow.task_by_public_id(session, task)
        language = found.language if found else DEFAULT_LANGUAGE
        if result in ("bridged", "redirected", "redirected-from-bridged"):
            return twiml.empty_response()
        if result == "hangup":
            if found is not None:
                await flow.end_task(request.app, session, found, "abandoned")
            return twiml.empty_response()
        if found is not None:
            await flow.end_task(request.app, session, found, "overflowed")
        wants_message = call is not None and call.state == "voicemail"
        if found is not None and call is not None and not wants_message and not settings.overflow_number:
            wants_message = await flow.can_call_back(session, found)
        if found is not None and wants_message:
            if call is not None:
                call.state = "voicemail"
            return record_message(settings, found.public_id, language)
        return static_overflow(settings, language)

    return await answer(
        request, call_sid=event.call_sid, step="queue-exit", discriminator=result or "", work=work
    )


@signed.post("/recorded")
async def recorded(
    request: Request,
    event: Annotated[RecordAction, twilio_webhook(RecordAction)],
    task: Annotated[str, Query(pattern=r"^TK-[0-9A-Z]{4}-[0-9A-Z]{4}$")],
) -> Response:
    """The `<Record>` action: the message is noted (its audio follows by the recording status
    callback), a callback opened, and the caller thanked."""
    settings: Settings = request.app.state.settings

    async def work(session: AsyncSession, call: Call | None) -> str:
        found = await flow.task_by_public_id(session, task)
        language = found.language if found else DEFAULT_LANGUAGE
        if call is not None:
            state = request.app.state
            voicemail = await callbacks.voicemail_for_call(
                session, state.sealer, state.clock, call, event.recording_sid
            )
            await callbacks.open_callback(session, state.clock, call, voicemail)
        return twiml.hangup([prompts.resolve("goodbye", language, public_url=settings.public_url)])

    return await answer(request, call_sid=event.call_sid, step="recorded", discriminator="", work=work)


@signed.post("/recording")
async def recording(
    request: Request,
    event: Annotated[RecordingStatusCallback, twilio_webhook(RecordingStatusCallback)],
    task: Annotated[str, Query(pattern=r"^TK-[0-9A-Z]{4}-[0-9A-Z]{4}$")],
) -> Response:
    """The recording status callback: audio ready → a job fetches, seals and stores it, then
    deletes it at Twilio; nothing recorded → noted. The callback is opened either way."""

    async def work(session: AsyncSession, call: Call | None) -> str:
        if call is not None:
            state = request.app.state
            voicemail = await callbacks.recording_finished(
                session, state.sealer, state.clock, call, event.recording_sid, event.recording_status
            )
            await callbacks.open_callback(session, state.clock, call, voicemail)
        return twiml.empty_response()

    return await answer(
        request,
        call_sid=event.call_sid or "",
        step="recording",
        discriminator=event.recording_status,
        work=work,
        fallback=twiml.empty_response,
        slow=twiml.empty_response,  # a status callback's work must not be lost to the deadline
    )


@signed.post("/whisper")
async def whisper(
    request: Request,
    event: Annotated[CallRequest, twilio_webhook(CallRequest)],
    offer: Annotated[str, Query(pattern=r"^OF-[0-9A-Z]{4}-[0-9A-Z]{4}$")],
) -> Response:
    """The volunteer's leg answered: tell them what it is; only pressing 1 accepts (a voicemail
    box never presses 1, so it never takes the call)."""
    settings: Settings = request.app.state.settings

    async def work(session: AsyncSession, call: Call | None) -> str:
        details = await flow.offer_details(session, offer)
        if details is None:
            return twiml.hangup()
        found, volunteer_language = details
        await flow.remember_leg(request.app, session, offer, event.call_sid)
        return twiml.whisper(
            [
                prompts.resolve(
                    "whisper",
                    volunteer_language,
                    public_url=settings.public_url,
                    channel="call",
                    caller_language=found.language,
                    emergency=found.emergency,
                )
            ],
            action_url=f"{settings.public_url}/twilio/voice/whisper-answer?offer={offer}",
        )

    return await answer(
        request,
        call_sid=event.call_sid,
        step="whisper",
        discriminator=offer,
        work=work,
        fallback=twiml.hangup,  # the offer then expires and the caller goes to the next volunteer
    )


@signed.post("/whisper-answer")
async def whisper_answer(
    request: Request,
    event: Annotated[GatherResult, twilio_webhook(GatherResult)],
    offer: Annotated[str, Query(pattern=r"^OF-[0-9A-Z]{4}-[0-9A-Z]{4}$")],
) -> Response:
    """1 → accepted: the caller is dequeued into the task's conference, which this leg joins.
    Under a slow database the volunteer waits a moment (`/accepted` checks again) rather than
    losing a call they took."""
    settings: Settings = request.app.state.settings
    pressed = (event.digits or "") == "1"

    def check_again() -> str:
        if not pressed:
            return twiml.hangup()
        return twiml.pause_then_redirect(
            1, f"{settings.public_url}/twilio/voice/accepted?attempt=1&offer={offer}"
        )

    async def work(session: AsyncSession, call: Call | None) -> str:
        accepted = await flow.answer_offer(request.app, session, offer, accept=pressed)
        if accepted is None:
            return twiml.hangup()
        return twiml.dial_conference(
            accepted.public_id,
            status_callback_url=f"{settings.public_url}/twilio/voice/conference?task={accepted.public_id}",
            end_conference_on_exit=True,
        )

    return await answer(
        request,
        call_sid=event.call_sid,
        step="whisper-answer",
        discriminator=offer,
        work=work,
        fallback=check_again,
        slow=check_again,
    )


@signed.post("/accepted")
async def accepted(
    request: Request,
    event: Annotated[CallRequest, twilio_webhook(CallRequest)],
    offer: Annotated[str, Query(pattern=r"^OF-[0-9A-Z]{4}-[0-9A-Z]{4}$")],
    attempt: Annotated[int, Query(ge=1, le=10)] = 1,
) -> Response:
    """The volunteer pressed 1 while we were slow: join the conference once the acceptance is
    recorded, wait a little longer while it is being recorded, or hang up if it did not stand."""
    settings: Settings = request.app.state.settings

    def again() -> str:
        if attempt >= 8:
            return twiml.hangup()
        url = f"{settings.public_url}/twilio/voice/accepted?attempt={attempt + 1}&offer={offer}"
        return twiml.pause_then_redirect(1, url)

    async def work(session: AsyncSession, call: Call | None) -> str:
        task = await flow.accepted_task(request.app, session, offer)
        if task is None:
            return twiml.hangup()
        if isinstance(task, str):  # "pending": the acceptance may still be on its way
            return again()
        return twiml.dial_conference(
            task.public_id,
            status_callback_url=f"{settings.public_url}/twilio/voice/conference?task={task.public_id}",
            end_conference_on_exit=True,
        )

    return await answer(
        request,
        call_sid=event.call_sid,
        step="accepted",
        discriminator=str(attempt),
        work=work,
        fallback=again,
    )


@signed.post("/connect")
async def connect(
    request: Request,
    event: Annotated[CallRequest, twilio_webhook(CallRequest)],
    task: Annotated[str, Query(pattern=r"^TK-[0-9A-Z]{4}-[0-9A-Z]{4}$")],
) -> Response:
    """The dequeued caller joins the task's conference, where the volunteer is waiting."""
    settings: Settings = request.app.state.settings

    def conference() -> str:
        return twiml.dial_conference(
            task,
            status_callback_url=f"{settings.public_url}/twilio/voice/conference?task={task}",
            end_conference_on_exit=True,
        )

    async def work(session: AsyncSession, call: Call | None) -> str:
        if call is not None:
            call.state = "connected"
            call.updated_at = request.app.state.clock.now()
        return conference()

    # The answer needs no database: under trouble the caller still joins their volunteer.
    return await answer(
        request, call_sid=event.call_sid, step="connect", discriminator=task, work=work, fallback=conference
    )


async def forget_at_twilio(request: Request, session: AsyncSession, event: CallStatusCallback) -> None:
    """With `HOTLINE_DELETE_CALLS_AT_TWILIO`, an ended call's record is deleted there by a job."""
    if request.app.state.settings.delete_calls_at_twilio and event.call_status in FINAL_STATUSES:
        await reports.delete_at_twilio(session, request.app.state, "call", event.call_sid)


FINAL_STATUSES = frozenset({"completed", "busy", "failed", "no-answer", "canceled"})


@signed.post("/leg-status")
async def leg_status(
    request: Request,
    event: Annotated[CallStatusCallback, twilio_webhook(CallStatusCallback)],
    offer: Annotated[str, Query(pattern=r"^OF-[0-9A-Z]{4}-[0-9A-Z]{4}$")],
) -> Response:
    """Status of a volunteer leg: not answered, busy or failed before accepting → next volunteer."""

    async def work(session: AsyncSession, call: Call | None) -> str:
        await flow.volunteer_leg_ended(request.app, session, offer, event.call_status)
        await forget_at_twilio(request, session, event)
        return twiml.empty_response()

    return await answer(
        request,
        call_sid=event.call_sid,
        step="leg-status",
        discriminator=str(event.sequence_number or event.call_status),
        work=work,
        fallback=twiml.empty_response,
        slow=twiml.empty_response,  # a status callback's work must not be lost to the deadline
    )


@signed.post("/status")
async def status(
    request: Request, event: Annotated[CallStatusCallback, twilio_webhook(CallStatusCallback)]
) -> Response:
    """The number's status callback: a finished caller ends their task (abandoned if still queued)."""

    async def work(session: AsyncSession, call: Call | None) -> str:
        if call is not None and event.call_status in ("completed", "busy", "failed", "no-answer", "canceled"):
            if call.state in REPORT_STATES:
                await end_report_call(request, session, call, event.call_sid)
            else:
                await flow.caller_hung_up(request.app, session, call)
        await forget_at_twilio(request, session, event)
        return twiml.empty_response()

    return await answer(
        request,
        call_sid=event.call_sid,
        step="status",
        discriminator=str(event.sequence_number or event.call_status),
        work=work,
        fallback=twiml.empty_response,
        slow=twiml.empty_response,  # a status callback's work must not be lost to the deadline
    )


# -- anonymous reports (8 at the emergency question) --------------------------------------------
#
# The call is unlinked at once: its sealed number is wiped, no caller, contact or routing task is
# created, and Twilio's record of it is deleted once it has ended. While the call lasts, its row
# points at the report it adds to (`case_id`); that link is dropped when the call ends. URLs carry
# only the language, a category digit and attempt counters — never a report id or a code. The
# step that speaks the reference code is never stored for replays (only the code's hash exists).

REPORT_STATES = frozenset({"report", "report_add"})
REPORTER_PRINCIPAL = Principal.system("anonymous-report")


async def start_report(request: Request, session: AsyncSession, call: Call, call_sid: str) -> None:
    call.state = "report"
    call.from_number = None
    call.updated_at = request.app.state.clock.now()
    await reports.delete_at_twilio(session, request.app.state, "call", call_sid, after_call_ends=True)


async def end_report_call(request: Request, session: AsyncSession, call: Call, call_sid: str) -> None:
    call.case_id = None
    call.state = "report_ended"
    await reports.call_ended(session, request.app.state, call_sid)


def report_menu(settings: Settings, language: str, *, attempt: int) -> str:
    url = f"{settings.public_url}/twilio/voice/report?attempt={attempt}&language={language}"
    return twiml.emergency_option(
        [prompts.resolve("report_menu", language, public_url=settings.public_url)],
        action_url=url,
        no_input_url=url,
    )


def report_record(settings: Settings, language: str, query: str) -> str:
    url = settings.public_url
    return twiml.record_voicemail(
        [prompts.resolve("report_record", language, public_url=url)],
        action_url=f"{url}/twilio/voice/report-recorded?{query}&language={language}",
        recording_status_callback_url=f"{url}/twilio/voice/report-recording",
        max_length=settings.voicemail_max_seconds,
    )


def report_goodbye(settings: Settings, language: str, key: prompts.PromptKey) -> str:
    return twiml.announce([prompts.resolve(key, language, public_url=settings.public_url)], hang_up=True)


def spoken_digits(language: str, digits: str) -> twiml.Prompt:
    """Digits one by one in the language's voice (English's where it has none, e.g. Haitian Creole)."""
    catalogue = prompts.catalogue()
    voice = catalogue[language] if catalogue[language].voice else catalogue["en"]
    return twiml.Prompt.say(
        ", ".join(digits), voice=voice.voice or "", language=voice.say_language or "en-US"
    )


LanguageParam = Annotated[str, Query(pattern=r"^[a-z]{2,3}$")]


def report_language(language: str) -> str:
    return language if language in MENU_LANGUAGES else DEFAULT_LANGUAGE


@signed.post("/report")
async def report_choice(
    request: Request,
    event: Annotated[GatherResult, twilio_webhook(GatherResult)],
    language: LanguageParam = DEFAULT_LANGUAGE,
    attempt: Annotated[int, Query(ge=1, le=10)] = 1,
) -> Response:
    """1 abuse / 2 enforcement activity → record the facts; 3 → the reference code, to add."""
    settings: Settings = request.app.state.settings
    code = report_language(language)
    digits = event.digits or ""

    async def work(session: AsyncSession, call: Call | None) -> str:
        if call is None or call.state not in REPORT_STATES:
            return report_goodbye(settings, code, "goodbye")
        if digits in reports.CATEGORIES:
            return report_record(settings, code, f"category={digits}")
        if digits == "3":
            url = f"{settings.public_url}/twilio/voice/report-code?attempt=1&language={code}"
            return twiml.digits_entry(
                [prompts.resolve("report_code_ask", code, public_url=settings.public_url)],
                action_url=url,
                no_input_url=url,
                max_digits=reports.CODE_DIGITS + 1,
            )
        if attempt < MAX_MENU_ATTEMPTS:
            return report_menu(settings, code, attempt=attempt + 1)
        return report_goodbye(settings, code, "goodbye")

    return await answer(
        request,
        call_sid=event.call_sid,
        step="report",
        discriminator=f"{attempt}:{digits}",
        work=work,
        language=code,
    )


@signed.post("/report-code")
async def report_code(
    request: Request,
    event: Annotated[GatherResult, twilio_webhook(GatherResult)],
    language: LanguageParam = DEFAULT_LANGUAGE,
    attempt: Annotated[int, Query(ge=1, le=10)] = 1,
) -> Response:
    """A reference code, to add to that report: throttled per call, per keyed number, globally.
    A refusal never says whether the code exists."""
    settings: Settings = request.app.state.settings
    code = report_language(language)
    entered = (event.digits or "").rstrip("#")

    async def work(session: AsyncSession, call: Call | None) -> str:
        if call is None or call.state not in REPORT_STATES:
            return report_goodbye(settings, code, "goodbye")
        state = request.app.state
        scopes = [reports.call_scope(state.keys, event.call_sid)]
        number = reports.number_scope(state.keys, event.from_)
        if number:
            scopes.append(number)
        found = await reports.check_code(session, state.clock, state.keys, entered, scopes)
        if isinstance(found, reports.Report):
            call.state, call.case_id = "report_add", found.case_id
            return report_record(settings, code, "add=1")
        if found == "unknown" and attempt < reports.PER_CALL_FAILURES:
            url = f"{settings.public_url}/twilio/voice/report-code?attempt={attempt + 1}&language={code}"
            return twiml.digits_entry(
                [prompts.resolve("report_code_ask", code, public_url=settings.public_url)],
                action_url=url,
                no_input_url=url,
                max_digits=reports.CODE_DIGITS + 1,
            )
        return report_goodbye(settings, code, "report_refused")

    return await answer(
        request,
        call_sid=event.call_sid,
        step="report-code",
        discriminator=str(attempt),
        work=work,
        language=code,
        store=False,  # a replay must not try the code twice, nor find it stored
    )


@signed.post("/report-recorded")
async def report_recorded(
    request: Request,
    event: Annotated[RecordAction, twilio_webhook(RecordAction)],
    language: LanguageParam = DEFAULT_LANGUAGE,
    category: Annotated[str | None, Query(pattern=r"^[12]$")] = None,
    add: Annotated[int, Query(ge=0, le=1)] = 0,
) -> Response:
    """The facts were recorded: a new report (then: a callback number, if they want one), or an
    addition to the report whose code they entered. Nothing recorded → nothing filed."""
    settings: Settings = request.app.state.settings
    code = report_language(language)

    async def work(session: AsyncSession, call: Call | None) -> str:
        if call is None or call.state not in REPORT_STATES or not event.recording_sid:
            return report_goodbye(settings, code, "goodbye")
        state = request.app.state
        if add and call.state == "report_add" and call.case_id is not None:
            found = await session.scalar(select(reports.Report).where(reports.Report.case_id == call.case_id))
            if found is not None:
                await reports.add_recording(session, state, found, event.recording_sid, source="addition")
            return report_goodbye(settings, code, "report_added")
        if category is None or call.state != "report":
            return report_goodbye(settings, code, "goodbye")
        report = await reports.open_report(
            session,
            state,
            channel="voice",
            category=reports.CATEGORIES[category],
            language=code,
            drill=call.drill,
        )
        await reports.add_recording(session, state, report, event.recording_sid, source="report")
        call.case_id = report.case_id
        url = f"{settings.public_url}/twilio/voice/report-callback?language={code}"
        return twiml.digits_entry(
            [prompts.resolve("report_callback", code, public_url=settings.public_url)],
            action_url=url,
            no_input_url=url,
            max_digits=16,
        )

    return await answer(
        request,
        call_sid=event.call_sid,
        step="report-recorded",
        discriminator=f"{category}:{add}",
        work=work,
        language=code,
    )


@signed.post("/report-recording")
async def report_recording(
    request: Request, event: Annotated[RecordingStatusCallback, twilio_webhook(RecordingStatusCallback)]
) -> Response:
    """The recording's status callback: the store job already waits for the audio (it retries
    until Twilio has it), so there is nothing to do here."""
    return twiml_response(twiml.empty_response())


@signed.post("/report-callback")
async def report_callback(
    request: Request,
    event: Annotated[GatherResult, twilio_webhook(GatherResult)],
    language: LanguageParam = DEFAULT_LANGUAGE,
) -> Response:
    """A callback number only if the caller typed one (sealed on the report's case), then the
    reference code, spoken twice. Never stored for replays: only the code's hash is kept."""
    settings: Settings = request.app.state.settings
    code = report_language(language)
    typed = (event.digits or "").rstrip("#")

    async def work(session: AsyncSession, call: Call | None) -> str:
        if call is None or call.state != "report" or call.case_id is None:
            return report_goodbye(settings, code, "goodbye")
        state = request.app.state
        found = await session.scalar(select(reports.Report).where(reports.Report.case_id == call.case_id))
        if found is None:
            return report_goodbye(settings, code, "goodbye")
        callback_number = normalize_e164(typed) if typed else None
        if callback_number:
            from app.cases.models import Case

            case = await session.get(Case, found.case_id)
            if case is not None:
                await state.sealer.seal(session, case, "callback_number", callback_number)
        reference = await reports.issue_code(session, state.keys, found)
        digits = spoken_digits(code, reference)
        return twiml.announce(
            [
                prompts.resolve("report_code", code, public_url=settings.public_url),
                digits,
                digits,
                prompts.resolve("report_saved", code, public_url=settings.public_url),
            ],
            hang_up=True,
        )

    return await answer(
        request,
        call_sid=event.call_sid,
        step="report-callback",
        discriminator="",
        work=work,
        language=code,
        store=False,
    )


CALLBACK_ID = r"^CB-[0-9A-Z]{4}-[0-9A-Z]{4}$"


@signed.post("/callback-whisper")
async def callback_whisper(
    request: Request,
    event: Annotated[CallRequest, twilio_webhook(CallRequest)],
    callback: Annotated[str, Query(pattern=CALLBACK_ID)],
) -> Response:
    """The claiming volunteer answered: "Callback, Spanish — press 1" before the caller is dialled."""
    settings: Settings = request.app.state.settings

    async def work(session: AsyncSession, call: Call | None) -> str:
        found = await callbacks.callback_by_public_id(session, callback)
        if found is None or found.state != "claimed" or found.claimed_by_id is None:
            return twiml.hangup()
        volunteer_language = await flow.volunteer_prompt_language(session, found.claimed_by_id)
        return twiml.whisper(
            [
                prompts.resolve(
                    "whisper",
                    volunteer_language,
                    public_url=settings.public_url,
                    channel="callback",
                    caller_language=found.language,
                    emergency=found.emergency,
                )
            ],
            action_url=f"{settings.public_url}/twilio/voice/callback-answer?callback={callback}",
        )

    return await answer(
        request,
        call_sid=event.call_sid,
        step="callback-whisper",
        discriminator=callback,
        work=work,
        fallback=twiml.hangup,
    )


@signed.post("/callback-answer")
async def callback_answer(
    request: Request,
    event: Annotated[GatherResult, twilio_webhook(GatherResult)],
    callback: Annotated[str, Query(pattern=CALLBACK_ID)],
) -> Response:
    """1 → dial the caller from the hotline's number (a machine is screened out unless the caller
    said a voicemail is safe); anything else hands the callback back for someone else."""
    settings: Settings = request.app.state.settings
    pressed = (event.digits or "") == str(prompts.WHISPER_ACCEPT_DIGIT)

    async def work(session: AsyncSession, call: Call | None) -> str:
        state = request.app.state
        found = await callbacks.callback_by_public_id(session, callback)
        if found is None or found.state != "claimed":
            return twiml.hangup()
        if not pressed:
            await callbacks.finish_attempt(session, state.clock, found, "volunteer-unavailable")
            return twiml.hangup()
        target = await callbacks.dial_target(session, state.broker, found)
        if target is None:
            await callbacks.finish_attempt(session, state.clock, found, "unsafe")
            return twiml.hangup()
        number, screen_machines = target
        base = settings.public_url
        return twiml.dial_number(
            number,
            caller_id=settings.twilio_number or number,
            action_url=f"{base}/twilio/voice/callback-result?callback={callback}",
            whisper_url=f"{base}/twilio/voice/callback-screen?callback={callback}",
            timeout=int(settings.voice_ring_seconds),
            machine_detection=screen_machines,
        )

    return await answer(
        request,
        call_sid=event.call_sid,
        step="callback-answer",
        discriminator=callback,
        work=work,
        fallback=twiml.hangup,
    )


@signed.post("/callback-screen")
async def callback_screen(
    request: Request,
    event: Annotated[CallRequest, twilio_webhook(CallRequest)],
    callback: Annotated[str, Query(pattern=CALLBACK_ID)],
) -> Response:
    """The caller's phone answered. A machine, when the caller has not said a voicemail is safe,
    is hung up on before anything is said; a person is connected to the volunteer."""
    answered_by = event.answered_by or ""

    async def work(session: AsyncSession, call: Call | None) -> str:
        found = await callbacks.callback_by_public_id(session, callback)
        if found is None or found.state != "claimed":
            return twiml.hangup()
        machine = answered_by.startswith("machine") or answered_by == "fax"
        if machine and not await callbacks.voicemail_is_safe(session, found):
            await callbacks.finish_attempt(session, request.app.state.clock, found, "machine")
            return twiml.hangup()
        return twiml.empty_response()

    return await answer(
        request,
        call_sid=event.call_sid,
        step="callback-screen",
        discriminator=callback,
        work=work,
        fallback=twiml.hangup,
    )


@signed.post("/callback-result")
async def callback_result(
    request: Request,
    event: Annotated[DialResult, twilio_webhook(DialResult)],
    callback: Annotated[str, Query(pattern=CALLBACK_ID)],
) -> Response:
    """The dial to the caller ended: answered and bridged → done; otherwise tried again later."""

    async def work(session: AsyncSession, call: Call | None) -> str:
        found = await callbacks.callback_by_public_id(session, callback)
        if found is not None:
            status = event.dial_call_status
            outcome = "answered" if status == "completed" and event.dial_bridged is not False else status
            if outcome == "completed":
                outcome = "no-answer"  # answered but never bridged (screened or hung up at once)
            await callbacks.finish_attempt(session, request.app.state.clock, found, outcome)
        return twiml.hangup()

    return await answer(
        request, call_sid=event.call_sid, step="callback-result", discriminator=callback, work=work
    )


@signed.post("/callback-leg-status")
async def callback_leg_status(
    request: Request,
    event: Annotated[CallStatusCallback, twilio_webhook(CallStatusCallback)],
    callback: Annotated[str, Query(pattern=CALLBACK_ID)],
) -> Response:
    """The volunteer's own leg ended: if they never took it (no answer, busy), it goes back to open."""

    async def work(session: AsyncSession, call: Call | None) -> str:
        found = await callbacks.callback_by_public_id(session, callback)
        if found is not None and event.call_status in (
            "no-answer",
            "busy",
            "failed",
            "canceled",
            "completed",
        ):
            await callbacks.finish_attempt(session, request.app.state.clock, found, "volunteer-unavailable")
        return twiml.empty_response()

    return await answer(
        request,
        call_sid=event.call_sid,
        step="callback-leg-status",
        discriminator=str(event.sequence_number or event.call_status),
        work=work,
        fallback=twiml.empty_response,
        slow=twiml.empty_response,  # a status callback's work must not be lost to the deadline
    )


@signed.post("/verification")
async def verification(
    request: Request,
    event: Annotated[CallRequest, twilio_webhook(CallRequest)],
    ref: Annotated[str, Query(pattern=r"^PV-[0-9A-Z]{4}-[0-9A-Z]{4}$")],
) -> Response:
    """A volunteer's phone verification call: speak the code digit by digit, twice, then hang up.
    An expired or confirmed verification just hangs up."""
    state = request.app.state

    async def work(session: AsyncSession, call: Call | None) -> str:
        found = await pending_verification_by_reference(session, state.clock, state.keys, ref)
        if found is None:
            return twiml.hangup()
        digits = ", ".join(verification_code(state.keys.material.keyed_hasher(), found.id))
        english = prompts.catalogue()["en"]
        text = f"Your hotline verification code is {digits}. Again: {digits}. Goodbye."
        return twiml.announce(
            [twiml.Prompt.say(text, voice=english.voice or "", language=english.say_language or "en-US")],
            hang_up=True,
        )

    return await answer(
        request,
        call_sid=event.call_sid,
        step="verification",
        discriminator=ref,
        work=work,
        fallback=twiml.hangup,
    )


@signed.post("/conference")
async def conference(request: Request) -> Response:
    """Conference events (join/leave); the task ends with the caller's own status callback."""
    return twiml_response(twiml.empty_response())


@signed.post("/fallback")
async def fallback(request: Request) -> Response:
    """The number's Fallback URL (ideally on a second host): static TwiML and no database at all.
    The signature is still checked (it needs only the auth token from the settings)."""
    return twiml_response(static_overflow(request.app.state.settings, None))


def install(app: Any) -> None:
    """Mount the voice webhooks and answer a signed but malformed voice payload with TwiML."""
    app.include_router(signed)

    # Elsewhere the error keeps its ordinary JSON answer (the handler of its nearest base class).
    previous = next(
        (
            app.exception_handlers[cls]
            for cls in InvalidWebhookPayload.__mro__
            if cls in app.exception_handlers
        ),
        None,
    )

    async def malformed(request: Request, exc: InvalidWebhookPayload) -> Response:
        if request.url.path.startswith("/twilio/voice/"):
            return twiml_response(static_overflow(request.app.state.settings, None))
        if previous is not None:
            return await previous(request, exc)
        raise exc

    app.add_exception_handler(InvalidWebhookPayload, malformed)
