"""Two gaps an operator met (task s37), on real SQLite, PostgreSQL and MariaDB:

- no command deleted a dead or unknown row (``outbox purge`` deletes delivered rows only):
  an operator who decided a dead letter must never go had only raw SQL. Now ``broadcasting
  outbox drop ID... | --all-dead | --all-unknown`` deletes such rows, never a pending,
  sending or delivered one, nor one another transaction is changing at that moment.
- a relay whose tables were never made (no ``outbox init``, no ``migrate``) logged the same
  WARNING every 10 s for ever, and ``relay --once``/``--stats``/``check`` said "is the
  database up, and were its tables made?" whatever the failure. Now a missing table is told
  apart from a database that is down: the relay says it once at ERROR (the table, the command
  that makes it), waits quietly, and says when the tables appear; the commands exit 1 at once
  with that message.

SQLite makes its tables itself through a URL; missing there only behind a Django alias
(no ``migrate``), which the Django tests at the end run in subprocesses (``python -m django``,
as ``manage.py`` runs commands). PostgreSQL tables live in the session's schema and MariaDB
tables in the session's database (conftest), both dropped at the end.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from outbox_ops import config_file, main, set_states, states_of

from broadcasting import Broadcast
from broadcasting.outbox import _relay, _sql
from broadcasting.outbox._relay import Relay
from broadcasting.outbox._row import DEAD, DELIVERED, PENDING, SENDING, UNKNOWN
from broadcasting.outbox._store import OutboxTablesMissing, Store

KINDS = ["sqlite", "postgresql", "mysql"]
#: A server database that is down: nothing listens on port 1.
DOWN = {
    "postgresql": "postgresql://postgres@127.0.0.1:1/test",
    "mysql": "mysql+pymysql://root@127.0.0.1:1/test",
}


@pytest.fixture
def made(
    request: pytest.FixtureRequest, outbox_config: Callable[..., dict[str, Any]]
) -> Iterator[Callable[[str], tuple[Store, dict[str, Any]]]]:
    """Makes an outbox of a kind with its tables: its store and its OUTBOX settings."""
    stores: list[Store] = []

    def make(kind: str) -> tuple[Store, dict[str, Any]]:
        outbox = outbox_config(kind, partitions=2)
        store = Store.from_config(outbox)
        store.create_tables()
        stores.append(store)
        return store, outbox

    yield make
    for store in stores:
        store.close()


# -- outbox drop --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_drop_deletes_the_dead_and_unknown_rows_named_and_no_other(
    kind: str,
    made: Callable[[str], tuple[Store, dict[str, Any]]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    store, outbox = made(kind)
    config = config_file(tmp_path, outbox)
    ids = set_states(store, [PENDING, SENDING, DELIVERED, DEAD, DEAD, UNKNOWN])
    status, out, err = main(
        "outbox", "drop", *map(str, ids), str(ids[0]), "--config", config, capsys=capsys
    )
    assert status == 0, err
    assert out.strip() == "3 row(s) deleted"
    assert "3 of the 6 rows named left alone" in err
    assert states_of(store) == {ids[0]: PENDING, ids[1]: SENDING, ids[2]: DELIVERED}


@pytest.mark.parametrize("kind", KINDS)
def test_drop_all_dead_and_all_unknown_delete_that_state_only(
    kind: str,
    made: Callable[[str], tuple[Store, dict[str, Any]]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from broadcasting.outbox import _store

    monkeypatch.setattr(_store, "CHUNK", 2)  # several transactions: the loop over chunks
    store, outbox = made(kind)
    config = config_file(tmp_path, outbox)
    states = [DEAD, PENDING, DEAD, UNKNOWN, DEAD, SENDING, UNKNOWN, DEAD, DELIVERED, DEAD]
    ids = set_states(store, states)
    status, out, err = main("outbox", "drop", "--all-dead", "--config", config, capsys=capsys)
    assert (status, out.strip(), err) == (0, "5 row(s) deleted", "")
    kept = {i: s for i, s in zip(ids, states, strict=True) if s != DEAD}
    assert states_of(store) == kept
    status, out, err = main("outbox", "drop", "--all-unknown", "--config", config, capsys=capsys)
    assert (status, out.strip()) == (0, "2 row(s) deleted")
    assert states_of(store) == {i: s for i, s in kept.items() if s != UNKNOWN}
    status, out, _ = main("outbox", "drop", "--all-dead", "--config", config, capsys=capsys)
    assert (status, out.strip()) == (0, "0 row(s) deleted")


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        ([], "name row ids, or --all-dead, --all-unknown"),
        (["0"], "0 is not a row id"),
        (["5", "-3"], "-3 is not a row id"),
        ([str(2**63), "--all-dead"], f"{2**63} is not a row id"),
        (["abc"], "argument ID: invalid int value: 'abc'"),
    ],
    ids=["nothing", "zero", "negative", "too-big", "not-a-number"],
)
def test_drop_refuses_bad_ids_before_touching_the_database(
    argv: list[str], said: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """As ``retry`` does: status 2, and the database (down here) is never reached."""
    config = config_file(tmp_path, {"url": DOWN["postgresql"]})
    status, out, err = main("outbox", "drop", *argv, "--config", config, capsys=capsys)
    assert status == 2, err
    assert out == "" and "database" not in err
    assert said in err, err


@pytest.mark.parametrize("kind", ["postgresql", "mysql"])
def test_drop_leaves_a_row_another_transaction_is_changing(
    kind: str, made: Callable[[str], tuple[Store, dict[str, Any]]]
) -> None:
    """A dead row that a ``retry`` (or a relay) is making pending in a transaction not yet
    committed: the drop waits for it, then finds the row pending, and leaves it. A drop that
    read the dead ids first and deleted them by id would have deleted a row about to be sent.
    (SQLite lets one writer in at a time: the drop could not even read past it.)"""
    store, outbox = made(kind)
    [dead] = set_states(store, [DEAD])
    other = Store.from_config(outbox)  # the other transaction's connection
    holder = other._source.transaction(write=True)
    cursor = holder.__enter__()
    try:
        cursor.run(
            _sql.render(
                f"UPDATE {_sql._q(store.table)} SET state = ? WHERE id = ?",
                store.dialect,
                store.paramstyle,
            ),
            (PENDING, dead),
        )
        results: dict[str, int] = {}
        drops = [
            threading.Thread(target=lambda: results.update(listed=store.drop([dead]))),
            threading.Thread(target=lambda: results.update(every=store.drop_all(DEAD))),
        ]
        for thread in drops:
            thread.start()
        wait_for_lock_waits(store, 2)
    finally:
        holder.__exit__(None, None, None)  # commits
        other.close()
    for thread in drops:
        thread.join(60)
        assert not thread.is_alive()
    assert results == {"listed": 0, "every": 0}
    assert states_of(store) == {dead: PENDING}


def wait_for_lock_waits(store: Store, count: int) -> None:
    """Until ``count`` DELETEs of the store's table wait for a row lock on the server (a
    deadline of 30 s). On MariaDB by the process list: the statement is there while it waits,
    and cannot end before the lock is let go. information_schema.innodb_trx is a cache that
    MariaDB 10.11 left stale for the whole 30 s at times (CI: one waiter seen, two waiting)."""
    if store.dialect == _sql.POSTGRESQL:
        sql = "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
        params: tuple[Any, ...] = ()
    else:
        sql = "SELECT count(*) FROM information_schema.processlist WHERE info LIKE ?"
        params = (f"DELETE FROM %{store.table}%",)  # the name quoted as the dialect quotes it
    deadline = time.monotonic() + 30
    while True:
        with store._transaction(write=False) as run:
            (waiting,) = run(sql, *params)[0]
        if int(waiting) >= count:
            return
        assert time.monotonic() < deadline, f"{waiting} statements wait for a lock"
        time.sleep(0.05)


# -- tables missing, database down ---------------------------------------------------------


@pytest.mark.parametrize("kind", ["postgresql", "mysql"])
def test_the_commands_say_which_table_is_missing_and_what_makes_it(
    kind: str,
    outbox_config: Callable[..., dict[str, Any]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    outbox = outbox_config(kind)  # its tables never made
    config = config_file(tmp_path, outbox)
    bare = outbox["table"].rsplit(".", 1)[-1]
    database = {"postgresql": "PostgreSQL", "mysql": "MySQL/MariaDB"}[kind]
    for argv in (["relay", "--once"], ["relay", "--stats"], ["outbox", "list"]):
        status, out, err = main(*argv, "--config", config, capsys=capsys)
        assert status == 1, (argv, err)
        assert len(err.splitlines()) == 1 and "Traceback" not in err, err
        assert bare in err and f"does not exist in its {database} database" in err, err
        assert "`broadcasting outbox init`" in err, err
        assert "is the database up" not in err, err
    status, out, _ = main("check", "--config", config, capsys=capsys)
    assert status == 1
    [line] = [x for x in out.splitlines() if x.startswith("outbox")]
    assert line.split()[1] == "error"
    assert "OutboxTablesMissing" in line and bare in line and "outbox init" in line, line
    store = Store.from_config(outbox)
    try:
        with pytest.raises(OutboxTablesMissing) as caught:
            store.stats(time.time())
    finally:
        store.close()
    assert bare in caught.value.table


@pytest.mark.parametrize("kind", KINDS)
def test_a_database_that_is_down_is_not_said_to_miss_its_tables(
    kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if kind == "sqlite":  # a file that cannot be opened: its folder does not exist
        url = f"sqlite:///{tmp_path / 'no-such-folder' / 'outbox.sqlite3'}"
    else:
        url = DOWN[kind]
    config = config_file(tmp_path, {"url": url})
    for argv in (["relay", "--once"], ["relay", "--stats"], ["outbox", "list"]):
        status, _, err = main(*argv, "--config", config, capsys=capsys)
        assert status == 1, (argv, err)
        assert len(err.splitlines()) == 1 and "Traceback" not in err, err
        if kind == "sqlite" and argv[-1] != "--once":  # the file named, none made (its own
            assert "SQLite file" in err and "outbox.sqlite3" in err, err  # tests)
            continue
        assert "is the database up" in err, err
        assert "outbox init" not in err and "does not exist" not in err, err
    store = Store.from_config({"url": url})
    try:
        with pytest.raises(Exception) as caught:
            store.stats(time.time())
    finally:
        store.close()
    assert not isinstance(caught.value, OutboxTablesMissing)
    assert store.tables_missing(caught.value) is None


@pytest.fixture
def outbox_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG, logger="broadcasting.outbox")
    return caplog


def relay_lines(caplog: pytest.LogCaptureFixture, owner: str) -> list[logging.LogRecord]:
    return [
        r
        for r in list(caplog.records)
        if r.name == "broadcasting.outbox" and r.getMessage().startswith(f"relay {owner}:")
    ]


def wait_until(what: str, done: Callable[[], bool], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not done():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


@pytest.mark.parametrize("kind", ["postgresql", "mysql"])
def test_a_relay_says_once_which_table_is_missing_waits_and_says_when_it_is_there(
    kind: str,
    outbox_config: Callable[..., dict[str, Any]],
    outbox_logs: pytest.LogCaptureFixture,
) -> None:
    """A relay started before the migration job: one ERROR naming the table and the command
    that makes it, the next tries at DEBUG (was: a WARNING every try, for ever), an INFO line
    once the tables are there, and then it relays."""
    outbox = outbox_config(kind, partitions=2)
    owner = f"s37-{uuid.uuid4().hex[:6]}"
    config = {"DRIVER": "memory", "DRIVERS": {"memory": {}}, "OUTBOX": outbox}
    with Broadcast(config) as broadcast:
        relay = Relay(broadcast, owner=owner)
        thread = threading.Thread(target=relay.run)
        thread.start()
        try:
            wait_until("three tries", lambda: len(relay_lines(outbox_logs, owner)) >= 3)
            lines = relay_lines(outbox_logs, owner)
            said = [(r.levelname, r.getMessage()) for r in lines]
            errors = [text for level, text in said if level == "ERROR"]
            assert len(errors) == 1, said
            assert outbox["table"].rsplit(".", 1)[-1] in errors[0]
            assert "does not exist" in errors[0] and "`broadcasting outbox init`" in errors[0]
            assert [level for level, _ in said[1:]] == ["DEBUG"] * (len(said) - 1), said
            Store.from_config(outbox).create_tables()  # the migration job, at last
            broadcast.channel("orders", {"n": 1}, "tick", send="outbox")
            memory = broadcast.driver("memory").driver
            wait_until("the row delivered", lambda: len(memory.messages) == 1)  # type: ignore[attr-defined]
        finally:
            relay.stop()
            thread.join(60)
        assert not thread.is_alive()
    said = [(r.levelname, r.getMessage()) for r in relay_lines(outbox_logs, owner)]
    assert any(level == "INFO" and "tables exist now" in text for level, text in said), said
    assert [text for level, text in said if level == "ERROR"] == errors


def three_tries(outbox: dict[str, Any], logs: pytest.LogCaptureFixture) -> list[tuple[str, str]]:
    """A relay run on ``outbox`` until it logged three lines: their levels and messages."""
    owner = f"s37-{uuid.uuid4().hex[:6]}"
    with Broadcast({"DRIVER": "memory", "OUTBOX": outbox}) as broadcast:
        relay = Relay(broadcast, owner=owner)
        thread = threading.Thread(target=relay.run)
        thread.start()
        try:
            wait_until("three tries", lambda: len(relay_lines(logs, owner)) >= 3)
            return [(r.levelname, r.getMessage()) for r in relay_lines(logs, owner)]
        finally:
            relay.stop()
            thread.join(60)


@pytest.mark.parametrize("kind", ["postgresql", "mysql"])
def test_a_relay_on_a_schema_that_does_not_exist_says_so_once_and_waits(
    kind: str,
    outbox_config: Callable[..., dict[str, Any]],
    outbox_logs: pytest.LogCaptureFixture,
) -> None:
    """The table's schema (MariaDB: database) missing is the tables' wait too, with one ERROR
    saying that the schema is missing and how to make it (a query on the table says only
    that the table is missing: the relay told the user to run init, which then failed)."""
    schema = f"nosuch_{uuid.uuid4().hex[:8]}"
    outbox = {**outbox_config(kind), "table": f"{schema}.broadcasting_outbox"}
    said = three_tries(outbox, outbox_logs)
    assert said[0][0] == "ERROR" and repr(schema) in said[0][1], said
    assert "does not exist" in said[0][1] and "CREATE" in said[0][1], said
    assert [level for level, _ in said[1:]] == ["DEBUG"] * (len(said) - 1), said


def test_the_relay_reminds_ever_more_rarely(
    outbox_config: Callable[..., dict[str, Any]],
    outbox_logs: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """After the ERROR, a WARNING that it still waits, each one twice as late: with the first
    due at once (0 s) here, every try says it, as the relay's pauses grow."""
    monkeypatch.setattr(_relay, "TABLES_NOTE_FIRST", 0.0)
    outbox = outbox_config("postgresql")
    said = three_tries(outbox, outbox_logs)
    assert said[0][0] == "ERROR"
    assert all(level == "WARNING" and "still waiting" in text for level, text in said[1:]), said


# -- Django: an alias whose tables were never migrated (SQLite), and manage.py ----------

SETTINGS = """
SECRET_KEY = "test-only"
INSTALLED_APPS = ["broadcasting.contrib.django"]
DATABASES = {{"default": {{"ENGINE": "django.db.backends.sqlite3", "NAME": {db!r}}}}}
USE_TZ = True
BROADCASTING = {{"DRIVER": "memory", "OUTBOX": {{"django": "default"}}}}
"""


def django(project: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    dropped = ("PYTEST_", "DJANGO_", "BROADCAST", "COV_", "COVERAGE_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(dropped)}
    env["DJANGO_SETTINGS_MODULE"] = "s37_settings"
    env["PYTHONPATH"] = os.pathsep.join([str(project), os.environ.get("PYTHONPATH", "")])
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return subprocess.run(
        [sys.executable, "-m", "django", *argv],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def project(tmp_path: Path) -> Path:
    pytest.importorskip("django")
    db = tmp_path / "db.sqlite3"
    (tmp_path / "s37_settings.py").write_text(SETTINGS.format(db=str(db)), "utf-8")
    return tmp_path


def test_django_sqlite_without_migrate_says_to_migrate_and_drop_works_after(
    project: Path,
) -> None:
    for argv in (
        ["broadcasting", "relay", "--once"],
        ["broadcasting", "outbox", "list"],
        ["broadcasting_relay", "--stats"],
    ):
        done = django(project, *argv)
        assert done.returncode == 1, (argv, done.stderr)
        assert "Traceback" not in done.stderr, done.stderr
        assert "'broadcasting_outbox" in done.stderr, done.stderr
        assert "does not exist in its SQLite database" in done.stderr, done.stderr
        assert "`manage.py migrate`" in done.stderr, done.stderr
    done = django(project, "broadcasting", "check")
    assert done.returncode == 1
    assert "OutboxTablesMissing" in done.stdout and "manage.py migrate" in done.stdout

    assert django(project, "migrate", "-v", "0").returncode == 0
    store = Store.from_config({"url": f"sqlite:///{project / 'db.sqlite3'}"})
    try:
        ids = set_states(store, [DEAD, UNKNOWN, PENDING, DEAD])
        done = django(project, "broadcasting", "outbox", "drop", str(ids[1]), "--all-dead")
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "3 row(s) deleted"
        assert states_of(store) == {ids[2]: PENDING}
    finally:
        store.close()
