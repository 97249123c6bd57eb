"""Review (session 36c): two relays started under one owner name (``broadcasting relay
--owner twin`` twice, or ``Relay(owner=...)``). The name is the lease holder's identity, so
each sent the other's rows: in a run over 3,000 rows, 81 ended ``unknown`` (each a possible
duplicate delivery), and nothing refused the second. Now a relay takes its name as it
starts (its row in the relay table, locked): while a relay alive under that name renews it,
the second is refused (``InputError``, one line, exit 1); a relay of that name that died
(``kill -9``) is waited out, at most its lease; one stopped cleanly gave the name back.

Real parts: ``broadcasting relay`` processes, PostgreSQL and SQLite, a soketi with a
WebSocket subscriber counting what arrived."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "servers"))

from pusher_ws import PusherSubscriber
from relay_process import RelayProcess
from soketi_server import SoketiServer

from broadcasting import Broadcast, InputError
from broadcasting.outbox import Relay, store_for
from broadcasting.outbox._store import Store

SCRIPT = Path(sys.executable).parent / "broadcasting"
CHANNELS = tuple(f"twin-{i}" for i in range(10))
ROWS = 1500


@pytest.fixture(params=["sqlite", "postgresql"])
def outbox(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A fresh outbox: a SQLite file, or a table of this test's own in PostgreSQL's
    ``test`` database (its tables dropped after)."""
    if request.param == "sqlite":
        yield {"url": f"sqlite:///{tmp_path / 'outbox.sqlite3'}", "partitions": 4}
        return
    url = request.getfixturevalue("pg_url")
    table = f"s36c_twin_{uuid.uuid4().hex[:10]}"
    yield {"url": url, "table": table, "partitions": 4}
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        for name in (table, f"{table}_lease", f"{table}_relay"):
            conn.execute(f'DROP TABLE IF EXISTS "{name}"')


class Process(RelayProcess):
    """``broadcasting relay`` with the given arguments, its stderr in a file."""

    def __init__(self, workdir: Path, name: str, *args: str) -> None:
        argv = [str(SCRIPT), "relay", "--config", str(workdir / "broadcast.json"), *args]
        super().__init__(argv, workdir, name, os.environ.copy())


@pytest.fixture
def relays(tmp_path: Path) -> Iterator[Callable[..., Process]]:
    made: list[Process] = []

    def make(config: dict[str, Any], name: str, *args: str) -> Process:
        (tmp_path / "broadcast.json").write_text(json.dumps(config), encoding="utf-8")
        process = Process(tmp_path, name, *args)
        made.append(process)
        return process

    yield make
    for process in made:
        process.close()


def held(store: Store) -> dict[str, list[int]]:
    return {owner: list(parts) for owner, parts in store.stats(time.time()).relays.items()}


async def test_two_relays_under_one_owner_the_second_is_refused_and_each_row_arrives_once(
    outbox: dict[str, Any], soketi: SoketiServer, relays: Callable[..., Process]
) -> None:
    config = {"DRIVER": "pusher", "DRIVERS": {"pusher": soketi.driver_options()}, "OUTBOX": outbox}
    async with PusherSubscriber(soketi.ws_url()) as subscriber:
        await subscriber.subscribe(*CHANNELS)
        with Broadcast(config) as broadcast:
            store = store_for(broadcast)
            store.create_tables()
            for n in range(ROWS):
                broadcast.channel(CHANNELS[n % len(CHANNELS)], {"n": n}, "row", send="outbox")
            # both at the same moment: the race for the name
            first = relays(config, "first", "--owner", "twin")
            second = relays(config, "second", "--owner", "twin")
            deadline = time.monotonic() + 30
            while first.process.poll() is None and second.process.poll() is None:
                assert time.monotonic() < deadline, first.log() + second.log()
                await asyncio.sleep(0.05)
            refused, running = (
                (first, second) if first.process.poll() is not None else (second, first)
            )
            assert refused.process.wait() == 1, refused.log()
            said = refused.log()
            [line] = [each for each in said.splitlines() if "error" in each]
            assert line.startswith("broadcasting: error: OwnerInUse: "), said  # an InputError
            assert "'twin' is in use by a running relay" in line, said
            assert "Traceback" not in said, said
            assert running.process.poll() is None, running.log()
            deadline = time.monotonic() + 60
            while store.stats(time.time()).backlog["delivered"] < ROWS:
                assert time.monotonic() < deadline, (store.stats(time.time()), running.log())
                await asyncio.sleep(0.1)
            events = await subscriber.events(ROWS, timeout=30)
            events += await subscriber.until_marker(
                lambda m: broadcast.achannel(CHANNELS[0], m, "marker")
            )
            stats = store.stats(time.time())
            assert stats.backlog["unknown"] == 0 and stats.backlog["delivered"] == ROWS, stats
            assert held(store) == {"twin": [0, 1, 2, 3]}
            assert running.stop() == 0, running.log()
    counted = Counter(json.loads(event.data)["n"] for event in events if event.event == "row")
    assert sorted(counted) == list(range(ROWS))  # every row arrived
    assert set(counted.values()) == {1}  # once each
    # channel order kept
    for channel in CHANNELS:
        ns = [json.loads(e.data)["n"] for e in events if e.channel == channel]
        assert ns == sorted(ns)
    assert "WARNING" not in running.log().replace("WARNING relay twin: a relay of this", ""), (
        running.log()
    )


def test_a_relay_killed_comes_back_under_its_name_once_its_lease_ran_out(
    outbox: dict[str, Any], relays: Callable[..., Process]
) -> None:
    """``kill -9`` and a restart at once (systemd's Restart=always): the new process waits
    for the dead one's lease (3 s here), then holds the name; after a clean stop the name is
    free at once."""
    config = {"DRIVER": "memory", "DRIVERS": {"memory": {}}, "OUTBOX": {**outbox, "lease": 3}}
    with Broadcast(config) as broadcast:
        store = store_for(broadcast)
        store.create_tables()
        dead = relays(config, "dead", "--owner", "phoenix")
        deadline = time.monotonic() + 20
        while held(store) != {"phoenix": [0, 1, 2, 3]}:
            assert time.monotonic() < deadline, dead.log()
            time.sleep(0.05)
        dead.process.kill()
        dead.process.wait()
        killed = time.monotonic()
        again = relays(config, "again", "--owner", "phoenix")
        while "waiting for that to run out" not in again.log():
            assert again.process.poll() is None, again.log()
            assert time.monotonic() < killed + 10, again.log()
            time.sleep(0.05)
        broadcast.channel("orders", {"n": 1}, "e", send="outbox")
        while store.stats(time.time()).backlog["delivered"] < 1:
            assert again.process.poll() is None, again.log()
            assert time.monotonic() < killed + 15, again.log()
            time.sleep(0.05)
        assert held(store) == {"phoenix": [0, 1, 2, 3]}
        assert again.stop() == 0, again.log()
        assert held(store) == {}  # given back
        started = time.monotonic()
        last = relays(config, "last", "--owner", "phoenix")
        while held(store) != {"phoenix": [0, 1, 2, 3]}:
            assert time.monotonic() < started + 5, last.log()  # not a lease's wait
            time.sleep(0.05)
        assert "waiting" not in last.log()
        assert last.stop() == 0, last.log()


async def test_in_process_a_second_relay_of_a_running_ones_name_is_refused(
    outbox: dict[str, Any],
) -> None:
    """``Relay(owner=...)``: one runs (``arun``), a second one's round raises ``InputError``
    within a few renewals, and the first one's leases stay its own."""
    config = {"DRIVER": "memory", "DRIVERS": {"memory": {}}, "OUTBOX": outbox}
    with Broadcast(config) as broadcast:
        store_for(broadcast).create_tables()
        first = Relay(broadcast, owner="same")
        running = asyncio.create_task(first.arun())
        try:
            deadline = time.monotonic() + 20
            while held(first.store) != {"same": [0, 1, 2, 3]}:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)
            second = Relay(broadcast, owner="same")
            started = time.monotonic()
            with pytest.raises(InputError, match="in use by a running relay"):
                await second.arun_once()
            assert time.monotonic() - started < 10  # not the lease's 30 s
            second.release()  # gives back nothing of the first's
            assert held(first.store) == {"same": [0, 1, 2, 3]}
        finally:
            first.stop()
            await running
        assert held(first.store) == {}
