from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Index, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base


class DataKeyRecord(Base):
    """One data key per (subject, retention class), stored only wrapped by a key-encryption key.

    Destroying it (`wrapped` cleared, `destroyed_at` set) crypto-shreds exactly that class of that
    subject: every value sealed under it becomes unreadable, everywhere, including backups once the
    KEK that wrapped older copies is destroyed too.
    """

    __tablename__ = "data_keys"
    __table_args__ = (
        UniqueConstraint("subject_id", "retention_class"),
        Index("ix_data_keys_kek_id", "kek_id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    subject_id: Mapped[uuid.UUID]
    retention_class: Mapped[str] = mapped_column(String(32))
    wrapped: Mapped[bytes | None] = mapped_column(LargeBinary(128))
    kek_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime]
    rewrapped_at: Mapped[datetime | None]
    destroyed_at: Mapped[datetime | None]
