"""Review h15 of ``broadcasting outbox drop`` and of the missing-table message (task s37), on
the real SQLite, PostgreSQL and MariaDB (tables in the session's schema/database: conftest).

- On MariaDB, a drop naming about as many ids as the table has rows was a DELETE that read
  the whole table (the optimizer's choice over the primary key), so it waited for every row
  another transaction held, a pending row an application or a relay was writing too: the
  operator's command hung until that transaction ended (or failed after
  innodb_lock_wait_timeout as "is the database up"). It now finds the rows by primary key.
- What held, kept so: drop, retry and purge on tables never made exit 1 in one line naming
  the table on each server database, and none of these commands prints the URL's password.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from outbox_ops import config_file, main, set_states, states_of

from broadcasting.outbox import _sql
from broadcasting.outbox._row import DEAD, DELIVERED, PENDING, UNKNOWN
from broadcasting.outbox._store import Store

SECRET = "h15-Secret-pw"
#: A server database that is down: nothing listens on port 1.
DOWN = {"postgresql": "postgresql://postgres@127.0.0.1:1/test"}


def waited_for_a_held_row(store: Store, other: Store, held: int, run: Callable[[], Any]) -> bool:
    """Hold row ``held`` in a transaction on ``other``'s connection (an UPDATE not committed)
    and call ``run`` in a thread meanwhile: whether it was still running 30 s later (it waited
    for the holder). The holder then commits, and ``run`` is waited for."""
    holder = other._source.transaction(write=True)
    cursor = holder.__enter__()
    try:
        sql = f"UPDATE {_sql._q(store.table)} SET attempts = attempts + 1 WHERE id = ?"
        cursor.run(_sql.render(sql, store.dialect, store.paramstyle), (held,))
        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        thread.join(30)  # a deadline only: it returns at once, or waits for the holder
        waited = thread.is_alive()
    finally:
        holder.__exit__(None, None, None)  # commits
    thread.join(60)
    return waited


@pytest.mark.parametrize("how", ["named", "all-dead"])
def test_a_mysql_drop_does_not_wait_for_a_pending_row_another_transaction_holds(
    how: str, outbox_config: Callable[..., dict[str, Any]]
) -> None:
    """Another transaction holds a pending row (an UPDATE not committed); a drop of the
    dead rows (named: every other id of the small table; or --all-dead) returns while it
    still holds it. Was: MariaDB read the whole table, and waited for that transaction."""
    outbox = outbox_config("mysql", partitions=2)
    store = Store.from_config(outbox)
    other = Store.from_config(outbox)  # the other transaction's connection
    try:
        store.create_tables()
        states = [DEAD] * 10 + [PENDING] * 10 + [UNKNOWN] * 2
        ids = set_states(store, states)
        held = ids[12]
        results: dict[str, int] = {}
        if how == "named":
            named = [i for i in ids if i != held]
            run = lambda: results.update(n=store.drop(named))  # noqa: E731
        else:
            run = lambda: results.update(n=store.drop_all(DEAD))  # noqa: E731
        waited = waited_for_a_held_row(store, other, held, run)
        assert not waited, "the drop waited for a pending row another transaction held"
        dropped = (DEAD, UNKNOWN) if how == "named" else (DEAD,)
        assert results == {"n": sum(s in dropped for s in states)}
        kept = {i: s for i, s in zip(ids, states, strict=True) if s not in dropped}
        assert states_of(store) == kept
    finally:
        other.close()
        store.close()


def test_a_mysql_purge_does_not_wait_for_a_pending_row_another_transaction_holds(
    outbox_config: Callable[..., dict[str, Any]],
) -> None:
    """The relay's purge of delivered rows, as the drop above: on a small table MariaDB read
    it whole for the listed ids and waited for a pending row an application's open
    transaction held, so the relay's purge (and the relay) stood still until it committed."""
    outbox = outbox_config("mysql", partitions=2)
    store = Store.from_config(outbox)
    other = Store.from_config(outbox)
    try:
        store.create_tables()
        states = [DELIVERED] * 10 + [PENDING] * 10
        ids = set_states(store, states)
        table = _sql._q(store.table)
        with store._transaction(write=True) as run:  # delivered a minute ago
            run(f"UPDATE {table} SET done_at = ? WHERE state = ?", time.time() - 60, DELIVERED)
        results: dict[str, int] = {}
        purge = lambda: results.update(n=store.purge(time.time()))  # noqa: E731
        waited = waited_for_a_held_row(store, other, ids[12], purge)
        assert not waited, "the purge waited for a pending row another transaction held"
        assert results == {"n": 10}
        assert states_of(store) == {i: PENDING for i in ids[10:]}
    finally:
        other.close()
        store.close()


@pytest.mark.parametrize("kind", ["postgresql", "mysql"])
def test_drop_retry_purge_on_tables_never_made_exit_1_naming_the_table(
    kind: str,
    outbox_config: Callable[..., dict[str, Any]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """PostgreSQL trusts this machine's connections whatever the password: the URL carries
    one, which no line may show."""
    outbox = outbox_config(kind)
    if kind == "postgresql":
        outbox["url"] = outbox["url"].replace("@", f":{SECRET}@", 1)
    config = config_file(tmp_path, outbox)
    bare = outbox["table"].rsplit(".", 1)[-1]
    for argv in (
        ["drop", "3"],
        ["drop", "3", "--all-dead"],
        ["drop", "--all-unknown"],
        ["retry", "3"],
        ["retry", "--all-dead"],
        ["purge", "--before", "0"],
    ):
        status, out, err = main("outbox", *argv, "--config", config, capsys=capsys)
        assert (status, out) == (1, ""), (argv, err)
        assert len(err.splitlines()) == 1 and bare in err and "does not exist" in err, err
        assert "outbox init" in err and SECRET not in err, err


@pytest.mark.parametrize("kind", ["postgresql", "mysql"])
def test_drop_on_a_database_that_refuses_or_is_down_shows_no_password(
    kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], request: pytest.FixtureRequest
) -> None:
    """A wrong password (MariaDB's root has none here) or no server: one line, no password."""
    if kind == "mysql":
        url = request.getfixturevalue("mysql_url").replace("root@", f"root:{SECRET}@")
    else:
        url = DOWN[kind].replace("@", f":{SECRET}@", 1)
    config = config_file(tmp_path, {"url": url, "table": f"h15_{uuid.uuid4().hex[:8]}"})
    for argv in (["drop", "3"], ["drop", "--all-dead", "--all-unknown"]):
        status, out, err = main("outbox", *argv, "--config", config, capsys=capsys)
        assert (status, out) == (1, ""), (argv, err)
        assert len(err.splitlines()) == 1 and "is the database up" in err, err
        assert SECRET not in err and "Traceback" not in err, err
