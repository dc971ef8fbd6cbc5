"""referral directory search: structured hours, service areas, deactivation; referral SMS status

`organisations.hours` and `.service_area` (free strings) become `timezone` + `open_24_7` +
`opening_hours` (weekly windows, JSON) and `service_areas` (JSON list of a small vocabulary);
`active` lets admins retire an entry without losing the referrals that name it. Existing rows are
backfilled: "24/7" becomes `open_24_7`, other hour strings cannot be read reliably and become
unknown hours (an admin re-enters them); area strings are mapped onto the vocabulary, and the
seeded New York City organisations serve the five boroughs. Language lists keep known codes only.
Referrals gain the status of the SMS that texts the organisation's public details to the caller.

Revision ID: 5e1c7a9b2d40
Revises: c2c83aa90e24
Create Date: 2026-11-26 14:00:00

Self-contained: imports nothing from `app`.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "5e1c7a9b2d40"
down_revision: str | None = "c2c83aa90e24"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BOROUGHS = ["bronx", "brooklyn", "manhattan", "queens", "staten_island"]
AREAS = [*BOROUGHS, "statewide", "national", "remote"]
AREA_SPELLINGS = {
    "nyc": BOROUGHS,
    "new_york_city": BOROUGHS,
    "the_bronx": ["bronx"],
    "new_york_state": ["statewide"],
    "nys": ["statewide"],
    "state": ["statewide"],
    "nationwide": ["national"],
    "online": ["remote"],
    "phone": ["remote"],
}
SEEDED_NYC = {"OR-4GAS-NYSC", "OR-NYCH-2THX", "OR-CACW-K7RS"}
LANGUAGES = {
    "en", "es", "fr", "ht", "pt", "ar", "ru", "uk", "bn", "ur", "pl", "ko", "cmn", "yue", "wo", "ff", "qu", "kjb",
}  # fmt: skip


def _areas(raw: str | None, public_id: str) -> list[str]:
    found: list[str] = []
    for part in (raw or "").replace(";", ",").split(","):
        key = "_".join(part.strip().lower().split())
        for area in AREA_SPELLINGS.get(key, [key] if key in AREAS else []):
            if area not in found:
                found.append(area)
    if not found and public_id in SEEDED_NYC:
        found = list(BOROUGHS)
    return found


def _languages(raw: str | None) -> str:
    codes: list[str] = []
    for part in (raw or "").split(","):
        code = part.strip().lower()
        if code in LANGUAGES and code not in codes:
            codes.append(code)
    return ",".join(codes)


def upgrade() -> None:
    with op.batch_alter_table("organisations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("timezone", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("open_24_7", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(sa.Column("opening_hours", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("service_areas", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("active", sa.Boolean(), nullable=False, server_default=sa.true()))

    organisations = sa.table(
        "organisations",
        sa.column("id", sa.Uuid()),
        sa.column("public_id", sa.String()),
        sa.column("languages", sa.String()),
        sa.column("hours", sa.String()),
        sa.column("service_area", sa.String()),
        sa.column("timezone", sa.String()),
        sa.column("open_24_7", sa.Boolean()),
        sa.column("opening_hours", sa.JSON()),
        sa.column("service_areas", sa.JSON()),
    )
    bind = op.get_bind()
    rows = bind.execute(
        sa.select(
            organisations.c.id,
            organisations.c.public_id,
            organisations.c.languages,
            organisations.c.hours,
            organisations.c.service_area,
        )
    ).all()
    for row in rows:
        hours = (row.hours or "").strip().lower().replace(" ", "")
        bind.execute(
            organisations.update()
            .where(organisations.c.id == row.id)
            .values(
                timezone="America/New_York",
                open_24_7=hours in ("24/7", "24x7", "24hours"),
                opening_hours=[],
                service_areas=_areas(row.service_area, row.public_id),
                languages=_languages(row.languages),
            )
        )

    with op.batch_alter_table("organisations", schema=None) as batch_op:
        batch_op.alter_column("timezone", existing_type=sa.String(length=64), nullable=False)
        batch_op.alter_column("opening_hours", existing_type=sa.JSON(), nullable=False)
        batch_op.alter_column("service_areas", existing_type=sa.JSON(), nullable=False)
        batch_op.alter_column("open_24_7", existing_type=sa.Boolean(), server_default=None)
        batch_op.alter_column("active", existing_type=sa.Boolean(), server_default=None)
        batch_op.drop_column("hours")
        batch_op.drop_column("service_area")

    with op.batch_alter_table("referrals", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sms_status", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("sms_status_rank", sa.Integer(), nullable=False, server_default="-1"))
        batch_op.add_column(sa.Column("sms_error_code", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("sms_sid_hash", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("sms_requested_by_id", sa.Uuid(), nullable=True))
        batch_op.add_column(sa.Column("sms_requested_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_unique_constraint(batch_op.f("uq_referrals_sms_sid_hash"), ["sms_sid_hash"])
        batch_op.create_foreign_key(
            batch_op.f("fk_referrals_sms_requested_by_id_users"), "users", ["sms_requested_by_id"], ["id"]
        )
    with op.batch_alter_table("referrals", schema=None) as batch_op:
        batch_op.alter_column("sms_status_rank", existing_type=sa.Integer(), server_default=None)


def downgrade() -> None:
    with op.batch_alter_table("referrals", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_referrals_sms_requested_by_id_users"), type_="foreignkey")
        batch_op.drop_constraint(batch_op.f("uq_referrals_sms_sid_hash"), type_="unique")
        batch_op.drop_column("sms_requested_at")
        batch_op.drop_column("sms_requested_by_id")
        batch_op.drop_column("sms_sid_hash")
        batch_op.drop_column("sms_error_code")
        batch_op.drop_column("sms_status_rank")
        batch_op.drop_column("sms_status")

    with op.batch_alter_table("organisations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("hours", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("service_area", sa.String(length=200), nullable=True))
    organisations = sa.table(
        "organisations",
        sa.column("id", sa.Uuid()),
        sa.column("hours", sa.String()),
        sa.column("service_area", sa.String()),
        sa.column("open_24_7", sa.Boolean()),
        sa.column("service_areas", sa.JSON()),
    )
    bind = op.get_bind()
    for row in bind.execute(
        sa.select(organisations.c.id, organisations.c.open_24_7, organisations.c.service_areas)
    ).all():
        bind.execute(
            organisations.update()
            .where(organisations.c.id == row.id)
            .values(
                hours="24/7" if row.open_24_7 else None,
                service_area=",".join(row.service_areas or [])[:200] or None,
            )
        )
    with op.batch_alter_table("organisations", schema=None) as batch_op:
        batch_op.drop_column("active")
        batch_op.drop_column("service_areas")
        batch_op.drop_column("opening_hours")
        batch_op.drop_column("open_24_7")
        batch_op.drop_column("timezone")
