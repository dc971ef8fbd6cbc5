"""The access log names things by public id only.

`audit.record()` refuses, at run time, any `object_id` or detail value that is not a public id, a
count, a key id, a chain position or a code from a fixed vocabulary — row UUIDs, phone numbers,
reference codes, SIDs and hashes of identifiers would link entries to a person for the six years
the log is kept. This module checks that rule two ways: the validator against every shape of
identifier we hold, and every call site that writes an entry (`audit.record`, the broker's
reveals and refusals), walked in the source, for an argument built from a row id or an
identifier.
"""

from __future__ import annotations

import ast
import uuid
from pathlib import Path

import pytest

from app.audit.service import AuditError, public_value
from app.publicid import new_public_id

APP = Path(__file__).resolve().parents[2] / "app"
# Functions whose `object_id=` / `details=` end up in an access-log entry.
WRITERS = {"record", "reveal", "reveal_rows", "reveal_for_system", "deny", "reveal_fields", "refuse"}
# Attribute names that hold a row id or an identifier, never a public id.
FORBIDDEN_ATTRIBUTES = {"id", "hex", "phone", "phone_index", "sid_hash", "code_hash", "number_hash", "int"}
FORBIDDEN_SUFFIXES = ("_id", "_sid", "_hash", "_number", "_uuid")
ALLOWED_ATTRIBUTES = {"public_id", "key_id", "active_kek_id", "new_kek", "rotated_to", "label"}


@pytest.mark.parametrize(
    "value",
    [
        str(uuid.uuid4()),
        uuid.uuid4().hex,
        uuid.uuid4().hex[:12],
        "caller:" + uuid.uuid4().hex[:12],
        "+12025550143",
        "12025550143",
        "2025550143",
        "4821093375",  # a report's reference code
        "SM" + uuid.uuid4().hex,
        "CA" + uuid.uuid4().hex,
        "a3f9" * 16,  # a keyed hash
        "Maria Lopez",
        "whatsapp:+12025550143",
        "A204518873",
    ],
)
def test_identifiers_are_refused(value: str) -> None:
    with pytest.raises(AuditError):
        public_value(value, "object id")


@pytest.mark.parametrize(
    "value",
    [
        new_public_id("CS"),
        new_public_id("U"),
        new_public_id("CL"),
        "kek-20261126-01",
        "kek-20261208-02-0a1b2c3d",
        "ed25519:0123456789abcdef",
        "seq:1048576",
        "enforcement_report",
        "caller_identity+case_content",
        "calls:2026-11-26",
        "2026-12-24",
        "report-code",
        "sms",
        3,
        True,
        None,
    ],
)
def test_public_ids_counts_and_codes_pass(value: object) -> None:
    assert public_value(value, "object id") == value


def _bad_expression(node: ast.expr) -> str | None:
    """Why this argument expression may carry a row id or an identifier, or None."""
    for sub in ast.walk(node):
        if isinstance(sub, ast.Attribute):
            name = sub.attr
            if name in ALLOWED_ATTRIBUTES:
                continue
            if name in FORBIDDEN_ATTRIBUTES or name.endswith(FORBIDDEN_SUFFIXES):
                return f"reads .{name}"
        if isinstance(sub, ast.Call) and isinstance(sub.func, ast.Name) and sub.func.id == "str":
            return "stringifies a value (row ids come out this way)"
    return None


def _call_sites() -> list[tuple[str, int, str, ast.Call]]:
    found = []
    for path in sorted(APP.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            name = (
                func.attr
                if isinstance(func, ast.Attribute)
                else func.id
                if isinstance(func, ast.Name)
                else ""
            )
            if name in WRITERS and any(k.arg in {"object_id", "details"} for k in node.keywords):
                found.append((str(path.relative_to(APP.parent)), node.lineno, name, node))
    return found


def test_there_are_call_sites_to_check() -> None:
    # The walk finds the writers (if it found none, the next test would pass vacuously).
    assert len(_call_sites()) > 60


def test_no_call_site_writes_a_row_id_or_an_identifier() -> None:
    problems = []
    for where, line, name, call in _call_sites():
        for keyword in call.keywords:
            if keyword.arg == "object_id":
                why = _bad_expression(keyword.value)
                if why:
                    problems.append(f"{where}:{line} {name}(object_id=…) {why}")
            if keyword.arg == "details":
                values = keyword.value.values if isinstance(keyword.value, ast.Dict) else [keyword.value]
                for value in values:
                    why = _bad_expression(value)
                    if why:
                        problems.append(f"{where}:{line} {name}(details=…) {why}")
    assert problems == []
