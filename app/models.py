"""Every model module, imported so `Base.metadata` is complete (migrations, drift checks, grants)."""

from app.audit import models as _audit  # noqa: F401
from app.db.base import Base
from app.jobs import models as _jobs  # noqa: F401

metadata = Base.metadata
