"""The routing engine: contacts become tasks, tasks are offered to on-call volunteers, atomically."""
