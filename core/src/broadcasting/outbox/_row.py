"""An outbox row: what one publish becomes in the table, and back (docs/background.md).

A publish to channels of several partitions is written as one row per partition (same
``message_id``), so each row's channels hash to ONE partition and its events stay in order.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from json.encoder import encode_basestring
from typing import Any, NamedTuple

from broadcasting._types import Message, encode_payload

#: Row states (the ``state`` column).
PENDING = 0
SENDING = 1
DELIVERED = 2
DEAD = 3
UNKNOWN = 4
#: Each state's name, as the CLI and :class:`~broadcasting.outbox.Stats` show it.
STATE_NAMES = {
    PENDING: "pending",
    SENDING: "sending",
    DELIVERED: "delivered",
    DEAD: "dead",
    UNKNOWN: "unknown",
}
#: States a relay still has to send.
OPEN = (PENDING, SENDING)
#: States an operator may requeue.
FAILED = (DEAD, UNKNOWN)

TEXT = "text"
JSON = "json"


def partition_of(channel: str, partitions: int) -> int:
    """The partition ``channel``'s events go through: ``crc32(channel) % partitions``."""
    return zlib.crc32(channel.encode("utf-8")) % partitions


class NewRow(NamedTuple):
    """A row to insert: one publish's channels of one partition (a named tuple: made on every
    write, it costs a quarter of a frozen dataclass)."""

    partition: int
    created: float
    available_at: float
    driver: str
    event: str
    channels: tuple[str, ...]
    body: str
    data_kind: str
    socket_id: str | None
    message_id: str


@dataclass(frozen=True, slots=True)
class Row:
    """A row as the store reads it back.

    Attributes:
        id: its position: a partition's rows are sent in ``id`` order.
        partition: ``crc32(channel) % partitions`` of each of its channels.
        created, available_at: epoch seconds: written; not to be sent before.
        driver: the driver's name (``broadcast.driver(name)``).
        event, channels, body: the publish (``body``: :attr:`Message.text`).
        data_kind: ``"text"`` if :attr:`Message.data` was a ``str``, else ``"json"``.
        socket_id: the sender's connection to leave out, if any.
        message_id: :attr:`Message.id`, the same on every retry and every partition's row.
        state: :data:`PENDING`, :data:`SENDING`, :data:`DELIVERED`, :data:`DEAD` or
            :data:`UNKNOWN`.
        attempts: how many times it was sent and failed.
        error: the last failure's reason, if any.
        done_at: epoch seconds it was delivered, or given up (dead, unknown).
    """

    id: int
    partition: int
    created: float
    available_at: float
    driver: str
    event: str
    channels: tuple[str, ...]
    body: str
    data_kind: str
    socket_id: str | None
    message_id: str
    state: int
    attempts: int
    error: str | None
    done_at: float | None

    @property
    def state_name(self) -> str:
        """``"pending"``, ``"sending"``, ``"delivered"``, ``"dead"`` or ``"unknown"``."""
        return STATE_NAMES.get(self.state, str(self.state))

    def message(self) -> Message:
        """The :class:`Message` to publish (``via="outbox"``, ``id`` = :attr:`message_id`)."""
        data = self.body if self.data_kind == TEXT else json.loads(self.body)
        return Message(
            self.channels,
            self.event,
            data,
            self.body,
            self.message_id,
            socket_id=self.socket_id,
            via="outbox",
            # left sending: an earlier attempt may have gone out, at the earliest when written
            first_sent=self.created if self.state == SENDING else None,
        )


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of a row a relay sent (:meth:`Store.finish`).

    ``state``: the row's new state; ``channels_left``: the channels still to send (after a
    partial delivery), else ``None`` (unchanged); ``available_at``: not before (a retry's
    backoff), else ``None`` (unchanged); ``error``: the reason, if it failed; ``attempts``:
    the row's count of failed sends from now on.
    """

    id: int
    state: int
    channels_left: tuple[str, ...] | None = None
    available_at: float | None = None
    error: str | None = None
    attempts: int = 0


#: Makes a :class:`NewRow` of its ten fields in order, without the named tuple's own
#: ``__new__`` (a Python function taking keywords: twice the cost, on every write).
_new_row: Callable[[type[NewRow], tuple[Any, ...]], NewRow] = tuple.__new__


def new_rows(message: Message, driver: str, partitions: int, now: float) -> list[NewRow]:
    """``message`` as rows, one per partition its channels hash to (channels in their order)."""
    kind = TEXT if isinstance(message.data, str) else JSON
    channels = message.channels
    if len(channels) == 1:  # the common case, quicker
        partition = partition_of(channels[0], partitions)
        event, text, sender, mid = message.event, message.text, message.socket_id, message.id
        return [
            _new_row(
                NewRow, (partition, now, now, driver, event, channels, text, kind, sender, mid)
            )
        ]
    by_partition: dict[int, list[str]] = {}
    for channel in channels:
        by_partition.setdefault(partition_of(channel, partitions), []).append(channel)
    return [
        _new_row(
            NewRow,
            (
                partition,
                now,
                now,
                driver,
                message.event,
                tuple(channels),
                message.text,
                kind,
                message.socket_id,
                message.id,
            ),
        )
        for partition, channels in sorted(by_partition.items())
    ]


def encode_channels(channels: Sequence[str]) -> str:
    """The ``channels`` column: a JSON array (compact, as :func:`encode_payload` writes it)."""
    try:  # each name quoted by the function the JSON encoder quotes strings with
        if len(channels) == 1:
            return f"[{encode_basestring(channels[0])}]"
        return f"[{','.join(map(encode_basestring, channels))}]"
    except TypeError:  # not all str: the encoder says what it makes of them
        return encode_payload(list(channels))


def decode_channels(text: str) -> tuple[str, ...]:
    """The channels of a ``channels`` column."""
    return tuple(json.loads(text))
