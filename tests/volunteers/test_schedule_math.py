"""Shift windows in the volunteer's own zone: DST both ways, overnight shifts, date overrides."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from app.errors import InvalidInput
from app.volunteers.models import OverrideKind
from app.volunteers.service import (
    DateOverride,
    WeeklyShift,
    check_weekly_pattern,
    on_call_until,
    wall_to_utc,
    windows_between,
    zone,
)

NY = zone("America/New_York")
SAT, SUN, MON, TUE, WED = 5, 6, 0, 1, 2


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def hours(h: float) -> int:
    return int(h * 60)


def test_the_dst_dates_of_the_examples_are_sundays() -> None:
    assert date(2026, 3, 8).weekday() == SUN and date(2026, 11, 1).weekday() == SUN


def test_wall_times_resolve_to_the_first_instant_the_clock_reads_them() -> None:
    spring, fall = date(2026, 3, 8), date(2026, 11, 1)
    assert wall_to_utc(spring, hours(1.5), NY) == utc(2026, 3, 8, 6, 30)  # 01:30 EST
    assert wall_to_utc(spring, hours(2.5), NY) == utc(2026, 3, 8, 7, 0)  # skipped → 03:00 EDT
    assert wall_to_utc(spring, hours(3.5), NY) == utc(2026, 3, 8, 7, 30)  # 03:30 EDT
    assert wall_to_utc(fall, hours(1.5), NY) == utc(2026, 11, 1, 5, 30)  # first 01:30 (EDT)
    assert wall_to_utc(fall, hours(2), NY) == utc(2026, 11, 1, 7, 0)  # 02:00 EST
    assert wall_to_utc(fall, hours(24 + 6), NY) == utc(2026, 11, 2, 11, 0)  # next day 06:00 EST


def test_overnight_shift_across_spring_forward_ends_at_local_six_after_seven_real_hours() -> None:
    night = [WeeklyShift(SAT, hours(22), hours(8))]
    (window,) = windows_between(NY, night, [], utc(2026, 3, 8, 4), utc(2026, 3, 8, 4))
    assert window.start == utc(2026, 3, 8, 3, 0)  # Sat 22:00 EST
    assert window.end == utc(2026, 3, 8, 10, 0)  # Sun 06:00 EDT
    assert window.end - window.start == timedelta(hours=7)
    assert window.local_date == date(2026, 3, 7)
    assert on_call_until(NY, night, [], utc(2026, 3, 8, 9, 59)) == utc(2026, 3, 8, 10, 0)
    assert on_call_until(NY, night, [], utc(2026, 3, 8, 10, 0)) is None  # 06:00 EDT: over
    assert on_call_until(NY, night, [], utc(2026, 3, 8, 2, 59)) is None  # 21:59 EST: not yet


def test_overnight_shift_across_fall_back_lasts_nine_real_hours() -> None:
    night = [WeeklyShift(SAT, hours(22), hours(8))]
    (window,) = windows_between(NY, night, [], utc(2026, 11, 1, 6), utc(2026, 11, 1, 6))
    assert (window.start, window.end) == (utc(2026, 11, 1, 2, 0), utc(2026, 11, 1, 11, 0))
    assert window.end - window.start == timedelta(hours=9)
    # Both passes through the repeated hour 01:00–02:00 are inside the shift.
    assert on_call_until(NY, night, [], utc(2026, 11, 1, 5, 30)) == utc(2026, 11, 1, 11, 0)  # 01:30 EDT
    assert on_call_until(NY, night, [], utc(2026, 11, 1, 6, 30)) == utc(2026, 11, 1, 11, 0)  # 01:30 EST
    assert on_call_until(NY, night, [], utc(2026, 11, 1, 10, 59)) is not None  # 05:59 EST
    assert on_call_until(NY, night, [], utc(2026, 11, 1, 11, 0)) is None


def test_shift_starting_in_the_skipped_hour_begins_when_the_clock_jumps() -> None:
    shift = [WeeklyShift(SUN, hours(2.5), hours(1.5))]  # 02:30–04:00 local
    (window,) = windows_between(NY, shift, [], utc(2026, 3, 8), utc(2026, 3, 9))
    assert (window.start, window.end) == (utc(2026, 3, 8, 7, 0), utc(2026, 3, 8, 8, 0))  # 03:00–04:00 EDT
    assert on_call_until(NY, shift, [], utc(2026, 3, 8, 7, 15)) == utc(2026, 3, 8, 8, 0)  # 03:15 EDT
    # A week later it is the ordinary 90 minutes.
    (later,) = windows_between(NY, shift, [], utc(2026, 3, 15), utc(2026, 3, 16))
    assert (later.start, later.end) == (utc(2026, 3, 15, 6, 30), utc(2026, 3, 15, 8, 0))


def test_shift_wholly_inside_the_skipped_hour_does_not_happen_that_night() -> None:
    shift = [WeeklyShift(SUN, hours(2.25), 30)]  # 02:15–02:45
    assert windows_between(NY, shift, [], utc(2026, 3, 8), utc(2026, 3, 9)) == []
    assert len(windows_between(NY, shift, [], utc(2026, 3, 15), utc(2026, 3, 16))) == 1


def test_shift_in_the_repeated_hour_takes_its_first_occurrence() -> None:
    shift = [WeeklyShift(SUN, hours(1), 30)]  # 01:00–01:30 local
    (window,) = windows_between(NY, shift, [], utc(2026, 11, 1), utc(2026, 11, 2))
    assert (window.start, window.end) == (utc(2026, 11, 1, 5, 0), utc(2026, 11, 1, 5, 30))


def test_the_same_wall_clock_shift_is_a_different_utc_window_in_winter_and_summer() -> None:
    day = [WeeklyShift(WED, hours(9), hours(8))]
    (summer,) = windows_between(NY, day, [], utc(2026, 7, 1, 14), utc(2026, 7, 1, 14))
    (winter,) = windows_between(NY, day, [], utc(2026, 12, 2, 15), utc(2026, 12, 2, 15))
    assert summer.start == utc(2026, 7, 1, 13) and winter.start == utc(2026, 12, 2, 14)


def test_overnight_shift_crossing_midnight_and_the_week_boundary() -> None:
    sunday_night = [WeeklyShift(SUN, hours(23), hours(7))]  # Sun 23:00 → Mon 06:00
    tokyo = zone("Asia/Tokyo")
    # Mon 2026-11-30 03:00 Tokyo = Sun 18:00 UTC
    assert on_call_until(tokyo, sunday_night, [], utc(2026, 11, 29, 18)) == utc(2026, 11, 29, 21)
    assert on_call_until(tokyo, sunday_night, [], utc(2026, 11, 29, 13, 59)) is None
    assert on_call_until(tokyo, sunday_night, [], utc(2026, 11, 29, 14)) == utc(2026, 11, 29, 21)


def test_a_24_hour_shift_and_back_to_back_shifts_join_into_one_stretch() -> None:
    shifts = [WeeklyShift(MON, hours(22), hours(8)), WeeklyShift(TUE, hours(6), hours(8))]
    # Mon 2026-11-30 23:00 EST = Tue 04:00 UTC; on call until Tue 14:00 EST = 19:00 UTC
    assert on_call_until(NY, shifts, [], utc(2026, 12, 1, 4)) == utc(2026, 12, 1, 19)
    full_day = [WeeklyShift(MON, 0, hours(24))]
    assert on_call_until(NY, full_day, [], utc(2026, 11, 30, 5)) == utc(2026, 12, 1, 5)


def test_day_off_cancels_shifts_starting_that_date_only() -> None:
    shifts = [WeeklyShift(WED, hours(9), hours(4)), WeeklyShift(TUE, hours(22), hours(8))]
    off = [DateOverride(date(2026, 12, 2), OverrideKind.off)]  # Wednesday
    # Wed 10:00 EST is cancelled …
    assert on_call_until(NY, shifts, [], utc(2026, 12, 2, 15)) is not None
    assert on_call_until(NY, shifts, off, utc(2026, 12, 2, 15)) is None
    # … but Tuesday's overnight shift still runs into Wednesday morning.
    assert on_call_until(NY, shifts, off, utc(2026, 12, 2, 8)) == utc(2026, 12, 2, 11)
    # and the Wednesday a week later is untouched.
    assert on_call_until(NY, shifts, off, utc(2026, 12, 9, 15)) is not None


def test_extra_shift_on_a_date_and_moving_a_shift_with_off_plus_extra() -> None:
    shifts = [WeeklyShift(WED, hours(9), hours(4))]
    moved = [
        DateOverride(date(2026, 12, 2), OverrideKind.off),
        DateOverride(date(2026, 12, 2), OverrideKind.extra, hours(18), hours(8)),  # overnight extra
    ]
    assert on_call_until(NY, shifts, moved, utc(2026, 12, 2, 15)) is None  # 10:00 EST
    assert on_call_until(NY, shifts, moved, utc(2026, 12, 3, 4)) == utc(2026, 12, 3, 7)  # Wed 23:00
    extra = [DateOverride(date(2026, 12, 5), OverrideKind.extra, hours(10), hours(2))]  # Saturday
    assert on_call_until(NY, [], extra, utc(2026, 12, 5, 16)) == utc(2026, 12, 5, 17)
    assert on_call_until(NY, [], extra, utc(2026, 12, 12, 16)) is None


def test_weekly_pattern_validation() -> None:
    check_weekly_pattern([WeeklyShift(MON, hours(9), hours(8)), WeeklyShift(MON, hours(17), hours(2))])
    with pytest.raises(InvalidInput, match="overlap"):
        check_weekly_pattern([WeeklyShift(MON, hours(9), hours(8)), WeeklyShift(MON, hours(16), hours(2))])
    with pytest.raises(InvalidInput, match="overlap"):  # Sunday night runs into Monday morning
        check_weekly_pattern([WeeklyShift(SUN, hours(22), hours(8)), WeeklyShift(MON, hours(5), hours(2))])
    with pytest.raises(InvalidInput):
        check_weekly_pattern([WeeklyShift(MON, hours(9), 5)])
    with pytest.raises(InvalidInput):
        check_weekly_pattern([WeeklyShift(MON, hours(9), hours(25))])
    with pytest.raises(InvalidInput):
        check_weekly_pattern([WeeklyShift(d % 7, (d // 7) * 60, 30) for d in range(43)])
