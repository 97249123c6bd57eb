"""Webhooks: verified deliveries, each event handed to the hook and the handlers in order."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from broadcasting._errors import BadRequestError
from broadcasting._flow import Call, Flow, Hook

if TYPE_CHECKING:
    from broadcasting._broadcast import Broadcast
    from broadcasting._driver import Driver

#: A webhook handler: ``handler(event)``; may be a coroutine function.
WebhookHandler = Callable[["WebhookEvent"], Any]
#: A handler's own type, which the decorators hand back unchanged.
H = TypeVar("H", bound=WebhookHandler)

#: Events older than this (by the delivery's own timestamp) are refused.
MAX_AGE_SECONDS = 300.0


@dataclass(frozen=True, slots=True)
class WebhookEvent:
    """One event of a verified webhook delivery.

    Attributes:
        name: ``channel_occupied``, ``channel_vacated``, ``member_added``,
            ``member_removed``, ``client_event``, ``cache_miss``, or a driver's own.
        time_ms: the delivery's timestamp, milliseconds since the epoch.
        id: the same for every delivery of this event: de-duplicate on it.
        user_id: the member (presence and client events).
        event, data, socket_id: a client event's name, data and sender.
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
    """A read-only view of request headers whose names match in any letter case, from a mapping
    or pairs (``str`` or ``bytes``); a name given twice keeps its first value."""

    __slots__ = ("_items",)

    def __init__(self, headers: Any = ()) -> None:
        if isinstance(headers, Headers):
            self._items: dict[str, tuple[str, str]] = headers._items
            return
        self._items = {}
        for name, value in headers.items() if hasattr(headers, "items") else headers:
            if name.__class__ is not str:
                name = name.decode("latin-1") if isinstance(name, bytes) else str(name)
            if value.__class__ is not str:
                value = value.decode("latin-1") if isinstance(value, bytes) else str(value)
            self._items.setdefault(name.lower(), (name, value))

    def __getitem__(self, name: str) -> str:
        return self._items[name.lower()][1]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._items

    def __iter__(self) -> Iterator[str]:
        return (name for name, _ in self._items.values())

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Headers({sorted(self)!r})"  # values may be signatures or credentials


def receive(
    broadcast: Broadcast, driver: Driver, headers: Mapping[str, str], body: object
) -> Flow[list[WebhookEvent]]:
    """Verify a delivery, hand each event to the hook and the handlers, return the events; the
    first exception propagates at once, so the service retries the whole delivery."""
    if isinstance(body, str):
        body = body.encode("utf-8")
    elif isinstance(body, (bytearray, memoryview)):
        body = bytes(body)
    elif not isinstance(body, bytes):
        raise TypeError(f"webhook() takes the raw request body as bytes, not {type(body).__name__}")
    try:
        events = driver.verify_webhook(Headers(headers), body)
    except (RecursionError, OverflowError):
        # a driver's parser gave up on the sender's body: a malformed delivery (400), not a bug
        raise BadRequestError(
            f"{driver.name}: webhook refused: the body is nested too deeply or holds a number "
            "out of range"
        ) from None
    pm = broadcast.plugin_manager
    for event in events:
        kwargs = {"broadcast": broadcast, "driver": driver, "event": event}
        yield Hook(pm, "broadcasting_webhook", kwargs, gather=True)
        for handler in broadcast.webhook_handlers.for_event(event.name):
            yield Call(handler, event)
    return events
