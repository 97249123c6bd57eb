"""The write path: a publish with ``send="outbox"`` becomes rows of the outbox table, in the
caller's transaction when there is one (docs/background.md#the-outbox)."""

from __future__ import annotations

import asyncio
import inspect
import os
import time
import types
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeGuard

from broadcasting._background import Transaction, pending
from broadcasting._errors import ConfigurationError, InputError
from broadcasting._flow import Effect, Flow
from broadcasting._types import Message, Receipt
from broadcasting.outbox import _sql
from broadcasting.outbox._row import NewRow, new_rows
from broadcasting.outbox._store import Store, _rendered, store_for

if TYPE_CHECKING:
    from broadcasting._broadcaster import Broadcaster


def write(
    broadcaster: Broadcaster[Any], message: Message, transaction: Transaction | None
) -> Flow[Receipt]:
    """Write ``message`` to the outbox: inside ``transaction`` (its database must be the
    ``OUTBOX`` one), else in a short transaction of the store's own, committed at once.

    Returns the pending receipt. Raises :class:`InputError` for a driver the relay cannot
    find again by name (a ``with_options()`` variant), :class:`ConfigurationError` for a
    transaction of another kind of database than the outbox's, ``TypeError`` for an async
    transaction given to a blocking call.
    """
    store = _store_of(broadcaster)
    _check_fits(store, message, broadcaster.driver.name)
    if transaction is None:
        yield _Insert(
            store, new_rows(message, broadcaster.driver.name, store.partitions, time.time())
        )
        return pending(broadcaster, message)
    sql, params, locks = _statement(store, transaction, message, broadcaster.driver.name)
    if store._create_on_first_use and not store._tables_found():
        # a SQLite outbox not opened yet, its tables maybe not made (or not committed): they
        # are made in the caller's transaction (the store's own connection would wait for the
        # lock that transaction holds), and go away with it if it rolls back
        for statement in _sql.create_tables(store.dialect, store.table):
            yield _Execute(transaction, statement, ())
    if locks is not None:  # MySQL: the channels' lock rows, held until the caller's commit
        yield _Execute(transaction, *locks)
    yield _Execute(transaction, sql, params)
    return pending(broadcaster, message)


def check(broadcaster: Broadcaster[Any], transaction: Transaction | None, message: Message) -> None:
    """Raise what :func:`write` would for this driver, transaction and message, writing
    nothing (the test fake takes an outbox publish instead of writing it, and refuses the
    same)."""
    store = _store_of(broadcaster)
    _check_fits(store, message, broadcaster.driver.name)
    if transaction is not None:
        _dialect_of(store, transaction)


#: The longest text each column holds (_sql.create_tables; the Django model's max_length):
#: refused before any statement, on every database alike (SQLite would store more, and the
#: same publish would then fail once the outbox moved to PostgreSQL or MySQL)
COLUMN_LIMITS = {"event": 200, "driver": 100, "socket_id": 100}


def _check_fits(store: Store, message: Message, driver: str) -> None:
    """:class:`InputError` for a message the outbox's columns cannot hold: a name longer than
    its column, or (PostgreSQL, whose text cannot hold one) a NUL character. A failed INSERT
    would abort the caller's transaction on PostgreSQL, and the caller's data with it."""
    for column, text in (("event", message.event), ("driver", driver)):
        if len(text) > COLUMN_LIMITS[column]:
            raise InputError(
                f"send='outbox': the {column} name is {len(text)} characters, and the "
                f"outbox's {column} column holds at most {COLUMN_LIMITS[column]}"
            )
    sender = message.socket_id
    if sender is not None and len(sender) > COLUMN_LIMITS["socket_id"]:
        raise InputError(
            f"send='outbox': socket_id is {len(sender)} characters, and the outbox's "
            f"socket_id column holds at most {COLUMN_LIMITS['socket_id']}"
        )
    if store.dialect == _sql.POSTGRESQL and ("\x00" in message.event or "\x00" in message.text):
        # JSON data is written with a NUL escaped (\u0000): only a str message holds one as it is
        where = "the event name" if "\x00" in message.event else "the message"
        raise InputError(
            f"send='outbox': {where} holds a NUL character (\\x00), which PostgreSQL text "
            "cannot store; the outbox is in PostgreSQL"
        )


def _store_of(broadcaster: Broadcaster[Any]) -> Store:
    """The outbox of ``broadcaster``'s Broadcast, if the relay can find the driver again by
    its name (:class:`InputError` for a ``with_options()`` variant)."""
    broadcast = broadcaster._broadcast
    name = broadcaster.driver.name
    if broadcast._named.get(name) is not broadcaster:
        raise InputError(
            f"send='outbox' writes the driver's name, and the relay sends through "
            f"broadcast.driver({name!r}): a with_options() variant or a driver class not "
            "named in configuration cannot be written to the outbox (a subclass of the "
            "driver with a name of its own, registered in every process: "
            "docs/background.md#settings; or send it another way)"
        )
    store = broadcast._outbox_store
    if store is None:
        store = broadcast._outbox_store = store_for(broadcast)  # kept for the next write
    return store


def _statement(
    store: Store, transaction: Transaction, message: Message, driver: str
) -> tuple[str, list[Any], tuple[str, list[int]] | None]:
    """The INSERT of ``message``'s rows for ``transaction``'s database and placeholders, its
    parameters, and (MySQL) the statement and keys of the channels' locks to take first
    (refused as :func:`check` says, before anything is built)."""
    dialect = _dialect_of(store, transaction)
    sql, params = _sql.insert_message(
        dialect, store.table, message, driver, store.partitions, time.time()
    )
    try:
        text = _rendered(sql, dialect, transaction.paramstyle)
    except ValueError as exc:
        raise TypeError(f"transaction={type(transaction).__qualname__}: {exc}") from None
    locks = _sql.row_locks(dialect, store.table, message.channels)
    if locks is not None:
        locks = (_rendered(locks[0], dialect, transaction.paramstyle), locks[1])
    return text, params, locks


def _dialect_of(store: Store, transaction: Transaction) -> str:
    """The outbox's dialect, if ``transaction`` is in the outbox's database (else a
    :class:`ConfigurationError` that says why it is not)."""
    alias = getattr(transaction, "alias", None)  # a Django database's
    if isinstance(alias, str) and getattr(store._source, "alias", None) != alias:
        if getattr(transaction, "ambient", False):
            found = f"an atomic() block is open on Django's database {alias!r}"
        else:
            found = f"transaction={alias!r} names a Django database"
        raise ConfigurationError(
            "config",
            "OUTBOX",
            f"{found}, and the outbox is not in it: a row joins a Django transaction only "
            f"with OUTBOX = {{'django': {alias!r}}} (with another outbox it would not roll "
            "back with your data); configure that, or publish outside atomic()",
        )
    dialect = transaction.dialect
    if dialect != store.dialect:  # maybe another name of it ("mariadb")
        try:
            dialect = _sql.dialect_of(dialect)
        except ValueError as exc:
            raise ConfigurationError("config", "OUTBOX", str(exc)) from None
    if dialect != store.dialect:
        raise ConfigurationError(
            "config",
            "OUTBOX",
            f"the outbox is a {store.dialect} database but the transaction given is a "
            f"{transaction.dialect} one: send='outbox' writes in the caller's transaction, "
            "so OUTBOX must name the database that transaction is in",
        )
    if dialect == _sql.SQLITE:
        _check_sqlite_file(store, transaction)
    else:
        _check_server_database(store, transaction)
    return dialect


def _check_server_database(store: Store, transaction: Transaction) -> None:
    """Refuse a transaction in another database of the server than the outbox's (by the
    names their URLs give): its row would be written there, where no relay reads (or, with
    no table there, fail and abort the caller's transaction).

    An adapter says which database it is in with ``database_name``; one that does not say,
    or a URL that names none, is not checked; nor a MySQL table named with its database
    (``"other.broadcasting_outbox"``), which one transaction can reach across databases."""
    given = getattr(transaction, "database_name", None)
    mine = getattr(store._source, "database_name", None)
    if not isinstance(given, str) or not isinstance(mine, str) or given == mine:
        return
    if store.dialect == _sql.MYSQL and "." in store.table:
        return
    raise ConfigurationError(
        "config",
        "OUTBOX",
        f"the outbox is in the database {mine!r} but the transaction given is in {given!r}: "
        "send='outbox' writes in the caller's transaction, so OUTBOX must name the database "
        "that transaction is in (a row written there would never reach the relay)",
    )


def _check_sqlite_file(store: Store, transaction: Transaction) -> None:
    """Refuse a transaction on another SQLite file than the outbox's: the row (and the tables,
    on a first write) would be made there, where no relay reads, and the publish lost.

    The adapter says where its database is with ``database`` (a path; ``""`` in memory);
    one that does not say is not checked."""
    given = getattr(transaction, "database", None)
    path = getattr(store._source, "path", None)
    if not isinstance(given, str) or not isinstance(path, str) or given == path:
        return
    if store.table.rpartition(".")[0] not in ("", "main"):
        return  # the outbox is in a database attached to the caller's: cannot tell
    if given and _same_file(path, given):
        return
    where = f"the SQLite file {given!r}" if given else "an in-memory SQLite database"
    raise ConfigurationError(
        "config",
        "OUTBOX",
        f"the outbox is the SQLite file {path!r} but the transaction given is in {where}: "
        "send='outbox' writes in the caller's transaction, so OUTBOX must name the database "
        "that transaction is in (a row written there would never reach the relay)",
    )


#: Whether two SQLite paths (the outbox's, a transaction's) name one file: resolved once (a
#: relative path: once per working directory).
_same_files: dict[tuple[str, ...], bool] = {}


def _same_file(first: str, second: str) -> bool:
    if os.path.isabs(first) and os.path.isabs(second):
        key: tuple[str, ...] = (first, second)
    else:
        key = (first, second, os.getcwd())
    found = _same_files.get(key)
    if found is not None:
        return found
    same = os.path.realpath(first) == os.path.realpath(second)
    if not same and os.path.exists(first) and os.path.exists(second):
        try:
            same = os.path.samefile(first, second)
        except OSError:
            same = False
    if len(_same_files) < 256:
        _same_files[key] = same
    return same


@dataclass(slots=True)
class _Insert(Effect):
    """Insert rows through the store's own connection (in a thread on the async path)."""

    store: Store
    rows: Sequence[NewRow]

    def run(self) -> None:
        self.store.insert(self.rows)

    async def arun(self) -> None:
        await asyncio.to_thread(self.store.insert, self.rows)


@dataclass(slots=True)
class _Execute(Effect):
    """Run the INSERT in the caller's transaction (awaited if its adapter is async)."""

    transaction: Transaction
    sql: str
    params: Sequence[Any]

    def run(self) -> None:
        _run(self.transaction, self.sql, self.params)

    async def arun(self) -> None:
        result = self.transaction.execute(self.sql, self.params)
        if type(result) not in _PLAIN and _awaitable(result):
            await result


def _run(transaction: Transaction, sql: str, params: Sequence[Any]) -> None:
    """Run ``sql`` in the caller's transaction, blocking (an async adapter is refused)."""
    result = transaction.execute(sql, params)
    if type(result) not in _PLAIN and _awaitable(result):
        if inspect.iscoroutine(result):
            result.close()  # never awaited: nothing was written
        raise TypeError(
            f"transaction={type(transaction).__qualname__} is async: write to the "
            "outbox inside it with `await broadcast.achannel(..., send='outbox', "
            "transaction=...)`, not the blocking channel()"
        )


#: Types of what ``execute()`` returned that are never awaitable (a DB-API cursor, None...):
#: found once, so the next INSERT does not ask ``inspect`` again.
_PLAIN: set[type] = {type(None)}


def _awaitable(result: object) -> TypeGuard[Awaitable[Any]]:
    """Whether ``execute()``'s ``result`` is to be awaited (its type noted if it never is)."""
    if inspect.isawaitable(result):
        return True
    if not isinstance(result, types.GeneratorType) and len(_PLAIN) < 64:
        _PLAIN.add(type(result))  # a generator is awaitable or not by its flags: never noted
    return False
