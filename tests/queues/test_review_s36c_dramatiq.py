"""Dramatiq: a retry the broker refuses keeps the message instead of losing it.

A task whose publish failed for a reason that passes (the service down) raises TaskRetry;
Dramatiq's ``Retries`` middleware then queues the retry (``broker.enqueue``, with a delay)
from ``after_process_message``. When the broker refuses that publish, ``Broker.emit_after``
logs it at CRITICAL without the broadcasting message id, and the worker acknowledges the
message: the task was gone while its journal said "retry". Now the plugin's middleware sees
that no retry was queued, logs it at ERROR with the message id, and asks the broker again
before acknowledging, until it takes the retry; a worker that stops meanwhile leaves the
message unacknowledged, and the broker delivers it again.

The brokers are real: RabbitMQ with a vhost and a user of this test's own (``rabbitmqctl``,
removed afterwards) that may consume the queue but not publish (Dramatiq publishes through
the default exchange), and Redis with an ACL user of this test's own that may run Dramatiq's
commands on every key of the queue but the delay queue's messages, where a retry goes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import queue_soak
from queue_services import (
    need,
    rabbitmqctl,
    refused_driver,
    refusing_vhost,
    wait_for_worker,
    worker_env,
)

from broadcasting import Broadcast, ConfigurationError
from broadcasting.contrib._queue import FAILED, RETRY, RedisJournal, parse

HERE = Path(__file__).resolve().parent
REDIS_URL = queue_soak.REDIS_URL
DRAMATIQ = str(Path(sys.executable).parent / "dramatiq")


def _wait(what: str, check: Callable[[], bool], log: Path, seconds: float = 45.0) -> None:
    wait_for_worker(what, check, log, seconds, tail=5000)


def _worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    command = [DRAMATIQ, "review_s36c_worker", "-p", "1", "-t", "1", "-Q", env["S36C_QUEUE"]]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
        **env,
    }
    with log.open("ab") as out:
        return subprocess.Popen(
            command, cwd=HERE, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def _producer(broker: Any, queue: str, prefix: str, driver: dict[str, Any]) -> Broadcast:
    from broadcasting.contrib.dramatiq import DramatiqQueue

    journal = RedisJournal(REDIS_URL, prefix=prefix)
    plugin = DramatiqQueue(
        "review_s36c_worker:broadcast", broker=broker, journal=journal, queue_name=queue
    )
    return Broadcast({"DRIVER": "pusher", "DRIVERS": {"pusher": driver}}, plugins=[plugin])


def _forget(journal: RedisJournal, prefix: str) -> None:
    keys = list(journal.client.scan_iter(f"{prefix}*"))
    if keys:
        journal.client.delete(*keys)
    journal.client.close()


# --- RabbitMQ -----------------------------------------------------------------------------------


@pytest.fixture
def vhost(uid: str) -> Iterator[tuple[str, str, str]]:
    """(vhost, worker user, password): a RabbitMQ vhost where guest may do anything, and a
    user that may configure and read everything, and write only the test's queues (what
    binding them needs), not the default exchange Dramatiq publishes to."""
    with refusing_vhost(uid, "s36c", f"^bq-{uid}.*") as made:
        yield made


def test_rabbitmq_a_refused_retry_keeps_the_message_until_it_is_queued(
    vhost: tuple[str, str, str], uid: str, tmp_path: Path
) -> None:
    from dramatiq.brokers.rabbitmq import RabbitmqBroker

    need("Redis", 6379)
    name, user, password = vhost
    queue, prefix = f"bq-{uid}", f"bq-s36c:{uid}:"
    driver = refused_driver()
    log = tmp_path / "worker.log"
    env = worker_env(
        "S36C",
        queue=queue,
        broker=f"amqp://{user}:{password}@127.0.0.1:5672/{name}",
        journal=REDIS_URL,
        prefix=prefix,
        driver=driver,
    )
    broker = RabbitmqBroker(url=f"amqp://guest:guest@127.0.0.1:5672/{name}", confirm_delivery=True)
    broker.declare_queue(queue, ensure=True)  # by guest: the worker may not name a DLX
    journal = RedisJournal(REDIS_URL, prefix=prefix)
    broadcast = _producer(broker, queue, prefix, driver)
    worker = _worker(env, log)
    try:
        receipt = broadcast.channel("orders", {"id": 1}, "shipped", send="dramatiq")
        refused = f"message {receipt.message_id}: its retry could not be queued ("
        _wait("the refused retry was logged", lambda: refused in log.read_text(), log)
        assert "[ERROR] " + refused in log.read_text()
        assert parse(journal.read(receipt.message_id) or "")[0] == RETRY
        # kept: not acknowledged, so neither acked away nor dead-lettered
        time.sleep(1.5)
        assert broker.get_queue_message_counts(queue) == (0, 0, 0)  # ready: none
        assert _unacknowledged(name, queue) == 1
        # the worker stops while it holds it: the broker has the message again
        worker.send_signal(signal.SIGTERM)  # as a deploy does: to Dramatiq's main process
        worker.wait(30)
        assert "is left unacknowledged: the broker delivers it again" in log.read_text()
        _wait("the message is back on its queue", lambda: _ready(broker, queue) == 1, log)
        # the broker takes the worker's publishes again: the task runs, retries, gives up
        rabbitmqctl("set_permissions", "-p", name, user, ".*", ".*", ".*")
        worker = _worker(env, log)
        _wait(
            "the journal ended failed",
            lambda: parse(journal.read(receipt.message_id) or "x []")[0] == FAILED,
            log,
        )
        _wait("the failure was logged", lambda: "gave up after 3 attempts" in log.read_text(), log)
        _wait("it was dead-lettered", lambda: broker.get_queue_message_counts(queue)[2] == 1, log)
        text = log.read_text()
        assert "ACCESS_REFUSED" in text and password not in text
    finally:
        queue_soak.stop(worker)
        broadcast.close()
        broker.close()
        _forget(journal, prefix)


def _ready(broker: Any, queue: str) -> int:
    return int(broker.get_queue_message_counts(queue)[0])


def _unacknowledged(vhost: str, queue: str) -> int:
    found = subprocess.run(
        ["rabbitmqctl", "list_queues", "-q", "-p", vhost, "name", "messages_unacknowledged"],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    for line in found.splitlines():
        fields = line.split()
        if fields[:1] == [queue]:
            return int(fields[1])
    raise AssertionError(found)


# --- Redis --------------------------------------------------------------------------------------


def test_redis_a_refused_retry_keeps_the_message_until_it_is_queued(
    uid: str, tmp_path: Path
) -> None:
    import redis
    from dramatiq.brokers.redis import RedisBroker

    need("Redis", 6379)
    queue, prefix, namespace = f"bq-{uid}", f"bq-s36c:{uid}:", f"bq-s36c-ns-{uid}"
    user, password = f"bq-s36c-w-{uid}", f"pw-{uuid.uuid4().hex}"
    admin = redis.Redis.from_url(REDIS_URL)
    keys = [namespace, f"{namespace}:__heartbeats__", f"{namespace}:__acks__.*"]
    keys += [f"{namespace}:{queue}{end}" for end in ("", ".msgs", ".XQ", ".XQ.msgs", ".DQ")]
    # everything Dramatiq's worker does but write a delayed message: its retry
    admin.acl_setuser(user, enabled=True, passwords=[f"+{password}"], keys=keys, commands=["+@all"])
    driver = refused_driver()
    log = tmp_path / "worker.log"
    env = worker_env(
        "S36C",
        queue=queue,
        broker=f"redis://{user}:{password}@127.0.0.1:6379/13",
        journal=REDIS_URL,
        prefix=prefix,
        driver=driver,
        namespace=namespace,
    )
    broker = RedisBroker(url=REDIS_URL, namespace=namespace)
    journal = RedisJournal(REDIS_URL, prefix=prefix)
    broadcast = _producer(broker, queue, prefix, driver)
    worker = _worker(env, log)
    try:
        receipt = broadcast.channel("orders", {"id": 1}, "shipped", send="dramatiq")
        refused = f"message {receipt.message_id}: its retry could not be queued ("
        _wait("the refused retry was logged", lambda: refused in log.read_text(), log)
        assert "can't access at least one of the keys" in log.read_text()
        assert parse(journal.read(receipt.message_id) or "")[0] == RETRY
        time.sleep(1.5)  # kept: still the worker's, unacknowledged
        held = admin.keys(f"{namespace}:__acks__.*.{queue}")
        assert len(held) == 1 and admin.scard(held[0]) == 1
        assert admin.hlen(f"{namespace}:{queue}.msgs") == 1
        # the broker takes the retry: queued by the same worker, which then acknowledges
        admin.acl_setuser(user, enabled=True, keys=[f"{namespace}:{queue}.DQ.msgs"])
        _wait(
            "the journal ended failed",
            lambda: parse(journal.read(receipt.message_id) or "x []")[0] == FAILED,
            log,
        )
        _wait("the failure was logged", lambda: "gave up after 3 attempts" in log.read_text(), log)
        assert f"message {receipt.message_id}: its retry was queued after" in log.read_text()
        assert password not in log.read_text()
    finally:
        queue_soak.stop(worker)
        broadcast.close()
        admin.acl_deluser(user)
        left = list(admin.scan_iter(f"{namespace}*"))
        if left:
            admin.delete(*left)
        admin.close()
        broker.close()
        _forget(journal, prefix)


# --- the middleware -----------------------------------------------------------------------------


def test_the_middleware_is_added_once_before_retries() -> None:
    from dramatiq.brokers.stub import StubBroker
    from dramatiq.middleware import Retries

    from broadcasting.contrib._dramatiq import HoldRefusedRetry
    from broadcasting.contrib.dramatiq import DramatiqQueue

    broker = StubBroker()
    DramatiqQueue("m:b", broker=broker, journal=object())  # type: ignore[arg-type]
    DramatiqQueue("m:b", broker=broker, journal=object(), name="dramatiq-2")  # type: ignore[arg-type]
    kinds = [type(each) for each in broker.middleware]
    assert kinds.count(HoldRefusedRetry) == 1
    assert kinds.index(HoldRefusedRetry) == kinds.index(Retries) - 1  # runs after it


def test_a_broker_without_retries_is_refused() -> None:
    """Without Retries, Dramatiq acknowledges a message whose actor raised: lost."""
    from dramatiq.brokers.stub import StubBroker
    from dramatiq.middleware import AgeLimit

    from broadcasting.contrib.dramatiq import DramatiqQueue

    with pytest.raises(ConfigurationError, match="no Retries middleware") as info:
        DramatiqQueue("m:b", broker=StubBroker(middleware=[AgeLimit()]), journal=object())  # type: ignore[arg-type]
    assert info.value.key == "broker"


def test_a_worker_that_stops_does_not_wait_for_the_pause() -> None:
    from broadcasting.contrib._dramatiq import HoldRefusedRetry

    hold = HoldRefusedRetry()
    started = time.monotonic()
    assert hold._wait(0.3) is True
    hold.before_worker_shutdown(None, None)
    assert hold._wait(60) is False
    assert time.monotonic() - started < 2
    hold.before_worker_boot(None, None)  # a worker started again on the same broker
    assert hold.stopping is False
