"""Event classes: objects that say where they go, what they carry and what they are called."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, runtime_checkable

from broadcasting._channels import Channel

if TYPE_CHECKING:
    from typing_extensions import Self

    from broadcasting._types import Payload


@runtime_checkable
class Broadcastable(Protocol):
    """Anything ``channel()`` accepts as an event: it has ``broadcast_on()``.

    This is Masonite 4's ``CanBroadcast`` convention. ``broadcast_with()``,
    ``broadcast_as()``, ``broadcast_when()`` and a ``socket_id`` attribute are
    optional; :class:`BroadcastEvent` gives their defaults.
    """

    def broadcast_on(self) -> Any:
        """The channel or channels to publish on (names or :class:`Channel` objects)."""


class BroadcastEvent:
    """A base class (or mixin) for application events.

    Subclasses say where the event goes with :meth:`broadcast_on`; the rest
    has defaults: the payload is the event's public fields
    (:meth:`broadcast_with`), the name is the class name (:meth:`broadcast_as`)
    and it is always sent (:meth:`broadcast_when`). It works with dataclasses,
    pydantic models and plain classes::

        @dataclass
        class OrderShipped(BroadcastEvent):
            order_id: int

            def broadcast_on(self):
                return PrivateChannel(f"orders.{self.order_id}")

        broadcast.channel(OrderShipped(42))

    Call :meth:`to_others` with the request's ``X-Socket-ID`` to leave out the
    sender's own connection.
    """

    #: The sender's connection to leave out (see :meth:`to_others`).
    socket_id: str | None = None

    def broadcast_on(self) -> Any:
        """The channel or channels to publish on; subclasses must override it."""
        raise NotImplementedError(f"{type(self).__qualname__} must define broadcast_on()")

    def broadcast_with(self) -> Payload:
        """The payload: a dataclass's fields, a pydantic model's dump, else public attributes."""
        if hasattr(type(self), "__dataclass_fields__"):
            return {
                f.name: getattr(self, f.name)
                for f in dataclasses.fields(self)  # type: ignore[arg-type]
                if not f.name.startswith("_") and f.name != "socket_id"
            }
        dump = getattr(self, "model_dump", None)
        if callable(dump):
            data = dump(mode="json")
            if isinstance(data, dict):
                data.pop("socket_id", None)
                return data
        return {k: v for k, v in vars(self).items() if not k.startswith("_") and k != "socket_id"}

    def broadcast_as(self) -> str:
        """The event name: the class name (``OrderShipped``)."""
        return type(self).__name__

    def broadcast_when(self) -> bool:
        """Whether to publish at all; ``False`` skips the publish."""
        return True

    def to_others(self, socket_id: str | None) -> Self:
        """Leave out the connection ``socket_id`` (the request's ``X-Socket-ID``); returns self."""
        try:
            self.socket_id = socket_id
        except (AttributeError, dataclasses.FrozenInstanceError):
            object.__setattr__(self, "socket_id", socket_id)
        return self


class Resolved(NamedTuple):
    """An event object taken apart for ``channel()``."""

    channels: list[str | Channel]
    data: Any
    name: str
    socket_id: str | None


def is_event(value: object) -> bool:
    """Whether ``value`` is an event object rather than a channel name or list."""
    return not isinstance(value, (str, list, tuple, Channel)) and callable(
        getattr(value, "broadcast_on", None)
    )


def resolve(event: object, name: str | None, socket_id: str | None) -> Resolved | None:
    """Take ``event`` apart; ``None`` when its ``broadcast_when()`` says not to send it.

    ``name`` and ``socket_id``, when given to ``channel()``, override the event's own.
    """
    when = getattr(event, "broadcast_when", None)
    if callable(when) and not when():
        return None
    on = event.broadcast_on()  # type: ignore[attr-defined]
    if isinstance(on, (str, Channel)):
        channels: list[str | Channel] = [on]
    elif isinstance(on, Sequence):
        channels = list(on)
    else:
        raise TypeError(
            f"{type(event).__qualname__}.broadcast_on() returned {type(on).__name__}, "
            "not a channel or a list of channels"
        )
    with_ = getattr(event, "broadcast_with", None)
    data = with_() if callable(with_) else BroadcastEvent.broadcast_with(event)  # type: ignore[arg-type]
    as_ = getattr(event, "broadcast_as", None)
    event_name = name or (as_() if callable(as_) else type(event).__name__)
    sender = socket_id if socket_id is not None else getattr(event, "socket_id", None)
    return Resolved(channels, data, event_name, sender)
