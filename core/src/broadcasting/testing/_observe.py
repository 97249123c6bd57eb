"""What the conformance kit observes: deliveries, and the observers that report them.

Nothing here needs pytest, so a receiver built for tests can import it freely.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class Delivery:
    """One message as the receiving side saw it, on one channel.

    Attributes:
        channel: the channel it arrived on.
        event: the event name it arrived with.
        data: what arrived: either the wire text (``Message.text``) or, if
            the receiving side decodes JSON, the decoded value. The kit
            accepts either for dict/list payloads; a str payload must arrive
            as the identical str.
    """

    channel: str
    event: str
    data: object


@runtime_checkable
class Observer(Protocol):
    """The receiving side of a driver, as the conformance kit sees it (sync flavour).

    The kit calls :meth:`watch` with the channels it is about to publish to,
    then publishes, then calls :meth:`deliveries` to see what arrived.

    Optional capability, ``socket_id() -> str`` (see :class:`SocketIdentity`):
    an observer that is itself one connection of the service (a WebSocket
    subscriber, an in-process subscriber with an identity) may return that
    connection's id. The kit calls it after :meth:`watch`. When the driver
    declares ``Feature.EXCLUDE_SENDER``, the kit then publishes with
    ``socket_id=<that id>`` to a watched channel, publishes a marker without
    one to the same channel, waits for the marker and asserts the first
    message never reached the observer: the sender's own connection is
    really excluded (Laravel's ``toOthers()``). This relies on the
    observer's deliveries on one channel arriving in publish order, as they
    do on one WebSocket connection. Without the method, the kit only checks
    that ``socket_id`` is passed through and that a connection that is not
    the sender still receives the message.
    """

    def watch(self, channels: Sequence[str]) -> None:
        """Start receiving ``channels``; return once a publish to them would be seen."""

    def deliveries(self, channel: str, count: int, timeout: float) -> Sequence[Delivery]:
        """Everything seen on ``channel`` since it was watched, oldest first.

        Wait up to ``timeout`` seconds for at least ``count`` deliveries, then
        return what was seen, even if it is fewer (the kit reports the shortfall).
        """
        ...


@runtime_checkable
class AsyncObserver(Protocol):
    """Async flavour of :class:`Observer`.

    The kit runs these coroutines on :func:`broadcasting.run_sync`'s shared
    background loop, so create loop-bound resources (websockets...) inside
    them, not in a fixture running on another loop. The optional
    ``socket_id()`` capability (see :class:`Observer`) may be a coroutine here.
    """

    def watch(self, channels: Sequence[str]) -> Awaitable[None]:
        """Async twin of :meth:`Observer.watch`."""
        ...

    def deliveries(self, channel: str, count: int, timeout: float) -> Awaitable[Sequence[Delivery]]:
        """Async twin of :meth:`Observer.deliveries`."""
        ...


@runtime_checkable
class SocketIdentity(Protocol):
    """The optional observer capability: "I am one connection; this is my id".

    An :class:`Observer` or :class:`AsyncObserver` that also has this method
    lets the kit check that a publish with ``socket_id=<this id>`` excludes
    the observer (see :class:`Observer`). Leave it out if the receiving side
    has no connection of its own (a webhook receiver, a log).
    """

    def socket_id(self) -> str | Awaitable[str]:
        """The observer's own connection id, as the service's clients know it.

        Called after :meth:`Observer.watch`, so a connection opened there
        exists; may be a coroutine for an :class:`AsyncObserver`.
        """
        ...


class DeliveryRecorder:
    """A ready-made, thread-safe :class:`Observer` that a receiver pushes into.

    A test receiver (an HTTP server thread, a websocket client...) calls
    :meth:`record` for every delivery it accepts; the kit waits on
    :meth:`deliveries`. Every channel is recorded, watched or not.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._seen: list[Delivery] = []

    def record(self, delivery: Delivery) -> None:
        """Add one delivery (from any thread) and wake up waiters."""
        with self._cond:
            self._seen.append(delivery)
            self._cond.notify_all()

    def watch(self, channels: Sequence[str]) -> None:
        """Nothing to do: every channel is recorded."""

    def deliveries(self, channel: str, count: int, timeout: float) -> Sequence[Delivery]:
        """Wait up to ``timeout`` s for ``count`` deliveries on ``channel``; return them all."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = [d for d in self._seen if d.channel == channel]
                remaining = deadline - time.monotonic()
                if len(found) >= count or remaining <= 0:
                    return found
                self._cond.wait(remaining)

    def all(self) -> list[Delivery]:
        """Every recorded delivery, oldest first (a copy)."""
        with self._cond:
            return list(self._seen)

    def clear(self) -> None:
        """Forget everything recorded so far."""
        with self._cond:
            self._seen.clear()
