from __future__ import annotations

from pathlib import Path

import pytest

from app.clock import FrozenClock
from app.db.engine import Database
from tests.support.factories import Services, make_services


@pytest.fixture
def services(shared_database: Database, clock: FrozenClock, tmp_path: Path) -> Services:
    """Services over the shared database, for tier-1 tests on the rolled-back `session`."""
    return make_services(shared_database, clock, tmp_path / "keys.json")
