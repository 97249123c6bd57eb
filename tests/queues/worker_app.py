"""The application a queue worker of the tests runs (``celery -A worker_app``, ``dramatiq
worker_app``, and RQ jobs naming ``worker_app:broadcast``): a Broadcast that publishes to the
test's soketi, with the queue plugin, configured from the environment the harness sets
(benchmarks/queue_soak.py, ``worker_env``).

A message whose data has ``"crash": "before"`` (or ``"after"``) kills this worker process
with SIGKILL just before (or just after) its publish request: a worker dying mid-task, at the
two moments that matter. Only the first attempt reaches the publish: a redelivered task finds
its journal entry and does not publish again.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Generator
from typing import Any

from broadcasting import Broadcast
from broadcasting.contrib._queue import RedisJournal
from broadcasting.plugin import Driver, Message, Receipt, hookimpl

KIND = os.environ["BQ_KIND"]  # "celery", "rq" or "dramatiq"
BROKER = os.environ["BQ_BROKER"]
QUEUE = os.environ["BQ_QUEUE"]
RETRY: dict[str, Any] = json.loads(os.environ.get("BQ_RETRY", "{}"))
journal = RedisJournal(os.environ["BQ_JOURNAL"], prefix=os.environ["BQ_PREFIX"])


class Crash:
    """Kills this process around the publish of a message marked ``crash``."""

    @hookimpl(wrapper=True)
    def broadcasting_publish(
        self, broadcast: Broadcast, driver: Driver, message: Message
    ) -> Generator[None, Receipt, Receipt]:
        data = message.data
        crash = data.get("crash") if isinstance(data, dict) else None
        if crash == "before":
            os.kill(os.getpid(), signal.SIGKILL)
        receipt = yield
        if crash == "after":
            os.kill(os.getpid(), signal.SIGKILL)
        return receipt


config = {"DRIVER": "pusher", "DRIVERS": {"pusher": json.loads(os.environ["BQ_DRIVER"])}}
plugin: Any
if KIND == "celery":
    from celery import Celery

    from broadcasting.contrib.celery import CeleryQueue

    app = Celery("worker_app", broker=BROKER)
    app.conf.update(
        worker_prefetch_multiplier=1,
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
        # Redis: redeliver after 10 s; the run's keys (its unacked ones too) under its prefix
        broker_transport_options={"visibility_timeout": 10, "global_keyprefix": f"{QUEUE}:"},
    )
    plugin = CeleryQueue(app, lambda: broadcast, journal=journal, queue=QUEUE, **RETRY)
elif KIND == "rq":
    import redis
    import rq

    from broadcasting.contrib.rq import RQQueue

    plugin = RQQueue(
        rq.Queue(QUEUE, connection=redis.Redis.from_url(BROKER)),
        "worker_app:broadcast",
        journal=journal,
        **RETRY,
    )
elif KIND == "dramatiq":
    import dramatiq
    from dramatiq.middleware import CurrentMessage
    from queue_services import dramatiq_broker

    from broadcasting.contrib.dramatiq import DramatiqQueue

    broker = dramatiq_broker(BROKER, QUEUE)  # RabbitMQ, or Redis with the run's namespace
    broker.add_middleware(CurrentMessage())
    dramatiq.set_broker(broker)
    plugin = DramatiqQueue(lambda: broadcast, journal=journal, queue_name=QUEUE, **RETRY)
else:  # pragma: no cover - the harness sets it
    raise RuntimeError(f"BQ_KIND={KIND!r}")

broadcast = Broadcast(config, plugins=[plugin, Crash()])
