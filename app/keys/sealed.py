"""Sealed values in the ORM: sensitive columns hold opaque `Sealed` objects, never plaintext.

A sealed column is declared with its stable field id and its retention class:

    caller_name: Mapped[Sealed | None] = sealed_column("case.caller_name", RetentionClass.case_content)

Assigning anything but a `Sealed` (or None) raises at once, and so does binding one at flush.
`Sealed` never shows its bytes in repr/str, refuses pickling and JSON encoding; plaintext only
comes out of the access broker (`app/access/`).
"""

from __future__ import annotations

import uuid
from enum import StrEnum
from typing import Any, NoReturn

from sqlalchemy import LargeBinary, event
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import MappedColumn, Mapper, mapped_column
from sqlalchemy.types import TypeDecorator

from crypto.field import key_id_of


class RetentionClass(StrEnum):
    """What a data key covers; retention and crypto-shredding act per (subject, class)."""

    case_content = "case_content"  # intake fields, notes, code word, break-glass reasons
    caller_identity = "caller_identity"  # a caller's phone number
    chat_messages = "chat_messages"
    voicemail_audio = "voicemail_audio"
    contact_meta = "contact_meta"  # Twilio SIDs of a contact (for REST clean-up)
    staff_secrets = "staff_secrets"  # a staff member's phone and TOTP secret


class Sealed:
    """An encrypted field value: `version | alg | key id | nonce | ciphertext+tag`. Opaque."""

    __slots__ = ("_blob",)

    def __init__(self, blob: bytes) -> None:
        if not isinstance(blob, bytes | bytearray | memoryview):
            raise TypeError("Sealed wraps ciphertext bytes")
        self._blob = bytes(blob)

    @property
    def blob(self) -> bytes:
        return self._blob

    @property
    def key_id(self) -> uuid.UUID:
        return key_id_of(self._blob)

    def __repr__(self) -> str:
        return "<Sealed>"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sealed) and other._blob == self._blob

    def __hash__(self) -> int:
        return hash(self._blob)

    def __reduce_ex__(self, protocol: Any) -> NoReturn:
        raise TypeError("sealed values cannot be pickled")

    def __getstate__(self) -> NoReturn:
        raise TypeError("sealed values cannot be serialised")


class PlaintextAssignment(TypeError):
    """Raised when code tries to put plaintext into a sealed column."""


class SealedType(TypeDecorator[Sealed]):
    impl = LargeBinary
    cache_ok = True

    def __init__(self, field_id: str, retention_class: RetentionClass) -> None:
        super().__init__()
        self.field_id = field_id
        self.retention_class = retention_class

    def process_bind_param(self, value: Any, dialect: Dialect) -> bytes | None:
        if value is None:
            return None
        if not isinstance(value, Sealed):
            raise PlaintextAssignment(f"{self.field_id} only accepts sealed values")
        return value.blob

    def process_result_value(self, value: Any, dialect: Dialect) -> Sealed | None:
        return None if value is None else Sealed(bytes(value))


def sealed_column(field_id: str, retention_class: RetentionClass, **kwargs: Any) -> MappedColumn[Any]:
    return mapped_column(
        SealedType(field_id, retention_class),
        info={"sealed": True, "field_id": field_id, "retention_class": retention_class.value},
        **kwargs,
    )


def sealed_columns(model: type) -> dict[str, SealedType]:
    """Attribute name → sealed type, for one mapped class."""
    table = model.__table__  # type: ignore[attr-defined]
    return {column.key: column.type for column in table.columns if isinstance(column.type, SealedType)}


def _refuse_plaintext(target: Any, value: Any, _old: Any, initiator: Any) -> Any:
    if value is not None and not isinstance(value, Sealed):
        raise PlaintextAssignment(f"{type(target).__name__}.{initiator.key} only accepts sealed values")
    return value


@event.listens_for(Mapper, "mapper_configured")
def _guard_sealed_attributes(mapper: Mapper[Any], cls: type) -> None:
    for column in mapper.columns:
        if isinstance(column.type, SealedType):
            event.listen(getattr(cls, column.key), "set", _refuse_plaintext, retval=True)
