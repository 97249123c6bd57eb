"""Row locks of the store's own statements, on a real PostgreSQL and a real MariaDB.

A relay marks one wave's rows ``sending`` while it records another's outcomes, each in a
transaction of the store's own. In CI, MariaDB once chose one of them as a deadlock's
victim (1213): the marking statement read the (partition, state, id) index and locked
every open row of its partitions, the other wave's too. Statements on listed ids now find
them by primary key; a second connection of the test's own checks what they lock.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

from broadcasting._types import Message
from broadcasting.outbox import DELIVERED, Outcome, Store
from broadcasting.outbox._row import new_rows
from broadcasting.outbox._sql import _q

NOW = 1_800_000_000.0
OWNER = "relay-a"


def mysql_connect(url: str) -> Any:
    """A PyMySQL connection (autocommit off) to the database of a ``mysql+pymysql`` URL."""
    import pymysql
    from sqlalchemy import make_url

    parsed = make_url(url)
    return pymysql.connect(
        host=parsed.host, port=parsed.port or 3306, user=parsed.username, database=parsed.database
    )


class Other:
    """A second connection to the store's database, with a transaction of its own."""

    def __init__(self, kind: str, settings: dict[str, Any]) -> None:
        self.kind = kind
        self.table = _q(settings["table"])
        if kind == "postgresql":
            import psycopg

            self.connection = psycopg.connect(settings["url"])
            self.watch = psycopg.connect(settings["url"], autocommit=True)
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


@pytest.mark.parametrize("kind", ["postgresql", "mysql"])
def test_statements_on_listed_rows_lock_only_those(
    kind: str, outbox_config: Callable[..., dict[str, Any]]
) -> None:
    """The cause of the deadlock seen in CI: with another open row locked by another
    transaction, marking and recording rows that are not it must not wait for it. The rows
    are those of that CI run: 6 on each of 24 channels, 24 of them marked at once; given
    those, MariaDB read the whole (partition, state, id) index, and locked every row."""
    settings = outbox_config(kind, partitions=4)
    store = Store.from_config(settings)
    store.create_tables()
    other = Other(kind, settings)
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
