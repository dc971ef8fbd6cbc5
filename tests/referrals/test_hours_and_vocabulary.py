"""Opening hours in the organisation's own time zone (DST, past midnight, 24/7, unknown), how they
read in a text, and the vocabularies kept in step with the application's."""

from __future__ import annotations

import typing
from datetime import UTC, datetime
from typing import Any

import pytest

from app.languages import LANGUAGES
from app.referrals import service
from app.referrals.models import Area, Organisation, Service
from app.referrals.schemas import AreaName, LanguageCode, ServiceName


def organisation(**values: Any) -> Organisation:
    defaults: dict[str, Any] = {
        "name": "Test Org",
        "timezone": "America/New_York",
        "open_24_7": False,
        "opening_hours": [],
        "services": ["legal_defense"],
        "languages": "en,es",
        "service_areas": ["brooklyn"],
    }
    return Organisation(**(defaults | values))


WEEKDAYS_9_TO_5 = [{"day": d, "open": "09:00", "close": "17:00"} for d in ("mon", "tue", "wed", "thu", "fri")]


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        (datetime(2026, 11, 26, 14, 0, tzinfo=UTC), True),  # Thu 09:00 EST
        (datetime(2026, 11, 26, 13, 59, tzinfo=UTC), False),  # Thu 08:59 EST
        (datetime(2026, 11, 26, 22, 0, tzinfo=UTC), False),  # Thu 17:00 EST: closed
        (datetime(2026, 11, 28, 15, 0, tzinfo=UTC), False),  # Saturday
        (datetime(2026, 7, 1, 13, 0, tzinfo=UTC), True),  # Wed 09:00 EDT (summer time)
        (datetime(2026, 7, 1, 21, 30, tzinfo=UTC), False),  # Wed 17:30 EDT
        (datetime(2026, 3, 9, 13, 30, tzinfo=UTC), True),  # Mon 09:30 EDT, the day after the change
    ],
)
def test_weekly_windows_in_the_organisations_time_zone(at: datetime, expected: bool) -> None:
    assert service.is_open(organisation(opening_hours=WEEKDAYS_9_TO_5), at) is expected


def test_a_window_past_midnight_and_on_the_week_boundary() -> None:
    night = organisation(opening_hours=[{"day": "sun", "open": "22:00", "close": "06:00"}])
    assert service.is_open(night, datetime(2026, 11, 30, 3, 30, tzinfo=UTC)) is True  # Sun 22:30 EST
    assert service.is_open(night, datetime(2026, 11, 30, 10, 0, tzinfo=UTC)) is True  # Mon 05:00 EST
    assert service.is_open(night, datetime(2026, 11, 30, 11, 0, tzinfo=UTC)) is False  # Mon 06:00
    assert service.is_open(night, datetime(2026, 11, 29, 10, 0, tzinfo=UTC)) is False  # Sun 05:00
    whole_day = organisation(opening_hours=[{"day": "sat", "open": "00:00", "close": "24:00"}])
    assert service.is_open(whole_day, datetime(2026, 11, 29, 4, 59, tzinfo=UTC)) is True  # Sat 23:59
    assert service.is_open(whole_day, datetime(2026, 11, 29, 5, 0, tzinfo=UTC)) is False  # Sun 00:00


def test_another_time_zone_24_7_and_unknown_hours() -> None:
    london = organisation(timezone="Europe/London", opening_hours=WEEKDAYS_9_TO_5)
    assert service.is_open(london, datetime(2026, 11, 26, 9, 0, tzinfo=UTC)) is True
    assert service.is_open(london, datetime(2026, 11, 26, 17, 0, tzinfo=UTC)) is False
    assert service.is_open(organisation(open_24_7=True), datetime(2026, 11, 29, 3, 0, tzinfo=UTC)) is True
    assert service.is_open(organisation(), datetime(2026, 11, 26, 15, 0, tzinfo=UTC)) is None


def test_hours_read_compactly_in_a_text() -> None:
    hours = [*WEEKDAYS_9_TO_5, {"day": "sat", "open": "10:00", "close": "14:00"}]
    assert (
        service.describe_hours(organisation(opening_hours=hours))
        == "Mon-Fri 09:00-17:00; Sat 10:00-14:00 (America/New_York)"
    )
    assert service.describe_hours(organisation(open_24_7=True)) == "24/7"
    assert service.describe_hours(organisation()) is None


def test_areas_cover_wider_areas() -> None:
    assert Area.covering("queens") == {"queens", "statewide", "national", "remote"}
    assert Area.covering("national") == {"national", "remote"}
    assert Area.covering("remote") == {"remote"}


def test_vocabularies_match_the_application() -> None:
    assert set(typing.get_args(ServiceName)) == set(Service.ALL)
    assert set(typing.get_args(AreaName)) == set(Area.ALL)
    assert set(typing.get_args(LanguageCode)) == set(LANGUAGES)
    for needs in service.NEEDS_BY_CATEGORY.values():
        assert set(needs) <= set(Service.ALL)
