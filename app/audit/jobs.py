"""Background work of the access log: checkpoints every N entries or M seconds; verifications."""

from __future__ import annotations

import asyncio
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


@registry.register("audit.verify", timeout=3600)
async def verify(ctx: JobContext, payload: dict[str, Any]) -> None:
    """A verification requested from the console, recording progress as it streams the chain."""
    from sqlalchemy import select, update

    from app.audit.models import AuditVerification
    from app.audit.service import SYSTEM, record
    from app.audit.verify import verify_chain

    database = ctx.services["database"]
    keys = ctx.services["keys"]
    run_id = payload["run"]

    async def set_state(**values: Any) -> None:
        async with database.sessionmaker() as session, session.begin():
            await session.execute(
                update(AuditVerification).where(AuditVerification.public_id == run_id).values(**values)
            )

    await set_state(state="running", started_at=ctx.clock.now())

    latest: dict[str, int | None] = {"done": 0, "total": None}

    def progress(done: int, total: int | None) -> None:
        latest.update(done=done, total=total)

    async def verify_all() -> Any:
        async with database.engine.connect() as conn:
            return await verify_chain(conn, keys.material.checkpoint_verifier(), progress=progress)

    task = asyncio.create_task(verify_all())
    while not task.done():
        # Progress for the console, in its own small transactions while the chain streams.
        await asyncio.wait({task}, timeout=1.0)
        if not task.done():
            await set_state(entries_checked=latest["done"], entries_total=latest["total"])
    report = task.result()
    problems = [{"kind": p.kind, "seq": p.seq, "reason": p.reason} for p in report.problems[:1000]]
    run = await ctx.session.scalar(select(AuditVerification).where(AuditVerification.public_id == run_id))
    if run is not None:
        run.state = "ok" if report.ok else "invalid"
        run.entries_checked = report.entries
        run.entries_total = report.last_seq
        run.problems = problems
        run.finished_at = ctx.clock.now()
    record(
        ctx.session,
        ctx.clock,
        actor=SYSTEM,
        action="audit.verify",
        object_type="audit_verification",
        object_id=run_id,
        outcome="ok" if report.ok else "invalid",
        details={"entries": report.entries, "problems": len(report.problems)},
    )
