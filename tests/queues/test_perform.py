"""One queued publish, in this process: the producer's side and one task run by hand.

The worker's side (``perform``) runs against a real soketi, a real WebSocket subscriber and
a real Redis journal (db 13); the producer's side enqueues into a real RQ queue in Redis.
What a redelivered task does is set up by writing its journal entry as the earlier attempt
left it. (tests/queues/test_workers.py runs the same through real worker processes.)
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
import rq
from pusher_ws import PusherSubscriber
from soketi_server import SoketiServer, refused_port

from broadcasting import Broadcast, ConfigurationError, Receipt
from broadcasting.contrib import _queue
from broadcasting.contrib._queue import (
    DONE,
    FAILED,
    RETRY,
    SENDING,
    UNKNOWN,
    RedisJournal,
    TaskFailed,
    TaskRetry,
    entry,
    parse,
    perform,
)
from broadcasting.contrib.rq import RQQueue
from broadcasting.plugin import Retry, hookimpl

pytestmark = pytest.mark.soketi
RETRY_FAST = Retry(retries=3, backoff=0.01, max_backoff=0.02)


@pytest.fixture
def connect(soketi: SoketiServer) -> Iterator[Callable[..., Broadcast]]:
    """``connect(**options)``: a Broadcast to soketi with those pusher options (closed after)."""
    made: list[Broadcast] = []

    def make(**options: Any) -> Broadcast:
        config = {"DRIVER": "pusher", "DRIVERS": {"pusher": soketi.driver_options(**options)}}
        made.append(Broadcast(config))
        return made[-1]

    yield make
    for broadcast in made:
        broadcast.close()


def payload(broadcast: Broadcast, channels: list[str], data: object) -> dict[str, Any]:
    """A task's payload, as the producer would enqueue it."""
    broadcaster = broadcast.driver()
    message = broadcaster._message(channels, data, "queued", None)  # type: ignore[arg-type]
    assert not isinstance(message, Receipt)
    message.via = "rq"
    return _queue.encode(broadcaster, message)


async def arrived(sub: PusherSubscriber, broadcast: Broadcast, channel: str) -> list[str]:
    """What ``sub`` received on any channel so far (read up to a marker)."""
    events = await sub.until_marker(lambda marker: broadcast.achannel(channel, marker, "m"))
    return [event.data for event in events]


async def test_a_task_publishes_once_and_a_redelivered_one_does_not_again(
    connect: Callable[..., Broadcast],
    journal: RedisJournal,
    subscriber: PusherSubscriber,
    uid: str,
) -> None:
    broadcast = connect()
    channels = [f"q-{uid}-a", f"q-{uid}-b"]
    await subscriber.subscribe(*channels)
    job = payload(broadcast, channels, {"n": 1})
    receipt = perform(broadcast, job, via="rq", journal=journal, retry=RETRY_FAST)
    assert receipt is not None and receipt.message_id == job["id"] and receipt.via == "rq"
    assert parse(journal.read(job["id"]) or "") == (DONE, tuple(channels))
    assert perform(broadcast, job, via="rq", journal=journal) is None  # the redelivery
    assert await arrived(subscriber, broadcast, channels[0]) == ['{"n":1}', '{"n":1}']


async def test_a_task_whose_earlier_attempt_died_mid_publish_is_reported_unknown(
    connect: Callable[..., Broadcast],
    journal: RedisJournal,
    subscriber: PusherSubscriber,
    uid: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    broadcast = connect()
    channel = f"q-{uid}"
    await subscriber.subscribe(channel)
    job = payload(broadcast, [channel], {"n": 2})
    journal.put(job["id"], entry(SENDING, [channel]), 60)  # as a killed worker left it
    with caplog.at_level(logging.ERROR, "broadcasting.queue"), pytest.raises(TaskFailed) as caught:
        perform(broadcast, job, via="rq", journal=journal)
    assert (caught.value.outcome, caught.value.channels) == (UNKNOWN, (channel,))
    assert parse(journal.read(job["id"]) or "")[0] == UNKNOWN
    assert [r.levelname for r in caplog.records] == ["ERROR"]
    assert job["id"] in caplog.text and "not sent again" in caplog.text
    assert await arrived(subscriber, broadcast, channel) == []


async def test_with_at_least_once_an_unfinished_attempt_is_sent_again(
    connect: Callable[..., Broadcast],
    journal: RedisJournal,
    subscriber: PusherSubscriber,
    uid: str,
) -> None:
    broadcast = connect(at_least_once=True)
    channel = f"q-{uid}"
    await subscriber.subscribe(channel)
    job = payload(broadcast, [channel], {"n": 3})
    journal.put(job["id"], entry(SENDING, [channel]), 60)
    assert perform(broadcast, job, via="rq", journal=journal) is not None
    assert await arrived(subscriber, broadcast, channel) == ['{"n":3}']


async def test_a_service_outage_retries_then_sends_what_is_left_once(
    connect: Callable[..., Broadcast],
    journal: RedisJournal,
    subscriber: PusherSubscriber,
    uid: str,
) -> None:
    down = connect(port=refused_port(), retries=0)  # refused connects: certainly not sent
    up = connect()
    channel = f"q-{uid}"
    await subscriber.subscribe(channel)
    job = payload(down, [channel], "plain text")
    with pytest.raises(TaskRetry) as caught:
        perform(down, job, via="rq", journal=journal, retry=RETRY_FAST)
    assert 0 <= caught.value.delay <= RETRY_FAST.max_backoff
    assert journal.read(job["id"]) == entry(RETRY, [channel])
    assert perform(up, job, via="rq", journal=journal, attempt=1, retry=RETRY_FAST) is not None
    assert await arrived(subscriber, up, channel) == ["plain text"]


def test_the_last_attempt_of_a_retryable_failure_fails_for_good(
    connect: Callable[..., Broadcast], journal: RedisJournal, caplog: pytest.LogCaptureFixture
) -> None:
    down = connect(port=refused_port(), retries=0)
    job = payload(down, ["q-last"], {"n": 4})
    with caplog.at_level(logging.ERROR, "broadcasting.queue"), pytest.raises(TaskFailed) as caught:
        perform(down, job, via="rq", journal=journal, attempt=3, retry=RETRY_FAST)
    assert caught.value.outcome == FAILED
    assert "gave up after 4 attempts" in caplog.text and job["id"] in caplog.text


def test_refused_credentials_fail_at_once_without_a_retry(
    connect: Callable[..., Broadcast], journal: RedisJournal
) -> None:
    wrong = connect(secret="not-the-secret")
    job = payload(wrong, ["q-auth"], {"n": 5})
    with pytest.raises(TaskFailed) as caught:
        perform(wrong, job, via="rq", journal=journal, retry=RETRY_FAST)
    assert caught.value.outcome == FAILED
    assert parse(journal.read(job["id"]) or "")[0] == FAILED


async def test_without_its_journal_a_task_sends_nothing_and_retries(
    connect: Callable[..., Broadcast], subscriber: PusherSubscriber, uid: str
) -> None:
    broadcast = connect()
    channel = f"q-{uid}"
    await subscriber.subscribe(channel)
    nowhere = RedisJournal(f"redis://127.0.0.1:{refused_port()}/0")
    with pytest.raises(TaskRetry, match="journal is unavailable"):
        perform(broadcast, payload(broadcast, [channel], {"n": 6}), via="rq", journal=nowhere)
    assert await arrived(subscriber, broadcast, channel) == []


class JournalLostAfterUpdate(RedisJournal):
    """The real journal, whose connection breaks after the "sending" note (a fault injected
    at that exact moment: Redis cannot be made to fail there on cue)."""

    def put(self, message_id: str, entry: str, ttl: float) -> None:
        raise redis.ConnectionError("Connection closed by server.")


async def test_a_journal_lost_after_the_publish_leaves_it_unknown_to_a_redelivery(
    connect: Callable[..., Broadcast],
    journal: RedisJournal,
    subscriber: PusherSubscriber,
    uid: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    broadcast = connect()
    channel = f"q-{uid}"
    await subscriber.subscribe(channel)
    job = payload(broadcast, [channel], {"n": 7})
    breaking = JournalLostAfterUpdate(journal.client, prefix=journal.prefix)
    with caplog.at_level(logging.WARNING, "broadcasting.queue"):
        assert perform(broadcast, job, via="rq", journal=breaking) is not None  # delivered
    assert "could not note 'done'" in caplog.text and job["id"] in caplog.text
    with pytest.raises(TaskFailed) as caught:  # the redelivery: not sent again
        perform(broadcast, job, via="rq", journal=journal)
    assert caught.value.outcome == UNKNOWN
    assert await arrived(subscriber, broadcast, channel) == ['{"n":7}']


# -- the producer's side -------------------------------------------------------------------


class SqliteTransaction:
    """A transaction on a real sqlite3 connection, as a ``broadcasting_transaction`` adapter
    gives it (the real adapters are the SQLAlchemy/Django plugins; this stands in for them)."""

    dialect = "sqlite"
    paramstyle = "qmark"

    def __init__(self) -> None:
        self.connection = sqlite3.connect(":memory:", isolation_level="DEFERRED")
        self.connection.execute("CREATE TABLE orders (id INTEGER)")
        self.callbacks: list[Callable[[], object]] = []

    def active(self) -> bool:
        return self.connection.in_transaction

    def on_commit(self, callback: Callable[[], object]) -> None:
        self.callbacks.append(callback)

    def execute(self, sql: str, params: Any) -> object:
        return self.connection.execute(sql, params)

    def commit(self) -> None:
        self.connection.commit()
        callbacks, self.callbacks = self.callbacks, []
        for callback in callbacks:
            callback()

    def rollback(self) -> None:
        self.connection.rollback()
        self.callbacks = []


class Adapter:
    @hookimpl
    def broadcasting_transaction(self, broadcast: Broadcast, transaction: object) -> object:
        return transaction if isinstance(transaction, SqliteTransaction) else None


@pytest.fixture
def rq_queue(redis_url: str, uid: str) -> Iterator[rq.Queue]:
    queue = rq.Queue(f"bq-{uid}", connection=redis.Redis.from_url(redis_url))
    yield queue
    queue.delete(delete_jobs=True)


def test_inside_a_transaction_the_task_is_queued_on_commit_never_on_rollback(
    rq_queue: rq.Queue,
) -> None:
    plugin = RQQueue(rq_queue, "worker_app:broadcast")
    with Broadcast({"DRIVER": "memory", "SEND": "rq"}, plugins=[plugin, Adapter()]) as broadcast:
        kept, undone = SqliteTransaction(), SqliteTransaction()
        ids = []
        for transaction in (kept, undone):
            transaction.execute("INSERT INTO orders VALUES (?)", (1,))
            receipt = broadcast.channel("orders", {"id": 1}, "saved", transaction=transaction)
            assert receipt.pending and receipt.via == "rq"
            ids.append(receipt.message_id)
        assert rq_queue.count == 0  # nothing before the commit
        undone.rollback()
        kept.commit()
        assert rq_queue.job_ids == ids[:1]  # the committed one's job, whose id is the message's
        job = rq_queue.jobs[0]
        assert job.args[0]["text"] == '{"id":1}' and job.args[1:] == ("worker_app:broadcast", "rq")
        assert isinstance(plugin.journal(), RedisJournal)  # the queue's own Redis by default


async def test_a_commit_in_async_code_queues_the_task_from_a_thread(rq_queue: rq.Queue) -> None:
    plugin = RQQueue(rq_queue, "worker_app:broadcast")
    async with Broadcast({"DRIVER": "memory"}, plugins=[plugin, Adapter()]) as broadcast:
        transaction = SqliteTransaction()
        transaction.execute("INSERT INTO orders VALUES (?)", (2,))
        receipt = await broadcast.achannel(
            "orders", {"id": 2}, "saved", send="rq", transaction=transaction
        )
        transaction.commit()  # on this loop's thread: the enqueue goes to a thread
        assert rq_queue.count == 0
        for _ in range(200):
            if rq_queue.count:
                break
            await asyncio.sleep(0.01)
        assert rq_queue.job_ids == [receipt.message_id]


def test_a_committed_publish_that_cannot_be_queued_is_logged_not_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    closed = redis.Redis(port=refused_port(), retry=None, socket_connect_timeout=1)
    nowhere = rq.Queue("q", connection=closed)
    plugin = RQQueue(nowhere, "worker_app:broadcast")
    with Broadcast({"DRIVER": "memory"}, plugins=[plugin, Adapter()]) as broadcast:
        transaction = SqliteTransaction()
        transaction.execute("INSERT INTO orders VALUES (?)", (3,))
        receipt = broadcast.channel(
            "orders", {"id": 3}, "saved", send="rq", transaction=transaction
        )
        with caplog.at_level(logging.ERROR, "broadcasting.queue"):
            transaction.commit()  # the data is committed: the caller gets no exception
    assert [r.levelname for r in caplog.records] == ["ERROR"]
    assert f"message {receipt.message_id}" in caplog.text and "could not be queued" in caplog.text


async def test_from_async_code_the_task_is_queued_off_the_event_loop(rq_queue: rq.Queue) -> None:
    plugin = RQQueue(rq_queue, "worker_app:broadcast")
    async with Broadcast({"DRIVER": "memory"}, plugins=[plugin]) as broadcast:
        receipt = await broadcast.achannel("orders", {"id": 2}, "shipped", send="rq")
        assert receipt.pending and rq_queue.job_ids == [receipt.message_id]
        memory = broadcast.driver("memory").driver
        assert memory.messages == []  # type: ignore[attr-defined]  # queued, not sent


def test_celery_on_rabbitmq_needs_a_journal_before_anything_is_queued(
    amqp_url: str, redis_url: str
) -> None:
    from celery import Celery

    from broadcasting.contrib.celery import CeleryQueue

    plugin = CeleryQueue(Celery("t", broker=amqp_url), "worker_app:broadcast")
    with (
        Broadcast({"DRIVER": "memory"}, plugins=[plugin]) as broadcast,
        pytest.raises(ConfigurationError, match=r"journal=RedisJournal\(url\)"),
    ):
        broadcast.channel("orders", {"id": 3}, "shipped", send="celery")
    on_redis = CeleryQueue(Celery("t", broker=redis_url), "worker_app:broadcast", task_name="t2")
    assert isinstance(on_redis.journal(), RedisJournal)


def test_other_ways_of_sending_are_left_to_the_core(rq_queue: rq.Queue) -> None:
    with Broadcast({"DRIVER": "memory"}, plugins=[RQQueue(rq_queue, "m:b")]) as broadcast:
        receipt = broadcast.channel("orders", {"id": 4}, "shipped", send="after_commit")
        assert not receipt.pending and rq_queue.count == 0  # no transaction: sent at once


class TimeLimitExceeded(BaseException):
    """Stands for Dramatiq's TimeLimitExceeded (and its Shutdown): raised into the worker's
    thread while it runs the task, so in the middle of the publish."""


class Interrupting:
    @hookimpl(tryfirst=True)
    def broadcasting_publish(self, broadcast: Broadcast, driver: object, message: object) -> None:
        raise TimeLimitExceeded("the task ran out of time")


def test_a_task_interrupted_mid_publish_is_noted_and_reported_unknown(
    connect: Callable[..., Broadcast],
    journal: RedisJournal,
    uid: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Only Exception was caught: a BaseException raised in the publish (a worker's time
    limit, its shutdown) left the journal at "sending" with nothing logged, and the message
    went to the dead letters unreported. Now the journal says unknown, the message id is
    logged at ERROR, and the interruption goes on as it came."""
    broadcast = connect()
    broadcast.plugin_manager.register(Interrupting())
    job = payload(broadcast, [f"q-{uid}"], {"n": 3})
    with caplog.at_level(logging.ERROR, "broadcasting.queue"), pytest.raises(TimeLimitExceeded):
        perform(broadcast, job, via="rq", journal=journal)
    assert parse(journal.read(job["id"]) or "")[0] == UNKNOWN
    assert job["id"] in caplog.text and "interrupted by TimeLimitExceeded" in caplog.text
