"""The Dramatiq application of tests/queues/test_review_s36c_dramatiq.py's worker (``dramatiq
review_s36c_worker``), configured from the environment the test sets.

``S36C_BROKER`` is RabbitMQ (``amqp://``, with publisher confirms: without them a refused
publish raises nothing) or Redis (``redis://``, its keys under ``S36C_NAMESPACE``).
The test's broker user may consume the queue but not publish the retries, so the worker runs
the task and the broker refuses its retry.
"""

from __future__ import annotations

import os

import dramatiq
from dramatiq.middleware import CurrentMessage
from queue_services import worker_config, worker_plugin_options

from broadcasting import Broadcast
from broadcasting.contrib.dramatiq import DramatiqQueue

QUEUE = os.environ["S36C_QUEUE"]
BROKER = os.environ["S36C_BROKER"]

if BROKER.startswith("amqp"):
    from dramatiq.brokers.rabbitmq import RabbitmqBroker

    broker = RabbitmqBroker(url=BROKER, confirm_delivery=True)
else:
    from dramatiq.brokers.redis import RedisBroker

    broker = RedisBroker(url=BROKER, namespace=os.environ["S36C_NAMESPACE"])
broker.add_middleware(CurrentMessage())
dramatiq.set_broker(broker)
plugin = DramatiqQueue(
    lambda: broadcast, broker=broker, queue_name=QUEUE, **worker_plugin_options("S36C")
)
broadcast = Broadcast(worker_config("S36C"), plugins=[plugin])
