"""Crash test (issue 12): signed webhooks with unique SIDs pour in while the server is killed with
SIGKILL at random points and restarted; then everything is sent again, as Twilio would. Every
message Twilio got a 200 for is stored exactly once (directly, or through the outage spool), every
call whose menu was answered has its row, and no case is half-written. On PostgreSQL a variant
also crashes a throwaway cluster (`pg_ctl stop -m immediate`) in the middle of the storm.

Size: `HOTLINE_TEST_CRASH_REQUESTS` (default 300; thousands by hand), three kills per run.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from app.calls.models import Call
from app.cases.models import Case
from app.chats.models import ChatMessage, Conversation
from app.contacts.models import Contact
from app.db.engine import create_database
from crypto.keyfile import create_key_file
from telephony.signature import sign
from tests.support.cli import clean_environment
from tests.support.pgcluster import ThrowawayCluster, throwaway_cluster_or_skip

REQUESTS = int(os.environ.get("HOTLINE_TEST_CRASH_REQUESTS", "300"))
TOKEN = "f" * 32
ACCOUNT = "AC" + "1" * 32
HOTLINE = "+12125550199"

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """`hotline serve` as a killable process group, restarted on the same port."""

    def __init__(self, url: str, tmp: Path, **extra: str) -> None:
        self.port = free_port()
        self.public_url = f"http://127.0.0.1:{self.port}"
        self.key_file = tmp / "keys.json"
        self.material = create_key_file(self.key_file)
        self.tmp = tmp
        self.env = clean_environment(
            {
                "HOTLINE_DATABASE_URL": url,
                "HOTLINE_KEYRING_FILE": str(self.key_file),
                "HOTLINE_PUBLIC_URL": self.public_url,
                "TWILIO_ACCOUNT_SID": ACCOUNT,
                "TWILIO_AUTH_TOKEN": TOKEN,
                "HOTLINE_TWILIO_NUMBER": HOTLINE,
                "HOTLINE_OVERFLOW_NUMBER": "+12125550100",
                "HOTLINE_SPOOL_DIR": str(tmp / "spool"),
                "HOTLINE_JOBS_POLL_SECONDS": "0.2",
                "HOTLINE_LOG_LEVEL": "WARNING",
                **extra,
            }
        )
        self.process: subprocess.Popen[bytes] | None = None
        self.log = (tmp / "server.log").open("ab")

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "serve", "--port", str(self.port)],
            env=self.env,
            cwd=self.tmp,
            stdout=subprocess.DEVNULL,
            stderr=self.log,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.public_url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert self.process.poll() is None, "the server exited"
            time.sleep(0.1)
        raise AssertionError("the server did not come up")

    def kill(self) -> None:
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()
        self.log.close()


def requests(count: int) -> list[tuple[str, dict[str, str]]]:
    """Half text messages (from 20 numbers), half incoming calls, each with its own SID."""
    made = []
    for n in range(count):
        caller = f"+1202555{1100 + n % 20:04d}"
        if n % 2:
            sid = "SM" + uuid.uuid4().hex
            made.append(
                (
                    "/twilio/messaging/incoming",
                    {
                        "MessageSid": sid,
                        "SmsSid": sid,
                        "SmsMessageSid": sid,
                        "AccountSid": ACCOUNT,
                        "From": caller,
                        "To": HOTLINE,
                        "Body": f"message {n}",
                        "NumMedia": "0",
                        "NumSegments": "1",
                        "SmsStatus": "received",
                        "ApiVersion": "2010-04-01",
                    },
                )
            )
        else:
            sid = "CA" + uuid.uuid4().hex
            made.append(
                (
                    "/twilio/voice/incoming",
                    {
                        "CallSid": sid,
                        "AccountSid": ACCOUNT,
                        "From": caller,
                        "To": HOTLINE,
                        "CallStatus": "ringing",
                        "Direction": "inbound",
                        "ApiVersion": "2010-04-01",
                    },
                )
            )
    return made


def send(client: httpx.Client, server: Server, path: str, params: dict[str, str]) -> str | None:
    """The body Twilio got with its 200, or None (connection refused or reset: not acknowledged)."""
    try:
        answer = client.post(
            server.public_url + path,
            data=params,
            headers={"X-Twilio-Signature": sign(server.public_url + path, params, TOKEN)},
            timeout=15,
        )
    except httpx.TransportError:
        return None
    return answer.text if answer.status_code == 200 else None


def storm(server: Server, work: list[tuple[str, dict[str, str]]], crash: Any) -> dict[str, str]:
    """Send everything from 6 threads while `crash` runs in another; returns SID → acknowledged body."""
    acknowledged: dict[str, str] = {}
    lock = threading.Lock()
    chunks = [work[i::6] for i in range(6)]

    def sender(chunk: list[tuple[str, dict[str, str]]]) -> None:
        with httpx.Client() as client:
            for path, params in chunk:
                body = send(client, server, path, params)
                if body is None:
                    time.sleep(0.1)  # the server is down: Twilio's next request comes a bit later
                    continue
                with lock:
                    acknowledged[params.get("MessageSid") or params["CallSid"]] = body

    threads = [threading.Thread(target=sender, args=(chunk,)) for chunk in chunks]
    killer = threading.Thread(target=crash)
    for thread in [*threads, killer]:
        thread.start()
    for thread in [*threads, killer]:
        thread.join()
    return acknowledged


def sid_hash(server: Server, sid: str) -> str:
    return str(server.material.keyed_hasher().hash("twilio.sid", sid.encode()).hex())


async def check(
    url: str, server: Server, work: list[tuple[str, dict[str, str]]], acknowledged: dict[str, str]
) -> str:
    database = create_database(url)
    try:
        # Spooled messages are ingested by the jobs runner: wait until every text is in.
        texts = [params["MessageSid"] for path, params in work if "messaging" in path]
        for _ in range(300):
            async with database.sessionmaker() as session:
                stored = await session.scalar(select(func.count()).select_from(ChatMessage))
            if stored >= len(texts):
                break
            await asyncio.sleep(0.2)
        async with database.sessionmaker() as session:
            counts = dict(
                (
                    await session.execute(
                        select(ChatMessage.sid_hash, func.count()).group_by(ChatMessage.sid_hash)
                    )
                ).all()
            )
            calls = set(await session.scalars(select(Call.call_sid_hash)))
            for sid in texts:
                assert counts.get(sid_hash(server, sid)) == 1, (
                    f"message stored {counts.get(sid_hash(server, sid))} times"
                )
            menus = [
                params["CallSid"]
                for path, params in work
                if "voice" in path and "/twilio/voice/language" in acknowledged.get(params["CallSid"], "")
            ]
            assert all(sid_hash(server, sid) in calls for sid in menus), "an answered call has no row"
            # No half-written case: every conversation has its case, contact and messages.
            conversations = list(await session.scalars(select(Conversation)))
            for conversation in conversations:
                assert await session.get(Case, conversation.case_id) is not None
                assert await session.get(Contact, conversation.contact_id) is not None
            empty = await session.scalar(
                select(func.count())
                .select_from(Conversation)
                .where(~Conversation.id.in_(select(ChatMessage.conversation_id)))
            )
            assert empty == 0, "a conversation without its first message"
        return (
            f"{len(acknowledged)} acknowledged during the storm, {len(texts)} texts stored once, "
            f"{len(menus)} answered calls kept"
        )
    finally:
        await database.dispose()


@pytest.fixture
def crash_database(backend: str, fresh_database_url: str) -> Iterator[str]:
    yield fresh_database_url


def test_sigkill_loses_no_acknowledged_webhook(crash_database: str, tmp_path: Path) -> None:
    server = Server(crash_database, tmp_path)
    work = requests(REQUESTS)
    rng = random.Random(12)
    server.start()
    try:

        def crash() -> None:
            for _ in range(3):
                time.sleep(rng.uniform(1.0, 3.0))
                server.kill()
                time.sleep(0.3)
                server.start()

        acknowledged = storm(server, work, crash)
        assert acknowledged, "nothing was acknowledged at all"
        # Twilio sends again what it did not get an answer for (and we send everything again).
        with httpx.Client() as client:
            for path, params in work:
                assert send(client, server, path, params) is not None
        summary = asyncio.run(check(crash_database, server, work, acknowledged))
        print(f"\ncrash test: {REQUESTS} requests, 3 SIGKILLs: {summary}")
    finally:
        server.stop()


@pytest.fixture
def cluster(backend: str) -> Iterator[ThrowawayCluster]:
    throwaway = throwaway_cluster_or_skip(backend)
    yield throwaway
    throwaway.destroy()


def test_a_database_crash_mid_storm_loses_no_acknowledged_webhook(
    cluster: ThrowawayCluster, tmp_path: Path
) -> None:
    url = cluster.url
    upgrade = subprocess.run(
        [sys.executable, "-m", "app.cli", "db", "upgrade"],
        env=clean_environment({"HOTLINE_DATABASE_URL": url}),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert upgrade.returncode == 0, upgrade.stderr
    server = Server(url, tmp_path)
    work = requests(REQUESTS)
    server.start()
    try:

        def crash() -> None:
            time.sleep(1.0)
            cluster.stop("immediate")
            time.sleep(2.0)
            cluster.start()

        acknowledged = storm(server, work, crash)
        with httpx.Client() as client:
            for path, params in work:
                assert send(client, server, path, params) is not None
        summary = asyncio.run(check(url, server, work, acknowledged))
        print(f"\ndatabase crash test: {REQUESTS} requests, one immediate stop: {summary}")
    finally:
        server.stop()
