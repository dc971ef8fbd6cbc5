"""Writing to the access log.

`record(session, …)` queues an entry on the caller's session; nothing is written yet. Just before
that transaction commits, `_append_pending` (a `before_commit` hook on every session) takes the
chain lock — a PostgreSQL transaction-scoped advisory lock, or on SQLite the write lock that
`BEGIN IMMEDIATE` already holds — reads the head, and inserts the queued entries with the next
`seq` values and their hashes. Rolled-back transactions never reach that step, and concurrent
committers are serialised on the lock, so `seq` has no holes and the chain no forks.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import event, insert, select, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from app.audit.chain import GENESIS, canonical_body, checkpoint_note, entry_hash
from app.audit.models import AuditCheckpoint, AuditEntry, AuditSegment
from app.clock import Clock
from app.logging import request_id_var
from app.publicid import ALPHABET
from crypto.signing import CheckpointSigner

PENDING_KEY = "hotline.audit.pending"
# One arbitrary, fixed 64-bit key for pg_advisory_xact_lock: "the chain head".
CHAIN_LOCK_KEY = 0x486F746C696E6541  # "HotlineA"

_NAME = re.compile(r"^[a-z][a-z0-9_.:-]{0,63}$")
_SAFE_TEXT = re.compile(r"^[A-Za-z0-9_.:@/+-]{0,64}$")
# What `object_id` and detail values may be (docs/architecture.md, "the access log"): a public id,
# a key id, a chain position, or a code from a fixed vocabulary — never a row UUID, a number
# (phone, reference code), a SID or a hash of an identifier, which would link entries to a person.
_PUBLIC_ID = re.compile(rf"^[A-Z]{{1,3}}-[{ALPHABET}]{{4}}-[{ALPHABET}]{{4}}$")
_KEY_ID = re.compile(r"^(kek-\d{8}-\d{1,3}(-[0-9a-f]{8})?|ed25519:[0-9a-f]{16})$")
_SEQ = re.compile(r"^seq:\d{1,18}$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_CODE = re.compile(r"^[a-z][a-z0-9_.:+-]{0,63}$")
_LINKING = re.compile(r"\d{5,}|[0-9a-f]{12,}")  # a number, a UUID's or hash's hex


class AuditError(ValueError):
    """An entry that would put something unfit into the log (free text, an unknown shape)."""


@dataclass(frozen=True)
class Actor:
    """Who acted: a staff user's public id, or a named system component (`system:routing`, `cli:root`)."""

    id: str
    roles: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not _SAFE_TEXT.match(self.id) or not self.id:
            raise AuditError("actor id must be an id, not free text")


SYSTEM = Actor("system")


def _safe(value: Any, what: str) -> Any:
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, str) and _SAFE_TEXT.match(value):
        return value
    raise AuditError(f"audit {what} must be an id, number or flag (free text is sealed elsewhere)")


def public_value(value: Any, what: str) -> Any:
    """`value` if it may name something in the access log, else AuditError: counts and flags, public
    ids (`CS-7K2M-9QDF`), key ids, chain positions (`seq:42`), dates and codes from a fixed vocabulary
    (`enforcement_report`, `caller_identity+case_content`). Row UUIDs, phone numbers, reference
    codes, SIDs and hex hashes are refused: the log is kept for years, and any of them would link
    its entries to a person or to rows that must stay unlinkable."""
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, str) and (
        _PUBLIC_ID.match(value)
        or _KEY_ID.match(value)
        or _SEQ.match(value)
        or _DATE.match(value)
        or (_CODE.match(value) and not _LINKING.search(value))
    ):
        return value
    raise AuditError(f"audit {what} must be a public id, a count or a code: never a row id, number or hash")


def _detail_key(key: Any) -> str:
    if not isinstance(key, str) or not _NAME.match(key):
        raise AuditError("audit detail keys are names from a fixed vocabulary")
    return key


def record(
    session: AsyncSession | Session,
    clock: Clock,
    *,
    actor: Actor,
    action: str,
    object_type: str | None = None,
    object_id: str | None = None,
    fields: Iterable[str] = (),
    purpose: str | None = None,
    outcome: str = "ok",
    value_hash: str | None = None,
    details: Mapping[str, Any] | None = None,
    request_id: str | None = None,
) -> None:
    """Queue an entry on this transaction; it is chained and written just before COMMIT.

    Everything here is an id, a name from a fixed vocabulary, a count or a keyed hash: the log
    never holds plaintext. Free text (a break-glass reason) is sealed elsewhere and only the hash of
    its ciphertext comes here as `value_hash`.
    """
    if not _NAME.match(action):
        raise AuditError("audit action must be a dotted name like 'case.reveal'")
    for name in (object_type, purpose, outcome):
        if name is not None and not _NAME.match(name):
            raise AuditError("audit object type, purpose and outcome are names from a fixed vocabulary")
    field_names = sorted(set(fields))
    for name in field_names:
        if not _NAME.match(name):
            raise AuditError("audit field names are column names")
    if value_hash is not None and not re.fullmatch(r"[0-9a-f]{16,128}", value_hash):
        raise AuditError("audit value_hash must be a hex keyed hash")
    entry = {
        "ts": clock.now(),
        "actor_id": actor.id,
        "actor_roles": ",".join(sorted(actor.roles)),
        "action": action,
        "object_type": object_type,
        "object_id": public_value(object_id, "object id"),
        "fields": ",".join(field_names),
        "purpose": purpose,
        "outcome": outcome,
        "request_id": _safe(request_id or request_id_var.get(), "request id"),
        "value_hash": value_hash,
        "details": {_detail_key(k): public_value(v, "detail value") for k, v in (details or {}).items()},
    }
    sync_session = session.sync_session if isinstance(session, AsyncSession) else session
    sync_session.info.setdefault(PENDING_KEY, []).append(entry)


def _lock_chain(session: Session) -> None:
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": CHAIN_LOCK_KEY})
    # SQLite: the transaction began with BEGIN IMMEDIATE and already holds the database write lock.


def _head(session: Session) -> tuple[int, bytes]:
    row = session.execute(
        select(AuditEntry.seq, AuditEntry.entry_hash).order_by(AuditEntry.seq.desc()).limit(1)
    ).first()
    if row is None:
        # Empty: a new chain, or everything archived (`hotline audit archive` keeps the head, but
        # the chain must never restart at genesis after a segment).
        row = session.execute(
            select(AuditSegment.last_seq, AuditSegment.last_hash)
            .order_by(AuditSegment.last_seq.desc())
            .limit(1)
        ).first()
    return (0, GENESIS) if row is None else (row[0], row[1])


@event.listens_for(Session, "before_commit")
def _append_pending(session: Session) -> None:
    pending = session.info.pop(PENDING_KEY, None)
    if not pending:
        return
    _lock_chain(session)
    seq, prev = _head(session)
    rows = []
    for entry in pending:
        seq += 1
        row = {**entry, "seq": seq}
        digest = entry_hash(prev, canonical_body(row))
        rows.append({**row, "prev_hash": prev, "entry_hash": digest})
        prev = digest
    session.execute(insert(AuditEntry), rows)


@event.listens_for(Session, "after_rollback")
def _drop_pending(session: Session) -> None:
    session.info.pop(PENDING_KEY, None)


async def chain_head(session: AsyncSession) -> tuple[int, bytes]:
    return await session.run_sync(_head)


async def latest_checkpoint(session: AsyncSession) -> AuditCheckpoint | None:
    return (
        await session.scalars(select(AuditCheckpoint).order_by(AuditCheckpoint.seq.desc()).limit(1))
    ).first()


async def sign_checkpoint(
    session: AsyncSession,
    clock: Clock,
    signer: CheckpointSigner,
    *,
    every_entries: int,
    every_seconds: float,
    force: bool = False,
) -> AuditCheckpoint | None:
    """Sign the current head if enough entries or time have passed since the last checkpoint."""
    await session.run_sync(_lock_chain)
    seq, head_hash = await chain_head(session)
    last = await latest_checkpoint(session)
    if seq == 0 or (last is not None and last.seq >= seq):
        return None
    now = clock.now()
    due = (
        force
        or last is None
        or seq - last.seq >= every_entries
        or now - last.ts >= timedelta(seconds=every_seconds)
    )
    if not due:
        return None
    previous = last.seq if last else None
    checkpoint = AuditCheckpoint(
        seq=seq,
        head_hash=head_hash,
        prev_checkpoint_seq=previous,
        ts=now,
        key_id=signer.key_id,
        signature=signer.sign(checkpoint_note(seq, head_hash, previous, now)),
    )
    session.add(checkpoint)
    record(
        session,
        clock,
        actor=Actor("system:audit"),
        action="audit.checkpoint_signed",
        object_type="audit_checkpoint",
        object_id=f"seq:{seq}",
        details={"key_id": signer.key_id},
    )
    return checkpoint
