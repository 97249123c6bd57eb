"""The outbox's write path on real databases: ``channel(send="outbox")`` writes rows (in the
caller's transaction, or the store's own), returns a pending receipt, never leaves a row of
a rolled-back transaction; on PostgreSQL each channel's ids follow commit order."""

from __future__ import annotations

import json
import os
import random
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from broadcasting import Broadcast, InputError
from broadcasting._errors import ConfigurationError
from broadcasting.outbox import Store, store_for

ALL = [0, 1, 2, 3]
ConnTransaction: Any = None
AsyncConnTransaction: Any = None
CURSOR_TRANSACTION: Any = None
MYSQL_CONNECT: Any = None


@pytest.fixture(autouse=True)
def _adapters(adapters: Any) -> None:
    """The conftest's adapter classes, as this module's names."""
    global ConnTransaction, AsyncConnTransaction, CURSOR_TRANSACTION, MYSQL_CONNECT
    ConnTransaction, AsyncConnTransaction = adapters.ConnTransaction, adapters.AsyncConnTransaction
    CURSOR_TRANSACTION, MYSQL_CONNECT = adapters.CursorConnTransaction, adapters.mysql_connect


@pytest.fixture
def make_broadcast(
    outbox_config: Callable[..., dict[str, Any]], adapters: Any
) -> Iterator[Callable[..., Broadcast]]:
    """Broadcasts whose OUTBOX is a fresh store of the kind asked for (tables created); they
    take a test adapter (``Tx``) as ``transaction=``."""
    made: list[Broadcast] = []

    def make(kind: str, **settings: Any) -> Broadcast:
        outbox = outbox_config(kind, partitions=4, **settings)
        broadcast = Broadcast(
            {"DRIVER": "memory", "DRIVERS": {"memory": {}}, "OUTBOX": outbox},
            plugins=[adapters.Plugin()],
        )
        store_for(broadcast).create_tables()
        made.append(broadcast)
        return broadcast

    yield make
    for broadcast in made:
        broadcast.close()
        store_for(broadcast).close()


@pytest.fixture(params=["sqlite", "postgresql", "mysql"])
def broadcast(
    request: pytest.FixtureRequest, make_broadcast: Callable[..., Broadcast]
) -> Broadcast:
    return make_broadcast(request.param)


def rows_of(broadcast: Broadcast) -> list[Any]:
    return store_for(broadcast).fetch("test", ALL, time.time() + 10, 1000)


def caller_connection(broadcast: Broadcast) -> tuple[Any, ConnTransaction]:
    """A connection of the caller's own to the outbox's database, a transaction open."""
    store = store_for(broadcast)
    url = broadcast.config.outbox["url"].reveal()
    if store.dialect == "sqlite":
        conn: Any = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
        conn.execute("BEGIN")
        return conn, ConnTransaction(conn, "sqlite", "qmark")
    if store.dialect == "mysql":
        conn = MYSQL_CONNECT(url)  # autocommit off: the first statement opens a transaction
        return conn, CURSOR_TRANSACTION(conn, "mysql", "format")
    import psycopg

    conn = psycopg.connect(url)  # not autocommit: the first statement opens a transaction
    return conn, ConnTransaction(conn, "postgresql", "format")


def test_without_a_transaction_the_store_commits_at_once(broadcast: Broadcast) -> None:
    receipt = broadcast.channel(["a", "b", "c", "d"], {"id": 42}, "shipped", send="outbox")
    assert receipt.pending and receipt.via == "outbox" and receipt.ids == ()
    assert receipt.channels == ("a", "b", "c", "d") and receipt.driver == "memory"
    rows = rows_of(broadcast)
    assert {r.message_id for r in rows} == {receipt.message_id}
    assert sorted(c for r in rows for c in r.channels) == ["a", "b", "c", "d"]
    assert all(r.message().data == {"id": 42} and r.driver == "memory" for r in rows)
    # nothing was sent now: the relay does that
    assert broadcast.driver("memory").driver.messages == []  # type: ignore[attr-defined]


def end(conn: Any, dialect: str, commit: bool) -> None:
    """Commit or roll back the caller's transaction."""
    if dialect == "sqlite":
        conn.execute("COMMIT" if commit else "ROLLBACK")
    else:
        conn.commit() if commit else conn.rollback()


@pytest.mark.parametrize("commit", [True, False])
def test_in_the_callers_transaction_rows_follow_its_outcome(
    broadcast: Broadcast, commit: bool
) -> None:
    conn, transaction = caller_connection(broadcast)
    try:
        receipt = broadcast.channel(
            ["orders", "audit"], "shipped #42", "shipped", send="outbox", transaction=transaction
        )
        assert receipt.pending and receipt.via == "outbox"
        assert rows_of(broadcast) == []  # not committed: nobody else sees it
        end(conn, store_for(broadcast).dialect, commit)
    finally:
        conn.close()
    rows = rows_of(broadcast)
    if commit:
        assert {r.message_id for r in rows} == {receipt.message_id}
        assert sorted(c for r in rows for c in r.channels) == ["audit", "orders"]
    else:
        assert rows == []


def test_a_rolled_back_transaction_leaves_no_row(broadcast: Broadcast) -> None:
    conn, transaction = caller_connection(broadcast)
    try:
        broadcast.channel("orders", "x", "shipped", send="outbox", transaction=transaction)
        end(conn, store_for(broadcast).dialect, commit=False)
        broadcast.channel("orders", "y", "kept", send="outbox")  # the store's own: committed
    finally:
        conn.close()
    assert [r.event for r in rows_of(broadcast)] == ["kept"]


async def test_async_paths(broadcast: Broadcast, adapters: Any) -> None:
    # the store's own connection, in a thread
    receipt = await broadcast.achannel("orders", {"n": 1}, "one", send="outbox")
    assert receipt.pending
    # an async transaction adapter, awaited
    store = store_for(broadcast)
    url = broadcast.config.outbox["url"].reveal()
    if store.dialect == "sqlite":
        import aiosqlite

        conn: Any = await aiosqlite.connect(url.removeprefix("sqlite:///"), isolation_level=None)
        await conn.execute("BEGIN")
        transaction = AsyncConnTransaction(conn, "sqlite", "qmark")
    elif store.dialect == "mysql":
        conn = await adapters.amysql_connect(url)
        transaction = adapters.AsyncCursorConnTransaction(conn, "mysql", "format")
    else:
        import psycopg

        conn = await psycopg.AsyncConnection.connect(url)
        transaction = AsyncConnTransaction(conn, "postgresql", "format")
    try:
        await broadcast.achannel("orders", {"n": 2}, "two", send="outbox", transaction=transaction)
        await broadcast.achannel("orders", {"n": 3}, "gone", send="outbox", transaction=transaction)
        if store.dialect == "sqlite":
            await conn.execute("COMMIT")
        else:
            await conn.commit()
    finally:
        if store.dialect == "mysql":
            conn.close()  # aiomysql's close() is not a coroutine
        else:
            await conn.close()
    assert [r.event for r in rows_of(broadcast)] == ["one", "two", "gone"]


def test_a_blocking_call_refuses_an_async_transaction(broadcast: Broadcast) -> None:
    class Pending:  # what an async adapter's execute() returns: an awaitable
        def __await__(self) -> Iterator[None]:
            yield None

    class AsyncAdapter(ConnTransaction):  # type: ignore[misc]
        def execute(self, sql: str, params: Any) -> object:
            return Pending()

    adapter = AsyncAdapter(None, store_for(broadcast).dialect, "qmark")
    with pytest.raises(TypeError, match=r"is async: .*await broadcast.achannel"):
        broadcast.channel("orders", "x", "e", send="outbox", transaction=adapter)
    assert rows_of(broadcast) == []


def test_refusals_before_any_write(make_broadcast: Callable[..., Broadcast]) -> None:
    broadcast = make_broadcast("sqlite")
    conn = sqlite3.connect(":memory:")
    with pytest.raises(ConfigurationError, match=r"the outbox is a sqlite database .* postgresql"):
        broadcast.channel(
            "a", "x", "e", send="outbox", transaction=ConnTransaction(conn, "postgresql", "format")
        )
    with pytest.raises(TypeError, match="paramstyle 'named' is not supported"):
        broadcast.channel(
            "a", "x", "e", send="outbox", transaction=ConnTransaction(conn, "sqlite", "named")
        )
    variant = broadcast.driver("memory").with_options(max_history=5)
    with pytest.raises(InputError, match=r"with_options\(\) variant .* cannot be written"):
        variant.channel("a", "x", "e", send="outbox")
    assert rows_of(broadcast) == []


def test_one_store_per_broadcast(make_broadcast: Callable[..., Broadcast]) -> None:
    broadcast = make_broadcast("sqlite")
    other = Broadcast({"DRIVER": "memory", "OUTBOX": dict(broadcast.config.outbox)})
    seen: list[Store] = []
    threads = [threading.Thread(target=lambda: seen.append(store_for(other))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({id(s) for s in seen}) == 1 and seen[0] is not store_for(broadcast)
    assert store_for(broadcast) is store_for(broadcast)
    store_for(other).close()


def test_importing_the_outbox_imports_no_database_driver() -> None:
    code = (
        "import sys, broadcasting, broadcasting.outbox, broadcasting.outbox._write;"
        "loaded = {'psycopg', 'sqlalchemy', 'django', 'sqlite3'} & set(sys.modules);"
        "assert not loaded, loaded"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# -- PostgreSQL and MySQL/MariaDB: each channel's ids in commit order ----------------------
#
# PostgreSQL: the INSERT takes each channel's advisory lock; MySQL: the write first upserts
# each channel's lock row. Either way a second writer to a channel waits for the first to end.


def _connect(broadcast: Broadcast) -> tuple[Any, Any]:
    """A connection of the caller's own (a transaction opens at its first statement) and the
    adapter that passes it as ``transaction=``."""
    url = broadcast.config.outbox["url"].reveal()
    if store_for(broadcast).dialect == "mysql":
        conn = MYSQL_CONNECT(url)
        return conn, CURSOR_TRANSACTION(conn, "mysql", "format")
    import psycopg

    conn = psycopg.connect(url)
    return conn, ConnTransaction(conn, "postgresql", "format")


def _query(conn: Any, sql: str, *params: Any) -> Any:
    """The first row of ``sql`` on a psycopg or PyMySQL connection."""
    if hasattr(conn, "execute"):
        return conn.execute(sql, params).fetchone()
    with conn.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()


def _waiting_on_a_lock(broadcast: Broadcast, conn: Any) -> bool:
    """Whether ``conn``'s transaction waits for a lock (asked on another connection).

    MySQL/MariaDB: whether ``conn`` is running the upsert of the channels' lock rows, by
    the process list. Blocked on the row lock, MariaDB 10.11 shows it as command 'Query',
    state 'Update' (seen on a real run, for all 2 s the first writer held the lock); not
    blocked, it ends in well under a millisecond. information_schema.innodb_trx is a cache
    that MariaDB 10.11 can leave stale for 30 s (see test_s37_outbox_ops.py's
    wait_for_lock_waits)."""
    watcher, _ = _connect(broadcast)
    try:
        if store_for(broadcast).dialect == "mysql":
            row = _query(
                watcher,
                "SELECT count(*) FROM information_schema.processlist WHERE id = %s "
                "AND command = 'Query' AND state = 'Update' AND info LIKE %s",
                conn.thread_id(),
                # the lock table's name, quoted as the dialect quotes it
                f"INSERT INTO %{store_for(broadcast).table}_lock%",
            )
            return int(row[0]) == 1
        row = _query(
            watcher,
            "SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s",
            conn.info.backend_pid,
        )
        return row is not None and row[0] == "Lock"
    finally:
        watcher.close()


@pytest.mark.parametrize("kind", ["postgresql", "mysql"])
def test_a_second_writer_to_a_channel_waits_for_the_first_to_commit(
    make_broadcast: Callable[..., Broadcast], kind: str
) -> None:
    broadcast = make_broadcast(kind)
    first, first_tx = _connect(broadcast)
    second, second_tx = _connect(broadcast)
    try:
        broadcast.channel(["orders", "x"], "1", "first", send="outbox", transaction=first_tx)
        done = threading.Event()

        def write_second() -> None:
            broadcast.channel(["y", "orders"], "2", "second", send="outbox", transaction=second_tx)
            second.commit()
            done.set()

        thread = threading.Thread(target=write_second)
        thread.start()
        deadline = time.monotonic() + 20
        while not _waiting_on_a_lock(broadcast, second):
            assert time.monotonic() < deadline, "the second writer never waited for the lock"
            time.sleep(0.01)
        assert not done.is_set()
        first.commit()
        thread.join(20)
        assert done.is_set()
    finally:
        first.close()
        second.close()
    on_orders = [r for r in rows_of(broadcast) if "orders" in r.channels]
    assert [r.event for r in sorted(on_orders, key=lambda r: r.id)] == ["first", "second"]
    # another channel is not held up: it has no lock in common (the first never commits)
    held, held_tx = _connect(broadcast)
    unrelated, unrelated_tx = _connect(broadcast)
    try:
        broadcast.channel("orders", "4", "held", send="outbox", transaction=held_tx)
        broadcast.channel("z", "3", "free", send="outbox", transaction=unrelated_tx)
        unrelated.commit()
    finally:
        held.close()
        unrelated.close()
    assert [r.event for r in rows_of(broadcast) if r.channels == ("z",)] == ["free"]


@pytest.mark.parametrize("kind", ["postgresql", "mysql"])
def test_concurrent_writers_ids_follow_commit_order(
    make_broadcast: Callable[..., Broadcast], kind: str
) -> None:
    """Two writer connections publish to a shared channel (and others) with random pauses
    before commit; each takes a number from a sequence just before its commit, while it
    still holds its locks. Per channel, id order must be that commit order."""
    broadcast = make_broadcast(kind)
    table = store_for(broadcast).table
    name = f"commits_{uuid.uuid4().hex[:8]}"
    setup, _ = _connect(broadcast)
    try:
        if kind == "mysql":  # MariaDB 10.3+ has sequences
            sequence, take = f"`{name}`", f"SELECT NEXTVAL(`{name}`)"
        else:
            sequence = f'"{table.split(".")[0]}"."{name}"'
            take = f"SELECT nextval('{sequence}')"
        _query_ddl(setup, f"CREATE SEQUENCE {sequence}")
    finally:
        setup.close()
    committed: dict[str, int] = {}
    rng = random.Random(19)

    def writer(name: str) -> None:
        conn, transaction = _connect(broadcast)
        try:
            for n in range(40):
                channels = ["shared", f"{name}-{n % 3}"] if n % 4 else [f"{name}-{n % 3}", "other"]
                receipt = broadcast.channel(
                    channels, str(n), "e", send="outbox", transaction=transaction
                )
                time.sleep(rng.random() * 0.002)
                (order,) = _query(conn, take)
                conn.commit()
                committed[receipt.message_id] = order
        finally:
            conn.close()

    threads = [threading.Thread(target=writer, args=(name,)) for name in ("w1", "w2")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rows = sorted(rows_of(broadcast), key=lambda r: r.id)
    assert len({r.message_id for r in rows}) == 80
    for channel in ("shared", "other"):
        orders = [committed[r.message_id] for r in rows if channel in r.channels]
        assert len(orders) >= 20 and orders == sorted(orders), channel


@pytest.mark.parametrize("kind", ["postgresql", "mysql"])
def test_an_open_transaction_with_an_outbox_row_holds_up_no_relay_statement(
    make_broadcast: Callable[..., Broadcast], kind: str
) -> None:
    """An application's transaction that wrote an outbox row and stays open (a slow view, a
    batch job) must not stall the relays: every statement of theirs goes on meanwhile. On
    MariaDB a purge that scanned the table waited for that transaction to end (SQLite takes
    one writer at a time: there it waits, by design)."""
    from broadcasting.outbox import DELIVERED, Outcome

    broadcast = make_broadcast(kind)
    store = store_for(broadcast)
    broadcast.channel("done", "0", "old", send="outbox")  # the store's own: committed
    long_ago = time.time() - 1000
    held = store.claim("r", long_ago, 3600)
    ready = store.fetch("r", held, time.time() + 10, 10)
    sent = store.mark_sending("r", [r.id for r in ready], long_ago)
    store.finish("r", [Outcome(i, DELIVERED) for i in sent], long_ago)
    conn, transaction = _connect(broadcast)
    try:
        broadcast.channel("orders", "1", "open", send="outbox", transaction=transaction)
        now = time.time()
        statements: list[tuple[str, Callable[[], object]]] = [
            ("claim", lambda: store.claim("r", now, 30)),
            ("fetch", lambda: store.fetch("r", ALL, now, 10)),
            ("due", lambda: store.due(ALL)),
            ("stats", lambda: store.stats(now)),
            ("purge", lambda: store.purge(now - 10)),
            ("requeue", lambda: store.requeue(sent)),
        ]
        for name, statement in statements:
            results: list[object] = []
            thread = threading.Thread(
                target=lambda out=results, run=statement: out.append(run()), daemon=True
            )
            thread.start()
            thread.join(5)
            assert results, f"{name} waited for the application's open transaction"
            if name == "purge":
                assert results == [len(sent)] and len(sent) == 1
    finally:
        conn.rollback()
        conn.close()


@pytest.mark.parametrize("kind", ["postgresql", "mysql"])
def test_publishes_to_two_channels_in_opposite_orders_deadlock_and_one_is_aborted(
    make_broadcast: Callable[..., Broadcast], kind: str
) -> None:
    """What docs/background.md warns of: two transactions publishing to ``a`` then ``b`` and
    to ``b`` then ``a`` wait for each other; the database aborts one with its deadlock error
    (passed through unchanged), and the other goes on. One call to both never deadlocks."""
    broadcast = make_broadcast(kind)
    first, first_tx = _connect(broadcast)
    second, second_tx = _connect(broadcast)
    errors: list[BaseException] = []

    def publish(conn: Any, transaction: Any, channel: str) -> None:
        try:
            broadcast.channel(channel, "2", "e", send="outbox", transaction=transaction)
            conn.commit()
        except Exception as exc:
            errors.append(exc)
            conn.rollback()

    try:
        broadcast.channel("a", "1", "e", send="outbox", transaction=first_tx)
        broadcast.channel("b", "1", "e", send="outbox", transaction=second_tx)
        threads = [
            threading.Thread(target=publish, args=(first, first_tx, "b")),
            threading.Thread(target=publish, args=(second, second_tx, "a")),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    finally:
        first.close()
        second.close()
    assert len(errors) == 1, errors
    assert "deadlock" in str(errors[0]).lower(), errors[0]
    # the survivor's two rows committed; the aborted transaction left none
    assert sorted(r.channels[0] for r in rows_of(broadcast)) == ["a", "b"]


def _query_ddl(conn: Any, sql: str) -> None:
    if hasattr(conn, "execute"):
        conn.execute(sql)
    else:
        with conn.cursor() as cursor:
            cursor.execute(sql)
    conn.commit()


# -- Django: the migration makes the store's table ----------------------------------------

DJANGO_SCRIPT = r"""
import json, sys, time
import django
from django.conf import settings

db, schema = json.loads(sys.argv[1]), sys.argv[2]
settings.configure(
    INSTALLED_APPS=["broadcasting.contrib.django"], DATABASES={"default": db}, USE_TZ=True
)
django.setup()
from django.core.management import call_command
from django.db import connection

from broadcasting.outbox import DELIVERED, Outcome, Store
from broadcasting.outbox._row import new_rows
from broadcasting._types import Message

call_command("migrate", "broadcasting", verbosity=0)

# the store's own DDL, under another name, in the same database
prefix = f"{schema}." if schema else ""
reference = Store.from_config({"django": "default", "table": "ref_outbox"})
reference.create_tables()


def describe(table):
    with connection.cursor() as cursor:
        columns = [
            [c.name, connection.introspection.get_field_type(c.type_code, c), bool(c.null_ok)]
            for c in connection.introspection.get_table_description(cursor, table)
        ]
        constraints = connection.introspection.get_constraints(cursor, table)
    # Django adds a "_like" index (varchar_pattern_ops) to a CharField key on PostgreSQL,
    # for LIKE queries the store never makes: left out of the comparison
    indexes = sorted(
        c["columns"]
        for name, c in constraints.items()
        if c["index"] and not c["primary_key"] and not name.endswith("_like")
    )
    keys = sorted(c["columns"] for c in constraints.values() if c["primary_key"])
    return {"columns": columns, "indexes": indexes, "keys": keys}


out = {}
suffixes = ("", "_lease", "_relay") + (("_lock",) if connection.vendor == "mysql" else ())
for suffix in suffixes:
    out[suffix] = [describe("broadcasting_outbox" + suffix), describe("ref_outbox" + suffix)]

# the store works on the migrated table, through Django's connection
store = Store.from_config({"django": "default", "partitions": 4})
store.create_tables()  # nothing to do: the migration made them
message = Message(("a", "b"), "shipped", {"id": 1}, '{"id":1}', "dj1")
store.insert(new_rows(message, "memory", 4, time.time()))
held = store.claim("dj", time.time(), 30)
rows = store.fetch("dj", held, time.time() + 1, 10)
marked = store.mark_sending("dj", [r.id for r in rows], time.time())
store.finish("dj", [Outcome(i, DELIVERED) for i in marked], time.time())
out["flow"] = [held, sorted(c for r in rows for c in r.channels), len(marked)]
out["stats"] = store.stats(time.time()).as_dict()["backlog"]
print(json.dumps(out))
"""


@pytest.mark.parametrize("kind", ["sqlite", "postgresql", "mysql"])
def test_the_django_migration_creates_the_stores_table(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if not os.environ.get("CI"):  # CI has Django: its absence fails there
        pytest.importorskip("django")
    if kind == "sqlite":
        db: dict[str, Any] = {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(tmp_path / "dj.sqlite3"),
        }
        schema = ""
        url = f"sqlite:///{tmp_path / 'dj.sqlite3'}"
    elif kind == "mysql":  # Django's own MySQL driver, mysqlclient; the store's URL: PyMySQL
        url = request.getfixturevalue("mysql_url")
        schema = ""
        name = f"dj_{uuid.uuid4().hex[:10]}"
        admin = request.getfixturevalue("adapters").mysql_admin
        admin(f"CREATE DATABASE `{name}`")
        request.addfinalizer(lambda: admin(f"DROP DATABASE `{name}`"))
        db = {
            "ENGINE": "django.db.backends.mysql",
            "NAME": name,
            "USER": "root",
            "HOST": "127.0.0.1",
            "PORT": "3306",
        }
        url = url.rsplit("/", 1)[0] + f"/{name}"
    else:
        import psycopg

        pg_url = request.getfixturevalue("pg_url")
        schema = f"dj_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{schema}"')
        request.addfinalizer(lambda: _drop(pg_url, schema))
        info = psycopg.conninfo.conninfo_to_dict(pg_url)
        db = {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": info["dbname"],
            "USER": info["user"],
            "HOST": info["host"],
            "PORT": info["port"],
            "OPTIONS": {"options": f"-c search_path={schema}"},
        }
        url = pg_url
    done = subprocess.run(
        [sys.executable, "-c", DJANGO_SCRIPT, json.dumps(db), schema],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    suffixes = ("", "_lease", "_relay") + (("_lock",) if kind == "mysql" else ())
    assert set(out) == {*suffixes, "flow", "stats"}
    for suffix in suffixes:
        migrated, reference = out[suffix]
        assert migrated == reference, suffix
    assert out[""][0]["indexes"] == [["partition", "state", "id"]]
    assert out["flow"] == [[0, 1, 2, 3], ["a", "b"], out["flow"][2]] and out["flow"][2] >= 1
    assert out["stats"]["delivered"] == out["flow"][2]
    # the URL store sees the same table
    table = f"{schema}.broadcasting_outbox" if schema else "broadcasting_outbox"
    same = Store.from_config({"url": url, "table": table, "partitions": 4})
    try:
        assert same.stats(time.time()).backlog["delivered"] == out["flow"][2]
    finally:
        same.close()


def _drop(url: str, schema: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def test_a_new_sqlite_outbox_gets_its_tables_in_the_callers_transaction(tmp_path: Path) -> None:
    """The first write goes through the application's own sqlite3 transaction, which holds
    the file's write lock: the tables are made in that transaction, not on a second
    connection (which would wait for the lock), and go away with it if it rolls back."""
    path = tmp_path / "app.sqlite3"
    broadcast = Broadcast({"DRIVER": "memory", "OUTBOX": {"url": f"sqlite:///{path}"}})
    connection = sqlite3.connect(path, timeout=0.5)  # the built-in sqlite3 plugin adapts it
    try:
        connection.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY)")
        connection.commit()
        connection.execute("INSERT INTO orders DEFAULT VALUES")  # a transaction is open
        broadcast.channel("orders", "a", send="outbox", transaction=connection)
        connection.rollback()
        tables = {r[0] for r in connection.execute("SELECT name FROM sqlite_master")}
        assert "broadcasting_outbox" not in tables  # rolled back with the row
        connection.execute("INSERT INTO orders DEFAULT VALUES")
        receipt = broadcast.channel("orders", "b", send="outbox", transaction=connection)
        connection.commit()
        rows = connection.execute("SELECT message_id, body FROM broadcasting_outbox").fetchall()
        assert rows == [(receipt.message_id, "b")]
    finally:
        connection.close()
        broadcast.close()
        store_for(broadcast).close()
