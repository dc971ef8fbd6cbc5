"""Background work of the access log: signing checkpoints every N entries or M seconds."""

from __future__ import annotations

from typing import Any

from app.audit.service import sign_checkpoint
from app.jobs.runner import JobContext, registry


@registry.register("audit.checkpoint", timeout=30)
async def checkpoint(ctx: JobContext, payload: dict[str, Any]) -> None:
    settings = ctx.services["settings"]
    await sign_checkpoint(
        ctx.session,
        ctx.clock,
        ctx.services["keys"].material.signer,
        every_entries=settings.audit_checkpoint_entries,
        every_seconds=settings.audit_checkpoint_seconds,
    )


# Looked at every minute at most; a checkpoint is only signed when it is due.
registry.every("audit.checkpoint", lambda services: min(60.0, services["settings"].audit_checkpoint_seconds))
