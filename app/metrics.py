"""`GET /metrics` (Prometheus text format, via prometheus-client). Counts and latencies only: no
number, name, message, SID or id of any person — labels are route templates, languages, channels,
outcomes and job kinds.

* Request latency by route template and method: this process's histogram (with several workers,
  scrape each, or read the per-route latency from the access log).
* Everything else is read from the database at scrape time, so every worker reports the same
  hotline-wide values: queue length and oldest wait by channel and language, volunteers on call,
  offers by outcome, contacts by outcome (overflowed, abandoned…), jobs backlog and dead letters.

Private in production: it answers only with `Authorization: Bearer <HOTLINE_METRICS_TOKEN>`
(compared in constant time; 401 otherwise), and 404 — as if absent — while no token is set.
Development keeps it open unless a token is set.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.jobs.models import Job
from app.routing.models import OPEN_TASK_STATES, Offer, Task
from app.settings import Settings
from app.volunteers.service import on_call_now

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 1.5, 2.0, 5.0, 15.0)


def scrape_access(settings: Settings, authorization: str | None) -> int | None:
    """None when this request may read the metrics, else the status to answer (401 or 404)."""
    expected = settings.metrics_token.get_secret_value() if settings.metrics_token else ""
    if not expected:
        return 404 if settings.is_production else None
    scheme, _, given = (authorization or "").partition(" ")
    if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), expected.encode()):
        return None
    return 401


class Snapshot(Collector):
    """Hotline-wide values read from the database just before each scrape."""

    def __init__(self) -> None:
        self.families: list[Metric] = []

    def collect(self) -> Iterable[Metric]:
        return list(self.families)

    async def refresh(self, session: AsyncSession, clock: Any) -> None:
        now = clock.now()
        queue = GaugeMetricFamily(
            "hotline_queue_length", "Contacts waiting for a volunteer", labels=["channel", "language"]
        )
        oldest = GaugeMetricFamily(
            "hotline_queue_oldest_wait_seconds",
            "How long the longest-waiting contact has waited",
            labels=["channel", "language"],
        )
        rows = await session.execute(
            select(Task.channel, Task.language, func.count(), func.min(Task.enqueued_at))
            .where(Task.state.in_([s.value for s in OPEN_TASK_STATES]))
            .group_by(Task.channel, Task.language)
        )
        for channel, language, count, first in rows:
            queue.add_metric([channel, language], float(count))
            oldest.add_metric([channel, language], max(0.0, (now - first).total_seconds()) if first else 0.0)
        on_call = await on_call_now(session, clock)
        volunteers = GaugeMetricFamily(
            "hotline_volunteers_on_call", "Volunteers on call now, by availability", labels=["state"]
        )
        states: dict[str, int] = {}
        for candidate in on_call:
            key = str(candidate.presence.state)
            states[key] = states.get(key, 0) + 1
        for state, count in sorted(states.items()):
            volunteers.add_metric([state], float(count))
        offers = CounterMetricFamily(
            "hotline_offers",
            "Offers made to volunteers, by channel and outcome",
            labels=["channel", "outcome"],
        )
        for channel, state, count in await session.execute(
            select(Offer.channel, Offer.state, func.count()).group_by(Offer.channel, Offer.state)
        ):
            offers.add_metric([channel, state], float(count))
        contacts = CounterMetricFamily(
            "hotline_contacts",
            "Contacts by channel and routing outcome (completed, abandoned, overflowed…); drills excluded",
            labels=["channel", "outcome"],
        )
        for channel, state, count in await session.execute(
            select(Task.channel, Task.state, func.count())
            .where(Task.drill.is_(False))
            .group_by(Task.channel, Task.state)
        ):
            contacts.add_metric([channel, state], float(count))
        jobs = GaugeMetricFamily(
            "hotline_jobs",
            "Jobs by kind and state (queued = backlog, dead = dead letters)",
            labels=["kind", "state"],
        )
        for kind, state, count in await session.execute(
            select(Job.kind, Job.state, func.count()).where(Job.state != "done").group_by(Job.kind, Job.state)
        ):
            jobs.add_metric([kind, state], float(count))
        scraped = GaugeMetricFamily("hotline_metrics_scraped_at_seconds", "When these values were read")
        scraped.add_metric([], time.time())
        self.families = [queue, oldest, volunteers, offers, contacts, jobs, scraped]


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.request_seconds = Histogram(
            "hotline_http_request_duration_seconds",
            "Request latency by route template (webhooks included)",
            ["route", "method"],
            buckets=BUCKETS,
            registry=self.registry,
        )
        self.snapshot = Snapshot()
        self.registry.register(self.snapshot)

    def observe(self, route: str, method: str, seconds: float) -> None:
        self.request_seconds.labels(route=route, method=method).observe(seconds)

    async def render(self, database: Any, clock: Any) -> tuple[bytes, str]:
        try:
            async with database.sessionmaker() as session:
                await self.snapshot.refresh(session, clock)
        except Exception:  # the database is down: still serve the process's own metrics
            self.snapshot.families = []
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
