"""Scheduled key lifecycle on the jobs runner: rotate, rewrap, retire, destroy (`app/keys/lifecycle.py`)."""

from __future__ import annotations

import logging
import os
from typing import Any

from app.jobs.runner import JobContext, registry
from app.keys.lifecycle import LIFECYCLE_PERIOD_SECONDS, KeyFileBusy, run_key_lifecycle

log = logging.getLogger("hotline.keys")


@registry.register("keys.lifecycle", timeout=45)
async def key_lifecycle(ctx: JobContext, payload: dict[str, Any]) -> None:
    settings = ctx.services["settings"]
    if not os.path.exists(settings.keyring_file):  # noqa: ASYNC240 — one stat
        return  # nothing to rotate (a service started with keys given in memory)
    # Rewrapping stops after 20 s, well inside the job's lease; the next turn resumes it.
    try:
        report = await run_key_lifecycle(
            ctx.services["database"],
            ctx.services.get("keys"),
            settings.keyring_file,
            ctx.clock,
            rotate_days=settings.kek_rotate_days,
            backup_retention_days=settings.backup_retention_days,
            max_seconds=min(20.0, settings.jobs_lease_seconds / 3),
        )
    except KeyFileBusy:
        log.info("key lifecycle skipped: the key file is being changed by another process")
        return
    if report.rotated_to or report.retired or report.destroyed:
        log.info(
            "key lifecycle",
            extra={
                "rotated_to": report.rotated_to,
                "retired": len(report.retired),
                "destroyed": len(report.destroyed),
                "rewrap_pending": report.rewrap_pending,
            },
        )


registry.every("keys.lifecycle", lambda services: LIFECYCLE_PERIOD_SECONDS)
