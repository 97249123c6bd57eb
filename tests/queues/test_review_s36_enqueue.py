"""A queue that cannot take the task: the caller gets a typed error, holding no password.

``broadcast.channel(..., send=<queue>)`` outside a transaction enqueues at once. A broker
that refused the connection (a wrong password, here against the real Redis and RabbitMQ)
escaped into the view as the queue library's own error (redis-py's ``AuthenticationError``,
kombu's ``OperationalError``, amqp's ``AccessRefused``), untyped, with the broker's password
in the locals of its frames (redis-py's ``auth_args``, kombu's ``establish_connection``,
Celery's ``conf``), where an error tracker records them. After a commit the same error was
logged with its traceback. It is now a :class:`PublishError` (the task may have been queued:
every channel ``unknown``) that names the message, the queue and what the broker said, with
no broker error chained; an error of another kind (a bug) stays chained, traceback and all.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable
from typing import Any

import pytest
from queue_services import need
from secret_scan import showing
from soketi_server import refused_port
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session

from broadcasting import Broadcast, PublishError
from broadcasting.contrib._queue import QueuePlugin, RedisJournal

PASSWORD = "pw-5e0c7d1a9b3f"
REDIS = f"redis://review_user:{PASSWORD}@127.0.0.1:6379/13"  # a user Redis does not know
AMQP = f"amqp://guest:{PASSWORD}@127.0.0.1:5672//"  # RabbitMQ's guest, a wrong password


def rq_plugin(url: str = REDIS) -> QueuePlugin:
    import redis
    import rq

    from broadcasting.contrib.rq import RQQueue

    return RQQueue(rq.Queue("bq-s36", connection=redis.Redis.from_url(url)), "m:b")


def celery_plugin(url: str) -> QueuePlugin:
    from celery import Celery

    from broadcasting.contrib.celery import CeleryQueue

    journal = RedisJournal("redis://127.0.0.1:6379/13")
    return CeleryQueue(Celery("s36", broker=url), "m:b", journal=journal)


def dramatiq_plugin(url: str) -> QueuePlugin:
    from dramatiq.brokers.rabbitmq import RabbitmqBroker
    from dramatiq.brokers.redis import RedisBroker

    from broadcasting.contrib.dramatiq import DramatiqQueue

    broker = RabbitmqBroker(url=url) if url.startswith("amqp") else RedisBroker(url=url)
    journal = RedisJournal("redis://127.0.0.1:6379/13")
    return DramatiqQueue("m:b", broker=broker, journal=journal)


PLUGINS: dict[str, Callable[[], QueuePlugin]] = {
    "rq": rq_plugin,
    "rq-unreachable": lambda: rq_plugin(REDIS.replace(":6379/", f":{refused_port()}/")),
    "celery-amqp": lambda: celery_plugin(AMQP),
    "celery-redis": lambda: celery_plugin(REDIS),
    "dramatiq-amqp": lambda: dramatiq_plugin(AMQP.rstrip("/") + "/%2F"),
    "dramatiq-redis": lambda: dramatiq_plugin(REDIS),
}


@pytest.fixture(params=list(PLUGINS))
def plugin(request: pytest.FixtureRequest) -> QueuePlugin:
    need("Redis", 6379)
    if "amqp" in request.param:
        need("RabbitMQ", 5672)
    return PLUGINS[request.param]()


def test_a_queue_that_refuses_the_task_is_a_publish_error_without_its_password(
    plugin: QueuePlugin,
) -> None:
    with (
        Broadcast({"DRIVER": "memory"}, plugins=[plugin]) as broadcast,
        pytest.raises(PublishError) as info,
    ):
        broadcast.channel(["orders", "audit"], {"id": 1}, "shipped", send=plugin.name)
    error = info.value
    assert error.unknown == ("orders", "audit") and error.maybe_delivered  # it may be queued
    assert error.kind == "unavailable" and error.driver == "memory"
    assert "could not be queued" in str(error) and plugin.name in str(error)
    assert showing(error, PASSWORD, skip=__file__) == []
    assert PASSWORD not in "".join(traceback.format_exception(error))
    assert error.__cause__ is None and error.__context__ is None


async def test_from_async_code_the_same(plugin: QueuePlugin) -> None:
    async with Broadcast({"DRIVER": "memory"}, plugins=[plugin]) as broadcast:
        with pytest.raises(PublishError) as info:
            await broadcast.achannel("orders", {"id": 2}, "shipped", send=plugin.name)
    assert info.value.unknown == ("orders",)
    assert showing(info.value, PASSWORD, skip=__file__) == []


def test_after_a_commit_it_is_logged_without_the_password(
    plugin: QueuePlugin, caplog: pytest.LogCaptureFixture
) -> None:
    engine = create_engine("sqlite://")
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE orders (id INTEGER)"))
    with (
        Broadcast({"DRIVER": "memory"}, plugins=[plugin]) as broadcast,
        Session(engine) as session,
        caplog.at_level(logging.ERROR, "broadcasting.queue"),
        session.begin(),
    ):
        session.execute(text("INSERT INTO orders VALUES (3)"))
        receipt = broadcast.channel(
            "orders", {"id": 3}, "saved", send=plugin.name, transaction=session
        )
    (record,) = [r for r in caplog.records if r.name == "broadcasting.queue"]
    assert f"message {receipt.message_id}" in record.getMessage()
    assert "could not be queued" in record.getMessage()
    assert PASSWORD not in caplog.text
    if record.exc_info is not None:
        assert record.exc_info[1] is not None
        assert showing(record.exc_info[1], PASSWORD, skip=__file__) == []


class Broken(QueuePlugin):
    """A queue plugin whose enqueue has a bug (not the broker's failure)."""

    name = "broken"

    def enqueue(self, payload: dict[str, Any]) -> None:
        raise KeyError("a bug in enqueue")


def test_a_bug_in_enqueue_stays_chained_with_its_traceback() -> None:
    plugin = Broken("m:b", journal=RedisJournal("redis://127.0.0.1:6379/13"))
    with (
        Broadcast({"DRIVER": "memory"}, plugins=[plugin]) as broadcast,
        pytest.raises(PublishError) as info,
    ):
        broadcast.channel("orders", {"id": 4}, "shipped", send="broken")
    assert isinstance(info.value.__cause__, KeyError)
    names = [frame.name for frame in traceback.extract_tb(info.value.__cause__.__traceback__)]
    assert "enqueue" in names
