"""Review of the relay and its store: defects found, each shown against real parts (a SQLite
file or a PostgreSQL schema of the test's own, a real soketi behind the tests' counting proxy,
a WebSocket subscriber), then fixed."""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "servers"))

from http_proxy import CountingProxy
from pusher_ws import Event, PusherSubscriber
from soketi_server import SoketiServer

from broadcasting import Broadcast
from broadcasting.cli import main
from broadcasting.outbox._relay import Relay
from broadcasting.outbox._row import DELIVERED, UNKNOWN
from broadcasting.outbox._store import Store


@pytest.fixture(params=["sqlite", "postgresql", "mysql"])
def outbox(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    """OUTBOX settings of a fresh outbox with its tables: a SQLite file, a PostgreSQL table
    in the session's own schema, or a MariaDB table in the session's own database."""
    if request.param == "sqlite":
        settings: dict[str, Any] = {"url": f"sqlite:///{tmp_path / 'outbox.sqlite3'}"}
    elif request.param == "mysql":
        settings = request.getfixturevalue("outbox_config")("mysql")
    else:
        url = request.getfixturevalue("pg_url")
        schema = request.getfixturevalue("outbox_schema")
        settings = {"url": url, "table": f"{schema}.outbox_{uuid.uuid4().hex[:8]}"}
    settings["partitions"] = 4
    store = Store.from_config(settings)
    try:
        store.create_tables()
    finally:
        store.close()
    return settings


def config(outbox: dict[str, Any], pusher: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"DRIVER": "pusher", "DRIVERS": {"pusher": pusher}, "OUTBOX": {**outbox, **extra}}


def numbers(events: list[Event]) -> list[int]:
    return [json.loads(event.data)["n"] for event in events]


def in_state(store: Store, state: int) -> list[int]:
    return [row.id for row in store.rows(state, 10_000)]


# -- a relay busy for longer than its lease ------------------------------------------------


@pytest.mark.parametrize(
    ("at_least_once", "delay", "rows"),
    [(False, 1.3, 3), (True, 0.25, 12)],
    ids=["a-publish-slower-than-the-lease", "at-least-once-a-long-backlog"],
)
async def test_a_relay_busy_longer_than_its_lease_keeps_it_and_records_every_row(
    outbox: dict[str, Any],
    at_least_once: bool,
    delay: float,
    rows: int,
    soketi: SoketiServer,
    proxy: CountingProxy,
    subscriber: PusherSubscriber,
) -> None:
    """A relay's rows may be out for longer than its lease: a slow answer, or a backlog on
    one channel (its rows go one at a time). It must keep its leases meanwhile: before, it
    renewed them only once its rows were all done, so a second relay took the partition
    over while the first was still sending. Then the row being sent was found ``sending``
    and reported unknown though delivered (had it failed, it was never retried); with
    ``at_least_once`` (no mark) both relays sent the rest of the backlog: every row twice,
    the channel's order broken."""
    proxy.delay(delay, times=None)  # every request answered late
    await subscriber.subscribe("orders")
    options = soketi.driver_options(port=proxy.port, at_least_once=at_least_once)
    settings = config(outbox, options, lease=1.0, partitions=1)
    with Broadcast(settings) as broadcast, Broadcast(settings) as other:
        for n in range(rows):
            await broadcast.achannel("orders", {"n": n}, "tick", send="outbox")
        first = Relay(broadcast, owner="first")
        second = Relay(other, owner="second")
        tasks = [asyncio.create_task(first.arun())]
        try:
            deadline = time.monotonic() + 10
            while first.partitions != (0,):  # the first relay holds the only partition
                assert time.monotonic() < deadline
                await asyncio.sleep(0.01)
            tasks.append(asyncio.create_task(second.arun()))
            store = first.store
            deadline = time.monotonic() + 30
            while len(in_state(store, DELIVERED)) + len(in_state(store, UNKNOWN)) < rows:
                assert time.monotonic() < deadline, store.stats(time.time())
                await asyncio.sleep(0.1)
        finally:
            first.stop()
            second.stop()
            await asyncio.wait_for(asyncio.gather(*tasks), 20)
        assert in_state(store, UNKNOWN) == []
        assert len(in_state(store, DELIVERED)) == rows
        assert numbers(await subscriber.events(rows, timeout=10)) == list(range(rows))
        proxy.clear()
        marker = await subscriber.until_marker(lambda m: broadcast.achannel("orders", m, "x"))
        assert marker == []  # each row once


# -- the CLI: bad numbers are refused, never sent to the database --------------------------


def write_config(tmp_path: Path, outbox: dict[str, Any]) -> str:
    file = tmp_path / "broadcasting.json"
    settings = {"DRIVER": "memory", "DRIVERS": {"memory": {}}, "OUTBOX": outbox}
    file.write_text(json.dumps(settings), encoding="utf-8")
    return str(file)


def test_purge_before_nan_is_refused_and_deletes_nothing(
    outbox: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--before nan`` passed the check for a negative age; on PostgreSQL every number is
    below NaN, so it deleted every delivered row, whatever its age."""
    path = write_config(tmp_path, outbox)
    with Broadcast(path) as broadcast:
        for n in range(3):
            broadcast.channel("orders", {"n": n}, "tick", send="outbox")
        relay = Relay(broadcast, owner="cli")
        assert relay.run_once().delivered == 3
        relay.store.release("cli")
        status = main(["outbox", "purge", "--before", "nan", "--config", path])
        assert len(in_state(relay.store, DELIVERED)) == 3
        assert status == 2
        assert main(["outbox", "purge", "--before", "inf", "--config", path]) == 2
        assert "--before must be a number of seconds >= 0" in capsys.readouterr().err
        assert main(["outbox", "purge", "--before", "3600", "--config", path]) == 0
        assert len(in_state(relay.store, DELIVERED)) == 3  # done less than an hour ago: kept


def test_an_id_or_limit_out_of_range_is_a_clear_error(
    outbox: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A row id too large for the database (SQLite: OverflowError) or a negative
    ``--limit`` (PostgreSQL refuses it) was reported as "the outbox's database failed ... is
    the database up?"; a --limit of 0 listed nothing and said there were no dead rows."""
    path = write_config(tmp_path, outbox)
    assert main(["outbox", "retry", str(2**64), "--config", path]) == 2
    assert f"{2**64} is not a row id" in capsys.readouterr().err
    assert main(["outbox", "retry", "0", "--config", path]) == 2
    assert "0 is not a row id" in capsys.readouterr().err
    for limit in ("-1", "0"):
        assert main(["outbox", "list", "--limit", limit, "--config", path]) == 2
        err = capsys.readouterr().err
        assert "--limit must be from 1" in err and "database failed" not in err
    assert main(["outbox", "retry", "1", "--config", path]) == 0  # a row id: no such row
    assert capsys.readouterr().out.startswith("0 row(s)")


# -- arun() cancelled ----------------------------------------------------------------------


async def test_cancelling_arun_lets_the_rows_in_flight_finish_and_records_them(
    outbox: dict[str, Any],
    soketi: SoketiServer,
    proxy: CountingProxy,
    subscriber: PusherSubscriber,
) -> None:
    """``arun()`` runs until stop() "or until cancelled; then release the leases". Cancelled
    (an application's worker shutting down), it released the leases at once while the row
    it was sending was still out: that row's outcome, recorded after, was fenced off, so a
    delivered row stayed ``sending`` and the next relay reported it unknown."""
    proxy.delay(1.0, times=None)
    await subscriber.subscribe("orders")
    with Broadcast(config(outbox, soketi.driver_options(port=proxy.port))) as broadcast:
        for n in range(5):
            await broadcast.achannel("orders", {"n": n}, "tick", send="outbox")
        relay = Relay(broadcast, owner="cancelled")
        store = relay.store
        task = asyncio.create_task(relay.arun())
        deadline = time.monotonic() + 10
        while not proxy.posts():  # the first row is out
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 10)
        assert in_state(store, DELIVERED) != []  # the row out was recorded
        assert store.stats(time.time()).backlog["sending"] == 0
        assert len(in_state(store, DELIVERED)) == len(proxy.posts())  # no new row went
        assert store.claim("next", time.time(), 30) == [0, 1, 2, 3]  # the leases released
        store.release("next")
        after = Relay(broadcast, owner="next")
        while (await after.arun_once()).busy:
            pass
        assert in_state(store, UNKNOWN) == []
        assert len(in_state(store, DELIVERED)) == 5
        proxy.clear()
        assert numbers(await subscriber.events(5, timeout=15)) == list(range(5))
        assert await subscriber.until_marker(lambda m: broadcast.achannel("orders", m, "x")) == []
