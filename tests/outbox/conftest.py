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
  ``psycopg``) as the ``transaction=`` of a publish: a minimal real adapter, so the write
  path's tests do not depend on the framework adapters.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "servers"))
from soketi_pytest import unavailable

from broadcasting.hookspecs import hookimpl
from broadcasting.outbox._store import Store

PG_USERS = ("postgres", "root")
PG_TEMPLATE = "postgresql://{user}@127.0.0.1:5432/test"


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
    """Makes OUTBOX settings of a fresh outbox (``kind``: ``"sqlite"`` or ``"postgresql"``)."""
    return lambda kind, **settings: outbox_settings(request, kind, **settings)


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, new_store: Callable[..., Store]) -> Store:
    """A fresh store with 4 partitions: a SQLite file, or a PostgreSQL table."""
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


class AsyncConnTransaction(ConnTransaction):
    """An async DB-API-like connection (``aiosqlite``, ``psycopg.AsyncConnection``)."""

    async def execute(self, sql: str, params: Sequence[Any]) -> object:
        return await self.connection.execute(sql, tuple(params))


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
        AsyncConnTransaction=AsyncConnTransaction,
        Plugin=TransactionPlugin,
    )
