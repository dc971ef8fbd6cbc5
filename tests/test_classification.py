"""Every column that could hold text is either sealed (with a retention class) or reviewed."""

from __future__ import annotations

from sqlalchemy import JSON, LargeBinary, String, Text

from app.classification import ALLOWED_PLAINTEXT
from app.keys.sealed import RetentionClass, SealedType
from app.models import metadata


def text_like_columns() -> dict[tuple[str, str], object]:
    found = {}
    for table in metadata.sorted_tables:
        for column in table.columns:
            column_type = column.type
            if isinstance(column_type, SealedType | String | Text | JSON | LargeBinary):
                found[(table.name, column.name)] = column
    return found


def test_every_text_column_is_sealed_or_on_the_reviewed_allow_list() -> None:
    unclassified = []
    for key, column in text_like_columns().items():
        column_type = column.type  # type: ignore[attr-defined]
        if isinstance(column_type, SealedType):
            assert isinstance(column_type.retention_class, RetentionClass), key
            assert column.info["field_id"] == column_type.field_id, key  # type: ignore[attr-defined]
            assert key not in ALLOWED_PLAINTEXT, f"{key} is sealed; drop it from the allow-list"
        elif key not in ALLOWED_PLAINTEXT:
            unclassified.append(key)
    assert unclassified == [], "classify these columns (seal them or allow-list with a reason)"


def test_allow_list_has_reasons_and_no_stale_entries() -> None:
    columns = text_like_columns()
    assert all(reason.strip() for reason in ALLOWED_PLAINTEXT.values())
    assert sorted(set(ALLOWED_PLAINTEXT) - set(columns)) == []


def test_sealed_field_ids_are_unique_and_stable() -> None:
    ids = [
        column.type.field_id  # type: ignore[attr-defined]
        for column in text_like_columns().values()
        if isinstance(column.type, SealedType)  # type: ignore[attr-defined]
    ]
    assert len(ids) == len(set(ids))
    assert {"case.caller_name", "caller.phone", "case_note.body", "user.totp_secret"} <= set(ids)
