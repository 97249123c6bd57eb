"""SQLAlchemy 2 transactions for ``send="after_commit"`` and ``send="outbox"`` (docs/background.md).

A ``broadcasting_transaction`` plugin: ``transaction=`` may be a ``Session``, an
``AsyncSession``, a ``scoped_session`` or ``async_scoped_session``, a ``Connection`` or an
``AsyncConnection``. The object is recognised by its class's module before SQLAlchemy is
imported, so a process that never passes one never imports it.

- after commit: a ``Session`` (sync or async) calls back once its outermost transaction
  commits, through the session's ``after_commit`` event; a publish made inside a savepoint
  (``begin_nested()``) that rolls back is dropped with it, one made in a released savepoint
  waits for the outer commit, and a rollback or a ``close()`` of the session drops every
  publish still waiting. SQLAlchemy has no event after a ``Connection``'s COMMIT (its
  ``commit`` event comes before it), so a ``Connection`` inside a transaction refuses
  ``after_commit`` with an :class:`~broadcasting.InputError`: pass the ``Session``, or
  publish after ``commit()``. Outside a transaction either one sends at once.
- outbox: the row is written through ``exec_driver_sql`` on the session's connection, in
  its transaction (awaitable for the async objects).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from broadcasting._errors import InputError
from broadcasting.hookspecs import hookimpl

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Dialect, Engine
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
    from sqlalchemy.orm import Session
    from sqlalchemy.orm import SessionTransaction as _SATransaction

    from broadcasting._broadcast import Broadcast

__all__ = ["ConnectionTransaction", "SessionTransaction", "adapt", "broadcasting_transaction"]

log = logging.getLogger("broadcasting.background")

#: Where a session keeps the callbacks waiting for its commit (``Session.info``).
_INFO_KEY = "broadcasting.on_commit"


def _from_sqlalchemy(obj: object) -> bool:
    """Whether ``obj``'s class (or a base of it) comes from SQLAlchemy, without importing it
    (each class asked once: every ``transaction=`` given goes through this hook)."""
    kind = type(obj)
    found = _kinds.get(kind)
    if found is None:
        found = any(
            cls.__module__ == "sqlalchemy" or cls.__module__.startswith("sqlalchemy.")
            for cls in kind.__mro__
        )
        if len(_kinds) < 256:
            _kinds[kind] = found
    return found


_kinds: dict[type, bool] = {}


@hookimpl
def broadcasting_transaction(
    broadcast: Broadcast, transaction: object
) -> SessionTransaction | ConnectionTransaction | None:
    """Adapt a SQLAlchemy session or connection; ``None`` for anything else."""
    if transaction is None or not _from_sqlalchemy(transaction):
        return None
    return adapt(transaction)


def adapt(transaction: object) -> SessionTransaction | ConnectionTransaction | None:
    """The adapter of a SQLAlchemy ``Session``, ``AsyncSession``, ``Connection`` or
    ``AsyncConnection`` (a scoped session: its current session); ``None`` for other objects."""
    Session, Connection, scoped_session, Engine, sessionmaker = _classes or _load_classes()
    if isinstance(transaction, scoped_session):
        transaction = transaction()
    if isinstance(transaction, Session):
        return SessionTransaction(transaction)
    if isinstance(transaction, Connection):
        return ConnectionTransaction(transaction)
    if isinstance(transaction, (Engine, sessionmaker)):
        raise TypeError(
            f"transaction={type(transaction).__name__}: it holds no transaction; pass the "
            "Session (or Connection) whose transaction the publish belongs to"
        )
    try:
        from sqlalchemy.ext.asyncio import (
            AsyncConnection,
            AsyncEngine,
            AsyncSession,
            async_scoped_session,
            async_sessionmaker,
        )
    except (
        ImportError
    ):  # pragma: no cover - the asyncio extension needs greenlet, a core dependency
        return None
    if isinstance(transaction, async_scoped_session):
        transaction = transaction()
    if isinstance(transaction, AsyncSession):
        return SessionTransaction(transaction.sync_session, transaction)
    if isinstance(transaction, (AsyncEngine, async_sessionmaker)):
        raise TypeError(
            f"transaction={type(transaction).__name__}: it holds no transaction; pass the "
            "AsyncSession (or AsyncConnection) whose transaction the publish belongs to"
        )
    if isinstance(transaction, AsyncConnection):
        connection = transaction.sync_connection
        if connection is None:
            raise InputError("transaction=: the AsyncConnection is not started (await it first)")
        return ConnectionTransaction(connection, transaction)
    return None


# SQLAlchemy's classes adapt() tells apart, imported by the first SQLAlchemy object given (an
# import statement per publish costs more than the rest of adapt())
_classes: tuple[Any, ...] | None = None


def _load_classes() -> tuple[Any, ...]:
    global _classes
    from sqlalchemy.engine import Connection, Engine
    from sqlalchemy.orm import Session, scoped_session, sessionmaker

    _classes = (Session, Connection, scoped_session, Engine, sessionmaker)
    return _classes


def _sqlite_file(connectable: Engine | Connection) -> str | None:
    """The file a SQLite engine's URL names (as written: maybe relative), for the outbox's
    check that a row goes into its own database; ``None`` for another database, or when the
    URL does not say (in memory, a URI filename: the engine may connect elsewhere through
    ``creator=``)."""
    if connectable.dialect.name != "sqlite":
        return None
    url = connectable.engine.url
    database = url.database
    if not database or database == ":memory:" or database.startswith("file:") or "uri" in url.query:
        return None
    return database


def _server_database(connectable: Engine | Connection) -> str | None:
    """The database a server's engine URL names (PostgreSQL's, MySQL's), for the outbox's
    check that a row goes into its own database; ``None`` for SQLite, or when it names none."""
    if connectable.dialect.name == "sqlite":
        return None
    return connectable.engine.url.database or None


def _paramstyle(dialect: Dialect) -> str:
    # a "pyformat" driver (psycopg, pymysql) takes positional %s as well
    style = dialect.paramstyle
    return "format" if style == "pyformat" else style


class SessionTransaction:
    """A SQLAlchemy ``Session`` (or the ``AsyncSession`` around it) as a
    :class:`~broadcasting.plugin.Transaction`."""

    __slots__ = ("_async", "database", "database_name", "dialect", "paramstyle", "session")

    dialect: str
    paramstyle: str
    #: The SQLite file of the session's bind (see :func:`_sqlite_file`), else ``None``.
    database: str | None
    #: The server's database the bind's URL names (see :func:`_server_database`).
    database_name: str | None

    def __init__(self, session: Session, async_session: AsyncSession | None = None) -> None:
        self.session = session
        self._async = async_session
        try:
            bind = session.get_bind()
        except Exception as exc:
            from sqlalchemy.exc import UnboundExecutionError

            if not isinstance(exc, UnboundExecutionError):
                raise
            raise InputError(
                "transaction=: the Session has no default bind (an engine or connection); "
                "broadcasting needs one to know the database"
            ) from exc
        self.dialect = bind.dialect.name
        self.paramstyle = _paramstyle(bind.dialect)
        self.database = _sqlite_file(bind)
        self.database_name = _server_database(bind)

    def active(self) -> bool:
        """Whether the session is inside a transaction (begun, or begun by its first use)."""
        return self.session.in_transaction()

    def autobegin(self) -> None:
        """Begin the session's transaction if none is (as its first statement would, and so
        an outbox write on it), without touching the database: the fake, which writes no
        row, waits for this transaction's commit as the row would."""
        if self.session.get_transaction() is None:
            self.session._autobegin_t()

    def on_commit(self, callback: Callable[[], object]) -> None:
        """Call ``callback`` once the session's outermost transaction commits; never if the
        transaction, or the savepoint it was registered in, rolls back."""
        session = self.session
        current = session.get_nested_transaction() or session.get_transaction()
        if current is None:  # no transaction: nothing to wait for
            callback()
            return
        waiting: list[tuple[_SATransaction, Callable[[], object]]] | None
        waiting = session.info.get(_INFO_KEY)
        if waiting is None:
            from sqlalchemy import event

            waiting = session.info[_INFO_KEY] = []
            event.listen(session, "after_commit", _after_commit)
            event.listen(session, "after_soft_rollback", _after_soft_rollback)
            event.listen(session, "after_transaction_end", _after_transaction_end)
        waiting.append((current, callback))

    def execute(self, sql: str, params: Sequence[Any]) -> object:
        """Run ``sql`` on the session's connection, in its transaction (awaitable for an
        ``AsyncSession``)."""
        if self._async is not None:
            return _aexecute_session(self._async, sql, params)
        return self.session.connection().exec_driver_sql(sql, tuple(params))

    def __repr__(self) -> str:
        kind = "AsyncSession" if self._async is not None else "Session"
        return f"<{type(self).__name__} of a {kind} on {self.dialect}>"


async def _aexecute_session(session: AsyncSession, sql: str, params: Sequence[Any]) -> object:
    connection = await session.connection()
    return await connection.exec_driver_sql(sql, tuple(params))


def _after_commit(session: Session) -> None:
    if session.get_nested_transaction() is not None:
        return  # a savepoint was released: its publishes wait for the outer commit
    waiting = session.info.get(_INFO_KEY)
    if not waiting:
        return
    callbacks = [callback for _, callback in waiting]
    waiting.clear()
    for callback in callbacks:  # the data is committed: one failing callback stops no other
        try:
            callback()
        except Exception:
            log.exception("a callback waiting for the commit of %r raised", session)


def _after_soft_rollback(session: Session, previous_transaction: _SATransaction) -> None:
    waiting = session.info.get(_INFO_KEY)
    if waiting:  # drop what was registered in the transaction rolled back, or inside it
        waiting[:] = [entry for entry in waiting if not _within(entry[0], previous_transaction)]


def _after_transaction_end(session: Session, transaction: _SATransaction) -> None:
    if transaction.parent is None:  # the outermost one ended: committed (sent) or not
        waiting = session.info.get(_INFO_KEY)
        if waiting:
            waiting.clear()


def _within(inner: _SATransaction, outer: _SATransaction) -> bool:
    found: _SATransaction | None = inner
    while found is not None:
        if found is outer:
            return True
        found = found.parent
    return False


class ConnectionTransaction:
    """A SQLAlchemy ``Connection`` (or the ``AsyncConnection`` around it) as a
    :class:`~broadcasting.plugin.Transaction`: for the outbox; ``after_commit`` inside its
    transaction is refused (SQLAlchemy has no event after a Connection's COMMIT)."""

    __slots__ = ("_async", "connection", "database", "database_name", "dialect", "paramstyle")

    dialect: str
    paramstyle: str
    #: The SQLite file of the connection's engine (see :func:`_sqlite_file`), else ``None``.
    database: str | None
    #: The server's database the engine's URL names (see :func:`_server_database`).
    database_name: str | None

    def __init__(
        self, connection: Connection, async_connection: AsyncConnection | None = None
    ) -> None:
        self.connection = connection
        self._async = async_connection
        self.dialect = connection.dialect.name
        self.paramstyle = _paramstyle(connection.dialect)
        self.database = _sqlite_file(connection)
        self.database_name = _server_database(connection)

    def active(self) -> bool:
        """Whether the connection is inside a transaction."""
        return self.connection.in_transaction()

    def on_commit(self, callback: Callable[[], object]) -> None:
        """Refused inside a transaction: SQLAlchemy tells nothing after a Connection commits."""
        if not self.connection.in_transaction():
            callback()
            return
        kind = "AsyncConnection" if self._async is not None else "Connection"
        raise InputError(
            "a publish that waits for the commit (send='after_commit', or a queue's) with a "
            f"SQLAlchemy {kind} inside a transaction: SQLAlchemy has no event after a "
            "Connection's COMMIT; pass the Session (or AsyncSession), or publish after "
            "commit() (send='outbox' works with a Connection)"
        )

    def execute(self, sql: str, params: Sequence[Any]) -> object:
        """Run ``sql`` on the connection, in its transaction (awaitable for an
        ``AsyncConnection``)."""
        if self._async is not None:
            return self._async.exec_driver_sql(sql, tuple(params))
        return self.connection.exec_driver_sql(sql, tuple(params))

    def __repr__(self) -> str:
        kind = "AsyncConnection" if self._async is not None else "Connection"
        return f"<{type(self).__name__} of a {kind} on {self.dialect}>"
