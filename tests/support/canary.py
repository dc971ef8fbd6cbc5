"""Canaries: unique plaintext planted through a code path, then searched for everywhere it must
never appear — the raw SQLite file and its WAL, every column of every PostgreSQL table, the logs
(including SQLAlchemy's statement log with bound parameters) and HTTP response bodies.

Every issue that adds a path reruns this over its routes (`CanaryScan`).
"""

from __future__ import annotations

import base64
import logging
import sqlite3
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.engine import make_url

from app.db.engine import Database
from app.logging import JsonFormatter


@dataclass(frozen=True)
class Canaries:
    """Plaintext values, unique per test run, in the shapes callers' data takes."""

    token: str = field(default_factory=lambda: uuid.uuid4().hex[:8].upper())

    @property
    def name(self) -> str:
        return f"Zqxcanary Marisol {self.token}"

    @property
    def facility(self) -> str:
        return f"Zqxcanary Detention Center {self.token}"

    @property
    def note(self) -> str:
        return f"Zqxcanary note: husband taken at 5am {self.token}"

    @property
    def code_word(self) -> str:
        return f"zqx{self.token.lower()}"

    @property
    def a_number(self) -> str:
        digits = str(int(self.token, 16) % 10**9).zfill(9)
        return f"A{digits}"

    def phone(self, n: int = 0) -> str:
        # 555-01xx numbers are reserved for fiction; the suffix keeps runs apart.
        suffix = (int(self.token, 16) + n) % 100
        return f"+1202555{1000 + suffix:04d}"[:12]

    @property
    def sid(self) -> str:
        return "CA" + uuid.uuid5(uuid.NAMESPACE_OID, self.token).hex

    def needles(self, extra: tuple[str, ...] = ()) -> dict[str, list[bytes]]:
        """Each canary and the encodings it could leak in."""
        values = {
            "name": self.name,
            "facility": self.facility,
            "note": self.note,
            "code_word": self.code_word,
            "a_number": self.a_number,
            "phone": self.phone(0),
            "phone2": self.phone(1),
            "sid": self.sid,
            **{f"extra{i}": value for i, value in enumerate(extra)},
        }
        forms: dict[str, list[bytes]] = {}
        for label, value in values.items():
            raw = value.encode()
            variants = {raw, value.lower().encode(), value.upper().encode(), value.encode("utf-16-le")}
            variants.add(base64.b64encode(raw).rstrip(b"="))
            variants.add(raw.hex().encode())
            if value.startswith("+"):
                variants.add(value[1:].encode())  # digits only
                variants.add(value[2:].encode())  # national number
            if label == "a_number":
                variants.add(value[1:].encode())
            forms[label] = sorted(variants)
        return forms


def find(haystack: bytes, needles: dict[str, list[bytes]], where: str) -> list[str]:
    hits = []
    for label, forms in needles.items():
        for form in forms:
            if form in haystack:
                hits.append(f"{label} ({form[:12]!r}…) in {where}")
    return hits


async def scan_database(database: Database, needles: dict[str, list[bytes]]) -> list[str]:
    hits: list[str] = []
    if database.is_sqlite:
        path = Path(make_url(str(database.engine.url)).database or "")
        # Outside any transaction (our connections always BEGIN IMMEDIATE): a plain connection.
        checkpointer = sqlite3.connect(path)
        try:
            checkpointer.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            checkpointer.close()
        for suffix in ("", "-wal", "-journal"):
            candidate = Path(str(path) + suffix)
            if candidate.exists():
                hits += find(candidate.read_bytes(), needles, candidate.name)
        return hits
    async with database.engine.connect() as conn:
        tables = await conn.run_sync(lambda sync: inspect(sync).get_table_names())
        for table in tables:
            rows = (await conn.execute(text(f'SELECT * FROM "{table}"'))).all()
            for row in rows:
                for column, value in row._mapping.items():
                    if value is None:
                        continue
                    blob = bytes(value) if isinstance(value, bytes | memoryview) else str(value).encode()
                    hits += find(blob, needles, f"{table}.{column}")
    return hits


class LogCapture(logging.Handler):
    """Everything logged, formatted exactly as production formats it (JSON lines)."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.setFormatter(JsonFormatter())
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))

    def text(self) -> bytes:
        return "\n".join(self.lines).encode()


@pytest.fixture
def captured_logs() -> Iterator[LogCapture]:
    capture = LogCapture()
    root = logging.getLogger()
    previous = root.level
    engine_logger = logging.getLogger("sqlalchemy.engine")
    engine_previous = engine_logger.level
    root.addHandler(capture)
    root.setLevel(logging.DEBUG)
    # Statement logging prints bound parameters: proves plaintext never even reaches the driver.
    engine_logger.setLevel(logging.INFO)
    yield capture
    root.removeHandler(capture)
    root.setLevel(previous)
    engine_logger.setLevel(engine_previous)


@dataclass
class CanaryScan:
    database: Database
    logs: LogCapture
    canaries: Canaries = field(default_factory=Canaries)
    responses: list[bytes] = field(default_factory=list)
    outputs: list[bytes] = field(default_factory=list)

    async def hits(self, *, allowed_responses: int = 0) -> list[str]:
        needles = self.canaries.needles()
        found = await scan_database(self.database, needles)
        found += find(self.logs.text(), needles, "logs")
        for index, body in enumerate(self.responses[allowed_responses:]):
            found += find(body, needles, f"response {index}")
        for index, output in enumerate(self.outputs):
            found += find(output, needles, f"command output {index}")
        return found
