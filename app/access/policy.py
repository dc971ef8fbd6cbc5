"""Who may see what. Default deny; a case the principal may not see looks exactly like a missing one.

* Volunteer: metadata and content of cases assigned to them.
* Supervisor: metadata of every case; content only with an active break-glass grant.
* Admin: users, schedule and keys; no case content and no case metadata.
* System (webhooks, routing, jobs): only the named purposes below, each limited to the fields it
  needs to dial, text or match.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from enum import StrEnum

from app.accounts.models import Role
from app.audit.service import Actor


class Purpose(StrEnum):
    # Staff purposes, stated with every reveal.
    intake = "intake"
    callback = "callback"
    referral = "referral"
    follow_up = "follow_up"
    safety_check = "safety_check"
    break_glass = "break_glass"
    # System purposes.
    dial_volunteer = "dial_volunteer"
    contact_caller = "contact_caller"
    caller_match = "caller_match"
    code_word_check = "code_word_check"
    twilio_cleanup = "twilio_cleanup"
    sign_in = "sign_in"
    webhook_replay = "webhook_replay"
    call_control = "call_control"
    store_voicemail = "store_voicemail"
    send_message = "send_message"
    anonymise = "anonymise"
    erasure = "erasure"


STAFF_PURPOSES = frozenset(
    {
        Purpose.intake,
        Purpose.callback,
        Purpose.referral,
        Purpose.follow_up,
        Purpose.safety_check,
        Purpose.break_glass,
    }
)

# System purpose → the (field id) values it may open. Nothing else is reachable by the system.
SYSTEM_FIELDS: dict[Purpose, frozenset[str]] = {
    Purpose.dial_volunteer: frozenset({"user.phone"}),
    Purpose.contact_caller: frozenset({"caller.phone", "case.callback_number"}),
    Purpose.caller_match: frozenset({"caller.phone"}),
    Purpose.code_word_check: frozenset({"case.code_word"}),
    Purpose.twilio_cleanup: frozenset(
        {"contact.twilio_sid", "voicemail.recording_sid", "chat_message.sid", "twilio_cleanup.sid"}
    ),
    Purpose.sign_in: frozenset({"user.totp_secret"}),
    Purpose.webhook_replay: frozenset({"call_webhook.reply"}),
    Purpose.call_control: frozenset({"contact.twilio_sid", "offer.leg_sid"}),
    Purpose.store_voicemail: frozenset({"voicemail.recording_sid", "report_entry.recording_sid"}),
    Purpose.send_message: frozenset({"chat_message.body", "chat_message.sid"}),
    # Moving an anonymous report's dialogue out of a conversation: the SIDs to delete at Twilio.
    Purpose.anonymise: frozenset({"chat_message.sid"}),
    # Texting a referral (an organisation's public details) to the caller's number.
    Purpose.referral: frozenset({"caller.phone"}),
    # Processing an approved erasure: the number the requesting supervisor typed (then matched
    # to a caller under `caller_match`).
    Purpose.erasure: frozenset({"erasure_request.phone"}),
}


@dataclass(frozen=True)
class Principal:
    """Who is asking: a signed-in staff member, or a named system component."""

    id: str  # a user's public id, or "system:<component>"
    roles: frozenset[Role] = frozenset()
    user_id: uuid.UUID | None = None

    @classmethod
    def system(cls, component: str) -> Principal:
        return cls(id=f"system:{component}")

    @property
    def is_system(self) -> bool:
        return self.user_id is None

    @property
    def actor(self) -> Actor:
        return Actor(self.id, tuple(sorted(r.value for r in self.roles)))

    def has(self, role: Role) -> bool:
        return role in self.roles


def may_see_case(principal: Principal, assignee_id: uuid.UUID | None) -> bool:
    """Metadata (status, category, language, which sealed fields exist)."""
    if principal.is_system:
        return False
    if principal.has(Role.volunteer) and assignee_id is not None and assignee_id == principal.user_id:
        return True
    return principal.has(Role.supervisor)


def may_read_case_content(principal: Principal, assignee_id: uuid.UUID | None, *, break_glass: bool) -> bool:
    if principal.is_system:
        return False
    if principal.has(Role.volunteer) and assignee_id is not None and assignee_id == principal.user_id:
        return True
    return principal.has(Role.supervisor) and break_glass


def may_read_report(principal: Principal, assignee_id: uuid.UUID | None) -> bool:
    """An anonymous report's facts: the assigned volunteer, or any supervisor with a stated
    purpose (audited). A report names nobody by design (nothing links it to its reporter), so
    reading it needs no break-glass; volunteers still read only what is assigned to them."""
    if principal.is_system:
        return False
    if principal.has(Role.volunteer) and assignee_id is not None and assignee_id == principal.user_id:
        return True
    return principal.has(Role.supervisor)


def system_may_open(principal: Principal, purpose: Purpose, field_ids: set[str]) -> bool:
    return principal.is_system and field_ids <= SYSTEM_FIELDS.get(purpose, frozenset())
