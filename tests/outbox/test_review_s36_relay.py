"""Review (session 36) of the outbox and its relay: defects found, each shown against real
parts (a SQLite file, a PostgreSQL schema or a MariaDB database of the test's own, a real
soketi behind the tests' counting proxy, a WebSocket subscriber), then fixed."""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "servers"))

from http_proxy import CountingProxy
from pusher_ws import PusherSubscriber
from soketi_server import SoketiServer

from broadcasting import Broadcast, ConfigurationError, InputError, OutboxError
from broadcasting.cli import main
from broadcasting.outbox._policy import Backoff
from broadcasting.outbox._relay import Relay
from broadcasting.outbox._row import DEAD, DELIVERED, PENDING
from broadcasting.outbox._store import Store

#: The longest owner a relay may be given: the owner columns' 200 characters, less a forked
#: child's ":<pid>" (up to seven digits)
OWNER_LIMIT = 192


def ids_in(store: Store, state: int) -> list[int]:
    return [row.id for row in store.rows(state, 10_000)]


async def until(check: Callable[[], bool], seconds: float = 15.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)


# -- a partition held for a row that backs off: waited for, not polled ---------------------


async def test_a_row_put_back_in_a_partition_that_waits_does_not_spin_the_relay(
    tmp_path: Path,
    soketi: SoketiServer,
    proxy: CountingProxy,
    subscriber: PusherSubscriber,
) -> None:
    """While a row backs off (the service is down), its partition is held: not read before
    the row may go again. An idle relay asked the table when its partitions' first rows may
    go, the held one too; a dead row of that partition put back with ``outbox retry``
    (available now, and first by id) made the answer "now", so the relay looked again at
    once, and again, without a pause: thousands of rounds a second, each two transactions,
    until the back-off ended (10 s by default, more with a larger cap)."""
    outbox = {"url": f"sqlite:///{tmp_path / 'outbox.sqlite3'}", "partitions": 1}
    options = soketi.driver_options(port=proxy.port)
    await subscriber.subscribe("refused")
    await subscriber.subscribe("later")
    with Broadcast({"DRIVER": "pusher", "DRIVERS": {"pusher": options}, "OUTBOX": outbox}) as b:
        relay = Relay(b, owner="spin", backoff=Backoff(3.0, 3.0))
        store = relay.store
        looks = 0
        due = store.due

        def counted(partitions: Any) -> float | None:  # the real store's answer, counted
            nonlocal looks
            looks += 1
            return due(partitions)

        store.due = counted  # type: ignore[method-assign]
        task = asyncio.create_task(relay.arun())
        try:
            proxy.fail(400, {"error": "refused"}, times=1)  # this row is dead
            await b.achannel("refused", {"n": 1}, "tick", send="outbox")
            await until(lambda: len(ids_in(store, DEAD)) == 1)
            proxy.fail(429, times=None)  # the service refuses for now: the next row backs off
            await b.achannel("later", {"n": 2}, "tick", send="outbox")
            await until(lambda: any(row.attempts for row in store.rows(PENDING, 10)))
            (dead,) = ids_in(store, DEAD)
            assert store.requeue([dead]) == 1  # `outbox retry`: first by id, available now
            before = looks
            await asyncio.sleep(1.0)
            assert looks - before < 40  # a pause between looks, not a busy loop
            proxy.clear()  # the service is back: both rows go once the back-off ends
            await until(lambda: len(ids_in(store, DELIVERED)) == 2)
        finally:
            relay.stop()
            await asyncio.wait_for(task, 10)
        got = await subscriber.events(2, timeout=10)
        assert sorted(json.loads(event.data)["n"] for event in got) == [1, 2]


# -- the relay's owner name: what the lease table holds ------------------------------------


def test_an_owner_the_lease_table_cannot_hold_is_refused_at_once(
    pg_url: str, outbox_schema: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The lease and relay tables hold an owner of 200 characters. A longer ``--owner``
    (or ``Relay(owner=...)``) was taken as it was, and every round of the relay failed on
    PostgreSQL and MySQL ("value too long for type character varying(200)"), logged as the
    database failing and tried again for ever: nothing was ever delivered."""
    outbox = {"url": pg_url, "table": f"{outbox_schema}.outbox_{uuid.uuid4().hex[:8]}"}
    config = {"DRIVER": "memory", "DRIVERS": {"memory": {}}, "OUTBOX": outbox}
    path = tmp_path / "broadcasting.json"
    path.write_text(json.dumps(config), encoding="utf-8")
    assert main(["outbox", "init", "--config", str(path)]) == 0
    with Broadcast(config) as broadcast:
        with pytest.raises(InputError, match=f"at most {OWNER_LIMIT}"):
            Relay(broadcast, owner="r" * (OWNER_LIMIT + 1))
        with pytest.raises(InputError, match="must be a str"):
            Relay(broadcast, owner=42)  # type: ignore[arg-type]
        for padded in ("relay-a ", " relay-a"):  # MySQL's twins of "relay-a": see below
            with pytest.raises(InputError, match="begin or end with a space"):
                Relay(broadcast, owner=padded)
        broadcast.channel("orders", {"n": 1}, "tick", send="outbox")
        longest = Relay(broadcast, owner="r" * OWNER_LIMIT)
        assert longest.run_once().delivered == 1  # the longest name the table holds
        longest.store.release(longest.owner)
    capsys.readouterr()
    owner = "r" * (OWNER_LIMIT + 1)
    assert main(["relay", "--once", "--owner", owner, "--config", str(path)]) == 1
    err = capsys.readouterr().err
    assert f"at most {OWNER_LIMIT}" in err and "database failed" not in err


# -- OUTBOX numbers: finite ----------------------------------------------------------------


@pytest.mark.parametrize("key", ["lease", "retention"])
def test_an_infinite_lease_or_retention_is_a_configuration_error(
    key: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``retention = inf`` (keep delivered rows) or ``lease = inf`` was taken: on MySQL, which
    stores no infinity, every round of the relay then failed ("inf can not be used with
    MySQL") and nothing was delivered; elsewhere an endless lease kept a dead relay's
    partitions, and their rows, for ever. TOML and Python's JSON both read ``inf``."""
    with pytest.raises(ConfigurationError, match=f"'{key}' must be a finite number"):
        Store.from_config({"url": f"sqlite:///{tmp_path / 'o.sqlite3'}", key: float("inf")})
    with pytest.raises(ConfigurationError, match=f"'{key}' must be a finite number"):
        Store.from_config({"url": f"sqlite:///{tmp_path / 'o.sqlite3'}", key: float("-inf")})
    path = tmp_path / "broadcast.toml"
    path.write_text(
        f'DRIVER = "memory"\n[OUTBOX]\nurl = "sqlite:///{tmp_path / "o.sqlite3"}"\n{key} = inf\n',
        encoding="utf-8",
    )
    if sys.version_info < (3, 11):  # no tomllib
        return
    assert main(["relay", "--once", "--config", str(path)]) == 1
    assert f"'{key}' must be a finite number" in capsys.readouterr().err


# -- MySQL/MariaDB: the tables' text is UTF-8, compared as it is ---------------------------


@pytest.fixture
def latin1_outbox(mysql_url: str, adapters: Any) -> Iterator[dict[str, Any]]:
    """OUTBOX settings of an outbox in a MariaDB database whose default character set is
    latin1 (MariaDB's own default before 11.6; MySQL 5.7's), its tables made by the store."""
    mysql_admin = adapters.mysql_admin
    name = f"s36_{uuid.uuid4().hex[:10]}"
    mysql_admin(f"CREATE DATABASE `{name}` CHARACTER SET latin1 COLLATE latin1_swedish_ci")
    try:
        outbox = {"url": mysql_url.rsplit("/", 1)[0] + f"/{name}", "partitions": 4}
        store = Store.from_config(outbox)
        try:
            store.create_tables()
        finally:
            store.close()
        yield outbox
    finally:
        mysql_admin(f"DROP DATABASE `{name}`")


def test_mysql_tables_hold_any_text_whatever_the_databases_default(
    latin1_outbox: dict[str, Any],
) -> None:
    """The tables took the database's default character set and collation. In a latin1
    database a publish of text beyond Latin-1 (``"茶 ☕"``) failed at the write ("Incorrect
    string value"), or was stored as ``?`` without strict mode."""
    config = {"DRIVER": "memory", "DRIVERS": {"memory": {}}, "OUTBOX": latin1_outbox}
    with Broadcast(config) as broadcast:
        broadcast.channel("orders", {"item": "茶 ☕"}, "thé", send="outbox")
        broadcast.channel("orders", "crème brûlée 🍮", "thé", send="outbox")
        relay = Relay(broadcast, owner="utf8")
        assert relay.run_once().delivered == 2
        relay.store.release("utf8")
        sent = broadcast.driver("memory").driver.messages
        assert [(m.event, m.data) for m in sent] == [
            ("thé", {"item": "茶 ☕"}),
            ("thé", "crème brûlée 🍮"),
        ]


def test_mysql_owners_that_differ_only_in_case_are_two_relays(
    request: pytest.FixtureRequest,
) -> None:
    """The owner columns took the database's collation, on MariaDB case-insensitive
    (utf8mb4_general_ci; MySQL 8's is blind to accents too): a relay named ``RELAY-A``
    renewed and held the leases of ``relay-a``, so both sent the same rows. (MySQL's
    collations also compare names as if padded with spaces: a relay's name may not end
    with one, above.)"""
    store = Store.from_config(request.getfixturevalue("outbox_config")("mysql", partitions=4))
    try:
        store.create_tables()
        now = time.time()
        assert store.claim("relay-a", now, 30) == [0, 1, 2, 3]
        assert store.claim("RELAY-A", now, 30) == []  # all four are relay-a's
        assert store.claim("relay-\u00e1", now, 30) == []
        assert set(store.stats(now).relays) == {"relay-a", "RELAY-A", "relay-\u00e1"}
    finally:
        store.close()


# -- a password libpq found elsewhere than the URL -----------------------------------------


def libpq_passwords(error: BaseException) -> list[bytes]:
    """The passwords kept on psycopg errors chained to ``error`` (``pgconn.password``,
    directly or on the error SQLAlchemy wraps)."""
    from secret_scan import chain

    found = []
    for exc in chain(error):
        for each in (exc, getattr(exc, "orig", None)):
            password = getattr(getattr(each, "pgconn", None), "password", None)
            if password:
                found.append(password)
    return found


@pytest.mark.parametrize("scheme", ["postgresql", "postgresql+psycopg"])
def test_a_password_from_pgpassword_is_not_kept_on_a_connection_error(
    scheme: str, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no password in the URL the store chained the driver's connection error to its
    ``OutboxError``, as there was nothing to keep out of it. But libpq also takes the
    password from ``PGPASSWORD`` (or ``.pgpass``), and psycopg keeps the one it used on the
    error (``pgconn.password``): the password was an attribute of the error's cause, for an
    error tracker or a debugger to show."""
    from secret_scan import showing

    secret = "s36-" + uuid.uuid4().hex
    monkeypatch.setenv("PGPASSWORD", secret)
    url = pg_url.replace("postgresql://", f"{scheme}://", 1).rsplit("/", 1)[0]
    store = Store.from_config({"url": f"{url}/no_such_db_{uuid.uuid4().hex[:8]}"})
    try:
        with pytest.raises(OutboxError, match="does not exist") as caught:
            store.stats(time.time())
    finally:
        store.close()
    assert libpq_passwords(caught.value) == []
    assert showing(caught.value, secret, skip=__file__) == []
