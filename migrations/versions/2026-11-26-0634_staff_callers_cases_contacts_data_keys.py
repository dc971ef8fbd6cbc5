"""staff, callers, cases, contacts, data keys; seeded categories and referral organisations

The directory is seeded with names and services only: contact details stay empty (unverified)
until an admin checks them.

Revision ID: 0ea25dcbe025
Revises: 49b11962609d
Create Date: 2026-11-26 06:34:24.535732

Self-contained: imports nothing from `app`.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0ea25dcbe025"
down_revision: str | None = "49b11962609d"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


CATEGORIES = [
    ("detention", "Detention"),
    ("removal_proceedings", "Removal proceedings"),
    ("asylum", "Asylum"),
    ("family_separation", "Family separation"),
    ("workplace_raid", "Workplace raid"),
    ("enforcement_report", "Enforcement-activity report"),
    ("know_your_rights", "Know-your-rights"),
    ("housing_benefits", "Housing / benefits"),
    ("abuse_report", "Abuse report"),
    ("other", "Other"),
]

ORGANISATIONS = [
    ("OR-4GAS-NYSC", "Legal Aid Society", ["legal_defense"]),
    ("OR-NYCH-2THX", "NYC Immigrant Hotline", ["emergency_support"]),
    ("OR-CACW-K7RS", "Community Awareness Centers", ["know_your_rights"]),
]

SEEDED_AT = datetime(2026, 11, 26, tzinfo=UTC)


def _seed() -> None:
    categories = sa.table("case_categories", sa.column("id"), sa.column("label"), sa.column("sort_order"))
    op.bulk_insert(
        categories, [{"id": c, "label": label, "sort_order": n} for n, (c, label) in enumerate(CATEGORIES)]
    )
    organisations = sa.table(
        "organisations",
        sa.column("id", sa.Uuid()),
        sa.column("public_id"),
        sa.column("name"),
        sa.column("services", sa.JSON()),
        sa.column("languages"),
        sa.column("accepts_direct_referrals", sa.Boolean()),
        sa.column("created_at", sa.DateTime(timezone=True)),
        sa.column("updated_at", sa.DateTime(timezone=True)),
    )
    op.bulk_insert(
        organisations,
        [
            {
                "id": uuid.uuid5(uuid.NAMESPACE_URL, f"hotline:organisation:{public_id}"),
                "public_id": public_id,
                "name": name,
                "services": services,
                "languages": "",
                "accepts_direct_referrals": False,
                "created_at": SEEDED_AT,
                "updated_at": SEEDED_AT,
            }
            for public_id, name, services in ORGANISATIONS
        ],
    )


def upgrade() -> None:
    op.create_table(
        "callers",
        sa.Column("phone", sa.LargeBinary(), nullable=True),
        sa.Column("phone_index", sa.String(length=64), nullable=True),
        sa.Column("phone_last2", sa.String(length=2), nullable=True),
        sa.Column("safe_to_call", sa.Boolean(), nullable=True),
        sa.Column("safe_to_text", sa.Boolean(), nullable=True),
        sa.Column("safe_to_voicemail", sa.Boolean(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_contact_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_callers")),
    )
    with op.batch_alter_table("callers", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_callers_phone_index"), ["phone_index"], unique=False)

    op.create_table(
        "case_categories",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("label", sa.String(length=100), nullable=False),
        sa.Column("sort_order", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_case_categories")),
    )
    op.create_table(
        "data_keys",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("subject_id", sa.Uuid(), nullable=False),
        sa.Column("retention_class", sa.String(length=32), nullable=False),
        sa.Column("wrapped", sa.LargeBinary(length=128), nullable=True),
        sa.Column("kek_id", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("rewrapped_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("destroyed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_data_keys")),
        sa.UniqueConstraint(
            "subject_id", "retention_class", name=op.f("uq_data_keys_subject_id_retention_class")
        ),
    )
    with op.batch_alter_table("data_keys", schema=None) as batch_op:
        batch_op.create_index("ix_data_keys_kek_id", ["kek_id"], unique=False)

    op.create_table(
        "users",
        sa.Column("public_id", sa.String(length=16), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("display_name", sa.String(length=100), nullable=False),
        sa.Column("roles", sa.String(length=64), nullable=False),
        sa.Column("languages", sa.String(length=200), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("phone", sa.LargeBinary(), nullable=True),
        sa.Column("phone_verified_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("totp_secret", sa.LargeBinary(), nullable=True),
        sa.Column("totp_last_step", sa.Integer(), nullable=True),
        sa.Column("password_hash", sa.String(length=255), nullable=True),
        sa.Column("sessions_valid_after", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("disabled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("email", name=op.f("uq_users_email")),
        sa.UniqueConstraint("public_id", name=op.f("uq_users_public_id")),
    )
    op.create_table(
        "cases",
        sa.Column("public_id", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("category_id", sa.String(length=32), nullable=True),
        sa.Column("urgency", sa.String(length=16), nullable=False),
        sa.Column("language", sa.String(length=8), nullable=False),
        sa.Column("assignee_id", sa.Uuid(), nullable=True),
        sa.Column("caller_id", sa.Uuid(), nullable=True),
        sa.Column("drill", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("caller_name", sa.LargeBinary(), nullable=True),
        sa.Column("callback_number", sa.LargeBinary(), nullable=True),
        sa.Column("a_number", sa.LargeBinary(), nullable=True),
        sa.Column("date_of_birth", sa.LargeBinary(), nullable=True),
        sa.Column("country_of_origin", sa.LargeBinary(), nullable=True),
        sa.Column("detention_facility", sa.LargeBinary(), nullable=True),
        sa.Column("next_hearing_date", sa.LargeBinary(), nullable=True),
        sa.Column("next_hearing_court", sa.LargeBinary(), nullable=True),
        sa.Column("code_word", sa.LargeBinary(), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(["assignee_id"], ["users.id"], name=op.f("fk_cases_assignee_id_users")),
        sa.ForeignKeyConstraint(["caller_id"], ["callers.id"], name=op.f("fk_cases_caller_id_callers")),
        sa.ForeignKeyConstraint(
            ["category_id"], ["case_categories.id"], name=op.f("fk_cases_category_id_case_categories")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cases")),
        sa.UniqueConstraint("public_id", name=op.f("uq_cases_public_id")),
    )
    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_cases_assignee_id"), ["assignee_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_cases_caller_id"), ["caller_id"], unique=False)

    op.create_table(
        "enrolment_tokens",
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_enrolment_tokens_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_enrolment_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_enrolment_tokens_token_hash")),
    )
    with op.batch_alter_table("enrolment_tokens", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_enrolment_tokens_user_id"), ["user_id"], unique=False)

    op.create_table(
        "organisations",
        sa.Column("public_id", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("services", sa.JSON(), nullable=False),
        sa.Column("languages", sa.String(length=200), nullable=False),
        sa.Column("hours", sa.String(length=200), nullable=True),
        sa.Column("service_area", sa.String(length=200), nullable=True),
        sa.Column("intake_phone", sa.String(length=32), nullable=True),
        sa.Column("intake_url", sa.String(length=300), nullable=True),
        sa.Column("accepts_direct_referrals", sa.Boolean(), nullable=False),
        sa.Column("verified_by_id", sa.Uuid(), nullable=True),
        sa.Column("verified_on", sa.Date(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["verified_by_id"], ["users.id"], name=op.f("fk_organisations_verified_by_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_organisations")),
        sa.UniqueConstraint("name", name=op.f("uq_organisations_name")),
        sa.UniqueConstraint("public_id", name=op.f("uq_organisations_public_id")),
    )
    op.create_table(
        "break_glass_grants",
        sa.Column("case_id", sa.Uuid(), nullable=False),
        sa.Column("supervisor_id", sa.Uuid(), nullable=False),
        sa.Column("reason", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reviewed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reviewed_by_id", sa.Uuid(), nullable=True),
        sa.Column("review_outcome", sa.String(length=16), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"], name=op.f("fk_break_glass_grants_case_id_cases")),
        sa.ForeignKeyConstraint(
            ["reviewed_by_id"], ["users.id"], name=op.f("fk_break_glass_grants_reviewed_by_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["supervisor_id"], ["users.id"], name=op.f("fk_break_glass_grants_supervisor_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_break_glass_grants")),
    )
    with op.batch_alter_table("break_glass_grants", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_break_glass_grants_case_id"), ["case_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_break_glass_grants_supervisor_id"), ["supervisor_id"], unique=False
        )

    op.create_table(
        "case_notes",
        sa.Column("case_id", sa.Uuid(), nullable=False),
        sa.Column("author_id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(["author_id"], ["users.id"], name=op.f("fk_case_notes_author_id_users")),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"], name=op.f("fk_case_notes_case_id_cases")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_case_notes")),
    )
    with op.batch_alter_table("case_notes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_case_notes_case_id"), ["case_id"], unique=False)

    op.create_table(
        "contacts",
        sa.Column("public_id", sa.String(length=16), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("caller_id", sa.Uuid(), nullable=True),
        sa.Column("case_id", sa.Uuid(), nullable=True),
        sa.Column("language", sa.String(length=8), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("outcome", sa.String(length=32), nullable=True),
        sa.Column("drill", sa.Boolean(), nullable=False),
        sa.Column("code_word_attempts", sa.Integer(), nullable=False),
        sa.Column("twilio_sid_hash", sa.String(length=64), nullable=False),
        sa.Column("twilio_sid", sa.LargeBinary(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(["caller_id"], ["callers.id"], name=op.f("fk_contacts_caller_id_callers")),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"], name=op.f("fk_contacts_case_id_cases")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_contacts")),
        sa.UniqueConstraint("public_id", name=op.f("uq_contacts_public_id")),
        sa.UniqueConstraint("twilio_sid_hash", name=op.f("uq_contacts_twilio_sid_hash")),
    )
    with op.batch_alter_table("contacts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_contacts_caller_id"), ["caller_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_contacts_case_id"), ["case_id"], unique=False)

    op.create_table(
        "referrals",
        sa.Column("case_id", sa.Uuid(), nullable=False),
        sa.Column("organisation_id", sa.Uuid(), nullable=False),
        sa.Column("created_by_id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("services", sa.String(length=200), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"], name=op.f("fk_referrals_case_id_cases")),
        sa.ForeignKeyConstraint(
            ["created_by_id"], ["users.id"], name=op.f("fk_referrals_created_by_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["organisation_id"], ["organisations.id"], name=op.f("fk_referrals_organisation_id_organisations")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_referrals")),
    )
    with op.batch_alter_table("referrals", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_referrals_case_id"), ["case_id"], unique=False)

    _seed()


def downgrade() -> None:
    with op.batch_alter_table("referrals", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_referrals_case_id"))

    op.drop_table("referrals")
    with op.batch_alter_table("contacts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_contacts_case_id"))
        batch_op.drop_index(batch_op.f("ix_contacts_caller_id"))

    op.drop_table("contacts")
    with op.batch_alter_table("case_notes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_case_notes_case_id"))

    op.drop_table("case_notes")
    with op.batch_alter_table("break_glass_grants", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_break_glass_grants_supervisor_id"))
        batch_op.drop_index(batch_op.f("ix_break_glass_grants_case_id"))

    op.drop_table("break_glass_grants")
    op.drop_table("organisations")
    with op.batch_alter_table("enrolment_tokens", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_enrolment_tokens_user_id"))

    op.drop_table("enrolment_tokens")
    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_cases_caller_id"))
        batch_op.drop_index(batch_op.f("ix_cases_assignee_id"))

    op.drop_table("cases")
    op.drop_table("users")
    with op.batch_alter_table("data_keys", schema=None) as batch_op:
        batch_op.drop_index("ix_data_keys_kek_id")

    op.drop_table("data_keys")
    op.drop_table("case_categories")
    with op.batch_alter_table("callers", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_callers_phone_index"))

    op.drop_table("callers")
