"""Texting a referral: the organisation's public details to the caller, on the jobs runner.

The payload holds the referral's public id only; the caller's number is opened here, through the
broker (purpose `referral`, audited), and never logged or stored anywhere else.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from app.access.policy import Principal, Purpose
from app.callers.models import Caller
from app.cases.models import Case, Referral
from app.contacts.service import sid_hash
from app.jobs.runner import JobContext, PermanentFailure, RetryLater, registry
from app.referrals import service
from app.referrals.models import Organisation
from telephony.payloads import message_status_rank
from telephony.rest import OptedOut, TelephonyError

SENDER = Principal.system("referral-sender")


@registry.register(service.SMS_JOB, timeout=30)
async def send_sms(ctx: JobContext, payload: dict[str, Any]) -> None:
    session = ctx.session
    referral = await session.scalar(select(Referral).where(Referral.public_id == payload["referral"]))
    if referral is None or referral.sms_status != "pending":
        return
    case = await session.get(Case, referral.case_id)
    organisation = await session.get(Organisation, referral.organisation_id)
    if case is None or organisation is None:
        raise PermanentFailure("referral without its case or organisation")
    caller = await session.get(Caller, case.caller_id) if case.caller_id is not None else None
    # Checked again: the details or the caller's answer may have changed since the request.
    if (
        not (organisation.active and organisation.verified)
        or caller is None
        or caller.phone is None
        or caller.safe_to_text is not True
    ):
        service.fail_sms(referral)
        return
    if caller.opted_out_at is not None:
        service.fail_sms(referral, 21610)
        return
    client = ctx.services.get("telephony")
    if client is None:
        raise PermanentFailure("Twilio is not configured")
    settings = ctx.services["settings"]
    body = service.sms_text(organisation)
    number = await ctx.services["broker"].reveal_for_system(
        session,
        SENDER,
        caller,
        "phone",
        purpose=Purpose.referral,
        object_type="case",
        object_id=case.public_id,
    )
    if not number:
        service.fail_sms(referral)  # the caller's identity key was destroyed meanwhile
        return
    try:
        sid = await client.send_message(
            to=number,
            from_=settings.twilio_number,
            body=body,
            status_callback=f"{settings.public_url}/twilio/messaging/status",
        )
    except OptedOut:
        service.fail_sms(referral, 21610)
        caller.opted_out_at = caller.opted_out_at or ctx.clock.now()
        return
    except TelephonyError as exc:
        if exc.code is not None and exc.status is not None and 400 <= exc.status < 500:
            service.fail_sms(referral, exc.code)
            return
        raise RetryLater(5.0, "twilio_unavailable") from exc
    referral.sms_sid_hash = sid_hash(ctx.services["keys"], sid)
    if message_status_rank("queued") > referral.sms_status_rank:
        referral.sms_status, referral.sms_status_rank = "queued", message_status_rank("queued")
