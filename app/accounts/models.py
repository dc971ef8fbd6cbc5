from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base, UUIDPrimaryKey
from app.keys.sealed import RetentionClass, Sealed, sealed_column


class Role(StrEnum):
    volunteer = "volunteer"
    supervisor = "supervisor"
    admin = "admin"


class UserStatus(StrEnum):
    pending = "pending"  # created; enrolment (password + TOTP) not finished
    active = "active"
    disabled = "disabled"


class User(UUIDPrimaryKey, Base):
    """A staff account. Caller data never lives here; the staff phone and TOTP secret are sealed."""

    __tablename__ = "users"

    public_id: Mapped[str] = mapped_column(String(16), unique=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    display_name: Mapped[str] = mapped_column(String(100))
    roles: Mapped[str] = mapped_column(String(64))
    languages: Mapped[str] = mapped_column(String(200), default="")
    timezone: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default=UserStatus.pending)
    phone: Mapped[Sealed | None] = sealed_column("user.phone", RetentionClass.staff_secrets)
    phone_verified_at: Mapped[datetime | None]
    totp_secret: Mapped[Sealed | None] = sealed_column("user.totp_secret", RetentionClass.staff_secrets)
    # The last TOTP time step accepted: a code is good once (compare-and-set on this column).
    totp_last_step: Mapped[int | None]
    password_hash: Mapped[str | None] = mapped_column(String(255))
    # Sessions issued before this moment are void (offboarding, `hotline users end-sessions`).
    sessions_valid_after: Mapped[datetime | None]
    # Throttling: consecutive failures, the earliest next attempt, and the hard stop at 100
    # (cleared by a supervisor or by a sign-in from a device this person used before).
    failed_logins: Mapped[int] = mapped_column(default=0)
    next_login_at: Mapped[datetime | None]
    login_blocked_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    disabled_at: Mapped[datetime | None]

    @property
    def role_set(self) -> frozenset[Role]:
        return frozenset(Role(r) for r in self.roles.split(",") if r)

    @property
    def language_list(self) -> list[str]:
        return [code for code in self.languages.split(",") if code]


class RoleGrant(UUIDPrimaryKey, Base):
    """A grant of supervisor or admin waiting for a second admin.

    One admin asks (after a fresh step-up); a second, distinct admin who is not the person
    concerned approves (also stepped up), and only then do the person's roles change. `roles` is the
    whole role set asked for; `roles_before` what the person held when it was asked, so an approval
    cannot apply to roles that changed since. Role names only: no free text.
    """

    __tablename__ = "role_grants"

    public_id: Mapped[str] = mapped_column(String(16), unique=True)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), index=True)
    roles: Mapped[str] = mapped_column(String(64))
    roles_before: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16))  # pending | approved | cancelled
    requested_by_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    requested_at: Mapped[datetime]
    decided_by_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    decided_at: Mapped[datetime | None]


class EnrolmentToken(UUIDPrimaryKey, Base):
    """A one-time enrolment link. Only the token's SHA-256 is stored."""

    __tablename__ = "enrolment_tokens"

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]


class StaffSession(UUIDPrimaryKey, Base):
    """A server-side session. The browser holds a 256-bit token; only its SHA-256 is stored."""

    __tablename__ = "staff_sessions"

    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    # The last TOTP re-check (step-up) within this session, for break-glass, exports, MFA changes.
    stepped_up_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class StaffDevice(UUIDPrimaryKey, Base):
    """A browser that completed a full password + TOTP sign-in (hashed cookie); it may sign in
    through the hard stop, so an attacker's failures cannot lock a volunteer out."""

    __tablename__ = "staff_devices"

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime]
    last_used_at: Mapped[datetime]
