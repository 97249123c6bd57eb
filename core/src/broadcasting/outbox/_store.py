"""The outbox's storage: one implementation over DB-API connections (docs/background.md).

A :class:`Store` reads and changes the outbox table for the relay (blocking calls: the relay
runs them in a thread) and inserts rows for the write path. It reaches its database through
a small *source*: the stdlib :mod:`sqlite3` (the default), :mod:`psycopg` 3, a SQLAlchemy
engine or a Django connection. Every SQL statement is in :mod:`broadcasting.outbox._sql`.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import operator
import os
import random
import re
import threading
import time
import weakref
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, Protocol, TypeVar

from broadcasting._errors import BroadcastError, ConfigurationError, InputError, OutboxError
from broadcasting._fork import call_after_fork, in_forked_child
from broadcasting._types import Secret
from broadcasting.outbox import _sql
from broadcasting.outbox._row import (
    DEAD,
    DELIVERED,
    FAILED,
    PENDING,
    SENDING,
    STATE_NAMES,
    UNKNOWN,
    NewRow,
    Outcome,
    Row,
    decode_channels,
    encode_channels,
)

if TYPE_CHECKING:
    from broadcasting._broadcast import Broadcast

log = logging.getLogger("broadcasting.outbox")

#: The default outbox: a SQLite file in the working directory (or ``$BROADCASTING_OUTBOX``).
DEFAULT_URL = "sqlite:///broadcasting-outbox.sqlite3"
ENV_URL = "BROADCASTING_OUTBOX"
DEFAULT_PARTITIONS = 16
DEFAULT_LEASE = 30.0
DEFAULT_RETENTION = 3600.0
DEFAULT_BATCH = 500
#: Seconds two times of a relay's row may differ and still be the same one written (the
#: database keeps a float as it was given; this only absorbs a driver's rounding).
SAME_TIME = 1e-6


class OwnerInUse(InputError):
    """A relay claimed the name ``owner`` that another relay holds: that relay said it is
    alive until ``until`` (epoch seconds), a time this one did not write."""

    def __init__(self, owner: str, until: float, message: str = "") -> None:
        said = message or f"relay name {owner!r} is held by a live relay"
        super().__init__(said)
        self._made_of(said, owner, until, message)  # type(e)(*e.args): the same error
        self.owner = owner
        self.until = until


class OutboxTablesMissing(OutboxError):
    """One of the outbox's tables (``table``, as the database names it) does not exist in
    its database: nobody made them yet (``broadcasting outbox init``, Django's ``migrate``).
    Its message says which and what makes them; the database's error is chained to it."""

    def __init__(self, message: str, table: str) -> None:
        super().__init__(message)
        self._made_of(message, message, table)  # type(e)(*e.args): the same error
        self.table = table


class OutboxSchemaMissing(OutboxError):
    """The schema (PostgreSQL) or database (MySQL/MariaDB) that the outbox's ``table`` is in
    (``schema.table``), ``schema``, does not exist: ``broadcasting outbox init`` makes tables,
    not schemas. Its message says which and how to make it; the database's error is chained."""

    def __init__(self, message: str, schema: str) -> None:
        super().__init__(message)
        self._made_of(message, message, schema)  # type(e)(*e.args): the same error
        self.schema = schema


class OutboxFileMissing(OutboxError):
    """A command that looks after an outbox (``outbox list``, ``drop``, ``relay --stats``...:
    not ``init``) was given a SQLite file, ``path``, that does not exist: it makes none (a
    mistyped path would otherwise become an empty outbox, its rows "not found")."""

    def __init__(self, message: str, path: str) -> None:
        super().__init__(message)
        self._made_of(message, message, path)  # type(e)(*e.args): the same error
        self.path = path


#: The errors whose message says what is wrong and what to do (no "is the database up?").
EXPLAINED = (OutboxTablesMissing, OutboxSchemaMissing, OutboxFileMissing)


def _written(until: float, written: Collection[float]) -> bool:
    """Whether ``until``, read from a relay's row, is one of the times ``written``."""
    return any(abs(until - each) <= SAME_TIME for each in written)


#: The ``OUTBOX`` settings (docs/background.md#where-the-outbox-lives).
SETTINGS = ("url", "django", "table", "partitions", "lease", "retention", "batch")
#: Ids per statement (``IN (...)`` lists), under every database's limit of parameters.
CHUNK = 500
#: How many times a transaction of the store's own runs, at most, while the database keeps
#: choosing it as a deadlock's victim (docs/background.md#order).
DEADLOCK_TRIES = 5


@dataclass(frozen=True)
class Stats:
    """The outbox at one moment (:meth:`Store.stats`).

    Attributes:
        backlog: rows per state name (``pending``, ``sending``, ``delivered``, ``dead``,
            ``unknown``), each state present, 0 if none.
        lag: age in seconds of the oldest row still to send (pending or sending), or ``None``.
        relays: each live relay (its owner name) and the partitions it holds (maybe none).
        partitions: how many partitions the outbox has.
        stranded: rows still to send in partitions at or past ``partitions``, which no
            relay reads: written by a process configured with more partitions than this one.
    """

    backlog: Mapping[str, int]
    lag: float | None
    relays: Mapping[str, tuple[int, ...]]
    partitions: int
    stranded: int = 0

    def stranded_note(self) -> str:
        """What to say of the :attr:`stranded` rows."""
        count = self.stranded
        return (
            f"{count} row{'' if count == 1 else 's'} to send in partitions no relay reads "
            f"({self.partitions} or more): give every writer and relay the same OUTBOX "
            "'partitions'"
        )

    def as_dict(self) -> dict[str, Any]:
        """The stats as plain JSON data."""
        return {
            "backlog": dict(self.backlog),
            "lag": self.lag,
            "relays": {owner: list(held) for owner, held in self.relays.items()},
            "partitions": self.partitions,
            "stranded": self.stranded,
        }


class _Cursor(Protocol):
    """Runs statements in one open transaction (already rendered for the source)."""

    def run(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...

    def count(self, sql: str, params: Sequence[Any] = ()) -> int: ...

    def many(self, sql: str, params: Sequence[Sequence[Any]]) -> None: ...


class _Source(Protocol):
    """Where a store's connections come from."""

    dialect: str
    paramstyle: str
    #: What its database driver raises, and the texts to take out of those errors' messages
    #: (the password).
    errors: tuple[type[Exception], ...]
    hidden: tuple[Secret, ...]

    def transaction(
        self, write: bool, ddl: bool = False
    ) -> contextlib.AbstractContextManager[_Cursor]:
        """A transaction; ``write``: it will write (SQLite: take the lock first); ``ddl``: it
        creates the tables."""
        ...

    def listener(self) -> Any:
        """A psycopg 3 connection in autocommit mode for LISTEN, or ``None`` (polling)."""
        ...

    def forget(self) -> None:
        """After fork(): drop the parent's connections without closing them."""
        ...

    def nested(self) -> bool:
        """Whether a transaction begun now would be part of the caller's own (so that a
        deadlock rolls back more than the store's statements, and it must not run again)."""
        ...

    def close(self) -> None: ...


class _DBAPICursor:
    __slots__ = ("cursor",)

    def __init__(self, cursor: Any) -> None:
        self.cursor = cursor

    def run(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        cursor = self.cursor
        cursor.execute(sql, tuple(params))
        return list(cursor.fetchall()) if cursor.description is not None else []

    def count(self, sql: str, params: Sequence[Any] = ()) -> int:
        self.cursor.execute(sql, tuple(params))
        return int(self.cursor.rowcount)

    def many(self, sql: str, params: Sequence[Sequence[Any]]) -> None:
        self.cursor.executemany(sql, [tuple(p) for p in params])


class _DBAPISource:
    """Connections in autocommit mode from ``opener``, kept in a pool; each transaction is
    ``BEGIN ... COMMIT`` on one of them."""

    def __init__(
        self,
        opener: Callable[[], Any],
        dialect: str,
        paramstyle: str,
        listen: Callable[[], Any] | None = None,
        path: str | None = None,
        errors: tuple[type[Exception], ...] = (),
        hidden: tuple[Secret, ...] = (),
        database_name: str | None = None,
    ) -> None:
        self.dialect = dialect
        self.paramstyle = paramstyle
        self.errors = errors
        self.hidden = hidden
        #: The SQLite file (``None``: a server's database): where the write path asks whether
        #: the tables exist yet (:meth:`Store._tables_found`).
        self.path = path
        #: The server's database its URL names (``None``: SQLite, or none named): a caller's
        #: transaction in another is refused (the write path's :func:`_dialect_of`).
        self.database_name = database_name
        self._opener = opener
        self._listen = listen
        self._idle: list[Any] = []
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def transaction(self, write: bool, ddl: bool = False) -> Iterator[_Cursor]:
        with _statements(self.errors, self.hidden):
            connection, cursor = self._begin(write)
            done = False
            try:
                yield _DBAPICursor(cursor)
                cursor.execute("COMMIT")
                done = True
            finally:
                self._end(connection, cursor, done)

    def _end(self, connection: Any, cursor: Any, done: bool) -> None:
        """After a transaction: rolled back unless ``done`` (committed), and the connection
        kept for the next one unless it broke."""
        if not done:
            try:
                cursor.execute("ROLLBACK")
                done = True
            except Exception:  # the connection is broken: it is not reused
                with contextlib.suppress(Exception):
                    connection.close()
        with contextlib.suppress(Exception):
            cursor.close()
        if done:
            with self._lock:
                self._idle.append(connection)

    def _begin(self, write: bool) -> tuple[Any, Any]:
        """A connection with a transaction begun: a kept one, or (if it went stale, say the
        server restarted since) a new one."""
        with self._lock:
            connection = self._idle.pop() if self._idle else None
        if connection is not None:
            try:
                cursor = connection.cursor()
                cursor.execute(_sql.begin(self.dialect, write))
                return connection, cursor
            except Exception:  # nothing was done on it: try a new connection
                with contextlib.suppress(Exception):
                    connection.close()
        connection = _connect(self._opener, self.errors, self.hidden)
        try:
            cursor = connection.cursor()
            cursor.execute(_sql.begin(self.dialect, write))
        except BaseException:
            with contextlib.suppress(Exception):
                connection.close()
            raise
        return connection, cursor

    def listener(self) -> Any:
        if self._listen is None:
            return None
        return _connect(self._listen, self.errors, self.hidden)

    def nested(self) -> bool:
        return False  # its own connections only

    def forget(self) -> None:
        _orphans.extend(self._idle)  # never closed here, not even by the garbage collector
        self._idle = []
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for connection in idle:
            with contextlib.suppress(Exception):
                connection.close()


class _SQLAlchemyCursor:
    __slots__ = ("connection",)

    def __init__(self, connection: Any) -> None:
        self.connection = connection

    def run(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        result = self.connection.exec_driver_sql(sql, tuple(params))
        return [tuple(r) for r in result.fetchall()] if result.returns_rows else []

    def count(self, sql: str, params: Sequence[Any] = ()) -> int:
        return int(self.connection.exec_driver_sql(sql, tuple(params)).rowcount)

    def many(self, sql: str, params: Sequence[Sequence[Any]]) -> None:
        self.connection.exec_driver_sql(sql, [tuple(p) for p in params])


class _SQLAlchemySource:
    """Connections of a SQLAlchemy engine, in AUTOCOMMIT mode, each transaction explicit."""

    def __init__(self, url: Secret) -> None:
        import sqlalchemy
        from sqlalchemy.exc import DBAPIError, TimeoutError

        read = _read_sqlalchemy_url(url)
        if read is None:  # raised here, not in the except: nothing holds SQLAlchemy's error
            raise ConfigurationError(
                "config", "OUTBOX", "url: SQLAlchemy knows no database by that URL"
            )
        kind, hidden, self.database_name = read
        self.errors: tuple[type[Exception], ...] = (DBAPIError, TimeoutError)
        self.hidden = hidden
        if kind.is_async:
            raise ConfigurationError(
                "config",
                "OUTBOX",
                "url: the store is blocking; give the sync driver's URL (postgresql+psycopg, "
                "not +asyncpg; sqlite, not +aiosqlite)",
            )
        self.dialect = _sql.dialect_of(kind.name)
        # MySQL/MariaDB: READ COMMITTED, PostgreSQL's default, whose semantics the statements
        # are written for. At InnoDB's default, REPEATABLE READ, a relay's range scans would
        # also lock the gaps they pass, and hold up the applications' INSERTs into them.
        options = {"isolation_level": "READ COMMITTED"} if self.dialect == _sql.MYSQL else {}
        problem = None
        try:
            # hide_parameters: the database's error messages leave out the rows' values. The
            # engine gets the URL less its password, which the database driver gets only as it
            # connects: an engine's URL holds it as text, and its repr shows a ?password=
            self.engine = sqlalchemy.create_engine(
                _without_password(url), hide_parameters=True, **options
            )
            sqlalchemy.event.listen(self.engine, "do_connect", _with_password(url))
        except ImportError as exc:  # the dialect's database driver (PyMySQL, psycopg2...)
            problem = f"its database driver is not installed ({exc.name or _said(exc, hidden)})"
        except Exception as exc:  # a value of its query the dialect cannot read ("timeout=abc")
            problem = f"SQLAlchemy cannot make an engine of it: {_said(exc, hidden)}"
        if problem is not None:
            # raised out of the except clause, not chained: the error's frames hold the revealed
            # URL in their locals (create_engine's url, the dialect's connect arguments), and
            # "from None" would still keep it as the new error's __context__
            raise ConfigurationError("config", "OUTBOX", f"url: {problem}")
        self.paramstyle = self.engine.dialect.paramstyle

    @contextlib.contextmanager
    def transaction(self, write: bool, ddl: bool = False) -> Iterator[_Cursor]:
        with (
            _statements(self.errors, self.hidden),
            _connect(self.engine.connect, self.errors, self.hidden) as connection,
        ):
            connection = connection.execution_options(isolation_level="AUTOCOMMIT")
            connection.exec_driver_sql(_sql.begin(self.dialect, write))
            try:
                yield _SQLAlchemyCursor(connection)
            except BaseException:
                with contextlib.suppress(Exception):  # a broken connection: the pool drops it
                    connection.exec_driver_sql("ROLLBACK")
                raise
            connection.exec_driver_sql("COMMIT")

    def listener(self) -> Any:
        if self.dialect != _sql.POSTGRESQL or self.engine.dialect.driver != "psycopg":
            return None
        import psycopg

        raw = _connect(self.engine.raw_connection, self.errors, self.hidden)
        try:
            info = raw.driver_connection.info
            # the password may come from elsewhere than the URL (PGPASSWORD, .pgpass): hidden too
            hidden = self.hidden + _secrets_of(info.password, {})
            return _connect(
                lambda: psycopg.connect(info.dsn, password=info.password, autocommit=True),
                (psycopg.Error,),
                hidden,
            )
        finally:
            raw.close()

    def nested(self) -> bool:
        return False  # its own engine's connections only

    def forget(self) -> None:
        self.engine.dispose(close=False)

    def close(self) -> None:
        self.engine.dispose()


class _DjangoSource:
    """The Django ORM's connection of a database alias (the thread's own, as Django keeps
    them); each transaction is ``atomic()``. Django's cursors take ``%s`` placeholders."""

    paramstyle = "format"

    def __init__(self, alias: str) -> None:
        from django.core.exceptions import (  # type: ignore[import-untyped, unused-ignore]
            ImproperlyConfigured,
        )
        from django.db import Error, connections  # type: ignore[import-untyped, unused-ignore]
        from django.utils.connection import (  # type: ignore[import-untyped, unused-ignore]
            ConnectionDoesNotExist,
        )

        self.alias = alias
        problem = None
        try:
            vendor = connections[alias].vendor
        except ConnectionDoesNotExist:
            problem = f"'django' names {alias!r}, which is not in DATABASES"
        except ImproperlyConfigured as exc:
            from django.conf import settings  # type: ignore[import-untyped, unused-ignore]

            if settings.configured:  # a DATABASES entry Django refuses: its message says why
                problem = f"'django' names {alias!r}: {' '.join(str(exc).split())[:300]}"
            else:  # a script, not the Django project
                problem = (
                    f"'django' names the Django database {alias!r}, and Django's settings "
                    "are not configured here (run it through manage.py, or set "
                    "DJANGO_SETTINGS_MODULE)"
                )
        if problem is not None:
            raise ConfigurationError("config", "OUTBOX", problem)
        self.dialect = _sql.dialect_of(vendor)
        # Django's own errors, raised as they are; their messages shown less the password
        self.errors: tuple[type[Exception], ...] = (Error,)
        given = connections[alias].settings_dict
        self.hidden = _secrets_of(given.get("PASSWORD"), given.get("OPTIONS") or {})

    @contextlib.contextmanager
    def transaction(self, write: bool, ddl: bool = False) -> Iterator[_Cursor]:
        from django.db import connections, transaction

        with transaction.atomic(using=self.alias), connections[self.alias].cursor() as cursor:
            if write and not ddl and self.dialect == _sql.SQLITE:  # the write lock first
                cursor.execute(_sql.touch(self.table_hint))
            yield _DBAPICursor(cursor)

    table_hint = _sql.DEFAULT_TABLE

    def listener(self) -> Any:
        from django.db import connections

        connection = connections[self.alias]
        if self.dialect != _sql.POSTGRESQL:
            return None
        try:
            import psycopg
        except ImportError:  # psycopg2: polling
            return None
        raw = connection.get_new_connection(connection.get_connection_params())
        if not isinstance(raw, psycopg.Connection):
            raw.close()
            return None
        raw.autocommit = True
        return raw

    def nested(self) -> bool:
        from django.db import connections

        # inside the application's atomic block, the store's would be a savepoint of it
        return bool(connections[self.alias].in_atomic_block)

    def forget(self) -> None:
        pass  # Django keeps its own connections

    def close(self) -> None:
        pass  # Django's to close (connections.close_all())


def _sqlite_opener(path: str) -> Callable[[], Any]:
    import sqlite3

    def connect() -> Any:
        connection = sqlite3.connect(
            path, timeout=_SQLITE_BUSY, isolation_level=None, check_same_thread=False
        )
        try:
            _wal(connection, sqlite3.OperationalError)
            connection.execute("PRAGMA synchronous=NORMAL")
        except BaseException:
            connection.close()
            raise
        return connection

    return connect


#: How long a SQLite connection of the store's waits for another's lock (its busy timeout).
_SQLITE_BUSY = 30.0


def _wal(connection: Any, busy: type[Exception]) -> None:
    """Put the file in WAL mode (kept in the file: a no-op once it is). A new file still in
    rollback mode that another connection holds a write lock on answers "database is locked"
    at once, without SQLite's busy handler (a relay and the first publish starting together,
    or the application's own connection): waited for here as the busy timeout waits for any
    other lock."""
    deadline = time.monotonic() + _SQLITE_BUSY
    pause = 0.005
    while True:
        try:
            connection.execute("PRAGMA journal_mode=WAL")
            return
        except busy as exc:
            if "locked" not in str(exc) or time.monotonic() + pause > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.1)


def _close_quietly(connection: Any) -> None:
    """Close ``connection`` if there is one, whatever it raises (it is being let go of)."""
    if connection is not None:
        with contextlib.suppress(Exception):
            connection.close()


def _sqlite_probe(path: str) -> Any:
    """A connection to the SQLite file ``path`` that never waits for a lock (busy timeout 0)
    and changes nothing on opening (no ``journal_mode`` pragma: that would need the lock a
    caller's transaction may hold); ``None`` if there is no such file yet (not created here)."""
    if not os.path.exists(path):
        return None
    import sqlite3

    return sqlite3.connect(path, timeout=0, isolation_level=None, check_same_thread=False)


def _psycopg_opener(url: Secret) -> Callable[[], Any]:
    try:
        import psycopg
    except ImportError:
        raise ConfigurationError(
            "config",
            "OUTBOX",
            "url: a postgresql:// outbox needs psycopg 3: pip install 'broadcasting[postgres]'",
        ) from None

    def connect() -> Any:
        return psycopg.connect(url.reveal(), autocommit=True)

    return connect


def _read_sqlalchemy_url(url: Secret) -> tuple[Any, tuple[Secret, ...], str | None] | None:
    """The SQLAlchemy dialect (class) that ``url`` names, what of it to take out of an
    error's message (:func:`_secrets_of`), and the server's database it names (``None`` for
    SQLite or none); ``None`` if SQLAlchemy cannot read it (its error
    would quote the URL: not kept). A function of its own so that the parsed URL, whose repr
    hides the password but not a ``password=`` of its query, is a local of no frame that the
    errors raised after it (a wrong database, a wrong driver) keep in their traceback."""
    import sqlalchemy
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    with contextlib.suppress(ArgumentError, NoSuchModuleError, ValueError):
        parsed = sqlalchemy.make_url(url.reveal())
        kind = parsed.get_dialect()
        name = None if kind.name == "sqlite" else parsed.database or None
        return kind, _secrets_of(parsed.password, parsed.query), name
    return None


def _without_password(url: Secret) -> Any:
    """``url`` parsed, less its password: the user part's and a ``password=`` (or
    ``passwd=``) of its query. A function of its own: the whole parsed URL is a local of no
    frame once it returns."""
    import sqlalchemy

    parsed = sqlalchemy.make_url(url.reveal())
    query = {k: v for k, v in parsed.query.items() if k.lower() not in ("password", "passwd")}
    return sqlalchemy.URL.create(
        parsed.drivername,
        username=parsed.username,
        host=parsed.host,
        port=parsed.port,
        database=parsed.database,
        query=query,
    )


def _with_password(url: Secret) -> Callable[[Any, Any, list[Any], dict[str, Any]], None]:
    """A ``do_connect`` listener that gives the database driver the connection arguments of
    the whole ``url`` (the password in the name its dialect uses), for one connection."""

    def connect(dialect: Any, record: Any, cargs: list[Any], cparams: dict[str, Any]) -> None:
        import sqlalchemy

        cparams.update(dialect.create_connect_args(sqlalchemy.make_url(url.reveal()))[1])

    return connect


def _libpq_parts(url: Secret) -> tuple[tuple[Secret, ...], str | None]:
    """What of a libpq URL to take out of an error's message (the password as libpq reads
    it, in the user part or the query), and the database it names: a function of its own,
    so that the parsed URL is no frame's local once it returns."""
    from psycopg.conninfo import conninfo_to_dict

    read = conninfo_to_dict(url.reveal())
    name = read.get("dbname")
    return _secrets_of(read.get("password"), {}), name if isinstance(name, str) and name else None


def _secrets_of(password: Any, query: Mapping[str, Any]) -> tuple[Secret, ...]:
    """What of a URL to take out of an error's message: the ``password`` its database driver
    parsed from it, and any ``password=`` of its ``query``, each as decoded and as it may be
    written (longest first, so no part of one is left behind)."""
    from urllib.parse import quote, quote_plus

    found = {password if isinstance(password, str) else ""}
    for key, values in query.items():
        if key.lower() in ("password", "passwd"):
            found.update([values] if isinstance(values, str) else values)
    found |= {coded(text, safe="") for text in found for coded in (quote, quote_plus)}
    found.discard("")
    return tuple(Secret(text) for text in sorted(found, key=len, reverse=True))


def _connect(
    opener: Callable[[], Any], errors: tuple[type[Exception], ...], hidden: tuple[Secret, ...]
) -> Any:
    """``opener()``, a new connection to the store's database; if the database driver raises
    one of ``errors`` (it could not connect), an :class:`OutboxError` with its message less the
    ``hidden`` texts. With any hidden, the driver's error is not chained (its frames hold the
    URL's password in their locals); without, it is. With any hidden, what a driver raises
    for an option it cannot take (:data:`_REFUSED_OPTIONS`) is a :class:`ConfigurationError`,
    not chained either; anything else passes as it is."""
    failure: BroadcastError
    try:
        return opener()
    except errors as exc:
        # the password libpq used, if it came from elsewhere than the URL (PGPASSWORD,
        # .pgpass): psycopg keeps it on the error (``pgconn.password``), so hidden too
        hidden = hidden + _secrets_of(_libpq_password(exc), {})
        failure = OutboxError(f"cannot connect to the outbox's database: {_said(exc, hidden)}")
        cause = None if hidden else exc
    except _REFUSED_OPTIONS as exc:
        if not hidden:  # nothing to keep out of its frames: as it is, with its traceback
            raise
        # the database driver refused what the URL's query gave it (``?foo=bar``: TypeError,
        # ``?charset=nosuch``: LookupError or AttributeError), with the password beside it
        # in the locals of its frames: not chained
        failure = ConfigurationError(
            "config", "OUTBOX", f"url: the database driver refused it: {_said(exc, hidden)}"
        )
        cause = None
    # raised out of the except clause: the new error has no __context__ to reach the old one by
    raise failure from cause


def _libpq_password(error: BaseException) -> str | None:
    """The password a failed psycopg connection attempt used, kept on its error as
    ``pgconn.password`` (SQLAlchemy's error: on the psycopg error it wraps, ``orig``)."""
    for each in (error, getattr(error, "orig", None)):
        password = getattr(getattr(each, "pgconn", None), "password", None)
        if isinstance(password, bytes) and password:
            return password.decode("utf-8", "replace")
    return None


#: What a database driver raises, while connecting, for an option of the URL it cannot take.
_REFUSED_OPTIONS = (TypeError, ValueError, AttributeError, LookupError)


@contextlib.contextmanager
def _statements(errors: tuple[type[Exception], ...], hidden: tuple[Secret, ...]) -> Iterator[None]:
    """Statements on one of the store's own connections: a database error (one of ``errors``)
    becomes an :class:`OutboxError` with its message less the ``hidden`` texts, the database's
    error chained (past connecting its frames hold no password), so that a wrong statement
    still shows the line that ran it. An error of another kind passes as it is."""
    try:
        yield
    except errors as exc:
        raise OutboxError(f"the outbox's database failed: {_said(exc, hidden)}") from exc


def _said(error: BaseException, hidden: tuple[Secret, ...]) -> str:
    """``error``'s type and message on one line, less each of the ``hidden`` texts; with a
    password shorter than 4 characters, the type alone (taking out every occurrence of so short
    a text would garble the message, and show which letters the password has)."""
    if any(len(secret.reveal()) < 4 for secret in hidden):
        return f"{type(error).__name__} (message withheld: the URL's password is too short)"
    text = " ".join(str(error).split())
    for secret in hidden:
        text = text.replace(secret.reveal(), "***")
    return f"{type(error).__name__}: {text}"


#: What a URL's user part needs for every parser to read it alike.
ENCODE = "percent-encode '@', '/', '?', '#' and '%' in its user name and password (%40, %2F...)"


def _unambiguous(url: Secret) -> bool:
    """Whether ``url`` has at most one ``@``, with no ``/``, ``?`` or ``#`` before it: else a
    parser takes part of the password for the host, the port or the database, and its error
    messages (which the outbox shows) would quote that part."""
    rest = url.reveal().split("://", 1)[1]
    return rest.count("@") <= 1 and not any(c in rest.partition("@")[0] for c in "/?#")


#: SQLSTATEs of a transaction the database rolled back whole and asks to run again:
#: PostgreSQL's deadlock_detected and serialization_failure (MySQL's deadlock is 40001 too).
_RUN_AGAIN = frozenset({"40P01", "40001"})
#: MySQL/MariaDB's error number for a deadlock (ER_LOCK_DEADLOCK: "try restarting
#: transaction"); not 1205, a lock wait timeout, which rolls back one statement only.
_MYSQL_DEADLOCK = 1213


#: How each dialect is named in a message.
_DIALECT_NAMES = {_sql.POSTGRESQL: "PostgreSQL", _sql.SQLITE: "SQLite", _sql.MYSQL: "MySQL/MariaDB"}
#: PostgreSQL's SQLSTATE undefined_table; MySQL/MariaDB's ER_NO_SUCH_TABLE.
_PG_NO_TABLE = "42P01"
_MYSQL_NO_TABLE = 1146
_NO_TABLE_SAID = {
    _sql.POSTGRESQL: re.compile(r'relation "([^"]+)" does not exist'),
    _sql.MYSQL: re.compile(r"Table '([^']+)' doesn't exist"),
    _sql.SQLITE: re.compile(r"^no such table: (\S+)"),
}


def _missing_table(error: BaseException, dialect: str) -> tuple[str | None, str] | None:
    """If ``error`` (itself, or a database error it wraps: SQLAlchemy's ``orig``, Django's and
    the store's ``__cause__``) says a table does not exist: the table's name as the database
    gives it, and what it said (its error's type and those words, nothing else of its
    message: no SQL). By the error's code on PostgreSQL and MySQL/MariaDB; SQLite has none
    but its message. ``None`` otherwise (the database is down, a permission...)."""
    said = _NO_TABLE_SAID.get(dialect)
    if said is None:
        return None
    for each in _wrapped(error):
        if dialect == _sql.POSTGRESQL:
            coded = _PG_NO_TABLE in (getattr(each, "sqlstate", None), getattr(each, "pgcode", None))
        elif dialect == _sql.MYSQL:
            module = type(each).__module__.split(".")[0]
            number = getattr(each, "errno", None) if module == "mysql" else None
            if module in ("pymysql", "MySQLdb") and each.args:
                number = each.args[0]
            coded = number == _MYSQL_NO_TABLE
        else:  # any error whose message is SQLite's (Django's wraps it, word for word)
            coded = isinstance(each, Exception) and not isinstance(each, BroadcastError)
        if coded:
            words = said.search(" ".join(str(each).split()))
            if words is not None:
                return words.group(1), f"{type(each).__name__}: {words.group(0)}"
            if dialect != _sql.SQLITE:  # its code says so, in words of another language
                code = _PG_NO_TABLE if dialect == _sql.POSTGRESQL else _MYSQL_NO_TABLE
                return None, f"{type(each).__name__}: error {code}"
    return None


#: PostgreSQL's SQLSTATE invalid_schema_name; MySQL/MariaDB's ER_BAD_DB_ERROR.
_PG_NO_SCHEMA = "3F000"
_MYSQL_NO_DATABASE = 1049
_NO_SCHEMA_SAID = {
    _sql.POSTGRESQL: re.compile(r'schema "([^"]+)" does not exist'),
    _sql.MYSQL: re.compile(r"Unknown database '([^']+)'"),
}


def _missing_schema(error: BaseException, dialect: str, schema: str) -> str | None:
    """If ``error`` (or a database error it wraps, :func:`_wrapped`) says that ``schema``
    does not exist: what it said (its error's type and those words, no SQL). By PostgreSQL's
    SQLSTATE 3F000 (a schema is only named by the table: the URL names a database); on
    MySQL/MariaDB by error 1049 and only with ``schema`` named in it, as the URL's own
    database missing is that error too. ``None`` otherwise."""
    said = _NO_SCHEMA_SAID.get(dialect)
    if said is None:
        return None
    for each in _wrapped(error):
        if dialect == _sql.POSTGRESQL:
            coded = _PG_NO_SCHEMA in (
                getattr(each, "sqlstate", None),
                getattr(each, "pgcode", None),
            )
        else:
            module = type(each).__module__.split(".")[0]
            number = getattr(each, "errno", None) if module == "mysql" else None
            if module in ("pymysql", "MySQLdb") and each.args:
                number = each.args[0]
            coded = number == _MYSQL_NO_DATABASE
        if not coded:
            continue
        words = said.search(" ".join(str(each).split()))
        if words is not None and words.group(1).lower() == schema.lower():
            return f"{type(each).__name__}: {words.group(0)}"
        if words is None and dialect == _sql.POSTGRESQL:  # its code says so, in other words
            return f"{type(each).__name__}: error {_PG_NO_SCHEMA}"
    return None


def _wrapped(error: BaseException) -> Iterator[BaseException]:
    """``error`` and each database error it wraps, once each: SQLAlchemy keeps the driver's
    error as ``orig``, Django and the store's :class:`OutboxError` as ``__cause__``."""
    seen: set[int] = set()
    found: list[BaseException | None] = [error]
    while found:
        each = found.pop()
        if each is None or id(each) in seen:
            continue
        seen.add(id(each))
        yield each
        found += [each.__cause__, getattr(each, "orig", None)]


def _deadlocked(error: BaseException) -> bool:
    """Whether ``error`` says (itself, or a database error it wraps) that the database
    rolled back the transaction as a deadlock's victim (:func:`_wrapped`)."""
    for each in _wrapped(error):
        if getattr(each, "sqlstate", None) in _RUN_AGAIN:  # psycopg 3, mysql-connector
            return True
        if getattr(each, "pgcode", None) in _RUN_AGAIN:  # psycopg2
            return True
        module = type(each).__module__.split(".")[0]
        if module in ("pymysql", "MySQLdb") and each.args[:1] == (_MYSQL_DEADLOCK,):
            return True
    return False


_P = ParamSpec("_P")
_T = TypeVar("_T")


def _retried(method: Callable[Concatenate[Store, _P], _T]) -> Callable[Concatenate[Store, _P], _T]:
    """``method``, which runs transactions of the store's own, run again (up to
    :data:`DEADLOCK_TRIES` times, after a short random pause) while the database rolls its
    transaction back as a deadlock's victim. Safe: the victim's statements are all undone,
    so none of them happened. Two of one relay's transactions can meet so (its waves are
    marked and recorded at once) and InnoDB's documentation asks applications to be ready
    for it. Not inside the caller's own transaction (a Django store in an atomic block):
    the victim there is the caller's, its error the caller's to handle."""

    @functools.wraps(method)
    def run(self: Store, /, *args: _P.args, **kwargs: _P.kwargs) -> _T:
        tries = 1
        while True:
            try:
                return method(self, *args, **kwargs)
            except Exception as exc:
                if tries >= DEADLOCK_TRIES or not _deadlocked(exc) or self._source.nested():
                    raise
                log.info(
                    "outbox %s: %s was a deadlock's victim (try %d of %d); running it again",
                    self.table,
                    method.__name__,
                    tries,
                    DEADLOCK_TRIES,
                )
            time.sleep(random.uniform(0.005, 0.02) * 2**tries)
            tries += 1

    return run


def _source(outbox: Mapping[str, Any]) -> _Source:
    """The source the ``OUTBOX`` settings name."""
    alias = outbox.get("django")
    url = outbox.get("url")
    if alias is not None and url is not None:
        raise ConfigurationError("config", "OUTBOX", "give either 'url' or 'django', not both")
    if alias is not None:
        if not isinstance(alias, str) or not alias:
            raise ConfigurationError("config", "OUTBOX", "'django' must name a database alias")
        return _DjangoSource(alias)
    if url is None:
        url = os.environ.get(ENV_URL) or DEFAULT_URL
        if "://" not in url:
            url = "sqlite:///" + url
    if isinstance(url, str):
        url = Secret(url)  # it may hold a password: revealed only where it is used
    if not isinstance(url, Secret) or "://" not in url.reveal():
        raise ConfigurationError("config", "OUTBOX", "'url' must be a database URL")
    scheme = url.reveal().split("://", 1)[0].lower()
    if scheme.partition("+")[0] != "sqlite" and not _unambiguous(url):  # a path may hold "@"
        raise ConfigurationError("config", "OUTBOX", f"url: {ENCODE}")
    if scheme == "sqlite":
        path = url.reveal().split("://", 1)[1].removeprefix("/")
        if not path or path == ":memory:" or "mode=memory" in path:
            raise ConfigurationError(
                "config", "OUTBOX", "url: the outbox must be a SQLite file (shared with the relay)"
            )
        import sqlite3

        errors: tuple[type[Exception], ...] = (sqlite3.Error,)
        opener = _sqlite_opener(path)
        return _DBAPISource(opener, _sql.SQLITE, "qmark", path=path, errors=errors)
    if scheme in ("postgresql", "postgres"):
        connect = _psycopg_opener(url)
        import psycopg

        hidden = name = None
        with contextlib.suppress(psycopg.Error):  # its message quotes the part it cannot read
            hidden, name = _libpq_parts(url)
        if hidden is None:  # raised here, not in the except: nothing holds libpq's message
            raise ConfigurationError("config", "OUTBOX", f"url: libpq cannot read it; {ENCODE}")
        return _DBAPISource(
            connect,
            _sql.POSTGRESQL,
            "format",
            listen=connect,
            errors=(psycopg.Error,),
            hidden=hidden,
            database_name=name,
        )
    try:
        import sqlalchemy  # noqa: F401
    except ImportError:
        raise ConfigurationError(
            "config",
            "OUTBOX",
            f"url: a {scheme}:// outbox goes through SQLAlchemy: pip install "
            "'broadcasting[sqlalchemy]' (sqlite:// and postgresql:// need no SQLAlchemy)",
        ) from None
    return _SQLAlchemySource(url)


def _number(outbox: Mapping[str, Any], key: str, default: float, low: float, whole: bool) -> Any:
    value = outbox.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise ConfigurationError("config", "OUTBOX", f"{key!r} must be a number")
    if math.isinf(value):  # MySQL stores no infinity (every relay's round would fail there),
        # and an endless lease would keep a dead relay's partitions, and their rows, for ever
        raise ConfigurationError("config", "OUTBOX", f"{key!r} must be a finite number")
    if whole and not isinstance(value, int):
        raise ConfigurationError("config", "OUTBOX", f"{key!r} must be a whole number")
    if value < low:
        raise ConfigurationError("config", "OUTBOX", f"{key!r} must be at least {low:g}")
    return value


class Store:
    """The outbox table and its leases, in one database (docs/background.md#the-outbox).

    Its methods block (DB-API calls); the relay runs them in a thread. Each method runs in
    its own short transaction. The ones that change rows for a relay (:meth:`mark_sending`,
    :meth:`finish`) are *fenced*: they change only rows of partitions whose lease ``owner``
    still holds at ``now``, in the same transaction, so a relay that lost a lease changes
    nothing. ``now`` is the relay's clock (epoch seconds): relays' clocks must agree to well
    within a lease.

    Attributes:
        dialect: ``"postgresql"``, ``"sqlite"`` or ``"mysql"``.
        table: the outbox table's name (leases: ``<table>_lease``, relays: ``<table>_relay``).
        partitions: how many partitions rows are spread over.
        lease: seconds a lease lasts unless renewed (:meth:`claim`).
        retention: seconds delivered rows are kept (:meth:`purge`).
        batch: rows a relay fetches per round.
    """

    def __init__(
        self,
        source: _Source,
        *,
        table: str = _sql.DEFAULT_TABLE,
        partitions: int = DEFAULT_PARTITIONS,
        lease: float = DEFAULT_LEASE,
        retention: float = DEFAULT_RETENTION,
        batch: int = DEFAULT_BATCH,
    ) -> None:
        self._source = source
        self.dialect: str = source.dialect
        self.paramstyle: str = source.paramstyle
        self.table: str = _sql.check_table(table)
        if isinstance(source, _DjangoSource):
            source.table_hint = self.table
        if not 1 <= partitions <= 32767:
            raise ValueError("partitions must be from 1 to 32767")
        self.partitions: int = partitions
        self.lease: float = lease
        self.retention: float = retention
        self.batch: int = batch
        self._seeded = False
        self._listener: Any = None
        self._listen_failed = False
        self._listen_lock = threading.Lock()
        self._wake = threading.Event()
        self._probe: Any = None
        self._probe_lock = threading.Lock()
        self._first_use_lock = threading.Lock()
        call_after_fork(self)

    @classmethod
    def from_config(cls, outbox: Mapping[str, Any]) -> Store:
        """The store the ``OUTBOX`` settings describe (``broadcast.config.outbox``); empty:
        the SQLite file ``broadcasting-outbox.sqlite3`` in the working directory (or the URL,
        or file, in ``$BROADCASTING_OUTBOX``). Connects on first use. A SQLite store creates
        its tables then; other databases need :meth:`create_tables` (``broadcasting outbox
        init``) or, with Django, the app's migration."""
        unknown = sorted(set(map(str, outbox)) - set(SETTINGS))
        if unknown:
            raise ConfigurationError(
                "config",
                "OUTBOX",
                f"{unknown[0]!r} is not an outbox setting (settings: {', '.join(SETTINGS)})",
            )
        table = outbox.get("table", _sql.DEFAULT_TABLE)
        try:
            _sql.check_table(table)
        except ValueError as exc:
            raise ConfigurationError("config", "OUTBOX", str(exc)) from None
        settings = {
            "partitions": _number(outbox, "partitions", DEFAULT_PARTITIONS, 1, True),
            "lease": _number(outbox, "lease", DEFAULT_LEASE, 1, False),
            "retention": _number(outbox, "retention", DEFAULT_RETENTION, 0, False),
            "batch": _number(outbox, "batch", DEFAULT_BATCH, 1, True),
        }
        if settings["partitions"] > 32767:
            raise ConfigurationError("config", "OUTBOX", "'partitions' must be at most 32767")
        problem = None
        try:
            source = _source(outbox)
        except ValueError as exc:  # a database the outbox does not support, a URL libpq...
            if isinstance(exc, ConfigurationError):
                raise
            problem = str(exc)
        if problem is not None:
            # raised out of the except clause: the error's frames may hold the revealed URL
            # (libpq's conninfo for a URL it cannot encode), which "from None" would still
            # keep as the new error's __context__
            raise ConfigurationError("config", "OUTBOX", problem)
        store = cls(source, table=table, **settings)
        if store.dialect == _sql.SQLITE and isinstance(source, _DBAPISource):
            store._create_on_first_use = True
        return store

    _create_on_first_use = False
    #: This SQLite outbox's tables are known to be committed in its file (by this store's
    #: :meth:`create_tables`, or found by :meth:`_tables_found`): a write in the caller's
    #: transaction need not make them. Apart from ``_create_on_first_use``, which still has
    #: the store's own first transaction make them and seed the leases.
    _tables_seen = False

    def describe(self, error: BaseException) -> str:
        """``error`` as a log line or a command may show it: an :class:`OutboxError` whole; an
        error of this store's database driver with its message less the password; another by
        its type alone (its message may quote anything)."""
        if isinstance(error, OutboxError):
            return f"{type(error).__name__}: {error}"
        if isinstance(error, self._source.errors):
            return _said(error, self._source.hidden)
        return type(error).__name__

    def __repr__(self) -> str:
        return (
            f"<Store {self.dialect} table={self.table!r} partitions={self.partitions} "
            f"via {type(self._source).__name__.strip('_')}>"
        )

    # -- connections ----------------------------------------------------------------------

    @contextlib.contextmanager
    def _transaction(
        self, write: bool, ddl: bool = False, explain: bool = True, setup: bool = False
    ) -> Iterator[_Tx]:
        """A transaction of the store's own; its statements take ``?`` placeholders. With
        ``explain``, an error that says one of the outbox's tables does not exist becomes an
        :class:`OutboxTablesMissing` (not inside the caller's own transaction: the error
        there is the caller's). The first one (but those of :meth:`create_tables` itself,
        ``ddl`` and ``setup``) of a store that creates its tables on first use makes them."""
        if self._create_on_first_use and not (ddl or setup):
            self._create_first()
        try:
            with self._source.transaction(write, ddl) as cursor:
                yield _Tx(cursor, self.dialect, self.paramstyle)
        except Exception as exc:
            missing: OutboxError | None = None
            if explain:
                missing = self.schema_missing(exc)
                if missing is None and not ddl:
                    missing = self.tables_missing(exc)
            if missing is None or self._source.nested():
                raise
            if isinstance(missing, OutboxTablesMissing):
                missing = self._schema_absent() or missing
            raise missing from exc

    def schema_missing(self, error: BaseException) -> OutboxSchemaMissing | None:
        """What to say if ``error`` (or a database error it wraps) says that the schema (on
        MySQL/MariaDB: the database) named in the outbox's ``schema.table`` does not exist:
        PostgreSQL's SQLSTATE 3F000, MySQL/MariaDB's error 1049 naming it. ``None`` for any
        other error, or a table with no schema."""
        if isinstance(error, OutboxSchemaMissing):
            return error
        schema, _, _ = self.table.rpartition(".")
        said = _missing_schema(error, self.dialect, schema) if schema else None
        if said is None:
            return None
        return self._schema_error(schema, said)

    def _schema_absent(self) -> OutboxSchemaMissing | None:
        """After a table was found missing: whether the schema (MySQL/MariaDB: database) its
        ``schema.table`` names is missing too, which a query on the table does not say
        (PostgreSQL's 42P01 and MariaDB's 1146 name the table). Asked in a transaction of
        its own; ``None`` if the schema exists, the table names none, or the question fails."""
        schema, _, _ = self.table.rpartition(".")
        if not schema or self.dialect not in (_sql.POSTGRESQL, _sql.MYSQL):
            return None
        if self.dialect == _sql.POSTGRESQL:
            ask, said = "SELECT 1 FROM pg_namespace WHERE nspname = ?", "pg_namespace"
        else:
            ask = "SELECT 1 FROM information_schema.schemata WHERE schema_name = ?"
            said = "information_schema.schemata"
        try:
            with self._source.transaction(False, False) as cursor:
                found = _Tx(cursor, self.dialect, self.paramstyle)(ask, schema)
        except Exception:  # the table's error stands: it is the one that happened
            return None
        if found:
            return None
        return self._schema_error(schema, f"not in {said}")

    def _schema_error(self, schema: str, said: str) -> OutboxSchemaMissing:
        if self.dialect == _sql.MYSQL:
            what = (
                f"the database {schema!r} that the outbox's table {self.table!r} is in does "
                "not exist on its MySQL/MariaDB server"
            )
            kind, make = "databases", f"CREATE DATABASE `{schema}`"
        else:
            what = (
                f"the schema {schema!r} of the outbox's table {self.table!r} does not exist "
                "in its PostgreSQL database"
            )
            kind, make = "schemas", f'CREATE SCHEMA "{schema}"'
        return OutboxSchemaMissing(
            f"{what} ({said}): `broadcasting outbox init` makes tables, not {kind}; create "
            f"it first ({make}, as a user allowed to), or name another in the OUTBOX "
            "'table', then run init again",
            schema,
        )

    def require_file(self, create: bool = False) -> None:
        """For a command that looks after the outbox: an :class:`OutboxFileMissing` if the
        outbox is a SQLite file that does not exist, which its first use would create, empty
        (with ``create``, for ``outbox init``: if the folder it would go in does not exist).
        Without ``create`` the command makes no tables either: in a file without them (the
        application's own database given by mistake) they are :class:`OutboxTablesMissing`,
        as on another database. Nothing for another database."""
        path = getattr(self._source, "path", None)
        if path is None:
            return
        full = os.path.abspath(path)
        if create:
            folder = os.path.dirname(full)
            if os.path.isdir(folder):
                return
            raise OutboxFileMissing(
                f"the folder {folder!r} that the outbox's SQLite file {path!r} goes in does "
                "not exist: create it first, or name another file in the OUTBOX 'url' (or "
                f"${ENV_URL})",
                path,
            )
        if os.path.exists(path):
            self._create_on_first_use = False
            return
        where = "" if full == path else f" ({full})"
        raise OutboxFileMissing(
            f"the outbox's SQLite file {path!r}{where} does not exist: is the OUTBOX 'url' "
            f"(or ${ENV_URL}) the application's, and is this its working directory? This "
            "command makes no file: the application's first publish makes it, or "
            "`broadcasting outbox init` now",
            path,
        )

    def tables_missing(self, error: BaseException) -> OutboxTablesMissing | None:
        """What to say if ``error`` (or a database error it wraps) says that one of the
        outbox's tables does not exist (not that the database is down, refuses the user...):
        PostgreSQL's SQLSTATE 42P01, MySQL/MariaDB's error 1146, SQLite's "no such table".
        ``None`` for any other error."""
        if isinstance(error, OutboxTablesMissing):
            return error
        found = _missing_table(error, self.dialect)
        if found is None:
            return None
        name, said = found
        name = name or self.table
        if isinstance(self._source, _DjangoSource):
            if self.table == _sql.DEFAULT_TABLE:
                fix = (
                    "create them with `manage.py migrate` (the broadcasting.contrib.django "
                    "app's migrations)"
                )
            else:
                fix = (
                    "create them with `manage.py broadcasting outbox init` (the app's "
                    f"migrations make {_sql.DEFAULT_TABLE!r}, not {self.table!r})"
                )
        else:
            fix = (
                "create them with `broadcasting outbox init` (with the same --config), "
                "`store_for(broadcast).create_tables()` or your own migration"
            )
        kind = _DIALECT_NAMES.get(self.dialect, self.dialect)
        return OutboxTablesMissing(
            f"the outbox's table {name!r} does not exist in its {kind} database ({said}): "
            f"its tables were never made; {fix}",
            name,
        )

    # -- schema ---------------------------------------------------------------------------

    def create_tables(self) -> None:
        """Create the outbox, lease and relay tables and the index if missing (idempotent),
        and a lease row per partition."""
        with self._transaction(write=True, ddl=True) as run:
            for statement in _sql.create_tables(self.dialect, self.table):
                run(statement)
        self._tables_seen = True
        self._drop_probe()  # what _tables_found() would have asked is now known
        self._seed(setup=True)
        self._create_on_first_use = False

    def _create_first(self) -> None:
        """The tables made, and the leases seeded, by the first of the threads that use a
        store which creates them on first use; the others wait here until that is committed
        (a write let through earlier would find no table). If it fails, the next use tries
        again."""
        with self._first_use_lock:
            if self._create_on_first_use:
                self.create_tables()

    def _tables_found(self) -> bool:
        """Whether this SQLite outbox's tables are committed in its file: until they are, a
        write in the caller's transaction makes them there (the store's own connection would
        wait for the lock that transaction holds); after, it stops (CREATE ... IF NOT EXISTS
        is not free: some 10 µs a write).

        Asked of a connection of the store's own with a zero busy timeout, so it never waits:
        another connection sees only what is committed (WAL: the last commit; rollback
        journal: likewise, or "locked" while a writer holds the exclusive lock). Asked only
        until the answer is yes, then remembered. ``False`` when it cannot tell (no file yet,
        the file locked, another thread asking, any error): the write makes the tables, as
        before, and the next one asks again."""
        if self._tables_seen:
            return True
        if not self._probe_lock.acquire(blocking=False):
            return False  # another thread is asking: never wait for it
        try:
            path = getattr(self._source, "path", None)
            if path is None:
                return False
            if self._probe is None:
                self._probe = _sqlite_probe(path)
                if self._probe is None:
                    return False
            schema, names = _sql.sqlite_objects(self.table)
            marks = ", ".join("?" * len(names))
            sql = f'SELECT count(*) FROM "{schema}".sqlite_master WHERE name IN ({marks})'
            # fetchall(): the statement runs to its end, so no read lock is left held (in
            # rollback-journal mode one would keep the caller's COMMIT waiting)
            (count,) = self._probe.execute(sql, names).fetchall()[0]
            if count != len(names):
                return False
            self._tables_seen = True
            probe, self._probe = self._probe, None
            _close_quietly(probe)
            return True
        except Exception:  # "database is locked", a file that is no database...: cannot tell
            return False
        finally:
            self._probe_lock.release()

    @_retried
    def _seed(self, setup: bool = False) -> None:
        """A lease row per partition (missing ones added; more partitions than before too);
        ``setup``: as part of :meth:`create_tables`."""
        with self._transaction(write=True, setup=setup) as run:
            (count,) = run(_sql.count_leases(self.table))[0]
            if count < self.partitions:
                run.many(
                    _sql.seed_leases(self.dialect, self.table),
                    [(p,) for p in range(self.partitions)],
                )
        self._seeded = True

    # -- writing --------------------------------------------------------------------------

    @_retried
    def insert(self, rows: Sequence[NewRow]) -> None:
        """Insert ``rows`` in a transaction of the store's own, committed at once (taking
        each channel's lock: an advisory lock on PostgreSQL, which also notifies the relays;
        its lock row on MySQL)."""
        if not rows:
            return
        sql, params = _sql.insert_params(self.dialect, self.table, rows)
        locks = _sql.row_locks(self.dialect, self.table, [c for r in rows for c in r.channels])
        # explain=False: a publish raises the database's error as it is (an OutboxError on
        # the store's own URL, Django's own on an alias), as docs/background.md says
        with self._transaction(write=True, explain=False) as run:
            if locks is not None:
                run(locks[0], *locks[1])
            run(sql, *params)
        self._wake.set()

    # -- leases ---------------------------------------------------------------------------

    @_retried
    def claim(
        self,
        owner: str,
        now: float,
        lease: float,
        *,
        keep: Sequence[int] = (),
        written: Collection[float] | None = None,
    ) -> list[int]:
        """Renew ``owner``'s leases until ``now + lease``, take free or expired partitions up
        to a fair share (partitions / live relays, rounded up), give up those beyond it
        (except ``keep``: partitions with sends in flight); the partitions held after, sorted.

        Also records ``owner`` as a live relay until ``now + lease`` (a relay holding no
        partition still counts when the others compute their share).

        With ``written`` (the times this relay wrote in its row, none at first), the name is
        taken first, its row locked: if another relay is alive under it at ``now`` (its row
        says so, until a time not in ``written``), :class:`OwnerInUse` and nothing changes, as
        two relays under one name would each send the other's rows."""
        if not self._seeded:
            self._seed()
        until = now + lease
        table = self.table
        with self._transaction(write=True) as run:
            if written is not None:
                run(_sql.add_relay(self.dialect, table), owner)
                found = run(_sql.relay_locked(self.dialect, table), owner)
                seen = float(found[0][0]) if found else 0.0
                if seen > now and not _written(seen, written):
                    raise OwnerInUse(owner, seen)
            run(_sql.present(self.dialect, table), owner, until)
            relays = run(_sql.relays(table))
            live = sum(1 for _, seen in relays if float(seen) > now)
            gone = [owner for owner, seen in relays if float(seen) < now - 10 * lease]
            if gone:  # by key: a DELETE that scans the table would wait on (and, on
                # MySQL, deadlock with) every relay's own row locked by its claim
                run(_sql.forget_relays(table, len(gone)), now - 10 * lease, *gone)
            run(_sql.renew(table), until, owner)
            mine = [p for (p,) in run(_sql.held(table), owner)]
            share = math.ceil(self.partitions / max(live, 1))
            if len(mine) > share:
                kept = set(keep)
                spare = [p for p in reversed(mine) if p not in kept][: len(mine) - share]
                if spare:
                    run(_sql.give_up(table, len(spare)), owner, *spare)
                    mine = [p for p in mine if p not in set(spare)]
            elif len(mine) < share:
                wanted = share - len(mine)
                free = [
                    p for (p,) in run(_sql.free(self.dialect, table), now, self.partitions, wanted)
                ]
                if free:
                    run(_sql.take(table, len(free)), owner, until, *free, now)
                    mine = [p for (p,) in run(_sql.held(table), owner)]
        return sorted(mine)

    @_retried
    def release(self, owner: str, written: Collection[float] | None = None) -> None:
        """Give up every lease of ``owner`` and its place among the live relays (at exit).
        With ``written`` (the times this relay wrote in its row), only if its row was last
        written by this relay: else another relay took the name meanwhile (this one paused
        past its lease), and the leases are that one's."""
        with self._transaction(write=True) as run:
            if written is not None:
                found = run(_sql.relay_locked(self.dialect, self.table), owner)
                if found and not _written(float(found[0][0]), written):
                    return
            run(_sql.release(self.table), owner)
            run(_sql.forget_relay(self.table), owner)

    # -- rows -----------------------------------------------------------------------------

    @_retried
    def fetch(
        self,
        owner: str,
        partitions: Sequence[int],
        now: float,
        limit: int,
        skip: Collection[int] = (),
    ) -> list[Row]:
        """Rows to send from ``partitions``, in (partition, id) order, up to about ``limit``
        (shared fairly between the partitions): each partition's open rows (pending, or
        sending from an earlier attempt) from its first one, up to the first that is not
        available at ``now`` (a row backing off holds back the rest of its partition:
        order). Rows whose id is in ``skip`` (a relay's rows out) are left out of the
        result, but one not available at ``now`` still holds back the rest. ``owner`` is
        not checked here: the changes that follow are fenced.

        See :meth:`due` for when a held-back partition's first row is available.

        With ``skip``, each row's id, partition and availability are read first, then only
        the rows to return in full (a relay fetching while rows are out would otherwise
        read those again and again)."""
        del owner
        if not partitions:
            return []
        each = max(1, math.ceil(limit / len(partitions)))
        listing = _sql.heads if skip else _sql.fetch
        at = 2 if skip else 3  # available_at's column (_sql.COLUMNS for the full rows)
        found: list[tuple[Any, ...]] = []
        with self._transaction(write=False) as run:
            for chunk in _chunks(sorted(partitions), 64):
                params = [v for p in chunk for v in (p, each)]
                found += run(listing(self.table, len(chunk)), *params)
            found.sort(key=_by_place)
            picked: list[tuple[Any, ...]] = []
            blocked: set[int] = set()
            for raw in found:
                partition = int(raw[1])
                if partition in blocked:
                    continue
                if float(raw[at]) > now:
                    blocked.add(partition)
                    continue
                if int(raw[0]) not in skip:
                    picked.append(raw)
            if skip and picked:  # now those rows in full (still open: only this relay
                ids = [int(raw[0]) for raw in picked]  # changes them, fenced)
                if self.dialect == _sql.POSTGRESQL:
                    picked = run(_sql.open_rows_any(self.table), _sql.id_array(ids))
                else:
                    picked = []
                    for part in _chunks(ids, CHUNK):
                        picked += run(_sql.open_rows(self.table, len(part)), *part)
                picked.sort(key=_by_place)
        return [_row(raw) for raw in picked]  # a Row only for a row returned

    @_retried
    def due(self, partitions: Sequence[int]) -> float | None:
        """The earliest ``available_at`` of the first open row of each of ``partitions``:
        when a relay with nothing to send now has something (``None``: nothing to send)."""
        if not partitions:
            return None
        earliest: float | None = None
        with self._transaction(write=False) as run:
            for chunk in _chunks(sorted(partitions), 64):
                (value,) = run(_sql.due(self.table, len(chunk)), *chunk)[0]
                if value is not None and (earliest is None or value < earliest):
                    earliest = float(value)
        return earliest

    def _held(self, run: _Tx, owner: str, now: float) -> list[int]:
        return [p for (p,) in run(_sql.held_locked(self.dialect, self.table), owner, now)]

    @_retried
    def mark_sending(self, owner: str, ids: Sequence[int], now: float) -> list[int]:
        """Mark rows ``sending`` before they go out (fenced): the ids actually marked, those
        still open in a partition whose lease ``owner`` holds at ``now``."""
        if not ids:
            return []
        if self.dialect == _sql.POSTGRESQL:  # one statement, the ids as one array
            with self._transaction(write=True) as run:
                sql = _sql.mark_sending_any(self.table)
                return [i for (i,) in run(sql, SENDING, _sql.id_array(ids), owner, now)]
        marked: list[int] = []
        with self._transaction(write=True) as run:
            held = self._held(run, owner, now)
            if not held:
                return []
            for chunk in _chunks(list(ids), CHUNK):
                sql = _sql.pending_in(self.dialect, self.table, len(chunk), len(held))
                found = [i for (i,) in run(sql, *chunk, *held)]
                if found:
                    run(_sql.mark_sending(self.table, len(found)), SENDING, *found)
                marked += found
        return marked

    @_retried
    def finish(self, owner: str, outcomes: Sequence[Outcome], now: float) -> None:
        """Record what became of sent rows (fenced: only rows still open in partitions whose
        lease ``owner`` holds at ``now``). A delivered, dead or unknown row gets ``done_at =
        now``; a pending one (a retry) keeps none."""
        if not outcomes:
            return
        done = (DELIVERED, DEAD, UNKNOWN)
        # the usual outcome is plain (delivered: channels and available_at kept, no error):
        # those with the same state and attempts share one statement, their ids one array
        plain: dict[tuple[int, int], list[int]] = {}
        rest: list[Outcome] = []
        twice = len({o.id for o in outcomes}) != len(outcomes)  # the same row: in turn
        for o in outcomes:
            kept = o.channels_left is None and o.available_at is None
            if kept and o.error is None and not twice:
                plain.setdefault((o.state, o.attempts), []).append(o.id)
            else:
                rest.append(o)
        if self.dialect == _sql.POSTGRESQL and not twice:
            with self._transaction(write=True) as run:
                sql = _sql.finish_plain_any(self.table)
                for (state, attempts), ids in plain.items():
                    finished = now if state in done else None
                    run(sql, state, attempts, finished, _sql.id_array(ids), owner, now)
                if rest:  # one statement: the outcomes as seven arrays, unnested
                    columns = (
                        [o.id for o in rest],
                        [o.state for o in rest],
                        [
                            None if o.channels_left is None else encode_channels(o.channels_left)
                            for o in rest
                        ],
                        [o.available_at for o in rest],
                        [o.error for o in rest],
                        [o.attempts for o in rest],
                        [now if o.state in done else None for o in rest],
                    )
                    run(_sql.finish_unnest(self.table), *columns, owner, now)
            return
        with self._transaction(write=True) as run:
            held = self._held(run, owner, now)
            if not held:
                return
            for (state, attempts), ids in plain.items():
                finished = now if state in done else None
                for part in _chunks(ids, CHUNK):
                    sql = _sql.finish_plain(self.dialect, self.table, len(part), len(held))
                    run(sql, state, attempts, finished, *part, *held)
            params = [
                (
                    o.state,
                    None if o.channels_left is None else encode_channels(o.channels_left),
                    o.available_at,
                    o.error,
                    o.attempts,
                    now if o.state in done else None,
                    o.id,
                    *held,
                )
                for o in rest
            ]
            if params:
                run.many(_sql.finish(self.dialect, self.table, len(held)), params)

    # -- waking ---------------------------------------------------------------------------

    def wait(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for new rows: on PostgreSQL, a NOTIFY from a
        writer's commit; elsewhere, an insert through this store in this process (else the
        whole timeout: the relay polls)."""
        if self.dialect == _sql.POSTGRESQL:
            with self._listen_lock:
                try:
                    listener = self._listening()
                    if listener is not None:
                        for _ in listener.notifies(timeout=timeout, stop_after=1):
                            break
                        for _ in listener.notifies(timeout=0.0):  # the rest: one wake for all
                            pass
                        self._listen_failed = False
                        return
                except Exception as exc:  # the database is away: poll; listen again next time
                    if self._listener is not None:
                        with contextlib.suppress(Exception):
                            self._listener.close()
                        self._listener = None
                    if not self._listen_failed:  # once, until it works again
                        self._listen_failed = True
                        log.warning(
                            "outbox: cannot LISTEN for new rows (%s); polling", self.describe(exc)
                        )
        if self._wake.wait(timeout):
            self._wake.clear()

    def _listening(self) -> Any:
        if self._listener is None:
            listener = self._source.listener()
            if listener is None:
                return None
            channel = _sql.notify_channel(self.table)
            listener.execute(f'LISTEN "{channel}"')
            self._listener = listener
        return self._listener

    # -- the CLI and monitoring -----------------------------------------------------------

    @_retried
    def stats(self, now: float) -> Stats:
        """Rows per state, the lag (age of the oldest row to send), the live relays and the
        partitions each holds."""
        with self._transaction(write=False) as run:
            counted = dict(run(_sql.counts(self.table)))
            (oldest,) = run(_sql.oldest_open(self.table))[0]
            relays: dict[str, list[int]] = {
                o: [] for (o,) in run(_sql.live_relays(self.table), now)
            }
            for owner, partition in run(_sql.leases(self.table), now):
                relays.setdefault(owner, []).append(partition)
            (stranded,) = run(_sql.stranded(self.table), self.partitions)[0]
        return Stats(
            backlog={name: int(counted.get(state, 0)) for state, name in STATE_NAMES.items()},
            lag=None if oldest is None else max(0.0, now - float(oldest)),
            relays={owner: tuple(held) for owner, held in relays.items()},
            partitions=self.partitions,
            stranded=int(stranded),
        )

    @_retried
    def rows(self, state: int, limit: int) -> list[Row]:
        """The first ``limit`` rows in ``state`` (e.g. :data:`DEAD`), by id."""
        with self._transaction(write=False) as run:
            return [_row(r) for r in run(_sql.in_state(self.table), state, limit)]

    @_retried
    def requeue(self, ids: Sequence[int]) -> int:
        """Make dead or unknown rows pending again, attempts 0, available now: how many."""
        count = 0
        now = time.time()
        with self._transaction(write=True) as run:
            for chunk in _chunks(list(ids), CHUNK):
                sql = _sql.requeue(self.table, len(chunk), len(FAILED))
                count += run.count(sql, PENDING, now, *chunk, *FAILED)
        if count:
            self._wake.set()
        return count

    @_retried
    def drop(self, ids: Sequence[int]) -> int:
        """Delete the listed rows that are dead or unknown: how many. A row in another state
        (pending or sending: a relay's to send; delivered) is left alone, as is one a relay
        or ``retry`` changes meanwhile: the state is checked by the DELETE itself."""
        count = 0
        with self._transaction(write=True) as run:
            for chunk in _chunks(sorted(set(ids)), CHUNK):
                sql = _sql.drop_listed(self.dialect, self.table, len(chunk), len(FAILED))
                count += run.count(sql, *chunk, *FAILED)
        return count

    def drop_all(self, state: int) -> int:
        """Delete every row in ``state`` (:data:`DEAD` or :data:`UNKNOWN`): how many. By key,
        :data:`CHUNK` rows a transaction, found by a plain SELECT first (on MySQL a DELETE
        that scans the table waits on every row an application's open transaction has just
        written); only the rows there as it starts (by id), so that it ends."""
        if state not in FAILED:
            raise ValueError("only dead or unknown rows are dropped")
        count = 0
        after = 0
        last = self._last_id(state)
        while after < last:
            deleted, found = self._drop_some(state, after, last)
            count += deleted
            if not found:
                break
            after = found[-1]
        return count

    @_retried
    def _last_id(self, state: int) -> int:
        with self._transaction(write=False) as run:
            (last,) = run(_sql.last_in_state(self.table), state)[0]
        return 0 if last is None else int(last)

    @_retried
    def _drop_some(self, state: int, after: int, last: int) -> tuple[int, list[int]]:
        """Delete up to :data:`CHUNK` rows in ``state`` with ids from ``after`` (excluded) to
        ``last``: how many were deleted, and the ids found."""
        with self._transaction(write=True) as run:
            found = [
                int(i)
                for (i,) in run(_sql.ids_in_state(self.table), state, after, CHUNK)
                if int(i) <= last
            ]
            if not found:
                return 0, []
            sql = _sql.drop_listed(self.dialect, self.table, len(found), 1)
            return run.count(sql, *found, state), found

    def purge(self, before: float) -> int:
        """Delete delivered rows done before ``before`` (epoch seconds): how many."""
        if self.dialect != _sql.MYSQL:
            return self._purge_all(before)
        # MySQL: by key, CHUNK rows a transaction. A DELETE that scans the table waits on
        # every row an application's open transaction has just written (and the relay with
        # it, for as long as that transaction stays open); a plain SELECT does not see them.
        count = 0
        while True:
            deleted, found = self._purge_some(before)
            count += deleted
            if found < CHUNK:
                return count

    @_retried
    def _purge_all(self, before: float) -> int:
        with self._transaction(write=True) as run:
            return run.count(_sql.purge(self.table), DELIVERED, before)

    @_retried
    def _purge_some(self, before: float) -> tuple[int, int]:
        """MySQL: delete up to :data:`CHUNK` delivered rows done before ``before``, found by
        a plain SELECT first: how many were deleted, how many found."""
        with self._transaction(write=True) as run:
            ids = [i for (i,) in run(_sql.purgeable(self.table), DELIVERED, before, CHUNK)]
            if not ids:
                return 0, 0
            sql = _sql.purge_listed(self.dialect, self.table, len(ids))
            return run.count(sql, DELIVERED, *ids), len(ids)

    def close(self) -> None:
        """Close the store's connections (a Django store leaves Django's to Django)."""
        with self._listen_lock:
            if self._listener is not None:
                with contextlib.suppress(Exception):
                    self._listener.close()
                self._listener = None
        self._drop_probe()
        self._source.close()

    def _drop_probe(self) -> None:
        """Close the connection :meth:`_tables_found` asks on, if open (it opens again if
        asked again)."""
        with self._probe_lock:
            probe, self._probe = self._probe, None
        _close_quietly(probe)

    def _after_fork(self) -> None:
        """After fork(): the parent's connections are not this process's (not closed: that
        would end the parent's sessions)."""
        if self._listener is not None:
            _orphans.append(self._listener)
        self._listener = None
        if self._probe is not None:
            _orphans.append(self._probe)
        self._probe = None
        self._probe_lock = threading.Lock()
        self._listen_lock = threading.Lock()
        self._first_use_lock = threading.Lock()
        self._wake = threading.Event()
        self._source.forget()


class _Tx:
    """A store's transaction: runs ``?`` statements, rendered for the source."""

    __slots__ = ("cursor", "dialect", "paramstyle")

    def __init__(self, cursor: _Cursor, dialect: str, paramstyle: str) -> None:
        self.cursor = cursor
        self.dialect = dialect
        self.paramstyle = paramstyle

    def __call__(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        """Run ``sql``: its rows (none for a statement that returns none)."""
        return self.cursor.run(_rendered(sql, self.dialect, self.paramstyle), params)

    def count(self, sql: str, *params: Any) -> int:
        """Run ``sql``: how many rows it changed."""
        return self.cursor.count(_rendered(sql, self.dialect, self.paramstyle), params)

    def many(self, sql: str, params: Sequence[Sequence[Any]]) -> None:
        """Run ``sql`` once per parameter set."""
        self.cursor.many(_rendered(sql, self.dialect, self.paramstyle), params)


#: A row's place, (partition, id), from its columns (id and partition come first).
_by_place = operator.itemgetter(1, 0)


def _chunks(values: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def _row(values: Sequence[Any]) -> Row:
    (
        id_,
        partition,
        created,
        available_at,
        driver,
        event,
        channels,
        body,
        data_kind,
        socket_id,
        message_id,
        state,
        attempts,
        error,
        done_at,
    ) = values
    return Row(
        int(id_),
        int(partition),
        float(created),
        float(available_at),
        driver,
        event,
        _channels(channels),
        body,
        data_kind,
        socket_id,
        message_id,
        int(state),
        int(attempts),
        error,
        None if done_at is None else float(done_at),
    )


def _channels(text: str) -> tuple[str, ...]:
    """A ``channels`` column's names; one name with nothing to unescape (the usual row)
    without the JSON decoder."""
    if len(text) >= 4 and text[:2] == '["' and text[-2:] == '"]':
        name = text[2:-2]
        if '"' not in name and "\\" not in name:
            return (name,)
    return decode_channels(text)


_rendered_cache: dict[tuple[str, str, str], str] = {}


def _rendered(sql: str, dialect: str, paramstyle: str) -> str:
    key = (sql, dialect, paramstyle)
    text = _rendered_cache.get(key)
    if text is None:
        text = _sql.render(sql, dialect, paramstyle)
        if len(_rendered_cache) < 4096:
            _rendered_cache[key] = text
    return text


# -- one store per Broadcast ------------------------------------------------------------

#: A forked child's copies of its parent's connections: kept, so that closing them (which
#: may talk to the server, or to SQLite's lock files) never disturbs the parent's.
_orphans: list[Any] = []
_by_broadcast: weakref.WeakKeyDictionary[Broadcast, Store] = weakref.WeakKeyDictionary()
_by_broadcast_lock = threading.Lock()


def store_for(broadcast: Broadcast) -> Store:
    """The :class:`Store` of ``broadcast``'s ``OUTBOX`` settings, made once and kept while
    ``broadcast`` lives (thread-safe; a forked child reopens its connections)."""
    store = _by_broadcast.get(broadcast)
    if store is None:
        with _by_broadcast_lock:
            store = _by_broadcast.get(broadcast)
            if store is None:
                store = _by_broadcast[broadcast] = Store.from_config(broadcast.config.outbox)
                weakref.finalize(broadcast, store.close)
    return store


@in_forked_child
def _forget_in_child() -> None:
    global _by_broadcast_lock
    _by_broadcast_lock = threading.Lock()


__all__ = [
    "EXPLAINED",
    "OutboxFileMissing",
    "OutboxSchemaMissing",
    "OutboxTablesMissing",
    "Stats",
    "Store",
    "store_for",
]
