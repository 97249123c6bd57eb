"""The relay against the real stores (a SQLite file, a PostgreSQL schema of the test's own)
and a real soketi with a WebSocket subscriber: rows written by ``channel(send="outbox")``
arrive in order per channel, once; an outage backs rows off (nothing dead) and they all
arrive once the service is back; two relays never send a row twice; a relay killed with
SIGKILL leaves its ``sending`` rows to be reported unknown by the next one.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
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
from broadcasting.plugin import hookimpl

PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
ROOT = Path(__file__).resolve().parents[2]


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


@pytest.fixture(params=["sqlite", "postgresql", "mysql"])
def outbox(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    """OUTBOX settings for a fresh outbox: a SQLite file, a PostgreSQL schema, or a table in
    a MariaDB database of the session's own (through SQLAlchemy)."""
    if request.param == "sqlite":
        return {"url": f"sqlite:///{tmp_path / 'outbox.sqlite3'}", "partitions": 4}
    if request.param == "mysql":
        return created(request.getfixturevalue("outbox_config")("mysql", partitions=4))
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
            # a first back-off of 1-2 s: the round right after must find nothing due, even on a
            # loaded machine (with 25-50 ms it sometimes came due before that round began)
            relay = Relay(broadcast, owner="relay-a", backoff=Backoff(2.0, 4.0))
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
        memories = [one.driver("memory").driver, two.driver("memory").driver]
        written = n = 0
        deadline = time.monotonic() + 30
        # 2.5 s at least (the relays claim every second), and on until both have sent some:
        # on a loaded machine the second relay may start late and take its share a round later
        while n < 50 or not all(m.messages for m in memories):
            assert time.monotonic() < deadline, "a relay never took a share of the partitions"
            for channel in channels:
                await writer.achannel(channel, {"n": n}, "tick", send="outbox")
                written += 1
            n += 1
            await asyncio.sleep(0.05)
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


# -- waves through one call into the core (no publish plugin) or through the hook ----------


def events_sent(proxy: Any) -> list[tuple[str, int]]:
    """Each event the relay posted: its channel and ``n``, in the order of the requests."""
    sent: list[tuple[str, int]] = []
    for post in proxy.posts():
        body = post.json()
        for event in body.get("batch", [body]):
            if event["name"] != "tick":
                continue  # the test's own marker
            for channel in [event["channel"]] if "channel" in event else event["channels"]:
                sent.append((channel, json.loads(event["data"])["n"]))
    return sent


MANY = tuple(f"wave-{i}" for i in range(24))


async def test_rows_go_in_shared_requests_in_order_once_without_a_publish_plugin(
    outbox: dict[str, Any], soketi: SoketiServer, proxy: Any, subscriber: PusherSubscriber
) -> None:
    await subscriber.subscribe(*MANY)
    options = soketi.driver_options(port=proxy.port)
    with Broadcast(config(outbox, options)) as broadcast:
        for n in range(6):
            for channel in MANY:
                await broadcast.achannel(channel, {"n": n}, "tick", send="outbox")
        await broadcast.achannel(list(MANY[:3]), {"n": 6}, "tick", send="outbox")  # fan-out
        relay = Relay(broadcast, owner="relay-a")
        await adrain(relay)
        rows = 6 * len(MANY) + len({_partition(c, 4) for c in MANY[:3]})
        assert relay.stats().delivered == rows
        events = await subscriber.events(6 * len(MANY) + 3, timeout=20)
        expected = {c: list(range(7 if c in MANY[:3] else 6)) for c in MANY}
        assert by_channel(events) == expected
        marker = await subscriber.until_marker(lambda m: broadcast.achannel(MANY[0], m, "marker"))
        assert marker == []  # each once
    sent = events_sent(proxy)
    assert sorted(sent) == sorted((c, n) for c, ns in expected.items() for n in ns)
    # packed ten to a request (Pusher's /batch_events), not one request per row
    assert len(proxy.posts()) <= rows // 5, [len(p.json().get("batch", [1])) for p in proxy.posts()]


async def test_a_row_the_service_refuses_is_dead_alone_and_the_others_arrive_in_order(
    pg_schema: str, soketi: SoketiServer, proxy: Any, subscriber: PusherSubscriber,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    from http_proxy import containing

    outbox = created({"url": PG_URL, "table": f"{pg_schema}.broadcasting_outbox", "partitions": 4})
    # the service refuses any request that carries the poisoned event: 413, as for a payload
    # over its limit (certainly not delivered, not worth retrying)
    proxy.fail(413, {"error": "too large"}, times=None, when=containing("poison"))
    await subscriber.subscribe(*MANY[:10])
    with Broadcast(config(outbox, soketi.driver_options(port=proxy.port))) as broadcast:
        for n in range(3):
            for channel in MANY[:10]:
                data = {"n": n, "poison": True} if (channel, n) == (MANY[4], 1) else {"n": n}
                await broadcast.achannel(channel, data, "tick", send="outbox")
        relay = Relay(broadcast, owner="relay-a")
        with caplog.at_level(logging.ERROR, "broadcasting.outbox"):
            await adrain(relay)
        events = await subscriber.events(29, timeout=20)
        got = by_channel(events)
        assert got == {c: [0, 2] if c == MANY[4] else [0, 1, 2] for c in MANY[:10]}
        assert await subscriber.until_marker(lambda m: broadcast.achannel(MANY[0], m, "x")) == []
        (dead,) = rows_in(relay.store, 3)  # DEAD
        assert json.loads(dead.body) == {"n": 1, "poison": True} and "413" in (dead.error or "")
        assert relay.stats().delivered == 29
    (logged,) = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert f"row {dead.id}" in logged and "is dead" in logged
    # the shared request with the poisoned event was refused; each of its events went alone
    alone = [
        p for p in proxy.posts() if "poison" not in p.body.decode() and "batch" not in p.json()
    ]
    assert len(alone) >= 9


async def test_a_row_whose_body_is_not_json_is_dead_and_the_others_go(
    pg_schema: str, soketi: SoketiServer, subscriber: PusherSubscriber,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    """A row read back is untrusted input: a ``json`` body that does not decode never goes
    out as text; it is dead, logged with its traceback, and the rows after it go."""
    from broadcasting.outbox._row import NewRow, partition_of

    outbox = created({"url": PG_URL, "table": f"{pg_schema}.broadcasting_outbox", "partitions": 4})
    await subscriber.subscribe("orders")
    with Broadcast(config(outbox, soketi.driver_options())) as broadcast:
        relay = Relay(broadcast, owner="relay-a")
        part = partition_of("orders", 4)
        bodies = ['{"n":0}', '{"n":1', '{"n":2}']
        relay.store.insert(
            [
                NewRow(part, 0.0, 0.0, "pusher", "tick", ("orders",), b, "json", None, f"m{n}")
                for n, b in enumerate(bodies)
            ]
        )
        with caplog.at_level(logging.ERROR, "broadcasting.outbox"):
            await adrain(relay)
        assert by_channel(await subscriber.events(2, timeout=10)) == {"orders": [0, 2]}
        (dead,) = rows_in(relay.store, 3)
        assert dead.message_id == "m1" and "JSONDecodeError" in (dead.error or "")
    assert any(r.exc_info and "raised" in r.getMessage() for r in caplog.records)


class Watching:
    """A real plugin that watches every publish (a ``broadcasting_publish`` wrapper)."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    @hookimpl(wrapper=True)
    def broadcasting_publish(self, broadcast: Broadcast, driver: Any, message: Any) -> Any:
        self.seen.append(message.id)
        return (yield)


@pytest.mark.parametrize("watch", ["plugin", "monitor"])
async def test_a_publish_plugin_or_a_hook_monitor_sees_every_row(
    pg_schema: str, soketi: SoketiServer, subscriber: PusherSubscriber, watch: str
) -> None:
    outbox = created({"url": PG_URL, "table": f"{pg_schema}.broadcasting_outbox", "partitions": 4})
    await subscriber.subscribe(*MANY[:8])
    with Broadcast(config(outbox, soketi.driver_options())) as broadcast:
        seen: list[str] = []
        if watch == "plugin":
            plugin = Watching()
            broadcast.plugin_manager.register(plugin)
            seen = plugin.seen
        else:

            def before(name: str, impls: Any, kwargs: dict[str, Any]) -> None:
                if name == "broadcasting_publish":
                    seen.append(kwargs["message"].id)

            broadcast.plugin_manager.add_hookcall_monitoring(before, lambda *args: None)
        written = []
        for n in range(4):
            for channel in MANY[:8]:
                receipt = await broadcast.achannel(channel, {"n": n}, "tick", send="outbox")
                written.append(receipt.message_id)
        await adrain(Relay(broadcast, owner="relay-a"))
        assert by_channel(await subscriber.events(32, timeout=20)) == {
            c: [0, 1, 2, 3] for c in MANY[:8]
        }
        assert sorted(seen) == sorted(written)
