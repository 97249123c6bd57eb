"""Webhooks: verified deliveries from the service, as typed events for plugins and handlers.

``Broadcast.webhook(headers, body)`` (and ``awebhook``) hands the raw request
to the driver's :meth:`~broadcasting.Driver.verify_webhook`, which checks the
key, the signature and the age and returns the events; each event then goes,
in order, to every ``broadcasting_webhook`` hook implementation and to the
handlers registered with ``Broadcast.on_webhook``.

Delivery is at least once. Services retry a delivery that was not answered
with a 2xx (Pusher for five minutes), resending the same body, so the same
event may reach the handlers twice: every :class:`WebhookEvent` has an ``id``
that is the same for every delivery of that event, to de-duplicate on.

When a hook implementation or a handler raises, the exception propagates to
the caller of ``webhook()`` at once, as it was raised (the events and handlers
after it are not run): the endpoint answers 500 and the service retries the
whole delivery, so handlers that had already run see their events again.
Handlers should therefore be idempotent (or de-duplicate on ``event.id``) and
quick; slow work belongs in a queue, since a delivery that is not answered in
time is retried as well.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from broadcasting._errors import BadRequestError
from broadcasting._flow import Call, Flow, Hook

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
        id: a stable identity: the same event delivered twice (a retried
            delivery) has the same id; de-duplicate on it.
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
        """The handlers for ``name``, then those for every event, in the order they were added."""
        with self._lock:
            return [*self._handlers.get(name, ()), *self._handlers.get("*", ())]


class Headers(Mapping[str, str]):
    """Request headers looked up in any letter case (``X-Pusher-Key`` = ``x-pusher-key``).

    Web frameworks hand headers over in different cases (WSGI environs, ASGI
    scopes, plain dicts in tests); drivers read them through this.
    """

    def __init__(self, headers: Mapping[str, str] | Any) -> None:
        items: Any = headers.items() if hasattr(headers, "items") else headers
        self._items: dict[str, tuple[str, str]] = {}
        for key, value in items:
            name = key.decode("latin-1") if isinstance(key, bytes) else str(key)
            text = value.decode("latin-1") if isinstance(value, bytes) else str(value)
            self._items.setdefault(name.lower(), (name, text))

    def __getitem__(self, key: str) -> str:
        return self._items[key.lower()][1]

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key.lower() in self._items

    def __iter__(self) -> Iterator[str]:
        return (name for name, _ in self._items.values())

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Headers({sorted(self)!r})"  # names only: values may be signatures


def _verified(driver: Driver, headers: Mapping[str, str] | Any, body: object) -> list[WebhookEvent]:
    raw: bytes
    if isinstance(body, bytes):
        raw = body
    elif isinstance(body, str):
        raw = body.encode("utf-8")
    elif isinstance(body, (bytearray, memoryview)):
        raw = bytes(body)
    else:
        raise TypeError(f"webhook() takes the raw request body as bytes, not {type(body).__name__}")
    try:
        return driver.verify_webhook(Headers(headers), raw)
    except (RecursionError, OverflowError):
        # A driver's parser that gave up on the sender's body (nested deeper than
        # it recurses, a number past a float's range): a malformed delivery, 400,
        # not the application's error. Drivers should refuse these themselves.
        raise BadRequestError(
            f"{driver.name}: webhook refused: the body is nested too deeply or holds a number "
            "out of range"
        ) from None


def receive(
    broadcast: Broadcast, driver: Driver, headers: Mapping[str, str], body: bytes
) -> Flow[list[WebhookEvent]]:
    """Verify a delivery, hand each event to the hook and the handlers, return the events.

    On the async path async hook results and handlers are awaited on the
    caller's loop (sync handlers run there too: they should be quick); on the
    sync path they run to completion on the core's background loop. The first
    exception propagates (see the module doc).
    """
    events = _verified(driver, headers, body)
    pm = broadcast.plugin_manager
    for event in events:
        kwargs = {"broadcast": broadcast, "driver": driver, "event": event}
        yield Hook(pm, "broadcasting_webhook", kwargs, gather=True)
        for handler in broadcast.webhook_handlers.for_event(event.name):
            yield Call(handler, event)
    return events
