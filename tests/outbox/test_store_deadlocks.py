"""Deadlocks against the store's own transactions, on a real PostgreSQL and a real MariaDB.

A relay marks one wave's rows ``sending`` while it records another's outcomes, each in a
transaction of the store's own. In CI, MariaDB once chose one of them as a deadlock's
victim (1213), which reached the relay as an error: the marking statement read the
(partition, state, id) index and locked every open row of its partitions, the other wave's
too. Now the statements on listed ids find them by primary key, and a transaction the
database rolls back as a deadlock's victim runs again (InnoDB asks for that: "try
restarting transaction"). These tests make a deadlock happen, with a second connection of
their own that takes the same two rows in the other order, and make the store's
transaction the victim: MariaDB rolls back the transaction that has changed less,
PostgreSQL the one whose wait first reaches its ``deadlock_timeout``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from broadcasting import OutboxError
from broadcasting._types import Message
from broadcasting.outbox import DELIVERED, PENDING, SENDING, Outcome, Store, _store
from broadcasting.outbox._row import new_rows, partition_of
from broadcasting.outbox._sql import _q

NOW = 1_800_000_000.0
OWNER = "relay-a"
#: Rows the other connection changes first, so that MariaDB finds its transaction the
#: heavier one and rolls back the store's.
WEIGHT = 40


class Other:
    """A second connection to the store's database, with a transaction of its own
    (``mysql_connect``: conftest's, which opens a PyMySQL connection to a store's URL)."""

    def __init__(
        self, kind: str, settings: dict[str, Any], mysql_connect: Callable[[str], Any]
    ) -> None:
        self.kind = kind
        self.table = _q(settings["table"])
        self.weighed = 0
        if kind == "postgresql":
            import psycopg

            self.connection = psycopg.connect(settings["url"])
            self.watch = psycopg.connect(settings["url"], autocommit=True)
            # PostgreSQL rolls back the transaction whose wait reaches deadlock_timeout
            # first: never this one (the store's waits its 1 s; setting it takes a superuser,
            # as the local server's users are)
            self.connection.execute("SET deadlock_timeout = '30s'")
            self.connection.commit()
        else:
            self.connection = mysql_connect(settings["url"])
            self.watch = mysql_connect(settings["url"])
            self.watch.autocommit(True)
            for connection in (self.connection, self.watch):
                with connection.cursor() as cursor:
                    cursor.execute("SET SESSION sql_mode = 'ANSI_QUOTES'")

    def run(self, sql: str, *params: Any, on: Any = None) -> list[tuple[Any, ...]]:
        connection = on or self.connection
        sql = sql.replace("?", "%s")
        if self.kind == "postgresql":
            cursor = connection.execute(sql, params)
            return list(cursor.fetchall()) if cursor.description else []
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return list(cursor.fetchall())

    def lock(self, row: int) -> None:
        self.run(f"SELECT id FROM {self.table} WHERE id = ? FOR UPDATE", row)

    def weigh(self, rows: list[int]) -> None:
        """Change ``rows``, so that MariaDB finds this transaction the heavier (one by one:
        one statement for all might scan the table, and lock the two rows the store is to
        take)."""
        self.weighed += 1  # a new value: a row set to the value it has is not changed
        for row in rows:
            self.run(f"UPDATE {self.table} SET error = ? WHERE id = ?", f"w{self.weighed}", row)

    def store_waits(self) -> bool:
        """Whether a statement on the table waits for a row lock (another connection's)."""
        name = self.table.split(".")[-1].strip('"')
        if self.kind == "postgresql":
            sql = (
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND pid <> pg_backend_pid() AND query LIKE ?"
            )
            ((count,),) = self.run(sql, f"%{name}%", on=self.watch)
            return int(count) > 0
        # InnoDB's own report, made when asked (information_schema.INNODB_TRX is a copy
        # renewed only when nobody has read it for 0.1 s: parallel tests could keep it old)
        ((_, _, report),) = self.run("SHOW ENGINE INNODB STATUS", on=self.watch)
        live = report.split("\nTRANSACTIONS\n", 1)[1]  # not the latest deadlock's report
        return any("LOCK WAIT" in each and name in each for each in live.split("---TRANSACTION"))

    def close(self) -> None:
        self.connection.close()
        self.watch.close()


def fill(store: Store) -> list[int]:
    """Rows in ``store`` (4 partitions, tables made), all in partition 0, and every
    partition's lease held by :data:`OWNER`: their ids, in order."""
    channel = next(f"c{i}" for i in range(100) if partition_of(f"c{i}", 4) == 0)
    for n in range(WEIGHT + 2):
        message = Message((channel,), "shipped", "x", '"x"', f"m{n}")
        store.insert(new_rows(message, "pusher", 4, NOW))
    assert store.claim(OWNER, NOW, 30) == [0, 1, 2, 3]
    return [row.id for row in store.fetch(OWNER, [0], NOW, 100)]


@pytest.fixture(params=["postgresql", "mysql"])
def setup(
    request: pytest.FixtureRequest, outbox_config: Callable[..., dict[str, Any]], adapters: Any
) -> Iterator[tuple[Store, Other, list[int]]]:
    """A store holding every partition, its open rows' ids (all in partition 0, in id
    order), and a second connection."""
    settings = outbox_config(request.param, partitions=4)
    store = Store.from_config(settings)
    store.create_tables()
    ids = fill(store)
    other = Other(request.param, settings, adapters.mysql_connect)
    yield store, other, ids
    other.connection.rollback()
    other.close()
    store.close()


def meet(other: Other, ids: list[int], call: Callable[[int, int], object]) -> dict[str, Any]:
    """Make ``call(first, second)`` (a store method taking those two rows, in that order)
    and the other connection take the rows in the opposite order: a deadlock, whose victim
    is the store's transaction. What the call returned or raised."""
    first, second, weights = ids[0], ids[1], ids[2:]
    got: dict[str, Any] = {}

    def store_side() -> None:
        try:
            got["result"] = call(first, second)
        except Exception as exc:
            got["error"] = exc

    if other.kind == "mysql":
        other.weigh(weights)
    other.lock(second)
    thread = threading.Thread(target=store_side)
    thread.start()
    deadline = time.monotonic() + 20
    while not other.store_waits():  # the store holds ``first`` and waits for ``second``
        assert thread.is_alive(), got
        assert time.monotonic() < deadline, "the store's statement never waited"
        time.sleep(0.01)
    other.lock(first)  # the deadlock: the database rolls the store's transaction back
    other.connection.commit()
    thread.join(30)
    assert not thread.is_alive()
    return got


def states(store: Store, ids: list[int]) -> list[int]:
    with store._transaction(write=False) as run:
        marks = ", ".join("?" * len(ids))
        found = dict(run(f"SELECT id, state FROM {_q(store.table)} WHERE id IN ({marks})", *ids))
    return [int(found[i]) for i in ids]


def victims(caplog: pytest.LogCaptureFixture) -> list[str]:
    """What the store logged: one line per time it was a deadlock's victim and ran again,
    each numbering its try. Once, as a rule; under CI's load PostgreSQL once made the run
    again a victim too (a second line, "try 2 of 5"), which the store is for, so more than
    one is allowed as long as the tries count up and none ran out."""
    said = [r.getMessage() for r in caplog.records]
    assert said, "the store was never a deadlock's victim"
    for n, line in enumerate(said, 1):
        assert f"was a deadlock's victim (try {n} of 5); running it again" in line, said
    return said


def test_a_deadlocks_victim_recording_outcomes_runs_again(
    setup: tuple[Store, Other, list[int]], caplog: pytest.LogCaptureFixture
) -> None:
    store, other, ids = setup

    def finish(first: int, second: int) -> None:
        outcomes = [Outcome(first, DELIVERED, attempts=1), Outcome(second, DELIVERED, attempts=1)]
        store.finish(OWNER, outcomes, NOW)

    with caplog.at_level("INFO", "broadcasting.outbox"):
        got = meet(other, ids, finish)
    assert got == {"result": None}
    assert states(store, ids[:3]) == [DELIVERED, DELIVERED, PENDING]
    said = victims(caplog)
    assert f"outbox {store.table}: finish was a deadlock's victim (try 1 of 5)" in said[0]


def test_a_deadlocks_victim_marking_rows_runs_again(
    setup: tuple[Store, Other, list[int]], caplog: pytest.LogCaptureFixture
) -> None:
    store, other, ids = setup
    with caplog.at_level("INFO", "broadcasting.outbox"):
        got = meet(other, ids, lambda a, b: store.mark_sending(OWNER, [a, b], NOW))
    assert got == {"result": ids[:2]}
    assert states(store, ids[:3]) == [SENDING, SENDING, PENDING]
    said = victims(caplog)
    assert "mark_sending was a deadlock's victim (try 1 of 5); running it again" in said[0]


def test_past_its_tries_the_deadlock_reaches_the_caller_and_nothing_changed(
    setup: tuple[Store, Other, list[int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    store, other, ids = setup
    monkeypatch.setattr(_store, "DEADLOCK_TRIES", 1)
    got = meet(other, ids, lambda a, b: store.mark_sending(OWNER, [a, b], NOW))
    error = got["error"]
    assert isinstance(error, OutboxError)
    assert "deadlock" in str(error).lower()
    assert _store._deadlocked(error)
    assert states(store, ids[:2]) == [PENDING, PENDING]


@pytest.mark.parametrize("kind", ["postgresql", "mysql"])
def test_statements_on_listed_rows_lock_only_those(
    kind: str, outbox_config: Callable[..., dict[str, Any]], adapters: Any
) -> None:
    """The cause of the deadlock seen in CI: with another open row locked by another
    transaction, marking and recording rows that are not it must not wait for it. The rows
    are those of that CI run: 6 on each of 24 channels, 24 of them marked at once; given
    those, MariaDB read the whole (partition, state, id) index, and locked every row."""
    settings = outbox_config(kind, partitions=4)
    store = Store.from_config(settings)
    store.create_tables()
    other = Other(kind, settings, adapters.mysql_connect)
    try:
        for n in range(6 * 24):
            message = Message((f"wave-{n % 24}",), "tick", "x", '"x"', f"m{n}")
            store.insert(new_rows(message, "pusher", 4, NOW))
        assert store.claim(OWNER, NOW, 30) == [0, 1, 2, 3]
        rows = store.fetch(OWNER, [0, 1, 2, 3], NOW, 1000)
        assert len(rows) == 6 * 24
        wave, locked = [row.id for row in rows[:24]], rows[-1].id
        other.lock(locked)
        done: dict[str, Any] = {}

        def store_side() -> None:
            done["marked"] = store.mark_sending(OWNER, wave, NOW)
            store.finish(OWNER, [Outcome(i, DELIVERED, attempts=1) for i in wave], NOW)
            done["finished"] = True

        thread = threading.Thread(target=store_side)
        thread.start()
        thread.join(20)  # waiting for the locked row takes InnoDB's lock wait timeout: 50 s
        waited = other.store_waits()
        other.connection.commit()
        thread.join(60)
        assert not waited, "the store waited for a row it did not name"
        assert done == {"marked": wave, "finished": True}
    finally:
        other.connection.rollback()
        other.close()
        store.close()


@pytest.mark.parametrize("kind", ["postgresql", "mysql"])
def test_another_database_error_is_not_run_again(
    kind: str,
    outbox_config: Callable[..., dict[str, Any]],
    adapters: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Only a deadlock's victim runs again: a statement on a table that is gone fails at once."""
    settings = outbox_config(kind, partitions=4)
    store = Store.from_config(settings)
    store.create_tables()
    other = Other(kind, settings, adapters.mysql_connect)
    try:
        other.run(f"DROP TABLE {other.table}")
        other.connection.commit()
        with caplog.at_level("INFO", "broadcasting.outbox"), pytest.raises(OutboxError) as info:
            store.fetch(OWNER, [0], NOW, 10)
        assert not _store._deadlocked(info.value)
        assert caplog.records == []
    finally:
        other.close()
        store.close()
