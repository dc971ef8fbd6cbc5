"""Retention on the jobs runner: every hour, crypto-shred what the policy says is due."""

from __future__ import annotations

import logging
from typing import Any

from app.jobs.runner import JobContext, registry
from app.reports.service import purge_dialogues
from app.retention import service

log = logging.getLogger("hotline.retention")


@registry.register("retention.purge", timeout=600)
async def purge(ctx: JobContext, payload: dict[str, Any]) -> None:
    """Each subject is shredded in its own transaction, so a purge cut short loses nothing: the
    next run finds what is still due."""
    policy = service.Policy.from_settings(ctx.services["settings"])
    # Report dialogues nobody finished (a keyed hash of a number, kept minutes): gone too.
    async with ctx.services["database"].sessionmaker() as session, session.begin():
        await purge_dialogues(session, ctx.clock)
        # Erasure requests nobody approved within a month: cancelled, their numbers shredded.
        await service.expire_erasure_requests(session, ctx.clock)
    shredded = await service.purge(ctx.services["database"], ctx.clock, policy)
    if shredded:
        log.warning("retention purge", extra={"shredded": sum(shredded.values())})


registry.every("retention.purge", lambda services: 3600.0)
