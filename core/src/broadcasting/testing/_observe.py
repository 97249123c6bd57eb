"""What the conformance kit observes: deliveries, and the observers that report them.

Nothing here needs pytest, so a receiver built for tests can import it freely.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar, runtime_checkable

T = TypeVar("T")


@dataclass(frozen=True)
class Delivery:
    """One message as the receiving side saw it, on one channel.

    ``data`` is the wire text (``Message.text``) or, if the receiving side
    decodes JSON, the decoded value; a str payload must arrive as the identical str.
    """

    channel: str
    event: str
    data: object


@runtime_checkable
class Observer(Protocol):
    """The receiving side of a driver, as the conformance kit sees it.

    The kit calls :meth:`watch` with the channels it is about to publish to,
    publishes, then calls :meth:`deliveries`. An observer that is one
    connection of the service may also offer ``socket_id()``
    (:class:`SocketIdentity`).
    """

    def watch(self, channels: Sequence[str]) -> None:
        """Start receiving ``channels``; return once a publish to them would be seen."""

    def deliveries(self, channel: str, count: int, timeout: float) -> Sequence[Delivery]:
        """Everything seen on ``channel`` since it was watched, oldest first, once
        ``count`` arrived or ``timeout`` seconds passed (the kit reports a shortfall)."""
        ...


@runtime_checkable
class AsyncObserver(Protocol):
    """:class:`Observer` with coroutines, run on :func:`broadcasting.plugin.run_sync`'s
    background loop: create loop-bound resources (websockets...) inside them."""

    def watch(self, channels: Sequence[str]) -> Awaitable[None]: ...

    def deliveries(
        self, channel: str, count: int, timeout: float
    ) -> Awaitable[Sequence[Delivery]]: ...


@runtime_checkable
class SocketIdentity(Protocol):
    """An observer that is one connection of the service: publishing with
    ``socket_id=<its id>`` must not reach it (``Feature.EXCLUDE_SENDER``)."""

    def socket_id(self) -> str | Awaitable[str]:
        """The observer's connection id, as the service's clients know it (called after
        ``watch``)."""
        ...


class Recording(Generic[T]):
    """A thread-safe record, oldest first, that a waiter can block on."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._items: list[T] = []

    def _add(self, item: T) -> None:
        with self._cond:
            self._items.append(item)
            self._cond.notify_all()

    def _copy(self) -> list[T]:
        with self._cond:
            return list(self._items)

    def clear(self) -> None:
        """Forget everything recorded so far."""
        with self._cond:
            self._items.clear()


class DeliveryRecorder(Recording[Delivery]):
    """A ready-made, thread-safe :class:`Observer` that a test receiver pushes into.

    Every channel is recorded, watched or not.
    """

    def record(self, delivery: Delivery) -> None:
        """Add one delivery (from any thread) and wake up waiters."""
        self._add(delivery)

    def watch(self, channels: Sequence[str]) -> None:
        """Nothing to do: every channel is recorded."""

    def deliveries(self, channel: str, count: int, timeout: float) -> Sequence[Delivery]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = [d for d in self._items if d.channel == channel]
                remaining = deadline - time.monotonic()
                if len(found) >= count or remaining <= 0:
                    return found
                self._cond.wait(remaining)

    def all(self) -> list[Delivery]:
        """Every recorded delivery, oldest first (a copy)."""
        return self._copy()
