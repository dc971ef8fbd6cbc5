"""Database outage (issue 12, part 4) on a throwaway PostgreSQL cluster behind a loopback latency
proxy — never the shared server on 5432. With 5 s of latency, then with the database stopped:
voice webhooks answer overflow TwiML within 2 s, texts are spooled (200), the API answers a clear
503, `/readyz` reports unready. When the database returns, everything recovers within 10 s
without a restart and every spooled text is ingested exactly once."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from app.chats.models import ChatMessage
from app.db.engine import create_database
from tests.support.cli import clean_environment
from tests.support.pgcluster import ThrowawayCluster, throwaway_cluster_or_skip
from tests.support.tcpproxy import LatencyProxy
from tests.test_crash import Server, requests, send

pytestmark = pytest.mark.slow


@pytest.fixture
def cluster(backend: str) -> Iterator[ThrowawayCluster]:
    throwaway = throwaway_cluster_or_skip(backend)
    yield throwaway
    throwaway.destroy()


def timed(
    client: httpx.Client, server: Server, path: str, params: dict[str, str]
) -> tuple[str | None, float]:
    started = time.monotonic()
    body = send(client, server, path, params)
    return body, time.monotonic() - started


def api_status(client: httpx.Client, server: Server) -> tuple[int, str]:
    answer = client.post(
        f"{server.public_url}/api/v1/auth/login",
        json={"email": "nobody@example.org", "password": "x" * 16, "totp": "123456"},
        timeout=20,
    )
    code = (
        answer.json().get("error", {}).get("code", "")
        if answer.headers.get("content-type", "").startswith("application/json")
        else ""
    )
    return answer.status_code, code


def readyz(client: httpx.Client, server: Server) -> int:
    return client.get(f"{server.public_url}/readyz", timeout=10).status_code


async def stored_texts(url: str) -> dict[str, int]:
    database = create_database(url)
    try:
        async with database.sessionmaker() as session:
            rows = await session.execute(
                select(ChatMessage.sid_hash, func.count()).group_by(ChatMessage.sid_hash)
            )
            return {row[0]: int(row[1]) for row in rows}
    finally:
        await database.dispose()


def test_outage_and_latency_degrade_cleanly_and_recover(cluster: ThrowawayCluster, tmp_path: Path) -> None:
    upgrade = subprocess.run(
        [sys.executable, "-m", "app.cli", "db", "upgrade"],
        env=clean_environment({"HOTLINE_DATABASE_URL": cluster.url}),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert upgrade.returncode == 0, upgrade.stderr
    work = requests(40)
    calls = [item for item in work if "voice" in item[0]]
    texts = [item for item in work if "messaging" in item[0]]
    with LatencyProxy(cluster.port) as proxy:
        url = f"postgresql://postgres@127.0.0.1:{proxy.port}/postgres"
        server = Server(url, tmp_path, HOTLINE_API_DEADLINE_SECONDS="3")
        server.start()
        report: list[str] = []
        try:
            with httpx.Client() as client:
                assert readyz(client, server) == 200
                body, _ = timed(client, server, *calls[0])
                assert body and "/twilio/voice/language" in body  # the menu: healthy

                for phase in ("latency", "down"):
                    if phase == "latency":
                        proxy.latency = 5.0
                    else:
                        proxy.latency = 0.0
                        cluster.stop("immediate")
                    batch = 5 if phase == "latency" else 10
                    for path, params in calls[1 if phase == "latency" else 6 :][:batch]:
                        body, took = timed(client, server, path, params)
                        assert body is not None and took < 2.0, (phase, took)
                        assert "<Dial" in body and "/twilio/voice/language" not in body  # overflow
                    for path, params in texts[: 5 if phase == "latency" else 20][
                        -5 if phase == "latency" else -15 :
                    ]:
                        body, took = timed(client, server, path, params)
                        assert body is not None and took < 2.0, (phase, took)
                    started = time.monotonic()
                    assert readyz(client, server) == 503
                    status, code = api_status(client, server)
                    assert (status, code) == (503, "unavailable"), (phase, status, code)
                    took_api = time.monotonic() - started
                    report.append(
                        f"{phase}: overflow TwiML < 2 s, texts spooled, API 503 in {took_api:.1f} s"
                    )

                cluster.start()
                back = time.monotonic()
                while readyz(client, server) != 200:
                    assert time.monotonic() - back < 10, "not ready 10 s after the database returned"
                    time.sleep(0.2)
                recovered = time.monotonic() - back
                body, _ = timed(client, server, *calls[-1])
                assert body and "/twilio/voice/language" in body
                assert api_status(client, server)[0] == 401  # a real answer again: wrong credentials
                report.append(f"recovered in {recovered:.1f} s without a restart")
            sent = [params["MessageSid"] for _, params in texts[:20]]
            deadline = time.monotonic() + 30
            while True:
                stored = asyncio.run(stored_texts(cluster.url))
                hashes = [
                    str(server.material.keyed_hasher().hash("twilio.sid", sid.encode()).hex()) for sid in sent
                ]
                if all(stored.get(h) == 1 for h in hashes) or time.monotonic() > deadline:
                    break
                time.sleep(0.3)
            assert [stored.get(h) for h in hashes] == [1] * len(hashes), "a spooled text lost or doubled"
            report.append(f"{len(sent)} texts stored exactly once")
            print("\noutage test: " + "; ".join(report))
        finally:
            server.stop()
