"""Audit tables. Append-only: triggers reject UPDATE/DELETE (and TRUNCATE on PostgreSQL), and the
service role only gets SELECT/INSERT (`Table.info["append_only"]`, applied by `hotline db grant`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base


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
