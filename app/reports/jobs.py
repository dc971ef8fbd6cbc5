"""Jobs of anonymous reporting: store a report's recording sealed, delete Twilio's records."""

from __future__ import annotations

import base64
import logging
from typing import Any

from sqlalchemy import select

from app.access.policy import Principal, Purpose
from app.chats.jobs import _state
from app.jobs.runner import JobContext, PermanentFailure, RetryLater, registry
from app.reports import service
from app.reports.models import ReportEntry, TwilioCleanup
from telephony.rest import NotFound as NotFoundAtTwilio
from telephony.rest import ResourceNotComplete, TelephonyError

log = logging.getLogger("hotline.reports")
CLEANER = Principal.system("twilio-cleanup")
STORER = Principal.system("report-recording")


def _client(ctx: JobContext) -> Any:
    client = ctx.services.get("telephony")
    if client is None:
        raise RetryLater(60.0, "no_telephony_client")
    return client


@registry.register("reports.delete_at_twilio", timeout=30)
async def delete_at_twilio(ctx: JobContext, payload: dict[str, Any]) -> None:
    """Delete one record at Twilio; one already gone counts as deleted. Twilio refuses a message
    still being delivered or a call still running (20009): later."""
    row = await ctx.session.scalar(select(TwilioCleanup).where(TwilioCleanup.public_id == payload["cleanup"]))
    if row is None or row.state == "done" or row.sid is None:
        return
    client = _client(ctx)
    sid = await ctx.services["broker"].reveal_for_system(
        ctx.session,
        CLEANER,
        row,
        "sid",
        purpose=Purpose.twilio_cleanup,
        object_type="twilio_cleanup",
        object_id=row.public_id,
    )
    delete = {
        "message": client.delete_message,
        "call": client.delete_call,
        "recording": client.delete_recording,
    }[row.kind]
    try:
        await delete(sid)
    except NotFoundAtTwilio:
        pass
    except ResourceNotComplete as exc:
        # 20009: a call still running or a message still being delivered. Soon, then less often.
        raise RetryLater(min(300.0, 5.0 * ctx.attempt), "still_in_progress") from exc
    row.state, row.done_at, row.sid = "done", ctx.clock.now(), None


@registry.register("reports.store_audio", timeout=60)
async def store_audio(ctx: JobContext, payload: dict[str, Any]) -> None:
    """Download a report's recording, seal it under the report's key, then (same transaction)
    schedule its deletion at Twilio."""
    entry = await ctx.session.scalar(select(ReportEntry).where(ReportEntry.public_id == payload["entry"]))
    if entry is None or entry.state != "fetching" or entry.recording_sid is None:
        return
    client = _client(ctx)
    recording_sid = await ctx.services["broker"].reveal_for_system(
        ctx.session,
        STORER,
        entry,
        "recording_sid",
        purpose=Purpose.store_voicemail,
        object_type="report_entry",
        object_id=entry.public_id,
    )
    if recording_sid is None:
        return
    try:
        audio = await client.fetch_recording_audio(recording_sid)
    except NotFoundAtTwilio as exc:
        # The Record action can arrive while Twilio is still processing the audio.
        if ctx.attempt < 6:
            raise RetryLater(5.0 * ctx.attempt, "recording_processing") from exc
        entry.state = "failed"
        raise PermanentFailure("the recording is not at Twilio") from exc
    except TelephonyError as exc:
        raise RetryLater(30.0, "recording_unavailable") from exc
    state = _state(ctx)
    await ctx.services["sealer"].seal(ctx.session, entry, "audio", base64.b64encode(audio).decode("ascii"))
    entry.state, entry.length = "stored", len(audio)
    await service.delete_at_twilio(ctx.session, state, "recording", recording_sid)
    entry.recording_sid = None
