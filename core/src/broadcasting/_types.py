"""Value types that cross the hook boundary: Message, Receipt, Limits, Secret."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Union

#: What ``Broadcast.channel`` accepts as a message: a string, or JSON data.
Payload = Union[str, Mapping[str, Any], Sequence[Any]]


# Built once: json.dumps() with non-default options builds a new encoder per call.
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _c_encoder() -> Callable[[Any], str]:
    """CPython's C encoder with the options above, called directly (3x faster for small data).

    It is what ``JSONEncoder.encode`` ends up calling, minus the circular-reference
    bookkeeping: a cycle raises ``RecursionError`` instead of ``ValueError``.
    Where the C accelerator is missing (PyPy), the ordinary encoder is used.
    """
    from json import encoder as json_encoder

    c_make_encoder: Any = getattr(json_encoder, "c_make_encoder", None)  # not in typeshed
    if c_make_encoder is None:  # pragma: no cover - CPython always has it
        return _ENCODER.encode
    encode_basestring = json_encoder.encode_basestring
    encode = c_make_encoder(
        None, _ENCODER.default, encode_basestring, None, ":", ",", False, False, False
    )
    return lambda data: "".join(encode(data, 0))


_encode_json = _c_encoder()


def encode_payload(data: Payload) -> str:
    """Return the text that goes over the wire for ``data``.

    A ``str`` is sent unchanged; anything else is compact JSON (UTF-8, no ASCII
    escaping, no NaN). Raises ``TypeError``/``ValueError`` from :mod:`json`, and
    ``RecursionError`` for data that contains itself.
    """
    if isinstance(data, str):
        return data
    return _encode_json(data)


class Message:
    """One validated publish, as handed to the ``broadcasting_publish`` hook.

    A ``wrapper=True`` implementation of that hook may change ``channels``,
    ``event`` or ``data`` before it yields; assigning ``data`` re-encodes
    ``text``. Such changes are not validated again.

    Attributes:
        channels: channel names, de-duplicated, in the caller's order.
        event: the event name.
        data: the message as the caller gave it (``str`` or JSON data).
        text: ``data`` encoded for the wire (see :func:`encode_payload`).
        id: a unique id for this publish; drivers reuse it on every retry so
            a provider with idempotent publishing never delivers it twice.
        socket_id: the sender's own connection, to be excluded, if given.
        source: the event object it was built from (``channel(event)``), else ``None``.
    """

    __slots__ = ("_data", "_measured", "channels", "event", "id", "socket_id", "source", "text")

    def __init__(
        self,
        channels: tuple[str, ...],
        event: str,
        data: Payload,
        text: str,
        id: str,
        socket_id: str | None = None,
        source: object = None,
    ) -> None:
        self.channels = channels
        self.event = event
        self._data = data
        self.text = text
        self.id = id
        self.socket_id = socket_id
        self.source = source
        self._measured: tuple[str, int] | None = None  # (text, its UTF-8 size), see size

    @property
    def data(self) -> Payload:
        """The message as the caller gave it; assigning it re-encodes :attr:`text`."""
        return self._data

    @data.setter
    def data(self, value: Payload) -> None:
        self.text = encode_payload(value)
        self._data = value

    @property
    def size(self) -> int:
        """Size of :attr:`text` in UTF-8 bytes."""
        text = self.text
        if text.isascii():  # a flag CPython keeps on the string: no scan
            return len(text)
        measured = self._measured
        if measured is not None and measured[0] is text:
            return measured[1]  # measured when it was validated (or last asked)
        size = len(text.encode("utf-8"))
        self._measured = (text, size)
        return size

    def _fields(self) -> tuple[object, ...]:
        return (self.channels, self.event, self._data, self.text, self.id, self.socket_id)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Message):
            return NotImplemented
        return self._fields() == other._fields()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"Message(channels={self.channels!r}, event={self.event!r}, data={self._data!r}, "
            f"id={self.id!r}, socket_id={self.socket_id!r})"
        )


@dataclass(frozen=True)
class Receipt:
    """What a publish returns once the provider acknowledged it.

    Attributes:
        driver: the name of the driver that delivered it.
        event: the event name.
        channels: the channels it was delivered to.
        message_id: :attr:`Message.id` of the publish.
        ids: ids the provider returned (event ids, message serials), if any.
        requests: how many network requests the publish took (0 for in-process drivers).
    """

    driver: str
    event: str
    channels: tuple[str, ...]
    message_id: str
    ids: tuple[str, ...] = ()
    requests: int = 0

    def __str__(self) -> str:
        chans = ", ".join(self.channels)
        text = f"{self.driver}: {self.event!r} -> {chans} (id {self.message_id}"
        if self.requests:
            text += f", {self.requests} request{'s' if self.requests != 1 else ''}"
        return text + ")"


@dataclass(frozen=True)
class Limits:
    """Limits a driver declares; the core enforces them before any request.

    ``None`` means "no limit". Lengths count characters (``len(str)``);
    ``max_payload_bytes`` counts bytes as :meth:`Driver.payload_size` measures
    them. ``channel_pattern`` must match a whole channel name; ``channel_rule``
    describes it in words for error messages. (How many channels one request
    carries is not a limit on the caller: see :class:`Capabilities`.)
    """

    max_payload_bytes: int | None = None
    max_event_name_length: int | None = None
    max_channel_name_length: int | None = None
    channel_pattern: re.Pattern[str] | None = None
    channel_rule: str = ""


#: Option names that hold secrets: the core wraps such a string option in a
#: :class:`Secret` when it loads the configuration (``secret``, ``app_secret``,
#: ``password``, ``token``, ``api_key``, ``key``, ``encryption_master_key_base64``...).
SECRET_OPTION = re.compile(
    r"secret|passw(?:or)?d|token|credential|apikey|(?:^|[_-])key(?:$|[_-])", re.IGNORECASE
)


@dataclass(frozen=True, repr=False, slots=True)
class Secret:
    """A string that never shows itself in ``repr``, ``str``, f-strings or pickles.

    Drivers keep keys and secrets in a ``Secret`` and call :meth:`reveal`
    only where the SDK needs the value. It compares and hashes by value (so
    two drivers with different keys are told apart) without showing it, has
    no ``__dict__`` for ``vars()`` to show, and refuses to be pickled.
    """

    _value: str = field(repr=False)

    def reveal(self) -> str:
        """Return the secret value."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)

    def __bool__(self) -> bool:
        return bool(self._value)

    def __reduce__(self) -> Any:
        raise TypeError("a Secret cannot be pickled: that would write its value out")

    def __copy__(self) -> Secret:
        return self  # immutable

    def __deepcopy__(self, memo: dict[int, Any]) -> Secret:
        return self


class Options(Mapping[str, Any]):
    """A driver's options: a read-only mapping whose repr shows the keys, never the values.

    Values that are not named like secrets can still carry one (a token in a
    webhook URL), and debuggers and error trackers show the ``repr`` of every
    attribute and local variable: this one shows nothing but the option names.
    """

    __slots__ = ("_items",)

    def __init__(self, items: Mapping[str, Any] = {}) -> None:
        self._items = dict(items)

    def __getitem__(self, key: str) -> Any:
        return self._items[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Options(keys={sorted(map(str, self._items))!r})"

    def __reduce__(self) -> Any:
        return (Options, (self._items,))


def wrap_named(options: Mapping[str, Any], names: frozenset[str]) -> Options:
    """``options`` with every string under one of ``names`` in a Secret (a driver's
    ``secret_options``); a value already wrapped, or not a string, is kept as it is."""
    if not names or not any(key in names for key in options):
        return options if isinstance(options, Options) else Options(options)
    return Options(
        {
            key: Secret(value) if key in names and isinstance(value, str) else value
            for key, value in options.items()
        }
    )


def wrap_secrets(options: Mapping[str, Any]) -> Options:
    """``options`` with every string whose name looks secret (:data:`SECRET_OPTION`) in a Secret."""
    return Options(
        {
            key: Secret(value)
            if isinstance(value, str) and isinstance(key, str) and SECRET_OPTION.search(key)
            else value
            for key, value in options.items()
        }
    )
