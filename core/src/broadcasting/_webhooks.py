"""Webhooks: verified deliveries from the service, as typed events for plugins and handlers."""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from broadcasting._broadcast import Broadcast
    from broadcasting._driver import Driver

#: A webhook handler: ``handler(event)``; may be a coroutine function.
WebhookHandler = Callable[["WebhookEvent"], Any]

#: Events older than this (by the delivery's own timestamp) are refused.
MAX_AGE_SECONDS = 300.0


@dataclass(frozen=True, slots=True)
class WebhookEvent:
    """One event of a verified webhook delivery.

    Attributes:
        name: what happened: ``channel_occupied``, ``channel_vacated``,
            ``member_added``, ``member_removed``, ``client_event``,
            ``cache_miss``, or a driver's own name for another kind.
        channel: the channel it happened on, if any.
        time_ms: the delivery's timestamp, milliseconds since the epoch.
        id: a stable identity: the same event delivered twice has the same id.
        user_id: the member, for presence events and client events.
        event: the client event's name, for ``client_event``.
        data: the client event's data or the message's data, as sent.
        socket_id: the sending connection, for ``client_event``.
        driver: the name of the driver that verified it.
        raw: the event as the service sent it.
    """

    name: str
    channel: str | None
    time_ms: int
    id: str
    user_id: str | None = None
    event: str | None = None
    data: Any = None
    socket_id: str | None = None
    driver: str = ""
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)


class WebhookHandlers:
    """The handlers registered with ``Broadcast.on_webhook``, by event name (``*`` for all)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._handlers: dict[str, list[WebhookHandler]] = {}

    def add(self, name: str, handler: WebhookHandler) -> None:
        """Call ``handler(event)`` for every verified event called ``name``."""
        if not isinstance(name, str) or not name:
            raise TypeError("on_webhook() takes an event name such as 'member_added', or '*'")
        if not callable(handler):
            raise TypeError(f"the handler for {name!r} must be callable")
        with self._lock:
            self._handlers.setdefault(name, []).append(handler)

    def for_event(self, name: str) -> list[WebhookHandler]:
        """The handlers for ``name``, then those for every event."""
        with self._lock:
            return [*self._handlers.get(name, ()), *self._handlers.get("*", ())]


def receive(
    broadcast: Broadcast, driver: Driver, headers: Mapping[str, str], body: bytes
) -> list[WebhookEvent]:
    """Verify a delivery, hand each event to the hook and the handlers, return the events."""
    events = driver.verify_webhook(headers, body)
    for event in events:
        broadcast.plugin_manager.hook.broadcasting_webhook(
            broadcast=broadcast, driver=driver, event=event
        )
        for handler in broadcast.webhook_handlers.for_event(event.name):
            result = handler(event)
            if inspect.isawaitable(result):
                from broadcasting._loop import run_sync

                run_sync(_awaited(result))
    return events


async def areceive(
    broadcast: Broadcast, driver: Driver, headers: Mapping[str, str], body: bytes
) -> list[WebhookEvent]:
    """Async twin of :func:`receive`: async handlers are awaited on the caller's loop."""
    events = driver.verify_webhook(headers, body)
    for event in events:
        for result in broadcast.plugin_manager.hook.broadcasting_webhook(
            broadcast=broadcast, driver=driver, event=event
        ):
            if inspect.isawaitable(result):
                await result
        for handler in broadcast.webhook_handlers.for_event(event.name):
            result = handler(event)
            if inspect.isawaitable(result):
                await result
    return events


async def _awaited(value: Any) -> Any:
    return await value
