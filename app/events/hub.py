"""Delivery of live events to the console's open streams, in this process.

An event is published inside the transaction that causes it and reaches subscribers only once
that transaction commits:

* PostgreSQL: `pg_notify` in the transaction (PostgreSQL delivers notifications on commit and
  drops them on rollback); every worker LISTENs on its own connection, so an event raised in any
  worker reaches the worker that holds the volunteer's stream.
* SQLite (one process): the payload waits in the session's `info` and is handed to this process's
  hub by an `after_commit` hook; a rollback discards it.

Payloads are small JSON objects of public ids and states with an audience (`user:<public id>` or
`supervisors`); no name, number or message text ever enters them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import event as sa_event
from sqlalchemy.orm import Session, SessionTransaction

log = logging.getLogger("hotline.events")

CHANNEL = "hotline_events"
HUB_KEY = "hotline.live_hub"
PENDING_KEY = "hotline.live_pending"
SUPERVISORS = "supervisors"
# Internal: a session was revoked; streams of it end, and the event itself is never sent on.
SESSION_ENDED = "session_ended"
QUEUE_SIZE = 100


def user_audience(public_id: str) -> str:
    return f"user:{public_id}"


@dataclass(eq=False)
class Subscription:
    """One open stream: the audiences it hears and the events waiting to be written."""

    audiences: frozenset[str]
    queue: asyncio.Queue[dict[str, Any]] = field(default_factory=lambda: asyncio.Queue(QUEUE_SIZE))
    overflowed: bool = False


class LiveHub:
    """This process's subscribers. `dispatch` may be called from the event loop only."""

    def __init__(self) -> None:
        self._subscriptions: set[Subscription] = set()
        self.closing = asyncio.Event()
        self.listening = asyncio.Event()

    @contextlib.contextmanager
    def subscribe(self, audiences: frozenset[str]) -> Iterator[Subscription]:
        subscription = Subscription(audiences)
        self._subscriptions.add(subscription)
        try:
            yield subscription
        finally:
            self._subscriptions.discard(subscription)

    @property
    def subscribers(self) -> int:
        return len(self._subscriptions)

    def dispatch(self, payload: str) -> None:
        try:
            message = json.loads(payload)
            audience = message.pop("to")
        except (ValueError, KeyError, AttributeError):
            log.warning("live event dropped: malformed payload")
            return
        for subscription in list(self._subscriptions):
            if audience in subscription.audiences:
                self._offer(subscription, message)

    def resync_all(self) -> None:
        """Events may have been missed (a reconnect of the listener): every client reloads its lists."""
        for subscription in list(self._subscriptions):
            self._offer(subscription, {"type": "resync"})

    @staticmethod
    def _offer(subscription: Subscription, message: dict[str, Any]) -> None:
        try:
            subscription.queue.put_nowait(dict(message))
        except asyncio.QueueFull:
            # A client that does not read: it will be told to reload everything instead.
            subscription.overflowed = True

    def close(self) -> None:
        """The process is stopping: every stream ends (clients reconnect to another worker)."""
        self.closing.set()


async def listen_postgres(hub: LiveHub, conninfo: str, stop: asyncio.Event) -> None:
    """LISTEN on a dedicated autocommit connection; reconnects (and tells clients to resync)."""
    import psycopg

    first = True
    while not stop.is_set():
        try:
            async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
                await conn.execute(f"LISTEN {CHANNEL}")
                hub.listening.set()
                if not first:
                    hub.resync_all()
                first = False
                async for notification in conn.notifies():
                    hub.dispatch(notification.payload)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            hub.listening.clear()
            log.warning("live events listener lost its connection", extra={"error": type(exc).__name__})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=1.0)


@sa_event.listens_for(Session, "after_commit")
def _deliver_after_commit(session: Session) -> None:
    pending = session.info.pop(PENDING_KEY, None)
    hub = session.info.get(HUB_KEY)
    if not pending or hub is None:
        return
    for payload in pending:
        hub.dispatch(payload)


@sa_event.listens_for(Session, "after_transaction_end")
def _discard_after_rollback(session: Session, transaction: SessionTransaction) -> None:
    # After a commit the list was already delivered and removed; after a rollback it is dropped.
    if transaction.parent is None:
        session.info.pop(PENDING_KEY, None)
