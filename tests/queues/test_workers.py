"""Real brokers, real worker processes, a real WebSocket subscriber: the short queue soak.

For each kind (Celery, and Dramatiq, each on RabbitMQ and on Redis; RQ) the code of
``benchmarks/queue_soak.py`` (the long run: ``python benchmarks/queue_soak.py``) starts a
worker of ``tests/queues/worker_app.py``, publishes with ``send=<queue>`` to soketi, and a
subscriber counts what arrives. A few messages kill the worker process that runs them with
SIGKILL, just before or just after their publish request: the broker redelivers them, the
journal says an attempt started and did not finish, and they are reported unknown instead
of being sent again. Every other message arrives exactly once; none arrives twice.

The brokers redeliver a dead worker's task each in its own way: RabbitMQ when the worker's
connection closes; Celery on Redis after the transport's ``visibility_timeout`` (10 s here);
Dramatiq on Redis once the dead process has not heartbeated for 10 s (its keys live under a
namespace of the run's own, so parallel runs never requeue each other's tasks); RQ when the
work horse dies.
"""

from __future__ import annotations

import pytest
import queue_soak
from queue_services import need
from soketi_server import SoketiServer

pytestmark = pytest.mark.soketi

COUNT = 40
CRASHES = 2  # one killed before its request, one after


@pytest.mark.parametrize("kind", list(queue_soak.KINDS))
async def test_every_publish_arrives_once_or_is_reported_unknown(
    soketi: SoketiServer, kind: str
) -> None:
    need("Redis", 6379)
    if queue_soak.KINDS[kind][1].startswith("amqp"):
        need("RabbitMQ", 5672)
    workers = 2 if kind == "rq" else 1  # RQ forks a work horse per job: two share the load
    result = await queue_soak.soak(
        soketi, kind, COUNT, crashes=CRASHES, seed=7, workers=workers, timeout=60
    )
    print(queue_soak.table([result]))  # shown with -s, or when the test fails
    assert result.broken == [], "\n".join(result.broken[:20])
    crashed = len(result.crashed)
    assert crashed == CRASHES
    # the crashed ones are unknown; with Dramatiq so may be the other messages in flight when
    # a process died (its other thread's), or was stopped with it: its main process stops
    # the other worker process when one dies (2 processes x 2 threads)
    extra = 3 * crashed if kind.startswith("dramatiq") else 0
    assert crashed <= result.outcomes["unknown"] <= crashed + extra, result.outcomes
    assert result.outcomes["done"] + result.outcomes["unknown"] == COUNT
    # killed before its request: never arrived; killed after it: arrived, and only once
    for n, how in result.crashed.items():
        times = [v for k, v in result.arrivals.items() if k.split(":")[0] == str(n)]
        assert times == ([1] * len(times) if how == "after" else []), (n, how, times)
        assert times or how == "before"


def test_the_checks_catch_what_would_break_a_promise() -> None:
    check = queue_soak.check
    assert check("done", 1, None) is None
    assert check("unknown", 0, "before") is None and check("unknown", 1, "after") is None
    assert check("done", 2, None) == "journal says delivered, arrived 2 times"
    assert check("done", 0, None) is not None
    assert check("unknown", 2, None) is not None
    assert check("failed", 0, None) is not None
    assert check("pending", 0, "before") is not None
