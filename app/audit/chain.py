"""Canonical entry bodies, chain hashes and checkpoint notes: pure functions shared by the writer,
the verifier and the benchmark, so all three hash exactly the same bytes."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

DOMAIN = b"hotline.audit.v1\x00"
GENESIS = b"\x00" * 32
CHECKPOINT_ORIGIN = "hotline/audit-log"

# The columns a body is built from, in order. `prev_hash` and `entry_hash` are the chain itself.
BODY_COLUMNS = (
    "seq",
    "ts",
    "actor_id",
    "actor_roles",
    "action",
    "object_type",
    "object_id",
    "fields",
    "purpose",
    "outcome",
    "request_id",
    "value_hash",
    "details",
)


def canonical_time(moment: datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical_body(row: Mapping[Any, Any]) -> bytes:
    """The exact bytes hashed for an entry: a JSON array of the body columns, in fixed order."""
    values = []
    for column in BODY_COLUMNS:
        value = row[column]
        if column == "ts":
            value = canonical_time(value)
        values.append(value)
    return json.dumps(values, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def entry_hash(prev_hash: bytes, body: bytes) -> bytes:
    return hashlib.sha256(DOMAIN + prev_hash + body).digest()


def checkpoint_note(seq: int, head_hash: bytes, prev_checkpoint_seq: int | None, ts: datetime) -> bytes:
    """The signed text of a checkpoint (C2SP tlog-checkpoint style, plus the previous checkpoint)."""
    previous = "none" if prev_checkpoint_seq is None else str(prev_checkpoint_seq)
    return (
        f"{CHECKPOINT_ORIGIN}\n{seq}\n{base64.b64encode(head_hash).decode()}\n"
        f"prev {previous}\ntime {canonical_time(ts)}\n"
    ).encode()
