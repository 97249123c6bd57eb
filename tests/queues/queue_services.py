"""What the queue tests share beyond pytest: whether a broker is up (skipped where one is
missing, failed instead under CI), and the Dramatiq broker of a run (its own module:
``conftest`` as a module name is tests/conftest.py's; benchmarks/queue_soak.py imports it)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

#: Dramatiq on Redis: a worker process that stopped heartbeating this long (ms) is dead, and
#: its unacknowledged messages go back to the queue. Dramatiq's default is a minute; a live
#: worker heartbeats at each fetch (at least every second while idle) and each ack.
DRAMATIQ_HEARTBEAT_TIMEOUT = 10_000


def _reachable(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except OSError:
        return False
    return True


def need(service: str, port: int) -> None:
    """Skip unless ``service`` answers on ``port`` (fail instead under CI)."""
    if _reachable(port):
        return
    from soketi_pytest import unavailable  # tests/servers: not on a worker's path

    unavailable(service, f"{service} is not running on 127.0.0.1:{port}")


def dramatiq_broker(url: str, namespace: str) -> Any:
    """The Dramatiq broker at ``url``: RabbitMQ (``amqp://``), or Redis with its keys under
    ``namespace`` (a run's own, so parallel runs never share a queue, a heartbeat or a dead
    worker's messages), whose dead workers' messages are requeued after
    :data:`DRAMATIQ_HEARTBEAT_TIMEOUT` (the check runs at every broker command, not at a
    thousandth of them as by default)."""
    if url.startswith("amqp"):
        from dramatiq.brokers.rabbitmq import RabbitmqBroker

        return RabbitmqBroker(url=url)
    from dramatiq.brokers.redis import MAINTENANCE_SCALE, RedisBroker

    return RedisBroker(
        url=url,
        namespace=namespace,
        heartbeat_timeout=DRAMATIQ_HEARTBEAT_TIMEOUT,
        maintenance_chance=MAINTENANCE_SCALE,
    )


def rabbitmqctl(*args: str) -> None:
    """Run ``rabbitmqctl`` with ``args`` (raises if it fails)."""
    subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, timeout=60)


@contextmanager
def refusing_vhost(uid: str, tag: str, writes: str) -> Iterator[tuple[str, str, str]]:
    """(vhost, worker user, password): a RabbitMQ vhost ``bq-<tag>-<uid>`` where guest may do
    anything, and a user of its own that may configure and read everything but write only
    what matches ``writes`` (the test's queues: what binding them needs), so the broker
    refuses the worker's publish of a retry. Both removed afterwards."""
    need("RabbitMQ", 5672)
    if shutil.which("rabbitmqctl") is None or os.geteuid() != 0:
        from soketi_pytest import unavailable

        unavailable("rabbitmqctl", "this test makes a RabbitMQ user: it needs rabbitmqctl, as root")
    name, user, password = f"bq-{tag}-{uid}", f"bq-{tag}-w-{uid}", f"pw-{uuid.uuid4().hex}"
    rabbitmqctl("add_vhost", name)
    try:
        rabbitmqctl("add_user", user, password)
        try:
            rabbitmqctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
            rabbitmqctl("set_permissions", "-p", name, user, ".*", writes, ".*")
            yield name, user, password
        finally:
            rabbitmqctl("delete_user", user)
    finally:
        rabbitmqctl("delete_vhost", name)


def wait_for_worker(
    what: str, check: Callable[[], bool], log: Path, seconds: float = 45.0, tail: int = 5000
) -> None:
    """Poll ``check`` until it holds; past ``seconds``, fail with ``what`` and the last
    ``tail`` characters of the worker's ``log``."""
    import pytest

    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"{what}; the worker's log:\n{log.read_text()[-tail:]}")
        time.sleep(0.2)


def worker_plugin_options(tag: str) -> dict[str, Any]:
    """What a refused-retry test's worker (review_s36b_worker, review_s36c_worker) gives its
    queue plugin, from the environment the test sets: the journal (``<tag>_JOURNAL``, its keys
    under ``<tag>_PREFIX``) and two quick retries."""
    from broadcasting.contrib._queue import RedisJournal

    journal = RedisJournal(os.environ[f"{tag}_JOURNAL"], prefix=os.environ[f"{tag}_PREFIX"])
    return {"journal": journal, "retries": 2, "backoff": 0.05, "max_backoff": 0.1}


def worker_config(tag: str) -> dict[str, Any]:
    """The Broadcast settings of that worker: the pusher driver's options in ``<tag>_DRIVER``."""
    return {"DRIVER": "pusher", "DRIVERS": {"pusher": json.loads(os.environ[f"{tag}_DRIVER"])}}


def refused_driver() -> dict[str, Any]:
    """Pusher driver options whose service refuses connections: certainly not delivered,
    retryable (a refused-retry test's publish fails the same way each time)."""
    from soketi_server import refused_port  # tests/servers: not on a worker's path

    return {
        "app_id": "1",
        "client": "key",
        "secret": "secret",
        "host": "127.0.0.1",
        "port": refused_port(),
        "retries": 0,
    }


def worker_env(
    tag: str,
    *,
    queue: str,
    broker: str,
    journal: str,
    prefix: str,
    driver: dict[str, Any],
    **more: str,
) -> dict[str, str]:
    """The environment that tells a refused-retry test's worker (``worker_plugin_options``,
    ``worker_config``) its queue, broker, journal, key prefix, driver options (as JSON) and
    ``more`` (``namespace=``), each named ``<tag>_<NAME>``."""
    env = {"QUEUE": queue, "BROKER": broker, "JOURNAL": journal, "PREFIX": prefix}
    env.update({name.upper(): value for name, value in more.items()}, DRIVER=json.dumps(driver))
    return {f"{tag}_{name}": value for name, value in env.items()}
