"""Value types that cross the hook boundary: Message, Receipt, Limits, Secret, Options."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Union

#: What ``Broadcast.channel`` accepts as a message: a string, or JSON data.
Payload = Union[str, Mapping[str, Any], Sequence[Any]]

# built once: json.dumps() with non-default options builds a new encoder per call
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _c_encoder() -> Callable[[Any, int], list[str]] | None:
    """A new C encoder, the one ``JSONEncoder.encode`` ends up calling, to be called directly:
    2-3x faster for small data. It checks for cycles with a ``markers`` dict of its own, as
    ``json.dumps`` does, so that a cycle is found where it closes (``ValueError``) instead of
    by recursing to the interpreter's limit, where any finalizer the garbage collector runs
    fails too. It returns the text in chunks."""
    make: Any = getattr(json.encoder, "c_make_encoder", None)  # not in typeshed
    if make is None:  # pragma: no cover - CPython always has it
        return None
    encode: Callable[[Any, int], list[str]] = make(
        {}, _ENCODER.default, json.encoder.encode_basestring, None, ":", ",", False, False, False
    )
    return encode


class _Encoders(threading.local):
    """One C encoder per thread: its ``markers`` hold the containers it is inside, so no two
    threads may share one. After a failure it is replaced (the C encoder leaves the markers
    of the containers it was inside when it raised), not cleared: a call that fails inside
    another on the same thread (a finalizer's) leaves the outer one's markers alone."""

    def __init__(self) -> None:
        self.encode = _c_encoder()


_encoders = _Encoders()


def encode_payload(data: Payload) -> str:
    """The text sent for ``data``: a ``str`` as it is, anything else as compact JSON (no NaN).

    Raises ``TypeError``/``ValueError`` from :mod:`json` (``ValueError`` for a cycle).
    """
    if isinstance(data, str):
        return data
    encode = _encoders.encode
    if encode is None:  # pragma: no cover - CPython always has it
        return _ENCODER.encode(data)
    try:
        return "".join(encode(data, 0))
    except BaseException:
        _encoders.encode = _c_encoder()
        raise


class Message:
    """One validated publish, as handed to the ``broadcasting_publish`` hook.

    A hook wrapper may change ``channels``, ``event`` or ``data`` (which
    re-encodes ``text``) before it yields; changes are not validated again.

    Attributes:
        channels: channel names, de-duplicated, in the caller's order.
        event: the event name.
        data: the message as the caller gave it (``str`` or JSON data).
        text: ``data`` encoded for the wire (see :func:`encode_payload`).
        id: unique to this publish, the same on every retry (for de-duplication).
        socket_id: the sender's own connection, to be excluded, if given.
        source: the event object it was built from, else ``None``.
        via: how it is being sent: ``"now"``, ``"after_commit"``, ``"outbox"`` (by the
            relay) or a queue plugin's name (docs/background.md).
        first_sent: when an earlier attempt, in this process or another, may first have
            sent it (epoch seconds; the outbox relay and the queue workers set it), else
            ``None``: a service that drops a repeated id only for a while
            (``Capabilities.dedup_window``) is retried only while that while lasts,
            counted from then.
    """

    __slots__ = (
        "_data",
        "_measured",
        "channels",
        "event",
        "first_sent",
        "id",
        "socket_id",
        "source",
        "text",
        "via",
    )

    def __init__(
        self,
        channels: tuple[str, ...],
        event: str,
        data: Payload,
        text: str,
        id: str,
        socket_id: str | None = None,
        source: object = None,
        via: str = "now",
        first_sent: float | None = None,
    ) -> None:
        self.channels = channels
        self.event = event
        self._data = data
        self.text = text
        self.id = id
        self.socket_id = socket_id
        self.source = source
        self.via = via
        self.first_sent = first_sent
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
        if self._measured is not None and self._measured[0] is text:
            return self._measured[1]  # measured when it was validated (or last asked)
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


@dataclass(frozen=True, init=False)
class Receipt:
    """What a publish returns once the provider acknowledged it.

    Attributes:
        driver, event, channels: who delivered what, where.
        message_id: :attr:`Message.id` of the publish.
        ids: ids the provider returned (event ids, message serials), if any.
        requests: how many network requests the publish took (0 in process).
        via: how it was sent: ``"now"``, ``"after_commit"``, ``"outbox"`` or a queue's name.
        pending: ``True`` while it waits to be sent (for a commit, in an outbox or a
            queue): nothing was delivered yet, and ``ids`` is empty.
    """

    driver: str
    event: str
    channels: tuple[str, ...]
    message_id: str
    ids: tuple[str, ...] = ()
    requests: int = 0
    via: str = "now"
    pending: bool = False

    def __init__(
        self,
        driver: str,
        event: str,
        channels: tuple[str, ...],
        message_id: str,
        ids: tuple[str, ...] = (),
        requests: int = 0,
        via: str = "now",
        pending: bool = False,
    ) -> None:
        # the generated __init__ of a frozen dataclass sets each field through
        # object.__setattr__: this one, made on every publish, writes them at once (half the time)
        fields = self.__dict__
        fields["driver"] = driver
        fields["event"] = event
        fields["channels"] = channels
        fields["message_id"] = message_id
        fields["ids"] = ids
        fields["requests"] = requests
        fields["via"] = via
        fields["pending"] = pending

    def __str__(self) -> str:
        chans = ", ".join(self.channels)
        text = f"{self.driver}: {self.event!r} -> {chans} (id {self.message_id}"
        if self.pending:
            return text + f", pending: {self.via})"
        if self.requests:
            text += f", {self.requests} request{'s' if self.requests != 1 else ''}"
        return text + ")"


@dataclass(frozen=True)
class Limits:
    """Limits a driver declares, enforced by the core before any request; ``None``: no limit.

    Lengths count characters, ``max_payload_bytes`` what :meth:`Driver.payload_size`
    measures. ``channel_pattern`` must match a whole name; ``channel_rule`` says it in words.
    """

    max_payload_bytes: int | None = None
    max_event_name_length: int | None = None
    max_channel_name_length: int | None = None
    channel_pattern: re.Pattern[str] | None = None
    channel_rule: str = ""


#: Option names that hold secrets (``secret``, ``token``, ``api_key``, ``key``...):
#: the core wraps such string options in a :class:`Secret` as the configuration loads.
SECRET_OPTION = re.compile(
    r"secret|passw(?:or)?d|token|credential|apikey|(?:^|[_-])key(?:$|[_-])", re.IGNORECASE
)


class Secret:
    """A string that never shows itself in ``repr``, ``str``, f-strings, ``vars()``,
    dataclass fields or pickles.

    Call :meth:`reveal` only where the value is needed. It compares and
    hashes by value, so drivers with different keys are told apart. It is no dataclass:
    what walks dataclass fields (``dataclasses.asdict()`` of a driver's settings, an event
    class's payload, serializers) would open it.
    """

    __slots__ = ("_value",)

    _value: str

    def __init__(self, value: str) -> None:
        object.__setattr__(self, "_value", value)

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

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return self._value == other._value

    def __hash__(self) -> int:
        return hash((Secret, self._value))

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("a Secret is read-only")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("a Secret is read-only")

    def __reduce__(self) -> Any:
        raise TypeError("a Secret cannot be pickled: that would write its value out")

    def __getstate__(self) -> Any:
        raise TypeError("a Secret cannot be pickled: that would write its value out")

    def __copy__(self) -> Secret:
        return self  # immutable

    def __deepcopy__(self, memo: dict[int, Any]) -> Secret:
        return self


class Options(Mapping[str, Any]):
    """A driver's options: a read-only mapping whose repr shows the keys, never the values
    (an option not named like a secret may still hold one: a token in a URL)."""

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
    """``options`` with every string under one of ``names`` (``secret_options``) in a Secret."""
    if names.isdisjoint(options):
        return options if isinstance(options, Options) else Options(options)
    return Options(
        {k: Secret(v) if k in names and isinstance(v, str) else v for k, v in options.items()}
    )


def wrap_secrets(options: Mapping[str, Any]) -> Options:
    """``options`` with every string whose name looks secret (:data:`SECRET_OPTION`) in a Secret."""
    named = frozenset(k for k in options if isinstance(k, str) and SECRET_OPTION.search(k))
    return wrap_named(options, named)
