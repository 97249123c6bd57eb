"""The Dramatiq middleware of :class:`~broadcasting.contrib.dramatiq.DramatiqQueue`: a message
whose retry the broker did not take is kept, not acknowledged (imported with Dramatiq, by
the plugin only: Dramatiq is imported by the application, never by ``broadcasting``).

Dramatiq's ``Retries`` middleware queues a failed message's retry (``broker.enqueue``) from
``after_process_message``; when the broker refuses it, ``Broker.emit_after`` logs the error
without the broadcasting message id and the worker then acknowledges the message: the task
is gone while its journal says "retry". :class:`HoldRefusedRetry` runs after ``Retries``,
sees that no retry was queued, and asks the broker for it again before the message is
acknowledged (``before_ack``), until it is taken; a worker that stops meanwhile leaves the
message unacknowledged, and the broker delivers it again.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from dramatiq.middleware import Middleware, MiddlewareError, Retries

from broadcasting._errors import ConfigurationError
from broadcasting.contrib._queue import TaskRetry

log = logging.getLogger("broadcasting.queue")

#: The longest pause between two requests for a held message's retry, in seconds.
HOLD_PAUSE = 10.0
#: The shortest (a retry's delay may be 0).
MIN_HOLD_PAUSE = 1.0


class Unacknowledged(MiddlewareError):
    """``before_ack`` of a held message when the worker stops: it stays unacknowledged (a
    :class:`MiddlewareError`, which Dramatiq lets through to skip the acknowledgement)."""


class HoldRefusedRetry(Middleware):
    """Keeps a message whose :class:`TaskRetry` the broker did not queue as a retry.

    Placed before ``Retries`` in the broker's middleware, so that its
    ``after_process_message`` runs after ``Retries``'s (Dramatiq calls them in reverse). A
    retry queued for the message is seen in ``after_enqueue`` (the broker calls it once the
    publish succeeded, in the worker thread that ran ``Retries``)."""

    def __init__(self) -> None:
        self.stopping = False
        self._local = threading.local()

    def before_worker_boot(self, broker: Any, worker: Any) -> None:
        self.stopping = False

    def before_worker_shutdown(self, broker: Any, worker: Any) -> None:
        self.stopping = True

    def before_process_message(self, broker: Any, message: Any) -> None:
        self._local.queued = None
        self._local.held = None

    def after_enqueue(self, broker: Any, message: Any, delay: int | None) -> None:
        if delay is not None:  # a retry (a delayed message): queued
            self._local.queued = message.message_id

    def after_process_message(
        self,
        broker: Any,
        message: Any,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        if (
            isinstance(exception, TaskRetry)
            and not message.failed  # Retries gave up: dead-lettered, as it says
            and getattr(self._local, "queued", None) != message.message_id
        ):
            self._local.held = (message, exception)

    def before_ack(self, broker: Any, message: Any) -> None:
        held = getattr(self._local, "held", None)
        if held is None or held[0] is not message:
            return
        self._local.held = None
        self._hold(broker, message, held[1])

    def _hold(self, broker: Any, message: Any, retry: TaskRetry) -> None:
        """Queue the retry of ``message`` before it is acknowledged: until the broker takes
        it, or the worker stops (:class:`Unacknowledged`: the broker delivers it again)."""
        pause = min(max(retry.delay, MIN_HOLD_PAUSE), HOLD_PAUSE)
        refused = 0
        while True:
            try:
                broker.enqueue(message, delay=int(retry.delay * 1000))
            except Exception as exc:
                why = f"{type(exc).__name__}: {exc}"
            else:
                if refused:
                    log.warning(
                        "message %s: its retry was queued after %d refusal(s); the message is "
                        "acknowledged",
                        retry.message_id,
                        refused,
                    )
                return
            refused += 1
            if refused == 1:
                log.error(
                    "message %s: its retry could not be queued (%s); the worker keeps the "
                    "message, not acknowledged, and asks the broker again every %.1f s",
                    retry.message_id,
                    why,
                    pause,
                )
            else:
                log.warning(
                    "message %s: its retry could not be queued yet (%s); asked again in %.1f s",
                    retry.message_id,
                    why,
                    pause,
                )
            if not self._wait(pause):
                log.error(
                    "message %s: the worker stops before its retry could be queued; the "
                    "message is left unacknowledged: the broker delivers it again",
                    retry.message_id,
                )
                raise Unacknowledged(
                    f"message {retry.message_id}: its retry could not be queued ({why}); "
                    "left unacknowledged"
                )

    def _wait(self, seconds: float) -> bool:
        """Sleep ``seconds``; ``False`` (at once) when the worker stops."""
        deadline = time.monotonic() + seconds
        while not self.stopping:
            left = deadline - time.monotonic()
            if left <= 0:
                return True
            time.sleep(min(left, 0.25))
        return False


def guard(broker: Any) -> None:
    """Add :class:`HoldRefusedRetry` to ``broker`` (once), before its ``Retries``; a
    ConfigurationError if it has none (a TaskRetry would be acknowledged: the task lost)."""
    middleware = list(broker.middleware)
    if any(isinstance(each, HoldRefusedRetry) for each in middleware):
        return
    if not any(isinstance(each, Retries) for each in middleware):
        raise ConfigurationError(
            "config",
            "broker",
            "the Dramatiq broker has no Retries middleware: a publish to retry would be "
            "acknowledged and lost (keep Dramatiq's default middleware, or add Retries())",
        )
    broker.add_middleware(HoldRefusedRetry(), before=Retries)
