"""What the write path's speed-ups kept: a Receipt is still a frozen dataclass, a NewRow an
immutable row in column order, the ``channels`` column the same JSON, an async adapter's
awaitable still refused by a blocking call (whatever plain results came before), and the
store a Broadcast keeps is :func:`store_for`'s. On a real SQLite file."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import pickle
import sqlite3
import types
from collections.abc import Callable, Generator, Iterator
from typing import Any

import pytest

from broadcasting import Broadcast, Receipt
from broadcasting._types import encode_payload
from broadcasting.outbox import NewRow, store_for
from broadcasting.outbox._row import decode_channels, encode_channels, new_rows
from broadcasting.plugin import Message


def test_a_receipt_is_the_frozen_dataclass_it_was() -> None:
    by_keyword = Receipt(
        driver="pusher", event="e", channels=("a",), message_id="m", via="outbox", pending=True
    )
    by_position = Receipt("pusher", "e", ("a",), "m", (), 0, "outbox", True)
    assert by_keyword == by_position and hash(by_keyword) == hash(by_position)
    assert Receipt("p", "e", ("a",), "m") == Receipt("p", "e", ("a",), "m", (), 0, "now", False)
    assert [f.name for f in dataclasses.fields(Receipt)] == [
        "driver", "event", "channels", "message_id", "ids", "requests", "via", "pending"
    ]  # fmt: skip
    with pytest.raises(dataclasses.FrozenInstanceError):
        by_keyword.via = "now"  # type: ignore[misc]
    sent = dataclasses.replace(by_keyword, pending=False, ids=("x",), requests=1)
    assert (sent.pending, sent.ids, sent.requests, sent.via) == (False, ("x",), 1, "outbox")
    assert pickle.loads(pickle.dumps(sent)) == sent
    assert repr(by_position).startswith("Receipt(driver='pusher', event='e', channels=('a',)")
    with pytest.raises(TypeError):
        Receipt("p", "e")  # type: ignore[call-arg]


def test_a_new_row_is_an_immutable_row_in_column_order() -> None:
    message = Message(("b", "a", "b2"), "e", {"n": 1}, '{"n":1}', "m1", socket_id="1.2")
    rows = new_rows(message, "pusher", 4, 12.5)
    assert [row.partition for row in rows] == sorted({row.partition for row in rows})
    for row in rows:
        assert row == NewRow(
            partition=row.partition, created=12.5, available_at=12.5, driver="pusher",
            event="e", channels=row.channels, body='{"n":1}', data_kind="json",
            socket_id="1.2", message_id="m1",
        )  # fmt: skip
        with pytest.raises(AttributeError):
            row.body = "changed"  # type: ignore[misc]
    assert sorted(c for row in rows for c in row.channels) == ["a", "b", "b2"]
    [one] = new_rows(Message(("a",), "e", "text", "text", "m2"), "ably", 4, 1.0)
    assert one._fields == NewRow._fields and one.data_kind == "text" and one.channels == ("a",)
    assert one == tuple(getattr(one, name) for name in NewRow._fields)


@pytest.mark.parametrize(
    "channels",
    [
        ("orders",),
        ("a", "b", "c"),
        ('quote"d', "back\\slash", "tab\there", "\x00\x1f"),
        ("é", "日本", "\u2028\u2029", "emoji-\U0001f600"),
        ("lone-\ud800",),
        (),
    ],
)
def test_the_channels_column_is_the_same_json(channels: tuple[str, ...]) -> None:
    text = encode_channels(channels)
    assert text == encode_payload(list(channels))  # as every other column's JSON
    assert decode_channels(text) == channels
    if "\ud800" not in "".join(channels):
        assert json.loads(text) == list(channels)
        assert text == json.dumps(list(channels), separators=(",", ":"), ensure_ascii=False)


def test_channels_that_are_not_str_are_encoded_as_json_would() -> None:
    assert encode_channels(["a", 3]) == '["a",3]'  # type: ignore[list-item]


@pytest.fixture
def broadcast(outbox_config: Callable[..., dict[str, Any]], adapters: Any) -> Iterator[Broadcast]:
    with Broadcast(
        {"DRIVER": "memory", "DRIVERS": {"memory": {}}, "OUTBOX": outbox_config("sqlite")},
        plugins=[adapters.Plugin()],
    ) as broadcast:
        store_for(broadcast).create_tables()
        yield broadcast
        store_for(broadcast).close()


def _connection(broadcast: Broadcast) -> sqlite3.Connection:
    url = broadcast.config.outbox["url"].reveal()
    conn = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
    conn.execute("BEGIN")
    return conn


@types.coroutine
def _generator_coroutine(conn: sqlite3.Connection, sql: str, params: Any) -> Generator[None]:
    """An awaitable made of a generator (``types.coroutine``), as older async code has."""
    yield None
    conn.execute(sql, tuple(params))


class _Later:
    """An awaitable of a class of its own (``__await__``)."""

    def __await__(self) -> Generator[None]:
        yield None


def test_a_blocking_call_refuses_every_awaitable_whatever_came_before(
    broadcast: Broadcast, adapters: Any
) -> None:
    conn = _connection(broadcast)

    class Plain(adapters.ConnTransaction):  # type: ignore[misc,name-defined]
        """A blocking adapter whose execute returns a generator (not an awaitable)."""

        def execute(self, sql: str, params: Any) -> object:
            self.connection.execute(sql, tuple(params))
            return (n for n in range(1))

    class OldStyle(adapters.ConnTransaction):  # type: ignore[misc,name-defined]
        def execute(self, sql: str, params: Any) -> object:
            return _generator_coroutine(self.connection, sql, params)

    class Awaitable(adapters.ConnTransaction):  # type: ignore[misc,name-defined]
        def execute(self, sql: str, params: Any) -> object:
            return _Later()

    try:
        # plain results first: a cursor, then a (non-awaitable) generator
        cursor = adapters.ConnTransaction(conn, "sqlite", "qmark")
        broadcast.channel("a", "1", "e", send="outbox", transaction=cursor)
        broadcast.channel("a", "2", "e", send="outbox", transaction=Plain(conn, "sqlite", "qmark"))
        for adapter in (OldStyle, Awaitable):
            for _ in range(2):  # and again, once its result's type was seen
                with pytest.raises(TypeError, match="is async: write to the outbox inside it"):
                    broadcast.channel(
                        "a", "x", "e", send="outbox", transaction=adapter(conn, "sqlite", "qmark")
                    )
        bodies = [body for (body,) in conn.execute("SELECT body FROM broadcasting_outbox")]
        assert bodies == ["1", "2"]  # nothing of the refused calls was written
    finally:
        conn.execute("ROLLBACK")
        conn.close()


def test_the_async_path_awaits_a_generator_coroutine(broadcast: Broadcast, adapters: Any) -> None:
    conn = _connection(broadcast)

    class OldStyle(adapters.ConnTransaction):  # type: ignore[misc,name-defined]
        def execute(self, sql: str, params: Any) -> object:
            return _generator_coroutine(self.connection, sql, params)

    try:
        for n in range(2):
            asyncio.run(
                broadcast.achannel(
                    "a", str(n), "e", send="outbox", transaction=OldStyle(conn, "sqlite", "qmark")
                )
            )
        bodies = [body for (body,) in conn.execute("SELECT body FROM broadcasting_outbox")]
        assert bodies == ["0", "1"]
    finally:
        conn.execute("ROLLBACK")
        conn.close()


def test_the_store_a_broadcast_keeps_is_store_for_and_outlives_close(broadcast: Broadcast) -> None:
    first = broadcast.channel("a", "1", "e", send="outbox")  # the store's own transaction
    store = store_for(broadcast)
    assert broadcast._outbox_store is store
    store.close()  # its connections go; the next write opens one
    second = broadcast.channel("a", "2", "e", send="outbox")
    assert store_for(broadcast) is store
    rows = store.fetch("test", [0, 1, 2, 3], 1e12, 10)
    assert [r.message_id for r in rows] == [first.message_id, second.message_id]
