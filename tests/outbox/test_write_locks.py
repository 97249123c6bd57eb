"""PostgreSQL: the outbox INSERT draws each row's id only once it holds its channels' advisory
locks (docs/background.md#order), in each shape the statement takes: one channel (the usual
write, its own form of the statement), several channels of one partition, several partitions
(several rows). A second writer to a channel held by an open transaction waits for the lock
without drawing an id, so ids follow commit order; its NOTIFY reaches a listener at commit."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from broadcasting import Broadcast
from broadcasting.outbox import store_for
from broadcasting.outbox._row import partition_of


@pytest.fixture
def broadcast(outbox_config: Callable[..., dict[str, Any]], adapters: Any) -> Iterator[Broadcast]:
    made = Broadcast(
        {"DRIVER": "memory", "DRIVERS": {"memory": {}}, "OUTBOX": outbox_config("postgresql")},
        plugins=[adapters.Plugin()],
    )
    store_for(made).create_tables()
    yield made
    made.close()
    store_for(made).close()


def _channels_of_two_partitions(partitions: int) -> list[str]:
    first = "held"
    other = next(
        f"other-{n}"
        for n in range(1000)
        if partition_of(f"other-{n}", partitions) != partition_of(first, partitions)
    )
    return [first, other]


@pytest.mark.parametrize("shape", ["one channel", "two channels, one row", "two rows"])
def test_a_writer_waits_for_the_lock_before_drawing_an_id(
    broadcast: Broadcast, adapters: Any, shape: str
) -> None:
    import psycopg

    url = broadcast.config.outbox["url"].reveal()
    store = store_for(broadcast)
    if shape == "one channel":
        second: list[str] = ["held"]
    elif shape == "two channels, one row":
        second = [
            "held",
            next(
                f"same-{n}"
                for n in range(1000)
                if partition_of(f"same-{n}", store.partitions)
                == partition_of("held", store.partitions)
            ),
        ]
    else:
        second = _channels_of_two_partitions(store.partitions)
    rows_expected = len({partition_of(c, store.partitions) for c in second})
    assert rows_expected == (2 if shape == "two rows" else 1)

    with (
        psycopg.connect(url) as first,
        psycopg.connect(url) as other,
        psycopg.connect(url, autocommit=True) as watcher,
        psycopg.connect(url, autocommit=True) as listener,
    ):
        sequence = watcher.execute(
            "SELECT pg_get_serial_sequence(%s, 'id')", (store.table,)
        ).fetchone()[0]  # type: ignore[index]

        def sequence_value(conn: Any) -> int:
            (value,) = conn.execute(f"SELECT last_value FROM {sequence}").fetchone()
            return int(value)

        listener.execute(f'LISTEN "{store.table.rsplit(".", 1)[-1]}"')
        broadcast.channel(
            "held",
            "1",
            "e",
            send="outbox",
            transaction=adapters.ConnTransaction(first, "postgresql", "format"),
        )
        drawn = sequence_value(watcher)
        done = threading.Event()
        failed: list[BaseException] = []

        def write_second() -> None:
            try:
                broadcast.channel(
                    second,
                    "2",
                    "e",
                    send="outbox",
                    transaction=adapters.ConnTransaction(other, "postgresql", "format"),
                )
                other.commit()
            except BaseException as exc:  # reported by the test's thread
                failed.append(exc)
            finally:
                done.set()

        thread = threading.Thread(target=write_second)
        thread.start()
        try:
            # the second writer waits for the advisory lock the first holds...
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                (waiting,) = watcher.execute(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                ).fetchone()  # type: ignore[misc]
                if waiting:
                    break
                time.sleep(0.01)
            assert waiting, "the second writer never waited for the channel's lock"
            assert not done.is_set()
            # ...and has drawn no id meanwhile: the sequence is where the first write left it
            assert sequence_value(watcher) == drawn
        finally:
            first.commit()
            assert done.wait(10)
            thread.join()
        assert not failed, failed
        rows = watcher.execute(f"SELECT id, body FROM {store.table} ORDER BY id").fetchall()
        assert [body for _, body in rows] == ["1"] + ["2"] * rows_expected
        assert rows[0][0] == drawn and all(row_id > drawn for row_id, _ in rows[1:])
        # each commit woke the listener (the table's name is the NOTIFY channel)
        notes = list(listener.notifies(timeout=2, stop_after=2))
        assert len(notes) == 2
