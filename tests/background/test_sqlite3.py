"""A ``sqlite3.Connection`` as ``transaction=``: the outbox writes in its transaction;
after-commit is refused inside one (sqlite3 has no commit hook) and sent at once outside."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from broadcasting import Broadcast, InputError
from broadcasting.contrib.sqlite import SQLiteTransaction, broadcasting_transaction
from broadcasting.drivers.memory import BroadcastMemoryDriver


@pytest.fixture
def connection(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    connection = sqlite3.connect(tmp_path / "app.sqlite3")
    connection.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, item TEXT)")
    connection.commit()
    yield connection
    connection.close()


def test_it_adapts_a_connection_and_nothing_else(
    broadcast: Broadcast, connection: sqlite3.Connection
) -> None:
    adapted = broadcasting_transaction(broadcast, connection)
    assert isinstance(adapted, SQLiteTransaction)
    assert (adapted.dialect, adapted.paramstyle) == ("sqlite", "qmark")
    assert broadcasting_transaction(broadcast, None) is None
    assert broadcasting_transaction(broadcast, "default") is None
    assert repr(adapted) == "<SQLiteTransaction idle>"


def test_execute_runs_in_the_callers_transaction(
    broadcast: Broadcast, connection: sqlite3.Connection
) -> None:
    adapted = broadcasting_transaction(broadcast, connection)
    assert adapted is not None
    connection.execute("INSERT INTO orders (item) VALUES ('mug')")
    assert adapted.active()
    adapted.execute("INSERT INTO orders (item) VALUES (?)", ["outbox-row"])
    connection.rollback()
    assert not adapted.active()
    assert connection.execute("SELECT count(*) FROM orders").fetchone() == (0,)


def test_after_commit_is_refused_inside_a_transaction_and_sent_at_once_outside(
    broadcast: Broadcast, memory: BroadcastMemoryDriver, connection: sqlite3.Connection
) -> None:
    connection.execute("INSERT INTO orders (item) VALUES ('mug')")
    with pytest.raises(InputError, match="sqlite3 has no commit hook"):
        broadcast.channel("orders", {"id": 1}, send="after_commit", transaction=connection)
    connection.commit()
    receipt = broadcast.channel("orders", {"id": 2}, send="after_commit", transaction=connection)
    assert not receipt.pending
    assert [m.data for m in memory.messages] == [{"id": 2}]
