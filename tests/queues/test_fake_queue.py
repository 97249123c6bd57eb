"""Under the test fake, a publish sent through a queue (``send="rq"``) is recorded like an
outbox one, when its transaction commits and never if it rolls back, and is never enqueued:
the fake answers for the queue as it does for the driver (docs/testing.md). The queue is a
real RQ queue on Redis, so a task that got through would be counted there."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
import redis
import rq
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session

from broadcasting import Broadcast, InputError
from broadcasting.contrib.rq import RQQueue
from broadcasting.testing import BroadcastFake, fake


@pytest.fixture
def rq_queue(redis_url: str, uid: str) -> Iterator[rq.Queue]:
    queue = rq.Queue(f"bq-fake-{uid}", connection=redis.Redis.from_url(redis_url))
    yield queue
    queue.delete(delete_jobs=True)


@pytest.fixture
def broadcast(rq_queue: rq.Queue) -> Iterator[Broadcast]:
    plugin = RQQueue(rq_queue, "worker_app:broadcast")
    with Broadcast({"DRIVER": "memory"}, plugins=[plugin]) as made:
        yield made


@pytest.fixture
def recorded() -> Iterator[BroadcastFake]:
    with fake() as recorded:
        yield recorded


def test_a_queued_publish_is_recorded_on_commit_and_never_enqueued(
    broadcast: Broadcast, rq_queue: rq.Queue, recorded: BroadcastFake, tmp_path: Path
) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'app.sqlite3'}")
    try:
        with Session(engine) as session:
            session.execute(text("SELECT 1"))
            receipt = broadcast.channel(
                "orders", {"id": 1}, "shipped", send="rq", transaction=session
            )
            assert receipt.pending and receipt.via == "rq"
            recorded.assert_nothing_sent()
            session.commit()
        with Session(engine) as session:
            session.execute(text("SELECT 1"))
            broadcast.channel("orders", {"id": 2}, "dropped", send="rq", transaction=session)
            session.rollback()
    finally:
        engine.dispose()
    [sent] = recorded.assert_sent("shipped", "orders", {"id": 1}, times=1, via="rq")
    assert sent.message_id == receipt.message_id
    recorded.assert_not_sent("dropped")
    assert rq_queue.count == 0


def test_outside_a_transaction_it_is_recorded_at_once(
    broadcast: Broadcast, rq_queue: rq.Queue, recorded: BroadcastFake
) -> None:
    receipt = broadcast.channel("orders", {"id": 3}, "shipped", send="rq")
    assert receipt.pending and receipt.via == "rq"
    recorded.assert_sent("shipped", times=1, via="rq")
    assert rq_queue.count == 0


def test_without_the_fake_the_same_publish_is_enqueued(
    broadcast: Broadcast, rq_queue: rq.Queue
) -> None:
    """The control: what the fake keeps from the queue otherwise gets there."""
    broadcast.channel("orders", {"id": 4}, "shipped", send="rq")
    assert rq_queue.count == 1


def test_a_way_no_plugin_sends_is_still_refused(
    broadcast: Broadcast, recorded: BroadcastFake
) -> None:
    with pytest.raises(InputError, match="no installed plugin sends that way"):
        broadcast.channel("orders", {"id": 5}, "shipped", send="celery")
    recorded.assert_nothing_sent()


def test_a_session_not_begun_records_at_once_as_the_queue_enqueues_at_once(
    broadcast: Broadcast, rq_queue: rq.Queue, recorded: BroadcastFake, tmp_path: Path
) -> None:
    """Unlike an outbox row, which begins the session's transaction, a queued publish on a
    session with no transaction yet is enqueued at once: the fake records it at once."""
    engine = create_engine(f"sqlite:///{tmp_path / 'app.sqlite3'}")
    try:
        with Session(engine) as session:
            broadcast.channel("orders", {"id": 6}, "shipped", send="rq", transaction=session)
            recorded.assert_sent("shipped", times=1, via="rq")
            session.rollback()
    finally:
        engine.dispose()
    recorded.assert_sent("shipped", times=1, via="rq")


def test_a_transaction_that_cannot_say_when_it_commits_is_refused_as_by_the_queue(
    broadcast: Broadcast, recorded: BroadcastFake, tmp_path: Path
) -> None:
    import sqlite3

    connection = sqlite3.connect(tmp_path / "app.sqlite3")
    try:
        connection.execute("CREATE TABLE t (x)")
        connection.execute("INSERT INTO t VALUES (1)")  # opens a transaction
        with pytest.raises(InputError, match="waits for the commit"):
            broadcast.channel("orders", {"id": 7}, "shipped", send="rq", transaction=connection)
    finally:
        connection.close()
    recorded.assert_nothing_sent()


def test_a_queue_without_its_journal_is_refused_under_the_fake_as_in_production(
    amqp_url: str, uid: str
) -> None:
    """Celery on RabbitMQ needs journal=: every send="celery" is refused at the call. The
    fake made the task's payload but never asked for the journal, so a test suite passed
    where production refused every call."""
    from celery import Celery

    from broadcasting import ConfigurationError
    from broadcasting.contrib.celery import CeleryQueue

    app = Celery(f"bq-fake-{uid}", broker=amqp_url)
    plugin = CeleryQueue(app, "worker_app:broadcast")
    with Broadcast({"DRIVER": "memory"}, plugins=[plugin]) as broadcast:
        with pytest.raises(ConfigurationError, match="needs journal=") as production:
            broadcast.channel("orders", {"id": 7}, "shipped", send="celery")
        with fake() as recorded:
            with pytest.raises(ConfigurationError) as faked:
                broadcast.channel("orders", {"id": 7}, "shipped", send="celery")
            recorded.assert_nothing_sent()
    assert str(faked.value) == str(production.value)


def test_a_plugin_that_cannot_be_hashed_does_not_break_the_fake_s_queue_lookup(
    rq_queue: rq.Queue, recorded: BroadcastFake
) -> None:
    """pluggy's get_plugins() makes a set; the fake looked for the queue plugin in it, so an
    unhashable plugin beside the queue (a SimpleNamespace, a dataclass with eq) raised
    TypeError from every queued publish under the fake."""
    other = SimpleNamespace()  # a plugin with no hooks, and no __hash__
    plugin = RQQueue(rq_queue, "worker_app:broadcast")
    with Broadcast({"DRIVER": "memory"}, plugins=[other, plugin]) as made:
        receipt = made.channel("orders", {"id": 9}, "shipped", send="rq")
        assert receipt.pending and receipt.via == "rq"
        with pytest.raises(InputError, match="no installed plugin sends that way"):
            made.channel("orders", {"id": 10}, "shipped", send="celery")
    recorded.assert_sent("shipped", "orders", {"id": 9}, times=1, via="rq")
    assert rq_queue.count == 0
