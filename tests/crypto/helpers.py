"""Shared fixed inputs for the crypto tests (plain functions, no fixtures magic)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TypedDict
from uuid import UUID

from crypto import DataKey, KekRecord, KekState, LocalKeyring

FIXED_KEY = bytes(range(32))
FIXED_KEY_ID = UUID("00112233-4455-6677-8899-aabbccddeeff")
FIXED_NONCE = bytes.fromhex("000102030405060708090a0b")
ROW_ID = UUID("11111111-2222-4333-8444-555555555555")
OTHER_ROW_ID = UUID("11111111-2222-4333-8444-555555555556")
SUBJECT = "case:66666666-7777-4888-9999-000000000000"
OTHER_SUBJECT = "case:66666666-7777-4888-9999-000000000001"
FIELD = "case.caller_name"
OTHER_FIELD = "case.caller_phone"
RETENTION = "case.notes"
FIXED_KEK = bytes(range(32, 64))
FIXED_KEK_ID = "kek-20261126-01"
T0 = datetime(2026, 11, 26, 6, 15, tzinfo=UTC)


class FieldContext(TypedDict):
    """Keyword arguments binding a sealed value to its field, row and subject."""

    field_id: str
    row_id: UUID
    subject_id: str


class KeyBinding(TypedDict):
    """Keyword arguments binding a wrapped data key to its id, subject and retention class."""

    data_key_id: UUID
    subject_id: str
    retention_class: str


def fixed_data_key() -> DataKey:
    return DataKey(FIXED_KEY_ID, FIXED_KEY)


def fixed_keyring() -> LocalKeyring:
    record = KekRecord(id=FIXED_KEK_ID, version=1, state=KekState.ACTIVE, created_at=T0, material=FIXED_KEK)
    return LocalKeyring([record], clock=lambda: T0)


class ManualClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
