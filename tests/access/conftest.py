from __future__ import annotations

from pathlib import Path

import pytest

from app.clock import FrozenClock
from app.db.engine import Database
from tests.support.factories import Services, make_services


@pytest.fixture
def services(database: Database, clock: FrozenClock, tmp_path: Path) -> Services:
    return make_services(database, clock, tmp_path / "keys.json")
