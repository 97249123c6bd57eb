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

import contextlib
import logging
import threading
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn

from broadcasting._errors import ConfigurationError
from broadcasting._fork import in_forked_child
from broadcasting.contrib._queue import Journal, QueuePlugin, RedisJournal, TaskFailed, TaskRetry

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from broadcasting._broadcast import Broadcast
    from broadcasting.contrib._queue import QueueOptions

__all__ = ["CeleryQueue", "Journal", "RedisJournal", "TaskFailed", "TaskRetry"]

log = logging.getLogger("broadcasting.queue")

#: The task's name unless ``task_name=`` says otherwise.
TASK_NAME = "broadcasting.publish"
#: The longest a worker waits before it puts back a task whose retry could not be queued.
REQUEUE_PAUSE = 10.0

# the task names CeleryQueues registered, per Celery app: one plugin per name and app
_names: weakref.WeakKeyDictionary[Any, set[str]] = weakref.WeakKeyDictionary()
_names_lock = threading.Lock()


@in_forked_child
def _forget_lock_in_child() -> None:
    """After fork: the lock may have been held by a thread of the parent, absent here."""
    global _names_lock
    _names_lock = threading.Lock()


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
    worker that dies mid-task leaves it to be redelivered, and the journal decides. A retry
    the broker does not take puts the task back on the queue (logged at ERROR). The task
    is ``app``'s alone; a second plugin with the same task name on ``app`` is refused.
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
        name = task_name or _default_name(TASK_NAME, self.name, CeleryQueue.name)
        _claim(app, name)

        def publish(task: Any, payload: dict[str, Any]) -> None:
            try:
                self.run_task(payload, attempt=int(task.request.retries or 0))
            except TaskRetry as exc:
                self._retry(task, exc)

        publish.__doc__ = "Publish one queued broadcasting message (broadcasting.contrib.celery)."
        #: The Celery task the workers run.
        self.task: Any = app.task(
            publish,
            name=name,
            shared=False,  # this app's task: not registered on every Celery app made later
            bind=True,
            acks_late=True,
            reject_on_worker_lost=True,
            max_retries=self.retry.retries,
        )

    def _retry(self, task: Any, exc: TaskRetry) -> NoReturn:
        """Ask Celery for the task's retry; if the broker does not take it, put the task back.

        ``task.retry()`` publishes the retry and raises ``Retry``; when the publish fails it
        raises ``Reject(requeue=False)``, which drops the running task's message: the journal
        says "retry", and nothing would send it. The message is not acknowledged yet
        (``acks_late``), so it goes back to the queue instead, after a pause (a broker that
        keeps refusing would have it run again at once)."""
        from celery.exceptions import Reject  # type: ignore[import-untyped]

        try:
            task.retry(countdown=exc.delay, exc=exc, max_retries=self.retry.retries)
        except Reject as rejected:
            if rejected.requeue:
                raise
            cause = rejected.reason
            why = f"{type(cause).__name__}: {cause}"
        else:  # pragma: no cover - retry() raises when it is not told otherwise
            raise exc
        pause = min(exc.delay, REQUEUE_PAUSE)
        log.error(
            "message %s: its retry could not be queued on %s (%s); the task goes back to the "
            "queue in %.1f s, to be run again",
            exc.message_id,
            self.name,
            why,
            pause,
        )
        with contextlib.suppress(Exception):  # Celery's soft time limit: back to the queue now
            time.sleep(pause)
        # raised out of the except clause, not chained: the broker client's frames hold the
        # broker's password (see QueuePlugin._put)
        raise Reject(f"message {exc.message_id}: its retry could not be queued ({why})", True)

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


def _claim(app: Any, name: str) -> None:
    """Note that a CeleryQueue registers the task ``name`` on ``app``; a ConfigurationError
    if one did already, or the app has a task of that name (``app.task()`` would return that
    task, and this plugin's publishes would run the other's)."""
    with _names_lock:
        names = _names.setdefault(app, set())
        taken = name in names or (app.finalized and name in app.tasks)
        if not taken:
            names.add(name)
    if taken:
        raise ConfigurationError(
            "config",
            "task_name",
            f"the task {name!r} is registered on this Celery app already (by another "
            "CeleryQueue, or a task of the application): make one CeleryQueue per app and "
            "name, once, beside the app; or give this one a name= (or task_name=) of its own",
        )
