"""Live events for the console: ids and states only, never content (DESIGN §3, §6)."""
