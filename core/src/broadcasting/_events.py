"""Event classes: objects that say where they go, what they carry and what they are called."""

from __future__ import annotations

import dataclasses
import datetime as _dt
import decimal
import enum
import inspect
import uuid
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple, Protocol, runtime_checkable

from broadcasting._channels import Channel
from broadcasting._errors import (
    InputError,
    InvalidChannelError,
    InvalidEventError,
    InvalidPayloadError,
)

if TYPE_CHECKING:
    from typing_extensions import Self

    from broadcasting._types import Payload

#: Laravel's default event namespace, as Laravel Echo's ``namespace`` option has it.
LARAVEL_NAMESPACE = "App.Events"


@runtime_checkable
class Broadcastable(Protocol):
    """Anything ``channel()`` takes as an event: it has ``broadcast_on()`` (as in Masonite).

    ``broadcast_with()``, ``broadcast_as()``, ``broadcast_when()`` and ``socket_id`` are
    optional; :class:`BroadcastEvent` gives their defaults."""

    def broadcast_on(self) -> Any:
        """The channel or channels to publish on (names or :class:`Channel` objects)."""


def echo_event_name(name: str, namespace: str | None = LARAVEL_NAMESPACE) -> str:
    """The event name Laravel Echo's ``listen(name)`` binds, to publish under.

    A leading ``.`` or ``\\`` is dropped; any other name is put in Echo's
    ``namespace`` (``None`` for ``namespace: false``), every ``.`` a ``\\``.

    >>> echo_event_name("OrderShipped")
    'App\\\\Events\\\\OrderShipped'
    >>> echo_event_name(".shipped")
    'shipped'
    """
    if not isinstance(name, str) or not name:
        raise InvalidEventError(f"an event name must be a non-empty str, not {name!r}")
    if name[0] in ".\\":
        return name[1:]
    if namespace:
        name = f"{namespace}.{name}"
    return name.replace(".", "\\")


class _Cycle(Exception):
    """A value that contains itself (found by :func:`_jsonable`)."""


def _jsonable(value: Any, path: set[int] | None = None) -> Any:
    """``value`` with the types JSON lacks made plain; the encoder refuses what is left.

    ``path``: the ids of the containers being converted, around this value; one met again
    is a cycle (:class:`_Cycle`), found at once rather than by recursing until Python's limit
    (at that depth a finalizer the garbage collector runs fails too)."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, enum.Enum):
        return _jsonable(value.value, path)
    if isinstance(value, (_dt.datetime, _dt.date, _dt.time)):
        return value.isoformat()
    if isinstance(value, (uuid.UUID, decimal.Decimal)):
        return str(value)
    container = dataclasses.is_dataclass(value) and not isinstance(value, type)
    if not container and not isinstance(value, (Mapping, list, tuple, set, frozenset)):
        dump = getattr(value, "model_dump", None)
        if callable(dump):  # a pydantic model inside a dataclass or a plain event
            return dump(mode="json")
        return value
    path = set() if path is None else path
    if id(value) in path:
        raise _Cycle
    path.add(id(value))
    try:
        if container:
            return {
                f.name: _jsonable(getattr(value, f.name), path) for f in dataclasses.fields(value)
            }
        if isinstance(value, Mapping):
            return {k: _jsonable(v, path) for k, v in value.items()}
        return [_jsonable(v, path) for v in value]
    finally:
        path.discard(id(value))


def _attributes(obj: object) -> dict[str, Any]:
    """``obj``'s attributes: those in slots (``attrs.define`` keeps its fields there), then
    those in its ``__dict__``."""
    found: dict[str, Any] = {}
    for cls in reversed(type(obj).__mro__):
        slots = cls.__dict__.get("__slots__", ())
        for name in (slots,) if isinstance(slots, str) else slots:
            if name not in ("__dict__", "__weakref__") and name not in found:
                try:
                    found[name] = getattr(obj, name)
                except AttributeError:  # a slot never set
                    continue
    found.update(getattr(obj, "__dict__", {}))
    return found


def _public(name: str) -> bool:
    return not name.startswith("_") and name != "socket_id"


class BroadcastEvent:
    """A base class (or mixin) for application events: dataclasses, pydantic models, plain classes.

    Subclasses define :meth:`broadcast_on`; by default the payload is the public fields, the
    name the class name, and the event is always sent."""

    #: The sender's connection to leave out (see :meth:`to_others`).
    socket_id: str | None = None

    #: A namespace (``"App.Events"``) :meth:`broadcast_as` puts the class name in, as
    #: Echo's ``listen('OrderShipped')`` expects; ``None``: the bare class name.
    echo_namespace: ClassVar[str | None] = None

    def broadcast_on(self) -> Any:
        """The channel or channels to publish on; subclasses must override it."""
        raise NotImplementedError(f"{type(self).__qualname__} must define broadcast_on()")

    def broadcast_with(self) -> Payload:
        """The payload: the public fields but ``socket_id``, dates as ISO text, enums by value."""
        if hasattr(type(self), "__dataclass_fields__"):
            fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}  # type: ignore[arg-type]
        else:
            dump = getattr(self, "model_dump", None)
            data = dump(mode="json") if callable(dump) else None
            if isinstance(data, dict):
                return {k: v for k, v in data.items() if _public(k)}
            fields = _attributes(self)
        try:
            return {k: _jsonable(v) for k, v in fields.items() if _public(k)}
        except (_Cycle, RecursionError):  # a field that refers back to itself (a cycle),
            # or values nested deeper than Python recurses
            raise InvalidPayloadError(
                f"{type(self).__qualname__}.broadcast_with(): the fields hold a cycle (a value "
                "that contains itself): not JSON-serialisable"
            ) from None

    def broadcast_as(self) -> str:
        """The event name: the class name (``OrderShipped``), in :attr:`echo_namespace` if set."""
        name = type(self).__name__
        return echo_event_name(name, self.echo_namespace) if self.echo_namespace else name

    def broadcast_when(self) -> bool:
        """Whether to publish at all; ``False`` skips the publish (nothing is sent)."""
        return True

    def to_others(self, socket_id: str | None) -> Self:
        """Leave out the connection ``socket_id`` (the request's ``X-Socket-ID``); returns self."""
        try:
            self.socket_id = socket_id
        except (AttributeError, TypeError, ValueError, dataclasses.FrozenInstanceError):
            # frozen dataclasses refuse, pydantic models refuse unknown fields
            object.__setattr__(self, "socket_id", socket_id)
        return self


class LaravelEvent(BroadcastEvent):
    """A :class:`BroadcastEvent` named as Laravel names events: ``App\\Events\\OrderShipped``."""

    echo_namespace: ClassVar[str | None] = LARAVEL_NAMESPACE


class Resolved(NamedTuple):
    """An event object taken apart for ``channel()``; ``send`` is its ``broadcast_when()``."""

    channels: list[str | Channel]
    data: Any
    name: str
    socket_id: str | None
    send: bool


def is_event(value: object) -> bool:
    """Whether ``value`` is an event object rather than a channel name or list."""
    return not isinstance(value, (str, list, tuple, Channel)) and callable(
        getattr(value, "broadcast_on", None)
    )


def resolve(event: object, name: str | None, socket_id: str | None) -> Resolved:
    """Take ``event`` apart; ``name`` and ``socket_id`` given to ``channel()`` win."""
    owner = type(event).__qualname__
    if name is None:
        as_ = _method(event, owner, "broadcast_as", InvalidEventError)
        if as_ is None:
            name = type(event).__name__
        else:
            name = _call(as_, owner, "broadcast_as", InvalidEventError)
        if not isinstance(name, str) or not name:
            raise InvalidEventError(
                f"{owner}.broadcast_as() returned {name!r}; it must return a non-empty str"
            )
    when = _method(event, owner, "broadcast_when", InputError)
    if when is not None and not _call(when, owner, "broadcast_when", InputError):
        return Resolved([], None, name, None, False)
    on_ = event.broadcast_on  # type: ignore[attr-defined]
    on = _call(on_, owner, "broadcast_on", InvalidChannelError)
    channels = [on] if isinstance(on, (str, Channel)) else on
    if not isinstance(channels, (list, tuple)):
        raise InvalidChannelError(
            f"{owner}.broadcast_on() returned {type(on).__name__}; it must return a channel "
            "name (str), a Channel such as PrivateChannel('orders.1'), or a list of them"
        )
    if not channels:
        raise InvalidChannelError(
            f"{owner}.broadcast_on() returned an empty {type(on).__name__}: no channels given"
        )
    for item in channels:
        if not isinstance(item, (str, Channel)):
            raise InvalidChannelError(
                f"{owner}.broadcast_on() returned a list holding "
                f"{type(item).__name__}; it must hold channel names (str) or Channel objects"
            )
    with_ = _method(event, owner, "broadcast_with", InvalidPayloadError)
    if with_ is not None:
        data = _call(with_, owner, "broadcast_with", InvalidPayloadError)
    else:
        data = BroadcastEvent.broadcast_with(event)  # type: ignore[arg-type]
    if not isinstance(data, (str, list, tuple, Mapping)):
        raise InvalidPayloadError(
            f"{owner}.broadcast_with() returned {type(data).__name__}; "
            "it must return a str, dict or list"
        )
    sender = socket_id if socket_id is not None else getattr(event, "socket_id", None)
    return Resolved(list(channels), data, name, sender, True)


def _method(event: object, owner: str, name: str, error: type[InputError]) -> Any:
    """``event``'s method ``name``, or ``None`` if it has none; anything else by that name
    (``broadcast_when = False``, ``broadcast_as = "shipped"``) would be quietly ignored for
    the default, sending what the class says not to, or under another name: refused."""
    found = getattr(event, name, None)
    if found is None or callable(found):
        return found
    raise error(
        f"{owner}.{name} is a {type(found).__name__}, not a method: define "
        f"`def {name}(self)` returning it"
    )


def _call(method: Callable[[], Any], owner: str, name: str, error: type[InputError]) -> Any:
    """What the event's ``method`` returned. An ``async def`` one returns a coroutine, which
    is truthy (``broadcast_when`` would always say yes): refused, and closed unawaited."""
    value = method()
    if inspect.isawaitable(value):
        close = getattr(value, "close", None)
        if callable(close):
            close()  # no "never awaited" warning after the error
        raise error(
            f"{owner}.{name}() is async; an event's methods are plain functions "
            "(achannel() calls them too): define it with def, not async def"
        )
    return value
