"""A publish that fails in a real worker: retried by the queue's own retry, then given up.

The worker's driver points at a closed port (connections refused: certainly not delivered,
retryable), or at soketi with a wrong secret (refused for good). The first is retried by
the queue (Celery's ``retry``, RQ's ``Retry`` run by its scheduler, Dramatiq's ``Retries``
on RabbitMQ and on Redis) until the plugin's ``retries`` are used up; the second fails at
once. Either way the journal ends ``failed``, the worker logs it at ERROR with the message
id, and the task ends where the queue keeps failures (RQ's failed job registry, Dramatiq's
dead letters).
"""

from __future__ import annotations

import asyncio
import time

import pytest
import queue_soak
from queue_services import need
from soketi_server import SoketiServer, refused_port

from broadcasting.contrib._queue import FAILED, parse

pytestmark = pytest.mark.soketi

RETRIES = 2


@pytest.mark.parametrize(
    ("kind", "failure"),
    [
        ("celery-amqp", "refused"),
        ("rq", "refused"),
        ("rq", "auth"),
        ("dramatiq", "refused"),
        ("dramatiq-redis", "refused"),
    ],
)
async def test_a_failed_publish_is_retried_as_it_allows_then_fails_the_task(
    soketi: SoketiServer, kind: str, failure: str
) -> None:
    need("Redis", 6379)
    if queue_soak.KINDS[kind][1].startswith("amqp"):
        need("RabbitMQ", 5672)
    wrong = {"port": refused_port()} if failure == "refused" else {"secret": "not-the-secret"}
    options = soketi.driver_options(retries=0, **wrong)
    retry = {"retries": RETRIES, "backoff": 0.05, "max_backoff": 0.1}
    setup = queue_soak.Setup(kind, options, retry=retry)
    broadcast, plugin = setup.producer()
    journal = setup.journal()
    try:
        with queue_soak.running(setup) as (worker,):
            receipt = await broadcast.achannel("orders", {"n": 1}, "shipped", send=plugin.name)
            setup.ids.append(receipt.message_id)
            deadline = time.monotonic() + 30
            while (found := journal.read(receipt.message_id)) is None or parse(found)[0] != FAILED:
                assert time.monotonic() < deadline, (found, worker.log()[-3000:])
                await asyncio.sleep(0.1)
            reported = f"message {receipt.message_id}, failed on 1 channel(s) orders"
            while reported not in (log := worker.log()):  # logged just after the journal
                assert time.monotonic() < deadline, log[-3000:]
                await asyncio.sleep(0.1)
            if kind == "rq":
                import rq
                from rq.registry import FailedJobRegistry

                job_queue = plugin.queue  # type: ignore[attr-defined]
                registry = FailedJobRegistry(queue=job_queue)
                while receipt.message_id not in registry.get_job_ids():
                    assert time.monotonic() < deadline
                    await asyncio.sleep(0.1)
                assert rq.job.Job.fetch(receipt.message_id, job_queue.connection).retries_left == 0
            if kind.startswith("dramatiq"):
                while _dead_letters(setup) != 1:
                    assert time.monotonic() < deadline
                    await asyncio.sleep(0.1)
    finally:
        await broadcast.aclose()
    if failure == "refused":  # retried by the queue, then given up
        assert f"gave up after {RETRIES + 1} attempts" in log, log[-3000:]
    else:  # refused credentials: no retry
        assert "gave up" not in log and "401" in log, log[-3000:]


def _dead_letters(setup: queue_soak.Setup) -> int:
    """How many messages Dramatiq dead-lettered on ``setup``'s queue (``<queue>.XQ``)."""
    if setup.broker.startswith("redis"):  # a sorted set, under the run's namespace
        import redis

        client = redis.Redis.from_url(setup.broker)
        try:
            return int(client.zcard(f"{setup.queue}:{setup.queue}.XQ"))
        finally:
            client.close()
    import kombu

    with kombu.Connection(queue_soak.AMQP_URL) as conn:
        declared = conn.default_channel.queue_declare(queue=f"{setup.queue}.XQ", passive=True)
        return int(declared.message_count)
