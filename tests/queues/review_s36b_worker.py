"""The Celery application of tests/queues/test_review_s36b_celery.py's worker (``celery -A
review_s36b_worker worker``), configured from the environment the test sets.

Its queue ``S36B_QUEUE`` is bound to an exchange of another name (``<queue>-x``), so that a
RabbitMQ user can be allowed to consume the queue but not to publish to the exchange: the
worker then runs its tasks, and RabbitMQ refuses the publish of a task's retry (a retry goes
to the exchange the task came through). Publisher confirms are on, as they must be for a
refused publish to raise at all.
"""

from __future__ import annotations

import os

from celery import Celery
from kombu import Exchange, Queue
from queue_services import worker_config, worker_plugin_options

from broadcasting import Broadcast
from broadcasting.contrib.celery import CeleryQueue

QUEUE = os.environ["S36B_QUEUE"]


app = Celery("review_s36b_worker", broker=os.environ["S36B_BROKER"])
app.conf.update(
    task_queues=[Queue(QUEUE, Exchange(f"{QUEUE}-x", "direct"), routing_key=QUEUE)],
    broker_transport_options={"confirm_publish": True},
    broker_connection_retry_on_startup=True,
    worker_enable_remote_control=False,  # its pidbox queue would need more permissions
    worker_prefetch_multiplier=1,
)
plugin = CeleryQueue(app, lambda: broadcast, queue=QUEUE, **worker_plugin_options("S36B"))
broadcast = Broadcast(worker_config("S36B"), plugins=[plugin])
