"""audit archive: archived segments, and a DELETE trigger that allows pruning only what was exported

`audit_segments` records each signed segment file `hotline audit archive` wrote (append-only:
UPDATE and DELETE rejected). The trigger on `audit_entries` still rejects every UPDATE (and
TRUNCATE on PostgreSQL) but now lets a DELETE through for rows whose `seq` is at most the highest
archived `last_seq`: nothing newer than the last exported segment can ever be deleted. PostgreSQL
keeps the trigger's name (`audit_entries_no_change`, ENABLE ALWAYS) with a new function; SQLite
gets a conditional `audit_entries_no_delete`.

Revision ID: 7c1e2a9d4b30
Revises: 5e1c7a9b2d40
Create Date: 2026-11-26 14:20:00.000000

Self-contained: imports nothing from `app`.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "7c1e2a9d4b30"
down_revision: str | None = "5e1c7a9b2d40"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PG_GUARD = """
CREATE FUNCTION hotline_guard_audit_entries() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND OLD.seq <= (SELECT COALESCE(MAX(last_seq), 0) FROM audit_segments) THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'audit entries are append-only (% on %; only archived segments may be pruned)',
        TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END
$$
"""

SQLITE_GUARD = (
    "CREATE TRIGGER audit_entries_no_delete BEFORE DELETE ON audit_entries "
    "WHEN OLD.seq > (SELECT COALESCE(MAX(last_seq), 0) FROM audit_segments) "
    "BEGIN SELECT RAISE(ABORT, 'audit entries are append-only (only archived segments may be pruned)'); END"
)
SQLITE_ORIGINAL = (
    "CREATE TRIGGER audit_entries_no_delete BEFORE DELETE ON audit_entries "
    "BEGIN SELECT RAISE(ABORT, 'audit tables are append-only'); END"
)


def upgrade() -> None:
    op.create_table(
        "audit_segments",
        sa.Column("last_seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("first_seq", sa.BigInteger(), nullable=False),
        sa.Column("entries", sa.BigInteger(), nullable=False),
        sa.Column("prev_hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column("last_hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column("body_sha256", sa.LargeBinary(length=32), nullable=False),
        sa.Column("first_ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("archived_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("file_name", sa.String(length=128), nullable=False),
        sa.Column("key_id", sa.String(length=64), nullable=False),
        sa.Column("signature", sa.LargeBinary(length=64), nullable=False),
        sa.PrimaryKeyConstraint("last_seq", name=op.f("pk_audit_segments")),
        info={"append_only": True, "owner_writes": True},
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(PG_GUARD)
        op.execute("DROP TRIGGER audit_entries_no_change ON audit_entries")
        op.execute(
            "CREATE TRIGGER audit_entries_no_change BEFORE UPDATE OR DELETE ON audit_entries "
            "FOR EACH ROW EXECUTE FUNCTION hotline_guard_audit_entries()"
        )
        op.execute("ALTER TABLE audit_entries ENABLE ALWAYS TRIGGER audit_entries_no_change")
        for suffix, timing in (("no_change", "BEFORE UPDATE OR DELETE"), ("no_truncate", "BEFORE TRUNCATE")):
            each = "STATEMENT" if suffix == "no_truncate" else "ROW"
            op.execute(
                f"CREATE TRIGGER audit_segments_{suffix} {timing} ON audit_segments "
                f"FOR EACH {each} EXECUTE FUNCTION hotline_reject_audit_change()"
            )
            op.execute(f"ALTER TABLE audit_segments ENABLE ALWAYS TRIGGER audit_segments_{suffix}")
    else:
        op.execute("DROP TRIGGER audit_entries_no_delete")
        op.execute(SQLITE_GUARD)
        for operation in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER audit_segments_no_{operation.lower()} BEFORE {operation} ON audit_segments "
                "BEGIN SELECT RAISE(ABORT, 'audit tables are append-only'); END"
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER audit_entries_no_change ON audit_entries")
        op.execute(
            "CREATE TRIGGER audit_entries_no_change BEFORE UPDATE OR DELETE ON audit_entries "
            "FOR EACH ROW EXECUTE FUNCTION hotline_reject_audit_change()"
        )
        op.execute("ALTER TABLE audit_entries ENABLE ALWAYS TRIGGER audit_entries_no_change")
        op.drop_table("audit_segments")  # its triggers go with it
        op.execute("DROP FUNCTION hotline_guard_audit_entries()")
    else:
        op.execute("DROP TRIGGER audit_entries_no_delete")
        op.execute(SQLITE_ORIGINAL)
        op.drop_table("audit_segments")
