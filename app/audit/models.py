"""Audit tables. Append-only: triggers reject UPDATE/DELETE (and TRUNCATE on PostgreSQL), and the
service role only gets SELECT/INSERT (`Table.info["append_only"]`, applied by `hotline db grant`)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base, UUIDPrimaryKey


class AuditEntry(Base):
    """One event. Holds ids, actions, purposes, field names and keyed hashes, never plaintext.

    `entry_hash = SHA-256(domain ‖ prev_hash ‖ body)` where the body is rebuilt canonically from the
    columns (`app/audit/chain.py`), so editing any column breaks the chain at that row.
    """

    __tablename__ = "audit_entries"
    __table_args__ = {"info": {"append_only": True}}

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    ts: Mapped[datetime]
    actor_id: Mapped[str] = mapped_column(String(64))
    actor_roles: Mapped[str] = mapped_column(String(64), default="")
    action: Mapped[str] = mapped_column(String(64))
    object_type: Mapped[str | None] = mapped_column(String(32))
    object_id: Mapped[str | None] = mapped_column(String(64))
    fields: Mapped[str] = mapped_column(String(500), default="")
    purpose: Mapped[str | None] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(16))
    request_id: Mapped[str | None] = mapped_column(String(64))
    # A keyed hash (hex) where a value must be matchable later, e.g. a ciphertext's hash.
    value_hash: Mapped[str | None] = mapped_column(String(128))
    # Small non-sensitive facts: counts, ids, flags (validated by `record`).
    details: Mapped[dict[str, Any]]
    prev_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    entry_hash: Mapped[bytes] = mapped_column(LargeBinary(32))


class AuditCheckpoint(Base):
    """A signed statement "the chain had head `head_hash` at `seq`", chained to the previous one."""

    __tablename__ = "audit_checkpoints"
    __table_args__ = {"info": {"append_only": True}}

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    head_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    prev_checkpoint_seq: Mapped[int | None] = mapped_column(BigInteger)
    ts: Mapped[datetime]
    key_id: Mapped[str] = mapped_column(String(64))
    signature: Mapped[bytes] = mapped_column(LargeBinary(64))


class AuditVerification(UUIDPrimaryKey, Base):
    """A background run of the chain verifier requested from the console, with its progress."""

    __tablename__ = "audit_verifications"

    public_id: Mapped[str] = mapped_column(String(16), unique=True)
    requested_by_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    state: Mapped[str] = mapped_column(String(16))  # queued | running | ok | invalid | failed
    entries_checked: Mapped[int] = mapped_column(default=0)
    entries_total: Mapped[int | None]
    problems: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    requested_at: Mapped[datetime]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]


class AuditSegment(Base):
    """A run of entries exported to a signed segment file and then pruned (`hotline audit archive`).

    Kept forever (one small row per segment): the remaining chain is anchored by the last
    segment's `last_hash`, and the DELETE trigger on `audit_entries` refuses any row with a `seq`
    above the highest `last_seq` here. The signature (checkpoint key) covers the same note as the
    file's trailer, so a forged row cannot widen what may be deleted without the signing key
    noticing at verification. Owner-written: the service role may only read it.
    """

    __tablename__ = "audit_segments"
    __table_args__ = {"info": {"append_only": True, "owner_writes": True}}

    last_seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    first_seq: Mapped[int] = mapped_column(BigInteger)
    entries: Mapped[int] = mapped_column(BigInteger)
    prev_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    last_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    body_sha256: Mapped[bytes] = mapped_column(LargeBinary(32))
    first_ts: Mapped[datetime]
    last_ts: Mapped[datetime]
    archived_at: Mapped[datetime]
    file_name: Mapped[str] = mapped_column(String(128))
    key_id: Mapped[str] = mapped_column(String(64))
    signature: Mapped[bytes] = mapped_column(LargeBinary(64))
