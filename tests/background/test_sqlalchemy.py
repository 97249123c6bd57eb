"""send="after_commit" and the outbox's writes through SQLAlchemy 2, on SQLite, PostgreSQL and
MariaDB.

Each test uses a real database (a SQLite file, the machine's PostgreSQL or MariaDB) and the
memory driver: what it holds is what was published, and when.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from bg_support import mysql_url, postgres_url, unique
from sqlalchemy import Column, Integer, MetaData, String, Table, create_engine, insert, select
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine
from sqlalchemy.orm import Session, scoped_session, sessionmaker

from broadcasting import Broadcast, InputError, PublishError, Receipt
from broadcasting.contrib.sqlalchemy import ConnectionTransaction, SessionTransaction, adapt
from broadcasting.drivers.memory import BroadcastMemoryDriver
from broadcasting.hookspecs import hookimpl
from broadcasting.outbox import store_for
from broadcasting.plugin import Message

DATABASES = ["sqlite", "postgresql", "mysql"]


def _url(database: str, tmp_path: Path, *, asynchronous: bool = False) -> str:
    if database == "sqlite":
        driver = "+aiosqlite" if asynchronous else ""
        return f"sqlite{driver}:///{tmp_path / 'app.sqlite3'}"
    if database == "mysql":
        return mysql_url("aiomysql" if asynchronous else "pymysql")
    return postgres_url()  # psycopg 3 serves both: create_async_engine picks its async side


@pytest.fixture(params=DATABASES)
def database(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def orders() -> Table:
    """A table of this test's own."""
    return Table(
        unique("orders"),
        MetaData(),
        Column("id", Integer, primary_key=True),
        Column("item", String(50)),
    )


@pytest.fixture
def engine(database: str, tmp_path: Path, orders: Table) -> Iterator[Engine]:
    engine = create_engine(_url(database, tmp_path))
    orders.metadata.create_all(engine)
    try:
        yield engine
    finally:
        orders.metadata.drop_all(engine)
        engine.dispose()


@pytest.fixture
async def async_engine(database: str, tmp_path: Path, orders: Table) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(_url(database, tmp_path, asynchronous=True))
    async with engine.begin() as connection:
        await connection.run_sync(orders.metadata.create_all)
    try:
        yield engine
    finally:
        async with engine.begin() as connection:
            await connection.run_sync(orders.metadata.drop_all)
        await engine.dispose()


def data(memory: BroadcastMemoryDriver) -> list[Any]:
    return [message.data for message in memory.messages]


# -- a sync Session ---------------------------------------------------------------------------


def test_a_publish_waits_for_the_commit_and_is_sent_once(
    broadcast: Broadcast, memory: BroadcastMemoryDriver, engine: Engine, orders: Table
) -> None:
    with Session(engine) as session:
        session.execute(insert(orders).values(item="mug"))
        receipt = broadcast.channel(
            "orders", {"id": 1}, "shipped", send="after_commit", transaction=session
        )
        assert receipt.pending and receipt.via == "after_commit" and not receipt.ids
        assert memory.messages == []  # not before the commit
        session.commit()
        assert data(memory) == [{"id": 1}]
        assert memory.messages[0].via == "after_commit"
        assert memory.messages[0].id == receipt.message_id
        session.execute(insert(orders).values(item="cup"))
        session.commit()  # a later transaction of the same session sends nothing again
    assert data(memory) == [{"id": 1}]


def test_a_rollback_drops_the_publish(
    broadcast: Broadcast, memory: BroadcastMemoryDriver, engine: Engine, orders: Table
) -> None:
    with Session(engine) as session:
        session.execute(insert(orders).values(item="mug"))
        broadcast.channel("orders", {"id": 1}, "shipped", send="after_commit", transaction=session)
        session.rollback()
        session.execute(insert(orders).values(item="cup"))
        session.commit()  # the next transaction does not send what was rolled back
    assert memory.messages == []
    with engine.connect() as connection:
        assert connection.execute(select(orders.c.item)).scalars().all() == ["cup"]


def test_a_session_closed_without_commit_drops_the_publish(
    broadcast: Broadcast, memory: BroadcastMemoryDriver, engine: Engine, orders: Table
) -> None:
    session = Session(engine)
    session.execute(insert(orders).values(item="mug"))
    broadcast.channel("orders", {"id": 1}, "shipped", send="after_commit", transaction=session)
    session.close()
    session.execute(insert(orders).values(item="cup"))
    session.commit()  # the session is reused: what it dropped stays dropped
    session.close()
    assert memory.messages == []


def test_savepoints_a_rolled_back_one_drops_its_publishes_a_released_one_waits(
    broadcast: Broadcast, memory: BroadcastMemoryDriver, engine: Engine, orders: Table
) -> None:
    def publish(session: Session, n: int) -> None:
        broadcast.channel("orders", {"id": n}, "saved", send="after_commit", transaction=session)

    with Session(engine) as session, session.begin():
        publish(session, 1)
        savepoint = session.begin_nested()
        publish(session, 2)
        inner = session.begin_nested()
        publish(session, 3)
        inner.commit()  # released inside the savepoint that rolls back: dropped with it
        savepoint.rollback()
        with session.begin_nested():
            publish(session, 4)  # released: waits for the outer commit
        assert memory.messages == []
    assert data(memory) == [{"id": 1}, {"id": 4}]


def test_a_rolled_back_outer_transaction_drops_released_savepoints_too(
    broadcast: Broadcast, memory: BroadcastMemoryDriver, engine: Engine
) -> None:
    with Session(engine) as session:
        session.begin()
        with session.begin_nested():
            broadcast.channel("orders", {"id": 1}, send="after_commit", transaction=session)
        session.rollback()
    assert memory.messages == []


def test_outside_a_transaction_it_is_sent_at_once(
    broadcast: Broadcast, memory: BroadcastMemoryDriver, engine: Engine
) -> None:
    with Session(engine) as session:
        assert not session.in_transaction()
        receipt = broadcast.channel("orders", {"id": 1}, send="after_commit", transaction=session)
    assert not receipt.pending and receipt.via == "after_commit"
    assert data(memory) == [{"id": 1}]


def test_a_scoped_session_is_its_current_session(
    broadcast: Broadcast, memory: BroadcastMemoryDriver, engine: Engine, orders: Table
) -> None:
    scoped = scoped_session(sessionmaker(engine))
    try:
        scoped.execute(insert(orders).values(item="mug"))
        broadcast.channel("orders", {"id": 1}, send="after_commit", transaction=scoped)
        assert memory.messages == []
        scoped.commit()
        assert data(memory) == [{"id": 1}]
    finally:
        scoped.remove()


def test_the_adapter_writes_in_the_sessions_transaction(
    engine: Engine, orders: Table, database: str
) -> None:
    """What the outbox uses: execute() runs in the caller's transaction, with its paramstyle."""
    placeholder = {"qmark": "?", "format": "%s"}
    with Session(engine) as session:
        session.begin()
        adapted = adapt(session)
        assert isinstance(adapted, SessionTransaction)
        assert adapted.dialect == database and adapted.active()
        mark = placeholder[adapted.paramstyle]
        adapted.execute(f"INSERT INTO {orders.name} (item) VALUES ({mark})", ["kept"])
        session.commit()
        session.begin()
        adapted.execute(f"INSERT INTO {orders.name} (item) VALUES ({mark})", ["dropped"])
        session.rollback()
    with engine.connect() as connection:
        assert connection.execute(select(orders.c.item)).scalars().all() == ["kept"]


# -- a Connection ----------------------------------------------------------------------------


def test_a_connection_in_a_transaction_refuses_after_commit_before_sending(
    broadcast: Broadcast, memory: BroadcastMemoryDriver, engine: Engine, orders: Table
) -> None:
    with engine.connect() as connection:
        connection.execute(insert(orders).values(item="mug"))
        with pytest.raises(InputError, match="no event after a Connection's COMMIT"):
            broadcast.channel("orders", {"id": 1}, send="after_commit", transaction=connection)
        connection.rollback()
        assert not connection.in_transaction()
        broadcast.channel("orders", {"id": 2}, send="after_commit", transaction=connection)
    assert data(memory) == [{"id": 2}]  # outside a transaction: at once


def test_a_connection_writes_in_its_transaction(engine: Engine, orders: Table) -> None:
    with engine.connect() as connection:
        connection.begin()
        adapted = adapt(connection)
        assert isinstance(adapted, ConnectionTransaction) and adapted.active()
        mark = "?" if adapted.paramstyle == "qmark" else "%s"
        adapted.execute(f"INSERT INTO {orders.name} (item) VALUES ({mark})", ["dropped"])
        connection.rollback()
        assert connection.execute(select(orders.c.item)).scalars().all() == []


# -- failures after the commit -----------------------------------------------------------------


class _Refusing:
    """A publish hook that fails as a service would (a mock of the service: the point is what
    the core does with the failure after the commit)."""

    @hookimpl(tryfirst=True)
    def broadcasting_publish(self, broadcast: Broadcast, driver: Any, message: Message) -> Receipt:
        raise PublishError(
            "service unavailable", driver=driver.name, failed=message.channels, status=503
        )


def test_a_failing_publish_after_commit_is_logged_never_raised(
    engine: Engine, orders: Table, caplog: pytest.LogCaptureFixture
) -> None:
    with Broadcast({"DRIVER": "memory"}, plugins=[_Refusing()]) as broadcast:
        with Session(engine) as session:
            session.execute(insert(orders).values(item="mug"))
            receipt = broadcast.channel(
                "orders", {"id": 1}, "shipped", send="after_commit", transaction=session
            )
            with caplog.at_level(logging.ERROR, logger="broadcasting.background"):
                session.commit()  # the data is committed: nothing is raised into this code
        with engine.connect() as connection:
            assert connection.execute(select(orders.c.item)).scalars().all() == ["mug"]
    [record] = [r for r in caplog.records if r.name == "broadcasting.background"]
    assert record.levelno == logging.ERROR
    assert receipt.message_id in record.getMessage()
    assert "failed" in record.getMessage() and "service unavailable" in record.getMessage()


# -- AsyncSession and AsyncConnection ----------------------------------------------------------


async def test_an_async_session_publishes_after_its_commit(
    broadcast: Broadcast, memory: BroadcastMemoryDriver, async_engine: AsyncEngine, orders: Table
) -> None:
    async with AsyncSession(async_engine) as session:
        await session.execute(insert(orders).values(item="mug"))
        receipt = await broadcast.achannel(
            "orders", {"id": 1}, "shipped", send="after_commit", transaction=session
        )
        assert receipt.pending and memory.messages == []
        await session.commit()
        await _settle()
        assert data(memory) == [{"id": 1}]

        await session.execute(insert(orders).values(item="cup"))
        await broadcast.achannel("orders", {"id": 2}, send="after_commit", transaction=session)
        await session.rollback()
        await _settle()
    assert data(memory) == [{"id": 1}]


async def test_an_async_session_savepoint_that_rolls_back_drops_its_publish(
    broadcast: Broadcast, memory: BroadcastMemoryDriver, async_engine: AsyncEngine
) -> None:
    async with AsyncSession(async_engine) as session, session.begin():
        await broadcast.achannel("orders", {"id": 1}, send="after_commit", transaction=session)
        savepoint = await session.begin_nested()
        await broadcast.achannel("orders", {"id": 2}, send="after_commit", transaction=session)
        await savepoint.rollback()
    await _settle()
    assert data(memory) == [{"id": 1}]


async def test_the_async_adapters_write_in_the_transaction(
    async_engine: AsyncEngine, orders: Table
) -> None:
    async with AsyncSession(async_engine) as session:
        await session.begin()
        adapted = adapt(session)
        assert isinstance(adapted, SessionTransaction) and adapted.active()
        mark = "?" if adapted.paramstyle == "qmark" else "%s"
        await adapted.execute(f"INSERT INTO {orders.name} (item) VALUES ({mark})", ["kept"])  # type: ignore[misc]
        await session.commit()
    async with async_engine.connect() as connection:
        await connection.begin()
        adapted_connection = adapt(connection)
        assert isinstance(adapted_connection, ConnectionTransaction)
        await adapted_connection.execute(  # type: ignore[misc]
            f"INSERT INTO {orders.name} (item) VALUES ({mark})", ["dropped"]
        )
        await connection.rollback()
        rows = await connection.execute(select(orders.c.item))
        assert rows.scalars().all() == ["kept"]


async def test_an_async_connection_in_a_transaction_refuses_after_commit(
    broadcast: Broadcast, memory: BroadcastMemoryDriver, async_engine: AsyncEngine, orders: Table
) -> None:
    async with async_engine.connect() as connection:
        await connection.execute(insert(orders).values(item="mug"))
        with pytest.raises(InputError, match="AsyncConnection"):
            await broadcast.achannel(
                "orders", {"id": 1}, send="after_commit", transaction=connection
            )
        await connection.rollback()
    assert memory.messages == []


async def _settle() -> None:
    """Let the publish tasks that a commit started run (they are tasks on this loop)."""
    import asyncio

    from broadcasting import _background

    while _background._tasks:
        await asyncio.gather(*list(_background._tasks), return_exceptions=True)


def test_an_engine_or_a_sessionmaker_is_not_a_transaction(
    broadcast: Broadcast, memory: BroadcastMemoryDriver, engine: Engine
) -> None:
    for wrong in (engine, sessionmaker(engine)):
        with pytest.raises(TypeError, match="it holds no transaction; pass the Session"):
            broadcast.channel("orders", {"id": 1}, send="after_commit", transaction=wrong)
    assert memory.messages == []


def test_a_raising_callback_stops_no_other_and_is_logged(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    """What on_commit promises to any caller (a plugin's callback may be buggy)."""
    ran = []

    def broken() -> None:
        raise RuntimeError("a bug")

    caplog.set_level(logging.ERROR, logger="broadcasting.background")
    with Session(engine) as session, session.begin():
        session.execute(select(1))
        adapted = adapt(session)
        assert adapted is not None
        adapted.on_commit(broken)
        adapted.on_commit(lambda: ran.append("second"))
        assert ran == []
    assert ran == ["second"]
    [record] = [r for r in caplog.records if r.name == "broadcasting.background"]
    assert record.exc_info is not None and str(record.exc_info[1]) == "a bug"


# -- the outbox, written in the caller's transaction --------------------------------------------


def _outbox_rows(path: Path) -> list[tuple[str, str]]:
    import sqlite3

    with sqlite3.connect(path) as connection:
        return connection.execute(
            "SELECT channels, body FROM broadcasting_outbox ORDER BY id"
        ).fetchall()


def test_an_outbox_row_commits_and_rolls_back_with_the_session(tmp_path: Path) -> None:
    path = tmp_path / "app.sqlite3"
    config = {"DRIVER": "memory", "OUTBOX": {"url": f"sqlite:///{path}"}}
    with Broadcast(config) as broadcast:
        broadcast.channel("setup", {}, send="outbox")  # the outbox makes its tables
        engine = create_engine(f"sqlite:///{path}")
        with Session(engine) as session, session.begin():
            receipt = broadcast.channel("orders", {"id": 1}, send="outbox", transaction=session)
            assert receipt.pending and receipt.via == "outbox"
        with Session(engine) as session:
            session.begin()
            broadcast.channel("orders", {"id": 2}, send="outbox", transaction=session)
            session.rollback()
        engine.dispose()
    assert _outbox_rows(path) == [('["setup"]', "{}"), ('["orders"]', '{"id":1}')]


async def test_an_outbox_row_commits_and_rolls_back_with_the_async_session(
    tmp_path: Path,
) -> None:
    path = tmp_path / "app.sqlite3"
    config = {"DRIVER": "memory", "OUTBOX": {"url": f"sqlite:///{path}"}}
    with Broadcast(config) as broadcast:
        await broadcast.achannel("setup", {}, send="outbox")
        engine = create_async_engine(f"sqlite+aiosqlite:///{path}")
        async with AsyncSession(engine) as session, session.begin():
            await broadcast.achannel("orders", {"id": 1}, send="outbox", transaction=session)
        async with AsyncSession(engine) as session:
            await session.begin()
            await broadcast.achannel("orders", {"id": 2}, send="outbox", transaction=session)
            await session.rollback()
        await engine.dispose()
    assert _outbox_rows(path) == [('["setup"]', "{}"), ('["orders"]', '{"id":1}')]


@pytest.mark.parametrize("scheme", ["mysql", "mariadb"])
def test_an_outbox_row_commits_and_rolls_back_with_a_mariadb_session(scheme: str) -> None:
    """The outbox in the application's MariaDB: the row is written in the session's
    transaction (SQLAlchemy names the dialect ``mysql`` or ``mariadb`` by the URL's scheme)."""
    url = mysql_url().replace("mysql+", f"{scheme}+", 1)
    table = unique("outbox")
    config = {"DRIVER": "memory", "OUTBOX": {"url": url, "table": table}}
    engine = create_engine(url)
    try:
        with Broadcast(config) as broadcast:
            store_for(broadcast).create_tables()  # as `broadcasting outbox init` does
            broadcast.channel("setup", {}, send="outbox")
            with Session(engine) as session, session.begin():
                adapted = adapt(session)
                assert adapted is not None and adapted.dialect == scheme
                broadcast.channel("orders", {"id": 1}, send="outbox", transaction=session)
            with Session(engine) as session:
                session.begin()
                broadcast.channel("orders", {"id": 2}, send="outbox", transaction=session)
                session.rollback()
        with engine.connect() as connection:
            rows = connection.exec_driver_sql(
                f"SELECT channels, body FROM `{table}` ORDER BY id"
            ).fetchall()
        assert [tuple(r) for r in rows] == [('["setup"]', "{}"), ('["orders"]', '{"id":1}')]
    finally:
        with engine.begin() as connection:
            for suffix in ("", "_lease", "_relay", "_lock"):
                connection.exec_driver_sql(f"DROP TABLE IF EXISTS `{table}{suffix}`")
        engine.dispose()


async def test_an_outbox_row_commits_and_rolls_back_with_an_async_mariadb_session() -> None:
    url = mysql_url()
    table = unique("outbox")
    config = {"DRIVER": "memory", "OUTBOX": {"url": url, "table": table}}
    engine = create_async_engine(mysql_url("aiomysql"))
    try:
        with Broadcast(config) as broadcast:
            store_for(broadcast).create_tables()
            await broadcast.achannel("setup", {}, send="outbox")
            async with AsyncSession(engine) as session, session.begin():
                await broadcast.achannel("orders", {"id": 1}, send="outbox", transaction=session)
            async with AsyncSession(engine) as session:
                await session.begin()
                await broadcast.achannel("orders", {"id": 2}, send="outbox", transaction=session)
                await session.rollback()
        async with engine.connect() as connection:
            select_rows = f"SELECT channels, body FROM `{table}` ORDER BY id"
            rows = (await connection.exec_driver_sql(select_rows)).fetchall()
        assert [tuple(r) for r in rows] == [('["setup"]', "{}"), ('["orders"]', '{"id":1}')]
    finally:
        async with engine.begin() as connection:
            for suffix in ("", "_lease", "_relay", "_lock"):
                await connection.exec_driver_sql(f"DROP TABLE IF EXISTS `{table}{suffix}`")
        await engine.dispose()
