"""Benchmark: `hotline audit verify` against the bare minimum, side by side in one run.

    python bench/audit.py [--entries 1000000] [--database-url postgresql://…]

Builds a chain of N entries (SQLite temp file by default), then times
  A. the verifier the CLI uses (`app.audit.verify.verify_chain`, SQLAlchemy async streaming), and
  B. the same rows through the raw driver (sqlite3 / psycopg) plus a bare SHA-256 chain over bodies
     rebuilt by the same `canonical_body`,
and prints B's time / A's time (target ≥ 0.5: our verifier at most twice the bare cost).
Absolute times on a shared 2-core machine are noise; the ratio is the figure. Ctrl-C stops cleanly.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import sqlite3
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import insert  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from app.audit.chain import BODY_COLUMNS, DOMAIN, GENESIS, canonical_body, entry_hash  # noqa: E402
from app.audit.models import AuditEntry  # noqa: E402
from app.audit.verify import verify_chain  # noqa: E402
from app.db import migrate  # noqa: E402
from app.db.engine import create_database  # noqa: E402
from crypto.signing import CheckpointSigner  # noqa: E402


def progress(label: str, done: int, total: int) -> None:
    print(f"\r{label}: {done:,}/{total:,}", end="", file=sys.stderr, flush=True)


async def build(url: str, count: int) -> None:
    database = create_database(url)
    await migrate.upgrade(database)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    prev = GENESIS
    batch: list[dict[str, object]] = []
    async with database.engine.connect() as conn:
        for seq in range(1, count + 1):
            row: dict[str, object] = {
                "seq": seq,
                "ts": start + timedelta(milliseconds=seq),
                "actor_id": f"U-{seq % 97:04d}",
                "actor_roles": "volunteer",
                "action": "case.reveal",
                "object_type": "case",
                "object_id": f"HX-{seq % 5000:06d}",
                "fields": "caller_name,notes",
                "purpose": "intake",
                "outcome": "ok",
                "request_id": uuid.uuid4().hex,
                "value_hash": None,
                "details": {"count": seq % 7},
            }
            digest = entry_hash(prev, canonical_body(row))
            batch.append({**row, "prev_hash": prev, "entry_hash": digest})
            prev = digest
            if len(batch) == 20000 or seq == count:
                await conn.execute(insert(AuditEntry), batch)
                await conn.commit()
                batch.clear()
                progress("building chain", seq, count)
    print(file=sys.stderr)
    await database.dispose()


async def ours(url: str) -> tuple[float, int]:
    database = create_database(url)
    verifier = CheckpointSigner.generate().verifier()
    started = time.perf_counter()
    async with database.engine.connect() as conn:
        report = await verify_chain(
            conn, verifier, progress=lambda d, t: progress("hotline verify", d, t or 0)
        )
    elapsed = time.perf_counter() - started
    print(file=sys.stderr)
    await database.dispose()
    assert report.ok, report.problems[:3]
    return elapsed, report.entries


def bare(url: str) -> tuple[float, int]:
    """The floor: the raw driver's rows, the same body rebuild, one SHA-256 per entry."""
    parsed = make_url(url)
    columns = ", ".join([*BODY_COLUMNS, "prev_hash", "entry_hash"])
    query = f"SELECT {columns} FROM audit_entries ORDER BY seq"
    started = time.perf_counter()
    count = 0
    prev = GENESIS
    if parsed.get_backend_name() == "sqlite":
        conn = sqlite3.connect(parsed.database or "")
        cursor = conn.execute(query)
        rows = iter(lambda: cursor.fetchmany(5000), [])
    else:
        import psycopg

        conn = psycopg.connect(parsed.set(drivername="postgresql").render_as_string(hide_password=False))
        cursor = conn.cursor(name="bench")
        cursor.execute(query)
        rows = iter(lambda: cursor.fetchmany(5000), [])
    for chunk in rows:
        for values in chunk:
            record = dict(zip([*BODY_COLUMNS, "prev_hash", "entry_hash"], values, strict=True))
            if isinstance(record["ts"], str):
                record["ts"] = datetime.fromisoformat(record["ts"])
            if isinstance(record["details"], str):
                record["details"] = json.loads(record["details"])
            digest = hashlib.sha256(DOMAIN + bytes(record["prev_hash"]) + canonical_body(record)).digest()
            if bytes(record["prev_hash"]) != prev or digest != bytes(record["entry_hash"]):
                raise SystemExit(f"bare chain broken at {record['seq']}")
            prev = digest
            count += 1
    conn.close()
    return time.perf_counter() - started, count


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--database-url", help="an empty database to fill (default: a temporary SQLite file)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hotline-bench-") as tmp:
        url = args.database_url or f"sqlite:///{tmp}/bench.db"
        try:
            asyncio.run(build(url, args.entries))
            bare_s, bare_n = bare(url)
            ours_s, ours_n = asyncio.run(ours(url))
        except KeyboardInterrupt:
            print("\ninterrupted; temporary database removed", file=sys.stderr)
            raise SystemExit(130) from None
    assert bare_n == ours_n == args.entries
    backend = make_url(url).get_backend_name()
    print(f"entries: {args.entries:,} on {backend}")
    print(f"bare driver + SHA-256 chain: {bare_s:8.2f} s  ({bare_n / bare_s:,.0f} entries/s)")
    print(f"hotline audit verify:        {ours_s:8.2f} s  ({ours_n / ours_s:,.0f} entries/s)")
    print(f"ratio (bare time / ours): {bare_s / ours_s:.2f}  (target >= 0.5)")


if __name__ == "__main__":
    main()
