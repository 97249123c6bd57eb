"""A SQLite outbox this process's store never opened (a web process that only writes): its
tables are made in the caller's transaction while they may not exist, and no longer once
they are known to be committed. Real SQLite files, written through a plain
``sqlite3.Connection`` (the built-in ``broadcasting.contrib.sqlite`` adapts it); the
statements a write runs are seen with the connection's own trace callback."""

from __future__ import annotations

import os
import signal
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from broadcasting import Broadcast, OutboxError
from broadcasting.outbox import Relay, Store, _sql, store_for

TABLES = {
    "broadcasting_outbox",
    "broadcasting_outbox_claim",
    "broadcasting_outbox_lease",
    "broadcasting_outbox_relay",
}
JOURNALS = ["wal", "delete"]


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Callable[[], tuple[Broadcast, Path]]]:
    """Makes a Broadcast whose OUTBOX is a SQLite file not created yet (its store not
    opened), and that file's path; closed after the test."""
    made: list[Broadcast] = []

    def make() -> tuple[Broadcast, Path]:
        path = tmp_path / f"app-{len(made)}.sqlite3"
        outbox = {"url": f"sqlite:///{path}", "partitions": 4}
        broadcast = Broadcast({"DRIVER": "memory", "DRIVERS": {"memory": {}}, "OUTBOX": outbox})
        made.append(broadcast)
        return broadcast, path

    yield make
    for broadcast in made:
        broadcast.close()
        store_for(broadcast).close()


def connect(path: Path, journal: str) -> sqlite3.Connection:
    """The application's own connection (transactions begun and ended by hand)."""
    connection = sqlite3.connect(path, isolation_level=None, timeout=5)
    connection.execute(f"PRAGMA journal_mode={journal}")
    return connection


def publish(broadcast: Broadcast, connection: sqlite3.Connection, text: str) -> list[str]:
    """The statements a publish in ``connection``'s open transaction ran on it."""
    ran: list[str] = []
    connection.set_trace_callback(ran.append)
    try:
        broadcast.channel("orders", text, "e", send="outbox", transaction=connection)
    finally:
        connection.set_trace_callback(None)
    return ran


def in_transaction(
    broadcast: Broadcast, connection: sqlite3.Connection, text: str, commit: bool = True
) -> list[str]:
    """A publish in a transaction of its own, committed or rolled back: what it ran."""
    connection.execute("BEGIN")
    ran = publish(broadcast, connection, text)
    connection.execute("COMMIT" if commit else "ROLLBACK")
    return ran


def creates(ran: list[str]) -> list[str]:
    return [s for s in ran if s.lstrip().upper().startswith("CREATE")]


def committed(path: Path) -> tuple[set[str], list[str]]:
    """What another connection sees: the outbox's tables and index, and its rows' bodies."""
    with sqlite3.connect(path) as other:
        names = {n for (n,) in other.execute("SELECT name FROM sqlite_master")} & TABLES
        bodies = []
        if "broadcasting_outbox" in names:
            bodies = [b for (b,) in other.execute("SELECT body FROM broadcasting_outbox")]
    other.close()
    return names, bodies


@pytest.mark.parametrize("journal", JOURNALS)
def test_the_first_write_to_a_new_file_makes_the_tables_in_the_callers_transaction(
    outbox: Callable[[], tuple[Broadcast, Path]], journal: str
) -> None:
    broadcast, path = outbox()
    connection = connect(path, journal)
    try:
        connection.execute("BEGIN")
        ran = publish(broadcast, connection, "first")
        assert len(creates(ran)) == 4
        assert committed(path) == (set(), [])  # nothing yet for anyone else
        connection.execute("COMMIT")
    finally:
        connection.close()
    assert committed(path) == (TABLES, ["first"])


@pytest.mark.parametrize("journal", JOURNALS)
def test_a_rolled_back_first_write_leaves_nothing_and_the_next_still_works(
    outbox: Callable[[], tuple[Broadcast, Path]], journal: str
) -> None:
    """The tables a write made in the caller's transaction are not known to exist until
    committed: the second write of that same transaction, and the first after its rollback,
    make them again."""
    broadcast, path = outbox()
    connection = connect(path, journal)
    try:
        connection.execute("BEGIN")
        publish(broadcast, connection, "gone-1")
        assert len(creates(publish(broadcast, connection, "gone-2"))) == 4
        connection.execute("ROLLBACK")
        assert committed(path) == (set(), [])
        assert len(creates(in_transaction(broadcast, connection, "kept"))) == 4
    finally:
        connection.close()
    assert committed(path) == (TABLES, ["kept"])


@pytest.mark.parametrize("journal", JOURNALS)
def test_once_the_tables_are_committed_writes_run_no_create(
    outbox: Callable[[], tuple[Broadcast, Path]], journal: str
) -> None:
    broadcast, path = outbox()
    connection = connect(path, journal)
    try:
        assert len(creates(in_transaction(broadcast, connection, "m0"))) == 4
        for n in range(1, 4):
            ran = in_transaction(broadcast, connection, f"m{n}")
            assert creates(ran) == [] and any("INSERT" in s for s in ran), ran
    finally:
        connection.close()
    assert committed(path) == (TABLES, ["m0", "m1", "m2", "m3"])
    # the store itself still makes its tables and seeds its leases on its own first use
    assert store_for(broadcast)._create_on_first_use


def test_a_file_with_only_some_of_the_tables_gets_the_rest(
    outbox: Callable[[], tuple[Broadcast, Path]],
) -> None:
    """Found tables count only if all of them are there (the outbox table alone, say, from
    a hand-made schema, is not enough)."""
    broadcast, path = outbox()
    connection = connect(path, "wal")
    try:
        connection.execute(_sql.create_tables("sqlite", "broadcasting_outbox")[0])
        assert len(creates(in_transaction(broadcast, connection, "m0"))) == 4
        assert creates(in_transaction(broadcast, connection, "m1")) == []  # all there now
    finally:
        connection.close()
    assert committed(path) == (TABLES, ["m0", "m1"])


def test_tables_made_by_another_process_are_never_created_again(
    outbox: Callable[[], tuple[Broadcast, Path]],
) -> None:
    """A relay (another process; here a store of its own) made the tables: a writer's very
    first write runs no CREATE."""
    broadcast, path = outbox()
    relay_store = Store.from_config(broadcast.config.outbox)
    relay_store.create_tables()
    relay_store.close()
    connection = connect(path, "wal")
    try:
        for n in range(3):
            assert creates(in_transaction(broadcast, connection, f"m{n}")) == []
    finally:
        connection.close()
    assert committed(path)[1] == ["m0", "m1", "m2"]


def test_the_check_never_waits_for_the_lock_a_callers_big_write_holds(
    outbox: Callable[[], tuple[Broadcast, Path]],
) -> None:
    """Rollback-journal mode: a transaction whose changes outgrew its page cache holds the
    exclusive lock, so no other connection can read. The check cannot tell then: it must
    answer at once (not after a busy timeout), and the write makes the tables as before."""
    broadcast, path = outbox()
    connection = connect(path, "delete")
    connection.execute("PRAGMA cache_size=16")  # pages: the big write spills to the file
    connection.execute("CREATE TABLE big (b BLOB)")
    try:
        in_transaction(broadcast, connection, "before")  # the tables are committed now
        connection.execute("BEGIN")
        connection.executemany("INSERT INTO big VALUES (zeroblob(4000))", [()] * 200)
        with sqlite3.connect(path, timeout=0) as reader, pytest.raises(sqlite3.OperationalError):
            reader.execute("SELECT count(*) FROM sqlite_master").fetchall()  # locked
        reader.close()
        started = time.monotonic()
        ran = publish(broadcast, connection, "during")
        took = time.monotonic() - started
        connection.execute("COMMIT")
        assert took < 2.0, took
        assert len(creates(ran)) == 4  # could not tell: made (again, harmlessly) as before
        assert creates(in_transaction(broadcast, connection, "after")) == []
    finally:
        connection.close()
    assert committed(path) == (TABLES, ["before", "during", "after"])


def test_a_relay_opened_later_in_the_process_still_seeds_its_leases(
    outbox: Callable[[], tuple[Broadcast, Path]],
) -> None:
    broadcast, path = outbox()
    connection = connect(path, "wal")
    try:
        in_transaction(broadcast, connection, "one")
        assert creates(in_transaction(broadcast, connection, "two")) == []  # tables seen
    finally:
        connection.close()
    relay = Relay(broadcast, owner="r")
    assert relay.store is store_for(broadcast)
    assert relay.run_once().delivered == 2
    sent = broadcast.driver("memory").driver.messages  # type: ignore[attr-defined]
    assert [m.data for m in sent] == ["one", "two"]
    with sqlite3.connect(path) as other:
        leases = other.execute("SELECT count(*) FROM broadcasting_outbox_lease").fetchall()
    other.close()
    assert leases == [(4,)]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork() is POSIX")
def test_a_forked_child_asks_on_a_connection_of_its_own(
    outbox: Callable[[], tuple[Broadcast, Path]],
) -> None:
    """The parent's checking connection (open: its answer was no) is not used in the child;
    each process still stops making the tables once they are committed."""
    broadcast, path = outbox()
    connection = connect(path, "wal")
    in_transaction(broadcast, connection, "gone", commit=False)
    store = store_for(broadcast)
    inherited: Any = store._probe
    assert inherited is not None
    pid = os.fork()
    if pid == 0:  # the child
        code = 1
        try:
            child = connect(path, "wal")
            made = creates(in_transaction(broadcast, child, "child-1"))
            own = store._probe  # the child's own, its answer no (the tables were not there)
            again = creates(in_transaction(broadcast, child, "child-2"))
            fine = len(made) == 4 and again == [] and own not in (None, inherited)
            code = 0 if fine else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    try:
        assert os.waitstatus_to_exitcode(status) == 0
        assert creates(in_transaction(broadcast, connection, "parent")) == []
    finally:
        connection.close()
    assert committed(path) == (TABLES, ["child-1", "child-2", "parent"])


@pytest.mark.parametrize("table", ["broadcasting_outbox", "shop_events"])
def test_what_the_check_looks_for_is_what_the_ddl_makes(table: str) -> None:
    # the check counts these names: were a table or index added to the DDL and not here, a
    # file missing only that one would be taken as complete
    connection = sqlite3.connect(":memory:")
    for statement in _sql.create_tables(_sql.SQLITE, table):
        connection.execute(statement)
    made = {
        name
        for (name,) in connection.execute("SELECT name FROM sqlite_master")
        if not name.startswith("sqlite_")
    }
    connection.close()
    schema, names = _sql.sqlite_objects(table)
    assert (schema, set(names), len(names)) == ("main", made, len(made))
    assert _sql.sqlite_objects(f"aux.{table}")[0] == "aux"


def test_the_check_connection_is_let_go_once_the_store_makes_the_tables(
    outbox: Callable[[], tuple[Broadcast, Path]],
) -> None:
    broadcast, path = outbox()
    sqlite3.connect(path).close()  # the file exists, without the tables
    connection = connect(path, "wal")
    try:
        assert creates(in_transaction(broadcast, connection, "one", commit=False)) != []
    finally:
        connection.close()
    store = store_for(broadcast)
    assert store._probe is not None, "the check asked, and found no tables"
    store.create_tables()
    assert store._probe is None, "nothing is left to ask: its connection is closed"
    assert store._tables_found()


def test_a_write_racing_the_first_use_waits_until_the_tables_are_made(
    outbox: Callable[[], tuple[Broadcast, Path]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A relay's first round makes the tables of a store that creates them on first use;
    a publish through the outbox from another thread meanwhile (FastAPI's request beside
    the lifespan's relay) waits for that, instead of writing before the tables exist ("no
    such table": CI saw it once in docs/background.md's relay-lifespan example).

    The window is widened by holding the relay back just before it begins its DDL
    transaction until the publish has had its chance (a patch of the store's source, the
    only stand-in here). Inside that transaction SQLite's own write lock would serialize
    the two; before it, nothing did."""
    broadcast, path = outbox()
    in_ddl, go = threading.Event(), threading.Event()
    source = store_for(broadcast)._source
    real = source.transaction

    def held(write: bool, ddl: bool = False) -> Any:
        if ddl:
            in_ddl.set()
            assert go.wait(10)
        return real(write, ddl)

    monkeypatch.setattr(source, "transaction", held)
    relay = Relay(broadcast, owner="r")
    outcomes: dict[str, object] = {}

    def run(name: str, call: Callable[[], object]) -> None:
        try:
            outcomes[name] = call()
        except Exception as exc:  # asserted on below
            outcomes[name] = exc

    first = threading.Thread(target=run, args=("relay", relay.run_once))
    first.start()
    assert in_ddl.wait(10)
    publish = lambda: broadcast.channel("orders", "raced", "e", send="outbox")  # noqa: E731
    second = threading.Thread(target=run, args=("publish", publish))
    second.start()
    # before the fix the publish failed at once; now it waits on the relay's DDL
    second.join(1.0)
    assert "publish" not in outcomes, outcomes.get("publish")
    go.set()
    first.join(10)
    second.join(10)
    assert not isinstance(outcomes["publish"], Exception), outcomes["publish"]
    assert not isinstance(outcomes["relay"], Exception), outcomes["relay"]
    assert relay.run_once().delivered == 1
    sent = broadcast.driver("memory").driver.messages  # type: ignore[attr-defined]
    assert [m.data for m in sent] == ["raced"]
    assert committed(path) == (TABLES, ["raced"])


def test_a_first_use_that_fails_is_tried_again_by_the_next(
    outbox: Callable[[], tuple[Broadcast, Path]], monkeypatch: pytest.MonkeyPatch
) -> None:
    broadcast, path = outbox()
    real = _sql.create_tables
    failing = [True]

    def once_broken(dialect: str, table: str) -> Iterator[str]:
        if failing.pop() if failing else False:
            yield "CREATE TABLE broken ("  # a syntax error: the DDL transaction fails
        yield from real(dialect, table)

    monkeypatch.setattr(_sql, "create_tables", once_broken)
    with pytest.raises(OutboxError, match=r"syntax error|incomplete input"):
        broadcast.channel("orders", "lost", "e", send="outbox")
    broadcast.channel("orders", "kept", "e", send="outbox")
    assert committed(path) == (TABLES, ["kept"])


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork() is POSIX")
def test_a_child_forked_while_a_thread_makes_the_tables_makes_them_itself(
    outbox: Callable[[], tuple[Broadcast, Path]],
) -> None:
    """A fork() while another thread of the parent is making the tables (its lock held,
    here by this thread for it) leaves the child a free lock of its own, not one that no
    thread of the child will ever release."""
    broadcast, path = outbox()
    store = store_for(broadcast)
    with store._first_use_lock:
        pid = os.fork()
        if pid == 0:  # the child
            code = 1
            signal.alarm(30)  # the parent's lock, were it kept, would hang the child
            try:
                broadcast.channel("orders", "child", "e", send="outbox")
                code = 0
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    broadcast.channel("orders", "parent", "e", send="outbox")
    assert committed(path) == (TABLES, ["child", "parent"])
