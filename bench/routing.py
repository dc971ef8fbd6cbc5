"""Benchmark: one routing decision with 1,000 volunteers on call vs with 10, side by side.

    python bench/routing.py [--volunteers 1000] [--decisions 200] [--database-url URL]

Builds N volunteers on call around the clock (half speak Spanish), all available, then times
`routing.route` for a Spanish call task: who is on call now (one query), free seats, language
match, longest idle, the conditional claim and the offer row — each decision in its own
transaction, rolled back so every decision sees the same state. The same with 10 volunteers is the
baseline: the ratio is what the size of the roster costs. Medians of the per-decision times.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.accounts.models import UserStatus
from app.accounts.service import create_user
from app.audit.service import Actor
from app.clock import SystemClock
from app.db.engine import create_database
from app.db.migrate import upgrade
from app.keys.store import KeyStore, Sealer
from app.routing import service as routing
from app.volunteers.models import PresenceState
from app.volunteers.service import WeeklyShift, replace_shifts, set_availability
from crypto.keyfile import create_key_file

SETUP = Actor("cli:bench")


async def roster(url: str, count: int, key_dir: Path) -> float:
    """Median milliseconds per routing decision with `count` volunteers on call."""
    database = create_database(url)
    await upgrade(database)
    material = create_key_file(key_dir / f"keys-{count}.json")
    clock = SystemClock()
    sealer = Sealer(KeyStore(material), clock)
    async with database.sessionmaker() as session, session.begin():
        for n in range(count):
            user, _ = await create_user(
                session,
                sealer,
                clock,
                actor=SETUP,
                email=f"{uuid.uuid4().hex[:12]}@example.org",
                name="Volunteer",
                roles="volunteer",
                phone=f"+1212{5550000 + n:07d}",
                languages="es,en" if n % 2 else "en",
            )
            user.status = UserStatus.active
            user.phone_verified_at = clock.now()
            await replace_shifts(
                session, clock, user, [WeeklyShift(d, 0, 1440) for d in range(7)], actor=SETUP
            )
            await set_availability(session, clock, user, state=PresenceState.available, actor=SETUP)
            if n and n % 200 == 0:
                print(f"  {n:,} volunteers…", file=sys.stderr)
    times = routing.RoutingTimes()
    samples = []
    for _ in range(args.decisions):
        async with database.sessionmaker() as session:
            await session.begin()
            task = await routing.create_task(session, clock, times, channel="voice", language="es")
            started = time.perf_counter()
            offer = await routing.route(session, clock, times, task)
            samples.append((time.perf_counter() - started) * 1000)
            assert offer is not None, "nobody was offered the call"
            await session.rollback()
    await database.dispose()
    return statistics.median(samples)


async def main() -> None:
    key_dir = Path(tempfile.mkdtemp())
    results = {}
    for count in (10, args.volunteers):
        if args.database_url:
            url = args.database_url
            print("note: --database-url must name an EMPTY database per run size", file=sys.stderr)
        else:
            url = f"sqlite:///{key_dir}/routing-{count}.db"
        print(f"{count:,} volunteers on call…", file=sys.stderr)
        results[count] = await roster(url, count, key_dir)
    small, large = results[10], results[args.volunteers]
    print(f"routing decision, 10 volunteers:        {small:8.2f} ms (median of {args.decisions})")
    print(f"routing decision, {args.volunteers:,} volunteers: {large:8.2f} ms")
    print(f"ratio {args.volunteers:,} / 10: {large / small:.1f}x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--volunteers", type=int, default=1000)
    parser.add_argument("--decisions", type=int, default=200)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    asyncio.run(main())
