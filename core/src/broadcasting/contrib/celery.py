"""Publishing as Celery tasks: ``send="celery"``
(docs/background.md#task-queues-celery-rq-and-dramatiq).

::

    app = Celery("shop", broker="amqp://guest:guest@127.0.0.1:5672//")
    queue = CeleryQueue(app, "shop.tasks:broadcast", journal=RedisJournal("redis://127.0.0.1/0"))
    broadcast = Broadcast("config/broadcast.py", plugins=[queue])

    broadcast.channel("orders", {"id": 42}, "shipped", send="celery")  # a pending receipt

The plugin registers one task (``broadcasting.publish``) on ``app``; a worker started with
``celery -A shop.tasks worker`` runs it: it publishes the message through the Broadcast that
``broadcast=`` names, with the same message id, and writes each attempt to the journal, so a
task redelivered after its worker died mid-publish is reported unknown instead of sent twice.
Celery is imported by the application, never by ``broadcasting``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from broadcasting.contrib._queue import Journal, QueuePlugin, RedisJournal, TaskFailed, TaskRetry

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from broadcasting._broadcast import Broadcast
    from broadcasting.contrib._queue import QueueOptions

__all__ = ["CeleryQueue", "Journal", "RedisJournal", "TaskFailed", "TaskRetry"]

#: The task's name unless ``task_name=`` says otherwise.
TASK_NAME = "broadcasting.publish"


class CeleryQueue(QueuePlugin):
    """A plugin that sends ``send="celery"`` publishes as tasks of the Celery ``app``.

    Args:
        app: the ``celery.Celery`` application (its broker: RabbitMQ, Redis...).
        broadcast: the worker's Broadcast: ``"package.module:attribute"``, or a callable
            that returns it (resolved on the worker's first task).
        task_name: the registered task's name (default ``"broadcasting.publish"``, with
            ``.<name>`` added for another ``name``); ``queue``: the queue it is sent to
            (default: Celery's routing).
        options: what every queue plugin takes (:class:`QueueOptions`): ``name`` (default
            ``"celery"``), ``journal`` (by default the broker's Redis if the broker, or else
            the result backend, is Redis; otherwise required), ``retries``, ``backoff``,
            ``max_backoff`` (retried with Celery's ``retry(countdown=...)``, after a random
            wait) and ``journal_ttl``.

    The task acknowledges its message late (``acks_late``, ``reject_on_worker_lost``): a
    worker that dies mid-task leaves it to be redelivered, and the journal decides.
    """

    name = "celery"

    def __init__(
        self,
        app: Any,
        broadcast: str | Callable[[], Broadcast],
        *,
        task_name: str | None = None,
        queue: str | None = None,
        **options: Unpack[QueueOptions],
    ) -> None:
        super().__init__(broadcast, **options)
        self.app = app
        self.queue = queue

        def publish(task: Any, payload: dict[str, Any]) -> None:
            try:
                self.run_task(payload, attempt=int(task.request.retries or 0))
            except TaskRetry as exc:
                raise task.retry(
                    countdown=exc.delay, exc=exc, max_retries=self.retry.retries
                ) from exc

        publish.__doc__ = "Publish one queued broadcasting message (broadcasting.contrib.celery)."
        #: The Celery task the workers run.
        self.task: Any = app.task(
            publish,
            name=task_name or _default_name(TASK_NAME, self.name, CeleryQueue.name),
            bind=True,
            acks_late=True,
            reject_on_worker_lost=True,
            max_retries=self.retry.retries,
        )

    def enqueue(self, payload: dict[str, Any]) -> None:
        """Send the task to the broker (blocking); its task id is the message id."""
        options: dict[str, Any] = {"task_id": payload["id"]}
        if self.queue is not None:
            options["queue"] = self.queue
        self.task.apply_async((payload,), **options)

    def default_journal(self) -> Journal:
        """The broker's Redis, or the result backend's, else a ConfigurationError."""
        conf = self.app.conf
        for url in (conf.broker_url, conf.result_backend):
            if isinstance(url, str) and url.startswith(("redis://", "rediss://", "unix://")):
                return RedisJournal(url)
        return super().default_journal()


def _default_name(base: str, name: str, default: str) -> str:
    return base if name == default else f"{base}.{name}"
