"""What the queue tests share beyond pytest: whether a broker is up (skipped where one is
missing, failed instead under CI), and the Dramatiq broker of a run (its own module:
``conftest`` as a module name is tests/conftest.py's; benchmarks/queue_soak.py imports it)."""

from __future__ import annotations

import socket
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
