"""Bad input given to ``channel(send="outbox", transaction=...)`` gets the error the same input
gets with ``send="now"`` (same type, same words), before any hook runs or any row is written:
the write path's speed-ups skip no check. Real databases (SQLite file, PostgreSQL), the real
Pusher driver's rules (no request is made: each input is refused before)."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from broadcasting import (
    Broadcast,
    BroadcastEvent,
    ConfigurationError,
    EncryptedPrivateChannel,
    InputError,
)
from broadcasting.hookspecs import hookimpl
from broadcasting.outbox import store_for


class Spy:
    """Counts the hooks a deferred publish goes through (and lets each pass)."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    @hookimpl
    def broadcasting_transaction(self, broadcast: object, transaction: object) -> None:
        self.calls.append("broadcasting_transaction")

    @hookimpl
    def broadcasting_defer(self, message: object) -> None:
        self.calls.append("broadcasting_defer")


class Cycle(dict[str, Any]):
    def __init__(self) -> None:
        super().__init__()
        self["me"] = self


class WrongChannels(BroadcastEvent):
    def broadcast_on(self) -> Any:
        return 42


class WrongPayload(BroadcastEvent):
    def broadcast_on(self) -> Any:
        return "orders"

    def broadcast_with(self) -> Any:
        return 3.5


class Unserialisable(BroadcastEvent):
    def broadcast_on(self) -> Any:
        return "orders"

    def broadcast_with(self) -> Any:
        return {"when": object()}


#: (what is wrong, the call's arguments): each must be refused whichever way it is sent.
BAD: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = [
    ("no channels", ([], "x", "e"), {}),
    ("a channel that is not a str", (["orders", 7], "x", "e"), {}),
    ("an empty channel name", ("", "x", "e"), {}),
    ("channels of another type", ({"orders"}, "x", "e"), {}),
    ("a channel name Pusher refuses", ("orders and more", "x", "e"), {}),
    ("a channel name too long", ("c" * 300, "x", "e"), {}),
    ("a lone surrogate in a channel", ("orders-\ud800", "x", "e"), {}),
    ("an empty event name", ("orders", "x", ""), {}),
    ("an event name that is not a str", ("orders", "x", 3), {}),
    ("an event name too long", ("orders", "x", "e" * 300), {}),
    ("a reserved event name", ("orders", "x", "pusher:subscribe"), {}),
    ("a payload of another type", ("orders", 42, "e"), {}),
    ("a payload JSON cannot hold", ("orders", {"when": object()}, "e"), {}),
    ("NaN in the payload", ("orders", {"x": float("nan")}, "e"), {}),
    ("a cycle in the payload", ("orders", Cycle(), "e"), {}),
    ("a lone surrogate in the payload", ("orders", {"name": "a\udc00b"}, "e"), {}),
    ("a payload over Pusher's limit", ("orders", "x" * 20_000, "e"), {}),
    ("an encrypted channel without a master key", (EncryptedPrivateChannel("x"), "x", "e"), {}),
    ("a socket_id that is not one", ("orders", "x", "e"), {"socket_id": "not-a-socket"}),
    ("an empty socket_id", ("orders", "x", "e"), {"socket_id": ""}),
    ("an event object with a message too", (WrongPayload(), "x"), {}),
    ("an event object's channels", (WrongChannels(),), {}),
    ("an event object's payload type", (WrongPayload(),), {}),
    ("an event object's payload", (Unserialisable(),), {}),
]


@contextlib.contextmanager
def _in_a_transaction(
    database: str, broadcast: Broadcast, adapters: Any
) -> Iterator[tuple[Any, Callable[[], int]]]:
    """``broadcast``'s outbox as a fresh table; the caller's connection with a transaction
    open (as ``transaction=``), and a count of the outbox's rows as that transaction sees
    them; rolled back and closed after."""
    store = store_for(broadcast)
    store.create_tables()
    url = broadcast.config.outbox["url"].reveal()
    if database == "sqlite":
        conn: Any = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
        conn.execute("BEGIN")
        transaction = adapters.ConnTransaction(conn, "sqlite", "qmark")
        table = '"broadcasting_outbox"'
    elif database == "mysql":
        conn = adapters.mysql_connect(url)
        transaction = adapters.CursorConnTransaction(conn, "mysql", "format")
        table = f"`{store.table}`"
    else:
        import psycopg

        conn = psycopg.connect(url)
        transaction = adapters.ConnTransaction(conn, "postgresql", "format")
        table = ".".join(f'"{part}"' for part in store.table.split("."))

    def count() -> int:
        if database == "mysql":
            with conn.cursor() as cursor:
                cursor.execute(f"SELECT COUNT(*) FROM {table}")
                (n,) = cursor.fetchone()
            return int(n)
        (n,) = conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()
        return int(n)

    try:
        yield transaction, count
    finally:
        conn.rollback() if database != "sqlite" else conn.execute("ROLLBACK")
        conn.close()
        broadcast.close()
        store.close()


@pytest.fixture(params=["sqlite", "postgresql", "mysql"])
def setup(
    request: pytest.FixtureRequest, outbox_config: Callable[..., dict[str, Any]], adapters: Any
) -> Iterator[tuple[Broadcast, Spy, Any, Callable[[], int]]]:
    """A Broadcast on the Pusher driver (nothing listens at its address: no request may be
    made), in the caller's transaction (:func:`_in_a_transaction`)."""
    spy = Spy()
    options = {"app_id": "1", "key": "key", "secret": "secret", "host": "127.0.0.1", "port": 9}
    outbox = outbox_config(request.param)
    broadcast = Broadcast(
        {"DRIVER": "pusher", "DRIVERS": {"pusher": options}, "OUTBOX": outbox},
        plugins=[adapters.Plugin(), spy],
    )
    with _in_a_transaction(request.param, broadcast, adapters) as (transaction, count):
        yield broadcast, spy, transaction, count


@pytest.mark.parametrize(("what", "args", "kwargs"), BAD, ids=[b[0] for b in BAD])
def test_bad_input_gets_the_same_error_as_now_before_anything_is_written(
    setup: tuple[Broadcast, Spy, Any, Callable[[], int]],
    what: str,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> None:
    broadcast, spy, transaction, count = setup
    with pytest.raises((InputError, ConfigurationError, TypeError)) as now:
        broadcast.channel(*args, send="now", **kwargs)
    with pytest.raises(type(now.value)) as outbox:
        broadcast.channel(*args, send="outbox", transaction=transaction, **kwargs)
    assert str(outbox.value) == str(now.value), what
    assert spy.calls == [], what  # refused before the transaction was adapted or deferred
    assert count() == 0, what


def test_good_input_is_written_through_both_hooks(
    setup: tuple[Broadcast, Spy, Any, Callable[[], int]],
) -> None:
    """The control: the same setup writes a good publish (so the refusals above are the
    input's, not the setup's)."""
    broadcast, spy, transaction, count = setup
    receipt = broadcast.channel("orders", {"id": 1}, "e", send="outbox", transaction=transaction)
    assert receipt.pending and receipt.via == "outbox" and receipt.driver == "pusher"
    assert spy.calls == ["broadcasting_transaction", "broadcasting_defer"]
    assert count() == 1


@pytest.fixture(params=["sqlite", "postgresql", "mysql"])
def memory_setup(
    request: pytest.FixtureRequest, outbox_config: Callable[..., dict[str, Any]], adapters: Any
) -> Iterator[tuple[str, Broadcast, Any, Callable[[], int]]]:
    """The setup above on the memory driver, which takes any event name and any text (so
    what is refused is the outbox's, not a driver's rules)."""
    outbox = outbox_config(request.param)
    broadcast = Broadcast({"DRIVER": "memory", "OUTBOX": outbox}, plugins=[adapters.Plugin()])
    with _in_a_transaction(request.param, broadcast, adapters) as (transaction, count):
        yield request.param, broadcast, transaction, count


def test_what_the_outbox_columns_cannot_hold_is_refused_and_the_callers_transaction_goes_on(
    memory_setup: tuple[str, Broadcast, Any, Callable[[], int]],
) -> None:
    """An event name over the event column's 200 characters (which the memory and Ably
    drivers accept) and, on PostgreSQL, a NUL character failed in the database: on PostgreSQL
    that aborted the caller's transaction, its own data lost with it. Now each is an
    InputError before any statement, on every database alike for the lengths."""
    database, broadcast, transaction, count = memory_setup
    long_event = "e" * 201
    assert not broadcast.channel("orders", "x", long_event).pending  # the driver takes it
    with pytest.raises(InputError, match=r"event name is 201 characters.*at most 200"):
        broadcast.channel("orders", "x", long_event, send="outbox", transaction=transaction)
    with pytest.raises(InputError, match="event name is 201 characters"):
        broadcast.channel("orders", "x", long_event, send="outbox")  # its own transaction
    nul = [("orders", "x", "a\x00b"), ("orders", "x\x00y", "e")]
    for args in nul:
        if database == "postgresql":
            with pytest.raises(InputError, match="NUL character"):
                broadcast.channel(*args, send="outbox", transaction=transaction)
        else:  # stored as it is
            broadcast.channel(*args, send="outbox", transaction=transaction)
    # JSON data holds a NUL escaped: written everywhere
    broadcast.channel("orders", {"text": "x\x00y"}, "e", send="outbox", transaction=transaction)
    broadcast.channel("orders", "x", "e" * 200, send="outbox", transaction=transaction)
    assert count() == (2 if database == "postgresql" else 4)  # the transaction is usable


@pytest.mark.parametrize(("kind", "other"), [("postgresql", "postgres"), ("mysql", "mysql")])
def test_a_session_in_another_database_of_the_server_is_refused_before_any_statement(
    outbox_config: Callable[..., dict[str, Any]], kind: str, other: str
) -> None:
    """Only another SQLite file was refused: a SQLAlchemy session on another database of the
    same server wrote its row there (never relayed, if that database had the table too) or
    failed and aborted the caller's transaction. Its URL's database is now compared with the
    outbox's; the same database is written as before."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.orm import Session

    outbox = outbox_config(kind)
    url = outbox["url"]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    mine = url.rsplit("/", 1)[1]
    with Broadcast({"DRIVER": "memory", "OUTBOX": outbox}) as broadcast:
        store = store_for(broadcast)
        store.create_tables()
        elsewhere = create_engine(url.rsplit("/", 1)[0] + f"/{other}")
        same = create_engine(url)
        try:
            with Session(elsewhere) as session, session.begin():
                session.execute(text("SELECT 1"))
                with pytest.raises(
                    ConfigurationError,
                    match=f"the outbox is in the database '{mine}' but the transaction given "
                    f"is in '{other}'",
                ):
                    broadcast.channel("orders", "x", "e", send="outbox", transaction=session)
                session.execute(text("SELECT 1"))  # the caller's transaction goes on
            with Session(same) as session, session.begin():
                receipt = broadcast.channel("orders", "x", "e", send="outbox", transaction=session)
                assert receipt.pending
            assert store.stats(0).backlog["pending"] == 1
        finally:
            elsewhere.dispose()
            same.dispose()
            store.close()
