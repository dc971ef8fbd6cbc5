"""Two server processes on PostgreSQL, many simultaneous calls, a pool of volunteers: nobody is
double-booked, nothing is lost, every call gets TwiML (DESIGN: claims atomic across workers).

Opt-in (several minutes on 2 cores): set HOTLINE_TEST_SURGE_CALLS (e.g. 200) and
HOTLINE_TEST_SURGE_VOLUNTEERS (e.g. 20). 20 calls / 5 volunteers passes; at 200 / 20 one volunteer
leg was still waiting alone in its conference a minute after the last call ended (open finding of
the routing & voice issue), so CI does not run it yet.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import socket
import subprocess
import sys
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from app.access.broker import AccessBroker
from app.clock import SystemClock
from app.db.engine import create_database
from app.keys.store import KeyStore, Sealer
from app.volunteers.models import PresenceState
from app.volunteers.service import WeeklyShift, replace_shifts, set_availability
from crypto.keyfile import create_key_file
from telephony.fake import CallSimulator, FakeTwilio, NumberConfig, Party
from tests.support.cli import clean_environment
from tests.support.factories import SETUP, Services, make_user

HOTLINE = "+12125550199"
CALLS = int(os.environ.get("HOTLINE_TEST_SURGE_CALLS", "0"))
VOLUNTEERS = int(os.environ.get("HOTLINE_TEST_SURGE_VOLUNTEERS", "20"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
async def test_two_workers_many_calls_no_double_booking(
    backend: str, fresh_database_url: str, tmp_path: Path
) -> None:
    if backend != "postgresql":
        pytest.skip("two server processes need PostgreSQL")
    if CALLS <= 0:
        pytest.skip("opt-in surge: set HOTLINE_TEST_SURGE_CALLS")
    port = free_port()
    public_url = f"http://127.0.0.1:{port}"
    key_path = tmp_path / "keys.json"
    material = create_key_file(key_path)
    volunteer_numbers = [f"+1212555{1000 + n:04d}" for n in range(VOLUNTEERS)]
    caller_numbers = [f"+1202555{1000 + n:04d}"[:12] for n in range(CALLS)]

    database = create_database(fresh_database_url)
    clock = SystemClock()
    keys = KeyStore(material, str(key_path))
    sealer = Sealer(keys, clock)
    services = Services(database, clock, material, keys, sealer, AccessBroker(sealer, clock))
    async with database.sessionmaker() as session, session.begin():
        for number in volunteer_numbers:
            user = await make_user(session, services, languages="en,es", phone=number)
            user.phone_verified_at = datetime.now(UTC)
            await replace_shifts(
                session, clock, user, [WeeklyShift(d, 0, 1440) for d in range(7)], actor=SETUP
            )
            await set_availability(session, clock, user, state=PresenceState.available, actor=SETUP)
    await database.dispose()

    with FakeTwilio() as fake:
        fake.configure_number(NumberConfig.hotline(HOTLINE, public_url))
        env = clean_environment(
            {
                "HOTLINE_DATABASE_URL": fresh_database_url,
                "HOTLINE_KEYRING_FILE": str(key_path),
                "HOTLINE_PUBLIC_URL": public_url,
                "TWILIO_ACCOUNT_SID": fake.account_sid,
                "TWILIO_AUTH_TOKEN": fake.auth_token,
                "HOTLINE_TWILIO_API_URL": fake.base_url,
                "HOTLINE_TWILIO_NUMBER": HOTLINE,
                "HOTLINE_OVERFLOW_NUMBER": "+12125550100",
                "HOTLINE_JOBS_POLL_SECONDS": "0.1",
                "HOTLINE_LOG_LEVEL": "WARNING",
                "HOTLINE_MAX_QUEUE_SECONDS": "7200",
                "HOTLINE_LANGUAGE_MATCH_SECONDS": "3600",
            }
        )
        server = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "serve", "--port", str(port), "--workers", "2"],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(f"{public_url}/readyz", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert server.poll() is None, "server exited"
                assert time.monotonic() < deadline, "server did not come up"
                await asyncio.sleep(0.2)
            async with CallSimulator(fake, time_scale=0.2, max_steps=2000, webhook_timeout=15) as sim:
                for number in volunteer_numbers:
                    sim.add_party(
                        number, Party(answer_after=0.5, digits=("1",), talk_seconds=3, hold_patience=600)
                    )
                calls = await asyncio.gather(
                    *[
                        sim.call(
                            number,
                            HOTLINE,
                            Party(digits=("1", None), talk_seconds=3, hold_patience=600),
                            timeout=600,
                        )
                        for number in caller_numbers
                    ]
                )
                await sim.wait_idle(60)  # the last status callbacks, before the server stops
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
        # Every call got TwiML and ended; none crashed the simulator.
        assert not fake.events.of("sim.crash")
        assert all(call.final_status == "completed" for call in calls)
        alerts = [
            (e.data.get("code"), e.data.get("url"), str(e.data.get("detail"))[:200])
            for e in fake.events.of("alert")
        ]
        assert alerts == [], f"Twilio errors raised during calls: {alerts[:5]}"
        # Who was bridged, when: a volunteer leg's time in a conference with a caller.
        legs_by_volunteer: dict[str, list[str]] = defaultdict(list)
        for record in fake.store.calls.values():
            if record.to in volunteer_numbers:
                legs_by_volunteer[record.to].append(record.sid)
        # A volunteer leg is "bridged" once it is in the task's conference with the caller.
        bridged = {e.sid for e in fake.events.of("conference.join")}
        windows: dict[str, list[tuple[datetime, datetime]]] = defaultdict(list)
        for number, legs in legs_by_volunteer.items():
            for sid in legs:
                if sid not in bridged:
                    continue
                joined = [e.at for e in fake.events.of("conference.join", sid)]
                completed = [e.at for e in fake.events.of("call.completed", sid)]
                windows[number].append((min(joined), max(completed)))
        for number, spans in windows.items():
            spans.sort()
            for (_, end), (start, _) in itertools.pairwise(spans):
                assert start >= end, f"volunteer {number[-2:]} was in two calls at once"
        callers_bridged = {e.sid for e in fake.events.of("bridge") if e.sid in {c.sid for c in calls}}
        total_bridges = sum(len(spans) for spans in windows.values())
        print(
            f"\n{CALLS} calls, {VOLUNTEERS} volunteers: {total_bridges} bridged volunteer legs, "
            f"{len(callers_bridged)} callers bridged"
        )
        assert total_bridges >= int(CALLS * 0.9)
        assert total_bridges <= CALLS  # nobody bridged twice
        assert min(len(windows[n]) for n in volunteer_numbers) >= max(1, CALLS // VOLUNTEERS // 2)
