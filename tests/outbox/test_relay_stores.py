"""The relay against the real stores (a SQLite file, a PostgreSQL schema of the test's own)
and a real soketi with a WebSocket subscriber: rows written by ``channel(send="outbox")``
arrive in order per channel, once; an outage backs rows off (nothing dead) and they all
arrive once the service is back; two relays never send a row twice; a relay killed with
SIGKILL leaves its ``sending`` rows to be reported unknown by the next one.
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "servers"))

from pusher_ws import Event, PusherSubscriber
from soketi_pytest import start_soketi
from soketi_server import HOST, SoketiServer

from broadcasting import Broadcast
from broadcasting.outbox._cli import add_commands
from broadcasting.outbox._policy import Backoff
from broadcasting.outbox._relay import Relay
from broadcasting.outbox._row import DELIVERED, PENDING, SENDING, UNKNOWN
from broadcasting.outbox._store import Store

PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def soketi() -> Iterator[SoketiServer]:
    server = start_soketi()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def pg_schema() -> Iterator[str]:
    """A PostgreSQL schema of this test's own (dropped afterwards)."""
    import psycopg

    schema = f"relay_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield schema
    finally:
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture(params=["sqlite", "postgresql"])
def outbox(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    """OUTBOX settings for a fresh outbox: a SQLite file, or a PostgreSQL schema."""
    if request.param == "sqlite":
        return {"url": f"sqlite:///{tmp_path / 'outbox.sqlite3'}", "partitions": 4}
    schema = request.getfixturevalue("pg_schema")
    return created({"url": PG_URL, "table": f"{schema}.broadcasting_outbox", "partitions": 4})


def created(outbox: dict[str, Any]) -> dict[str, Any]:
    """``outbox`` once its tables exist (``broadcasting outbox init``)."""
    store = Store.from_config(outbox)
    try:
        store.create_tables()
    finally:
        store.close()
    return outbox


def config(outbox: dict[str, Any], pusher: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"DRIVER": "pusher", "DRIVERS": {"pusher": pusher}, "OUTBOX": {**outbox, **extra}}


@pytest.fixture
async def subscriber(soketi: SoketiServer) -> AsyncIterator[PusherSubscriber]:
    sub = await PusherSubscriber(soketi.ws_url()).connect()
    try:
        yield sub
    finally:
        await sub.close()


def drain(relay: Relay, rounds: int = 200) -> None:
    """Run rounds until one finds nothing to do."""
    for _ in range(rounds):
        if not relay.run_once().busy:
            return
    raise AssertionError("the relay still had work after 200 rounds")


async def adrain(relay: Relay, rounds: int = 200) -> None:
    for _ in range(rounds):
        if not (await relay.arun_once()).busy:
            return
    raise AssertionError("the relay still had work after 200 rounds")


def by_channel(events: list[Event]) -> dict[str, list[int]]:
    seen: dict[str, list[int]] = {}
    for event in events:
        seen.setdefault(event.channel, []).append(json.loads(event.data)["n"])
    return seen


CHANNELS = ("orders", "stock", "chat-1", "chat-2", "prices")


async def test_rows_reach_a_subscriber_in_order_once(
    outbox: dict[str, Any], soketi: SoketiServer, subscriber: PusherSubscriber
) -> None:
    await subscriber.subscribe(*CHANNELS)
    with Broadcast(config(outbox, soketi.driver_options())) as broadcast:
        for n in range(40):
            for channel in CHANNELS:
                receipt = await broadcast.achannel(channel, {"n": n}, "tick", send="outbox")
                assert receipt.pending and receipt.via == "outbox"
        await broadcast.achannel(list(CHANNELS), {"n": 40}, "tick", send="outbox")  # fan-out
        relay = Relay(broadcast, owner="relay-a")
        await adrain(relay)
        events = await subscriber.events(41 * len(CHANNELS), timeout=20)
        assert by_channel(events) == {c: list(range(41)) for c in CHANNELS}
        marker = await subscriber.until_marker(lambda m: broadcast.achannel("orders", m, "marker"))
        assert marker == []  # nothing more: each row arrived once
        partitions = {_partition(c, 4) for c in CHANNELS}  # the fan-out: a row for each
        assert relay.stats().delivered == 40 * len(CHANNELS) + len(partitions)


def _partition(channel: str, partitions: int) -> int:
    from broadcasting.outbox._row import partition_of

    return partition_of(channel, partitions)


def rows_in(store: Store, state: int) -> list[Any]:
    return list(store.rows(state, 10_000))


async def test_an_outage_backs_rows_off_and_they_all_arrive_once_it_ends(
    outbox: dict[str, Any],
) -> None:
    server = start_soketi()
    try:
        options = server.driver_options(retries=0, timeout=2)
        with Broadcast(config(outbox, options)) as broadcast:
            relay = Relay(broadcast, owner="relay-a", backoff=Backoff(0.05, 0.2))
            server.stop()
            for n in range(10):
                await broadcast.achannel(["orders", "stock"], {"n": n}, "tick", send="outbox")
            first = await relay.arun_once()
            assert first.retried >= 1 and first.dead == 0 and first.delivered == 0
            again = await relay.arun_once()  # at once: nothing is tried while they wait
            assert again.fetched == 0 and not again.busy
            assert again.due is not None and again.due > time.time() - 1
            assert rows_in(relay.store, 3) == []  # DEAD: nothing
            server.start()
            async with PusherSubscriber(server.ws_url()) as sub:
                await sub.subscribe("orders", "stock")
                deadline = time.monotonic() + 20
                while rows_in(relay.store, PENDING) and time.monotonic() < deadline:
                    await relay.arun_once()
                    await asyncio.sleep(0.02)
                events = await sub.events(20, timeout=10)
                assert by_channel(events) == {c: list(range(10)) for c in ("orders", "stock")}
                assert await sub.until_marker(lambda m: broadcast.achannel("orders", m, "x")) == []
            assert relay.stats().dead == 0 and relay.stats().unknown == 0
    finally:
        server.close()


async def test_two_relays_share_the_partitions_and_never_send_a_row_twice(
    pg_schema: str,
) -> None:
    outbox = created({"url": PG_URL, "table": f"{pg_schema}.broadcasting_outbox", "partitions": 8})
    settings = {"DRIVER": "memory", "DRIVERS": {"memory": {}}, "OUTBOX": {**outbox, "batch": 40}}
    channels = [f"room-{i}" for i in range(12)]
    with Broadcast(settings) as writer, Broadcast(settings) as one, Broadcast(settings) as two:
        relays = [Relay(one, owner="relay-1"), Relay(two, owner="relay-2")]
        tasks = [asyncio.create_task(relay.arun()) for relay in relays]
        written = 0
        for n in range(50):
            for channel in channels:
                await writer.achannel(channel, {"n": n}, "tick", send="outbox")
                written += 1
            await asyncio.sleep(0.05)  # 2.5 s: the relays claim every second
        memories = [one.driver("memory").driver, two.driver("memory").driver]
        deadline = time.monotonic() + 30
        while sum(len(m.messages) for m in memories) < written:
            assert time.monotonic() < deadline, relays[0].store.stats(time.time())
            await asyncio.sleep(0.05)
        for relay in relays:
            relay.stop()
        await asyncio.wait_for(asyncio.gather(*tasks), 10)
        sent = [m.messages for m in memories]
    ids = Counter(m.id for messages in sent for m in messages)
    assert len(ids) == written and set(ids.values()) == {1}
    assert all(sent), "each relay held a share of the partitions and sent some rows"
    for messages in sent:  # each relay's deliveries keep every channel's order
        for channel in channels:
            got = [m.data["n"] for m in messages if m.channels == (channel,)]
            assert got == sorted(got)


SILENT_RELAY = """
import sys
from broadcasting import Broadcast
from broadcasting.outbox._relay import Relay
Relay(Broadcast(sys.argv[1]), owner=sys.argv[2]).run()
"""


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never answers (requests hang until timeout)."""
    server = socket.socket()
    server.bind((HOST, 0))
    server.listen(64)
    yield server.getsockname()[1]
    server.close()


def start_relay(config_path: Path, owner: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", SILENT_RELAY, str(config_path), owner],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        cwd=ROOT,
    )


async def test_a_relay_killed_mid_send_leaves_rows_the_next_one_reports_unknown(
    pg_schema: str,
    soketi: SoketiServer,
    subscriber: PusherSubscriber,
    tmp_path: Path,
    silent_port: int,
    capsys: pytest.CaptureFixture[str],
) -> None:
    outbox = created({"url": PG_URL, "table": f"{pg_schema}.broadcasting_outbox", "partitions": 4})
    hanging = soketi.driver_options(port=silent_port, retries=0, timeout=60)
    path = tmp_path / "victim.json"
    path.write_text(json.dumps(config({**outbox, "lease": 1.0}, hanging)), encoding="utf-8")
    await subscriber.subscribe("orders")
    with Broadcast(config({**outbox, "lease": 1.0}, soketi.driver_options())) as broadcast:
        for n in range(3):
            await broadcast.achannel("orders", {"n": n}, "tick", send="outbox")
        victim = start_relay(path, "victim")
        try:
            store = Relay(broadcast, owner="survivor").store
            for _ in range(400):  # up to 20 s
                if rows_in(store, SENDING):
                    break
                await asyncio.sleep(0.05)
            else:
                victim.kill()
                said = victim.stderr.read().decode() if victim.stderr else ""
                raise AssertionError(f"the relay marked nothing sending: {said}")
        finally:
            victim.send_signal(signal.SIGKILL)
            victim.wait(10)
        survivor = Relay(broadcast, owner="survivor")
        deadline = time.monotonic() + 10
        while not rows_in(store, UNKNOWN) and time.monotonic() < deadline:
            await survivor.arun_once()  # takes the partition once the lease expired
            await asyncio.sleep(0.1)
        await adrain(survivor)
        unknown = rows_in(store, UNKNOWN)
        assert len(unknown) >= 1
        assert len(unknown) + len(rows_in(store, DELIVERED)) == 3
        assert all("sending" in (row.error or "") for row in unknown)
        heard = await subscriber.until_marker(lambda m: broadcast.achannel("orders", m, "x"))
        assert len(heard) == 3 - len(unknown)  # an unknown row is never sent again
        assert cli(["outbox", "list", "--state", "unknown", "--json", "--config", str(path)]) == 0
        listed = json.loads(capsys.readouterr().out)
        assert sorted(r["id"] for r in listed) == sorted(r.id for r in unknown)


def cli(argv: list[str]) -> int:
    from argparse import ArgumentParser

    parser = ArgumentParser(prog="broadcasting")
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    status: int = args.run(args)
    return status


def test_sigterm_stops_a_relay_that_releases_its_leases(tmp_path: Path) -> None:
    outbox = {"url": f"sqlite:///{tmp_path / 'outbox.sqlite3'}", "partitions": 4}
    path = tmp_path / "relay.json"
    settings = {"DRIVER": "memory", "DRIVERS": {"memory": {}}, "OUTBOX": outbox}
    path.write_text(json.dumps(settings), encoding="utf-8")
    with Broadcast(settings) as broadcast:
        store = Relay(broadcast, owner="watcher").store
        relay = start_relay(path, "stopping")
        try:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                if store.claim("watcher", time.time(), 30) == []:
                    break  # the relay holds every partition
                store.release("watcher")
                time.sleep(0.05)
            store.release("watcher")
            relay.send_signal(signal.SIGTERM)
            assert relay.wait(10) == 0, relay.stderr and relay.stderr.read()
        finally:
            if relay.poll() is None:
                relay.kill()
        assert sorted(store.claim("watcher", time.time(), 30)) == [0, 1, 2, 3]
