"""Volunteers: recurring on-call shifts in each volunteer's own time zone, date overrides, presence
(availability state and per-channel capacity) and the coded phone verification call."""
