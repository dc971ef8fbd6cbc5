"""Tasks, offers and seats.

A *seat* is one unit of a volunteer's capacity on a channel (voice 1, chat N), held by one task
from the moment it is offered until the contact ends. Its primary key (volunteer, channel, slot)
is the backstop that makes double-booking impossible on both databases: two workers offering
the same free slot at once cannot both insert it.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base, UUIDPrimaryKey
from app.keys.sealed import RetentionClass, Sealed, sealed_column


class TaskState(StrEnum):
    queued = "queued"
    offered = "offered"
    assigned = "assigned"
    completed = "completed"
    abandoned = "abandoned"  # the caller left before anyone took it
    overflowed = "overflowed"  # handed to the overflow line or voicemail


OPEN_TASK_STATES = (TaskState.queued, TaskState.offered)


class OfferState(StrEnum):
    pending = "pending"
    accepted = "accepted"
    declined = "declined"
    missed = "missed"  # no answer within the offer's time
    withdrawn = "withdrawn"  # the contact ended or was taken elsewhere


class Task(UUIDPrimaryKey, Base):
    __tablename__ = "routing_tasks"
    __table_args__ = (Index("ix_routing_tasks_queue", "state", "channel", "priority", "enqueued_at"),)

    public_id: Mapped[str] = mapped_column(String(16), unique=True)
    contact_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("contacts.id"), index=True)
    case_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("cases.id"), index=True)
    channel: Mapped[str] = mapped_column(String(8))  # "voice" or "chat"
    language: Mapped[str] = mapped_column(String(8))
    emergency: Mapped[bool] = mapped_column(default=False)
    priority: Mapped[int] = mapped_column(default=0)
    state: Mapped[str] = mapped_column(String(16), default=TaskState.queued)
    # 0: volunteers who speak the language; 1: anyone, with an interpreter flagged; 2: overflow.
    escalation_step: Mapped[int] = mapped_column(default=0)
    interpreter_needed: Mapped[bool] = mapped_column(default=False)
    drill: Mapped[bool] = mapped_column(default=False)
    enqueued_at: Mapped[datetime]
    assigned_to_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    assigned_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]


class Offer(UUIDPrimaryKey, Base):
    __tablename__ = "routing_offers"
    __sealed_subject__ = "task_id"
    __table_args__ = (Index("ix_routing_offers_volunteer_state", "volunteer_id", "state"),)

    public_id: Mapped[str] = mapped_column(String(16), unique=True)
    task_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("routing_tasks.id"), index=True)
    volunteer_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    channel: Mapped[str] = mapped_column(String(8))
    state: Mapped[str] = mapped_column(String(16), default=OfferState.pending)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    answered_at: Mapped[datetime | None]
    # When the volunteer's phone started ringing (voice): the offer's time counts from here, and
    # only an offer that actually rang can be "missed" (a backlog of ours is nobody's fault).
    rung_at: Mapped[datetime | None]
    # The volunteer's call leg (voice), so it can be hung up if the caller never arrives.
    leg_sid: Mapped[Sealed | None] = sealed_column("offer.leg_sid", RetentionClass.contact_meta)


class Seat(Base):
    __tablename__ = "routing_seats"

    volunteer_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), primary_key=True)
    channel: Mapped[str] = mapped_column(String(8), primary_key=True)
    slot: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    task_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("routing_tasks.id"), unique=True)
    taken_at: Mapped[datetime]
