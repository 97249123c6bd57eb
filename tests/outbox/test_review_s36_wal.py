"""A new SQLite outbox file opened while another connection writes to it: the store waits for
the lock, as it does for any other, instead of failing at once.

SQLite answers ``PRAGMA journal_mode=WAL`` with "database is locked" at once, without calling
its busy handler, while another connection holds a write lock on a file still in rollback
mode: the state of a new file whose first writer (a relay's first round, an application's
own connection) has not committed yet. CI met it as a relay and a first publish started
together on a new file. Real SQLite files, no mock."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

from broadcasting.outbox import Store


def test_a_store_opening_a_new_file_another_connection_writes_waits_for_it(
    tmp_path: Path,
) -> None:
    path = tmp_path / "outbox.db"
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("CREATE TABLE app_data (x)")  # the file exists, in rollback mode
    other.execute("BEGIN IMMEDIATE")
    other.execute("INSERT INTO app_data VALUES (1)")  # and is write-locked
    released = threading.Timer(0.3, other.execute, ("COMMIT",))
    released.start()
    store = Store.from_config({"url": f"sqlite:///{path}"})
    started = time.monotonic()
    try:
        store.create_tables()  # its first connection: journal_mode=WAL
        assert store.stats(time.time()).backlog["pending"] == 0
    finally:
        released.join()
        store.close()
        other.close()
    assert time.monotonic() - started >= 0.2, "it went ahead while the file was locked"
    mode = sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"
