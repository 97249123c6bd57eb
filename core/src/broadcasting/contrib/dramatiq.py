"""Publishing as Dramatiq messages: ``send="dramatiq"``
(docs/background.md#task-queues-celery-rq-and-dramatiq).

::

    broker = RabbitmqBroker(url="amqp://guest:guest@127.0.0.1:5672", confirm_delivery=True)
    dramatiq.set_broker(broker)
    queue = DramatiqQueue("shop.tasks:broadcast", journal=RedisJournal("redis://127.0.0.1/0"))
    broadcast = Broadcast("config/broadcast.py", plugins=[queue])

    broadcast.channel("orders", {"id": 42}, "shipped", send="dramatiq")  # a pending receipt

The plugin declares one actor (``broadcasting_publish``) on the broker; ``dramatiq
shop.tasks`` runs it. Dramatiq acknowledges a message after its actor ran, so a worker that
dies mid-publish leaves it to be redelivered, and the journal of attempts decides: reported
unknown, not sent twice. Dramatiq is imported by the application, never by ``broadcasting``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from broadcasting.contrib._queue import Journal, QueuePlugin, RedisJournal, TaskFailed, TaskRetry

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from broadcasting._broadcast import Broadcast
    from broadcasting.contrib._queue import QueueOptions

__all__ = ["DramatiqQueue", "Journal", "RedisJournal", "TaskFailed", "TaskRetry"]

log = logging.getLogger("broadcasting.queue")

#: The actor's name unless ``actor_name=`` says otherwise.
ACTOR_NAME = "broadcasting_publish"


class DramatiqQueue(QueuePlugin):
    """A plugin that sends ``send="dramatiq"`` publishes as messages of a Dramatiq actor.

    Args:
        broadcast: the worker's Broadcast: ``"package.module:attribute"``, or a callable
            that returns it (resolved on the worker's first message).
        broker: the Dramatiq broker (default: ``dramatiq.get_broker()``).
        actor_name, queue_name: the actor's name (default ``"broadcasting_publish"``, with
            ``_<name>`` added for another ``name``) and its queue.
        options: what every queue plugin takes (:class:`QueueOptions`): ``name`` (default
            ``"dramatiq"``), ``journal`` (by default the broker's Redis for a
            ``RedisBroker``, otherwise required), ``retries``, ``backoff``, ``max_backoff``
            (Dramatiq's ``Retries``, with its own exponential backoff between ``backoff`` and
            ``max_backoff`` seconds; any other failure is not retried: the message goes to
            the dead letters) and ``journal_ttl``.

    A retry the broker does not take keeps the message: the worker does not acknowledge it,
    and asks the broker again until it takes the retry (logged at ERROR with the message
    id); a worker that stops meanwhile leaves it to be delivered again. The broker needs
    Dramatiq's ``Retries`` middleware (a ConfigurationError otherwise).
    """

    name = "dramatiq"

    def __init__(
        self,
        broadcast: str | Callable[[], Broadcast],
        *,
        broker: Any = None,
        actor_name: str | None = None,
        queue_name: str = "default",
        **options: Unpack[QueueOptions],
    ) -> None:
        super().__init__(broadcast, **options)
        import dramatiq

        from broadcasting.contrib._dramatiq import guard

        self.broker = broker if broker is not None else dramatiq.get_broker()
        guard(self.broker)  # a retry the broker refuses keeps the message

        def publish(payload: dict[str, Any]) -> None:
            self.run_task(payload, attempt=_attempt())

        publish.__doc__ = "Publish one queued broadcasting message (broadcasting.contrib.dramatiq)."
        #: The Dramatiq actor the workers run.
        self.actor: Any = dramatiq.actor(
            broker=self.broker,
            actor_name=actor_name
            or (ACTOR_NAME if self.name == DramatiqQueue.name else f"{ACTOR_NAME}_{self.name}"),
            queue_name=queue_name,
            retry_when=self._retry_when,
            min_backoff=max(1, int(self.retry.backoff * 1000)),
            max_backoff=max(1, int(self.retry.max_backoff * 1000)),
        )(publish)

    def _retry_when(self, retries: int, exception: BaseException) -> bool:
        """Dramatiq's question after a failure: only a :class:`TaskRetry`, while retries last."""
        if not isinstance(exception, TaskRetry):
            return False
        if retries < self.retry.retries:
            return True
        log.error(
            "message %s: gave up after %d attempts (its journal keeps the channels to send: "
            "re-sending its dead letter sends them): %s",
            exception.message_id,
            retries + 1,
            exception,
        )
        return False

    def enqueue(self, payload: dict[str, Any]) -> None:
        """Send the message to the broker (blocking)."""
        self.actor.send(payload)

    def default_journal(self) -> Journal:
        """The broker's Redis for a RedisBroker, else a ConfigurationError."""
        client = getattr(self.broker, "client", None)
        if client is not None and type(self.broker).__name__ == "RedisBroker":
            return RedisJournal(client)
        return super().default_journal()


def _attempt() -> int:
    """How many times this message ran before (0 without Dramatiq's CurrentMessage middleware)."""
    from dramatiq.middleware import CurrentMessage

    message = CurrentMessage.get_current_message()
    return int(message.options.get("retries", 0)) if message is not None else 0
