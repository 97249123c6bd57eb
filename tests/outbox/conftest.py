"""Fixtures of the outbox tests: real databases only.

- ``pg_url``: the local PostgreSQL (127.0.0.1:5432, trust auth, db ``test``, user
  ``postgres`` or ``root``); a test that needs it skips if it is not running, and fails
  under CI (``CI=true``).
- ``outbox_schema``: a PostgreSQL schema of this test session's own (uuid-named, dropped
  at the end), so parallel runs never share a table.
- ``new_store(kind, **settings)``: a fresh Store with its tables: ``"sqlite"`` (a file in
  the test's ``tmp_path``) or ``"postgresql"`` (a uuid-named table in ``outbox_schema``).
- ``store``: one of each (parametrized).
- ``ConnTransaction`` / ``TransactionPlugin``: a DB-API connection (``sqlite3`` or
  ``psycopg``; ``CursorConnTransaction`` for PyMySQL) as the ``transaction=`` of a publish:
  a minimal real adapter, so the write path's tests do not depend on the framework adapters.
- ``proxy``: a ``CountingProxy`` in front of the test module's ``soketi`` (tests/conftest.py),
  so a test sees what went over the wire.
- ``mysql_url`` / ``mysql_database``: the local MariaDB (127.0.0.1:3306, root, no
  password) through SQLAlchemy and PyMySQL, and a database of this session's own (dropped
  at the end); ``new_store("mysql")`` makes a table in it.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "servers"))
from http_proxy import CountingProxy
from soketi_pytest import unavailable
from soketi_server import SoketiServer

from broadcasting.hookspecs import hookimpl
from broadcasting.outbox._store import Store

PG_USERS = ("postgres", "root")
PG_TEMPLATE = "postgresql://{user}@127.0.0.1:5432/test"
#: MariaDB (or MySQL) through SQLAlchemy and PyMySQL: root, no password, as on this
#: project's machines
MYSQL_URL = "mysql+pymysql://root@127.0.0.1:3306/test"


def _find_pg() -> str | None:
    try:
        import psycopg
    except ImportError:
        return None
    for user in PG_USERS:
        url = PG_TEMPLATE.format(user=user)
        try:
            with psycopg.connect(url, connect_timeout=3):
                return url
        except psycopg.Error:
            continue
    return None


@pytest.fixture(scope="session")
def pg_url() -> str:
    """The local PostgreSQL's URL (skip without it, fail under CI)."""
    url = _find_pg()
    if url is None:
        unavailable("PostgreSQL", "not running on 127.0.0.1:5432 (db test, user postgres or root)")
    return url


def _find_mysql() -> str | None:
    try:
        import pymysql
    except ImportError:
        return None
    try:
        pymysql.connect(host="127.0.0.1", port=3306, user="root", connect_timeout=3).close()
    except pymysql.Error:
        return None
    return MYSQL_URL


@pytest.fixture(scope="session")
def mysql_url() -> str:
    """The local MariaDB's SQLAlchemy URL (skip without it, fail under CI)."""
    url = _find_mysql()
    if url is None:
        unavailable("MariaDB", "not running on 127.0.0.1:3306 (user root, no password)")
    return url


def mysql_admin(sql: str) -> None:
    """Run ``sql`` (CREATE or DROP DATABASE) on the local MariaDB as root, autocommitted."""
    import pymysql

    with pymysql.connect(host="127.0.0.1", port=3306, user="root", autocommit=True) as conn:
        conn.cursor().execute(sql)


@pytest.fixture(scope="session")
def mysql_database(mysql_url: str) -> Iterator[str]:
    """A MariaDB database of this session's own, dropped at the end."""
    name = f"outbox_{uuid.uuid4().hex[:12]}"
    mysql_admin(f"CREATE DATABASE `{name}`")
    try:
        yield name
    finally:
        mysql_admin(f"DROP DATABASE `{name}`")


@pytest.fixture(scope="session")
def outbox_schema(pg_url: str) -> Iterator[str]:
    """A PostgreSQL schema of this session's own, dropped at the end."""
    import psycopg

    schema = f"outbox_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield schema
    finally:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def outbox_settings(request: pytest.FixtureRequest, kind: str, **settings: Any) -> dict[str, Any]:
    """OUTBOX settings of a fresh outbox of ``kind`` (its tables not created yet)."""
    if kind == "sqlite":
        tmp_path: Path = request.getfixturevalue("tmp_path")
        path = tmp_path / f"outbox-{uuid.uuid4().hex[:8]}.sqlite3"
        return {"url": f"sqlite:///{path}", **settings}
    if kind == "mysql":
        database = request.getfixturevalue("mysql_database")
        url = request.getfixturevalue("mysql_url").rsplit("/", 1)[0] + f"/{database}"
        return {"url": url, "table": f"outbox_{uuid.uuid4().hex[:8]}", **settings}
    assert kind == "postgresql", kind
    url = request.getfixturevalue("pg_url")
    schema = request.getfixturevalue("outbox_schema")
    table = f"{schema}.outbox_{uuid.uuid4().hex[:8]}"
    return {"url": url, "table": table, **settings}


@pytest.fixture
def new_store(request: pytest.FixtureRequest) -> Iterator[Callable[..., Store]]:
    """Makes fresh stores with their tables (closed after the test)."""
    made: list[Store] = []

    def make(kind: str, **settings: Any) -> Store:
        settings.setdefault("partitions", 4)
        store = Store.from_config(outbox_settings(request, kind, **settings))
        store.create_tables()
        made.append(store)
        return store

    yield make
    for store in made:
        store.close()


@pytest.fixture
def outbox_config(request: pytest.FixtureRequest) -> Callable[..., dict[str, Any]]:
    """Makes OUTBOX settings of a fresh outbox (``kind``: ``"sqlite"``, ``"postgresql"`` or
    ``"mysql"``)."""
    return lambda kind, **settings: outbox_settings(request, kind, **settings)


@pytest.fixture
def proxy(soketi: SoketiServer) -> Iterator[CountingProxy]:
    """A counting proxy in front of the module's soketi: what went over the wire."""
    with CountingProxy(soketi.port) as counting:
        yield counting


@pytest.fixture(params=["sqlite", "postgresql", "mysql"])
def store(request: pytest.FixtureRequest, new_store: Callable[..., Store]) -> Store:
    """A fresh store with 4 partitions: a SQLite file, a PostgreSQL or a MariaDB table."""
    return new_store(request.param)


class ConnTransaction:
    """A DB-API connection with an open transaction as a ``Transaction`` (a real adapter,
    kept minimal: ``on_commit`` is not needed by the outbox)."""

    def __init__(self, connection: Any, dialect: str, paramstyle: str) -> None:
        self.connection = connection
        self.dialect = dialect
        self.paramstyle = paramstyle

    def active(self) -> bool:
        return True

    def on_commit(self, callback: Callable[[], object]) -> None:
        raise NotImplementedError("the outbox writes in the transaction: no callback")

    def execute(self, sql: str, params: Sequence[Any]) -> object:
        return self.connection.execute(sql, tuple(params))


class CursorConnTransaction(ConnTransaction):
    """A DB-API connection whose statements run on a cursor (PyMySQL: no ``execute`` of its
    own); the transaction is the connection's (autocommit off)."""

    def execute(self, sql: str, params: Sequence[Any]) -> object:
        with self.connection.cursor() as cursor:
            return cursor.execute(sql, tuple(params))


def mysql_connect(url: str) -> Any:
    """A PyMySQL connection (autocommit off) to the database of a ``mysql+pymysql`` URL."""
    import pymysql
    from sqlalchemy import make_url

    parsed = make_url(url)
    return pymysql.connect(
        host=parsed.host, port=parsed.port or 3306, user=parsed.username, database=parsed.database
    )


class AsyncConnTransaction(ConnTransaction):
    """An async DB-API-like connection (``aiosqlite``, ``psycopg.AsyncConnection``)."""

    async def execute(self, sql: str, params: Sequence[Any]) -> object:
        return await self.connection.execute(sql, tuple(params))


class AsyncCursorConnTransaction(ConnTransaction):
    """An aiomysql connection (autocommit off), each statement on a cursor of its own."""

    async def execute(self, sql: str, params: Sequence[Any]) -> object:
        async with self.connection.cursor() as cursor:
            return await cursor.execute(sql, tuple(params))


async def amysql_connect(url: str) -> Any:
    """An aiomysql connection (autocommit off) to the database of a ``mysql+pymysql`` URL."""
    import aiomysql
    from sqlalchemy import make_url

    parsed = make_url(url)
    return await aiomysql.connect(
        host=parsed.host, port=parsed.port or 3306, user=parsed.username, db=parsed.database
    )


class TransactionPlugin:
    """Passes a :class:`ConnTransaction` given as ``transaction=`` through."""

    @hookimpl
    def broadcasting_transaction(self, broadcast: object, transaction: object) -> Any:
        return transaction if isinstance(transaction, ConnTransaction) else None


@pytest.fixture
def adapters() -> Any:
    """The test adapters: ``.ConnTransaction``, ``.AsyncConnTransaction``, ``.Plugin``."""
    import types

    return types.SimpleNamespace(
        ConnTransaction=ConnTransaction,
        CursorConnTransaction=CursorConnTransaction,
        mysql_connect=mysql_connect,
        mysql_admin=mysql_admin,
        AsyncCursorConnTransaction=AsyncCursorConnTransaction,
        amysql_connect=amysql_connect,
        AsyncConnTransaction=AsyncConnTransaction,
        Plugin=TransactionPlugin,
    )
