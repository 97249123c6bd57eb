"""User code: send=, after_commit, the outbox and its relay, and the task queues, as
docs/background.md shows them.

Checked by mypy --strict (tests/typing/test_public_types.py), never run.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import ClassVar

from fastapi import FastAPI
from sqlalchemy import create_engine, text
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.orm import Session
from typing_extensions import assert_type

from broadcasting import Broadcast, BroadcastEvent, Receipt
from broadcasting.contrib.celery import CeleryQueue
from broadcasting.contrib.celery import RedisJournal as CeleryJournal
from broadcasting.contrib.dramatiq import DramatiqQueue
from broadcasting.contrib.dramatiq import RedisJournal as DramatiqJournal
from broadcasting.contrib.rq import RQQueue
from broadcasting.outbox import Backoff, Relay, RelayStats, RoundStats, Stats

broadcast = Broadcast({"DRIVER": "memory", "OUTBOX": {"url": "sqlite:///outbox.sqlite3"}})


@dataclass
class OrderShipped(BroadcastEvent):
    broadcast_send: ClassVar[str] = "after_commit"
    order_id: int

    def broadcast_on(self) -> str:
        return f"orders.{self.order_id}"


def sends() -> None:
    later = broadcast.channel("orders.42", {"status": "paid"}, "paid", send="after_commit")
    assert_type(later, Receipt)
    assert_type(later.pending, bool)
    assert_type(broadcast.channel(OrderShipped(42), send="now"), Receipt)
    engine = create_engine("sqlite://")
    with Session(engine) as session, session.begin():
        session.execute(text("INSERT INTO orders (item) VALUES ('mug')"))
        kept = broadcast.channel("orders", {"id": 1}, "created", send="outbox", transaction=session)
        assert_type(kept, Receipt)
    with engine.begin() as connection:
        assert_type(broadcast.channel("a", "b", send="outbox", transaction=connection), Receipt)


async def asends() -> None:
    engine = create_async_engine("sqlite+aiosqlite://")
    async with AsyncSession(engine) as session, session.begin():
        receipt = await broadcast.achannel(
            "orders", {"id": 1}, send="after_commit", transaction=session
        )
        assert_type(receipt, Receipt)


def relay_once() -> None:
    relay = Relay(broadcast, owner="relay-1", backoff=Backoff(base=0.5, cap=10.0))
    stats = relay.run_once()
    assert_type(stats, RoundStats)
    assert_type(stats.delivered, int)
    assert_type(stats.busy, bool)
    assert_type(stats.due, float | None)
    overall = relay.stats()
    assert_type(overall, RelayStats)
    assert_type(overall.store, Stats)
    assert_type(relay.stop(), None)
    assert_type(relay.run(), None)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    relay = Relay(broadcast)
    relaying = asyncio.create_task(relay.arun())
    assert_type(await relay.arun_once(), RoundStats)
    assert_type(await relay.astats(), RelayStats)
    async with broadcast:
        yield
        relay.stop()
        await relaying


def queues(app: object) -> None:  # a celery.Celery (celery ships no types)
    celery = CeleryQueue(
        app, "tasks:broadcast", journal=CeleryJournal("redis://127.0.0.1:6379/0"), queue="b"
    )
    dramatiq = DramatiqQueue(
        "tasks:broadcast",
        journal=DramatiqJournal("redis://127.0.0.1:6379/0"),
        queue_name="broadcasts",
    )
    rq = RQQueue(object(), "tasks:broadcast")
    queued = Broadcast("config/broadcast.py", plugins=[celery, dramatiq, rq])
    assert_type(queued.channel("orders", {"id": 42}, "shipped", send="celery"), Receipt)
