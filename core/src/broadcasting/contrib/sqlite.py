"""A ``sqlite3.Connection`` as the transaction of ``send="outbox"`` (docs/background.md).

A ``broadcasting_transaction`` plugin for the standard library's ``sqlite3``: the outbox row
is written on the caller's connection, inside its open transaction, so it commits or rolls
back with the caller's data.

``send="after_commit"`` needs to be told when a transaction has committed, and ``sqlite3``
tells nobody (it has no commit hook, and its trace callback sees ``COMMIT`` before it
happens). So inside an open transaction it is refused with an
:class:`~broadcasting.InputError`; outside one it sends at once, as everywhere. Use
``send="outbox"``, publish after ``commit()``, or go through SQLAlchemy or Django.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from broadcasting._errors import InputError
from broadcasting.hookspecs import hookimpl

if TYPE_CHECKING:
    import sqlite3

    from broadcasting._broadcast import Broadcast

__all__ = ["SQLiteTransaction", "broadcasting_transaction"]


@hookimpl
def broadcasting_transaction(broadcast: Broadcast, transaction: object) -> SQLiteTransaction | None:
    """Adapt a ``sqlite3.Connection``; ``None`` for anything else."""
    if transaction is None:
        return None
    kind = type(transaction)
    found = _connections.get(kind)
    if found is None:
        found = _is_connection(kind)
        if len(_connections) < 256:
            _connections[kind] = found
    return SQLiteTransaction(transaction) if found else None  # type: ignore[arg-type]


#: Whether a class is ``sqlite3.Connection`` (or a subclass): each class asked once, as every
#: ``transaction=`` given goes through this hook.
_connections: dict[type, bool] = {}


def _is_connection(kind: type) -> bool:
    # by its module first: a process that never passes a connection never imports sqlite3
    if not any(c.__module__ == "sqlite3" for c in kind.__mro__):
        return False
    import sqlite3

    return issubclass(kind, sqlite3.Connection)


class SQLiteTransaction:
    """A ``sqlite3.Connection`` as a :class:`~broadcasting.plugin.Transaction`."""

    __slots__ = ("connection",)

    dialect = "sqlite"
    paramstyle = "qmark"

    def __init__(self, connection: sqlite3.Connection) -> None:
        self.connection = connection

    def active(self) -> bool:
        """Whether a transaction is open on the connection (``in_transaction``)."""
        return self.connection.in_transaction

    def on_commit(self, callback: Callable[[], object]) -> None:
        """Refused inside a transaction: ``sqlite3`` says nothing after a commit."""
        if not self.connection.in_transaction:
            callback()
            return
        raise InputError(
            "a publish that waits for the commit (send='after_commit', or a queue's) with a "
            "sqlite3.Connection inside a transaction: sqlite3 has no commit hook, so nothing "
            "can wait for the commit; use send='outbox' (written in this transaction), publish "
            "after commit(), or use SQLAlchemy or Django"
        )

    @property
    def database(self) -> str | None:
        """The file of the connection's main database (``""``: in memory, or temporary), for
        the outbox's check that a row goes into its own database; ``None`` when other
        databases are attached (the outbox's table may be in one of them)."""
        rows = self.connection.execute("PRAGMA database_list").fetchall()
        if len(rows) == 1 and rows[0][1] == "main":  # the usual answer: nothing attached
            return str(rows[0][2] or "")
        found: str | None = None
        for _, name, file in rows:
            if name == "main":
                found = str(file or "")
            elif name != "temp":
                return None
        return found

    def execute(self, sql: str, params: Sequence[Any]) -> object:
        """Run ``sql`` on the connection, inside its transaction."""
        return self.connection.execute(sql, tuple(params))

    def __repr__(self) -> str:
        state = "in a transaction" if self.connection.in_transaction else "idle"
        return f"<SQLiteTransaction {state}>"
