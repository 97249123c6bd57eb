"""The outbox relay's speed: publishes per second, and commit-to-receipt latency.

Usage::

    python benchmarks/outbox_relay.py                      # 30,000 rows; 500/s for 10 s
    python benchmarks/outbox_relay.py --rows 50000 --rate 500 --seconds 30
    python benchmarks/outbox_relay.py --pg postgresql://postgres@127.0.0.1:5432/test
    python benchmarks/outbox_relay.py --only-throughput --profile relay.prof

All run against a local soketi (the test suite's, ``tests/servers``) and an outbox in a
PostgreSQL schema of the run's own (dropped at the end):

- **throughput**: ``--rows`` rows already committed, spread over ``--channels`` channels;
  one relay process (warmed up first: leases claimed, connections made) drains them;
  publishes per second = rows / time to drain. A WebSocket subscriber counts what soketi
  delivered (all of it, once). Target: >= 5,000/s.
- **relay CPU per row**: the relay process's CPU time over the drain (``getrusage``, user
  and system, all its threads: other work on the machine does not inflate it as it does
  wall-clock time) / rows. Target: <= 150 µs. Printed with soketi's and the subscriber's
  CPU per row over the same span (2 cores: what is left for the relay). ``--profile
  FILE``: the relay's event-loop thread under cProfile (CPU time), its top entries
  printed (the profiler slows it: figures of that run are not comparable).
- **latency**: a writer process commits publishes at a steady ``--rate`` per second (each
  in its own transaction) while one relay process delivers them; a WebSocket subscriber
  takes the time each arrives; latency = arrival - the writer's commit (same machine, same
  clock). p50 and p99. Target: p99 <= 100 ms.
- **idle CPU**: the relay's CPU time (``time.process_time()``) over a wait: with an empty
  outbox; with soketi down, rows backing off and a writer adding 200 rows a second (each
  commit wakes the relay through NOTIFY).

Prints one line per figure; exits 1 if a target is missed (``--no-targets``: never).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import resource
import statistics
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SERVERS = ROOT / "tests" / "servers"
if str(SERVERS) not in sys.path:
    sys.path.insert(0, str(SERVERS))

from pusher_ws import Event, PusherSubscriber  # noqa: E402
from soketi_server import SoketiServer  # noqa: E402

from broadcasting import Broadcast  # noqa: E402
from broadcasting.outbox._relay import Relay  # noqa: E402
from broadcasting.outbox._row import NewRow, partition_of  # noqa: E402
from broadcasting.outbox._store import Store  # noqa: E402

PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
THROUGHPUT_TARGET = 5_000.0
CPU_TARGET_US = 150.0
SHOW_SLOW = False
P99_TARGET_MS = 100.0


@contextlib.contextmanager
def pg_outbox(url: str, partitions: int = 16, **extra: Any) -> Iterator[dict[str, Any]]:
    """OUTBOX settings for a fresh outbox in a new PostgreSQL schema (dropped on exit)."""
    import psycopg

    schema = f"bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    outbox = {"url": url, "table": f"{schema}.broadcasting_outbox", "partitions": partitions}
    outbox.update(extra)
    store = Store.from_config(outbox)
    store.create_tables()
    store.close()
    try:
        yield outbox
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


def settings(soketi: SoketiServer, outbox: dict[str, Any]) -> dict[str, Any]:
    return {"DRIVER": "pusher", "DRIVERS": {"pusher": soketi.driver_options()}, "OUTBOX": outbox}


class Counting:
    """A subscriber's tally: the arrival time of each ``seq`` (and repeats)."""

    def __init__(self) -> None:
        self.arrived: dict[int, float] = {}
        self.repeats = 0

    def __call__(self, event: Event) -> None:
        seq = json.loads(event.data)["seq"]
        if seq in self.arrived:
            self.repeats += 1
        else:
            self.arrived[seq] = time.time()


async def subscribed(
    soketi: SoketiServer, channels: list[str], tally: Counting
) -> PusherSubscriber:
    sub = await PusherSubscriber(soketi.ws_url(), on_event=tally).connect()
    await sub.subscribe(*channels)
    return sub


@dataclass
class Throughput:
    rows: int
    seconds: float
    delivered: int
    heard: int
    repeats: int
    #: the relay process's CPU seconds over the drain (all its threads): user, system
    user: float = 0.0
    system: float = 0.0
    #: over the same span: this process's CPU seconds (the subscriber), soketi's
    subscriber: float = 0.0
    soketi: float = 0.0

    @property
    def cpu(self) -> float:
        return self.user + self.system

    @property
    def per_second(self) -> float:
        return self.rows / self.seconds

    @property
    def cpu_us_per_row(self) -> float:
        return self.cpu / self.rows * 1e6


def _cpu_seconds() -> tuple[float, float]:
    """This process's CPU time so far (getrusage, every thread): user, system."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime, usage.ru_stime


def _drain(
    config: dict[str, Any], ready: Any, go: Any, stop: Any, out: Any, profile: str | None
) -> None:
    """The throughput run's relay process: one warm-up round (claims the partitions, delivers
    the warm-up row: connected), then relays from ``go`` to ``stop``; sends back its CPU
    seconds over that span and how many rows it delivered. ``profile``: a file for the
    cProfile statistics of its event loop's thread (not the database threads)."""
    with Broadcast(config) as broadcast:
        relay = Relay(broadcast, owner="bench-throughput")

        async def main() -> tuple[float, float, int]:
            warm = await relay.arun_once()
            ready.set()
            await asyncio.to_thread(go.wait)
            profiler = None
            if profile:
                import cProfile

                profiler = cProfile.Profile(time.thread_time)  # CPU, this thread
            cpu = _cpu_seconds()
            if profiler is not None:
                profiler.enable()
            task = asyncio.create_task(relay.arun())
            await asyncio.to_thread(stop.wait)
            relay.stop()
            await task
            if profiler is not None:
                profiler.disable()
            (user, system), (user0, system0) = _cpu_seconds(), cpu
            user, system = user - user0, system - system0
            if profiler is not None:
                profiler.dump_stats(profile)
            return user, system, relay.stats().delivered - warm.delivered

        out.send(asyncio.run(main()))
    out.close()


async def throughput(
    soketi: SoketiServer,
    outbox: dict[str, Any],
    rows: int,
    channels: int,
    profile: str | None = None,
) -> Throughput:
    """Drain ``rows`` committed rows with one relay process: how fast, and its CPU per row."""
    names = [f"bench-{i}" for i in range(channels)]
    config = settings(soketi, outbox)
    store = Store.from_config(outbox)
    now = time.time()
    spawn = multiprocessing.get_context("spawn")
    ready, go, stop = spawn.Event(), spawn.Event(), spawn.Event()
    receive, send = spawn.Pipe(duplex=False)
    relay = spawn.Process(target=_drain, args=(config, ready, go, stop, send, profile))
    try:
        warm = NewRow(
            partition_of("bench-warm", store.partitions),
            now,
            now,
            "pusher",
            "tick",
            ("bench-warm",),
            json.dumps({"seq": -1}),
            "json",
            None,
            f"bench-warm-{uuid.uuid4().hex[:8]}",
        )
        store.insert([warm])
        relay.start()
        if not await asyncio.to_thread(ready.wait, 60):
            raise RuntimeError("the relay process did not start")
        new = [
            NewRow(
                partition_of(names[seq % channels], store.partitions),
                now,
                now,
                "pusher",
                "tick",
                (names[seq % channels],),
                json.dumps({"seq": seq}),
                "json",
                None,
                f"bench-{seq}",
            )
            for seq in range(rows)
        ]
        for start in range(0, rows, 1000):
            store.insert(new[start : start + 1000])
    finally:
        store.close()
    tally = Counting()
    sub = await subscribed(soketi, names, tally)
    started = time.perf_counter()
    others = _cpu_seconds(), _process_cpu(soketi.process.pid if soketi.process else None)
    go.set()
    for _ in range(12_000):  # up to 120 s
        if len(tally.arrived) >= rows:
            break
        await asyncio.sleep(0.01)
    seconds = time.perf_counter() - started
    (user0, system0), soketi0 = others
    user1, system1 = _cpu_seconds()
    soketi1 = _process_cpu(soketi.process.pid if soketi.process else None)
    stop.set()
    user, system, delivered = await asyncio.to_thread(receive.recv)
    await asyncio.to_thread(relay.join, 30)
    await sub.flush()
    await sub.close()
    done = Throughput(rows, seconds, delivered, len(tally.arrived), tally.repeats, user, system)
    done.subscriber = user1 - user0 + system1 - system0
    done.soketi = soketi1 - soketi0
    return done


def _process_cpu(pid: int | None) -> float:
    """Another process's CPU seconds so far (Linux /proc; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _writer(
    config: dict[str, Any], channels: list[str], rate: float, seconds: float, out: Any
) -> None:
    """A writer process: ``rate`` publishes a second, each committed on its own; sends back
    each one's commit time."""
    committed: dict[int, float] = {}
    with Broadcast(config) as broadcast:
        broadcast.channel(channels[0], {"seq": -1}, "warm", send="outbox")  # connects
        time.sleep(1.0)  # the relay has delivered it: its connections are open
        start = time.perf_counter()
        total = int(rate * seconds)
        for seq in range(total):
            due = start + seq / rate
            pause = due - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            broadcast.channel(channels[seq % len(channels)], {"seq": seq}, "tick", send="outbox")
            committed[seq] = time.time()
    out.send(committed)
    out.close()


def _relay(config: dict[str, Any], stop: Any) -> None:
    with Broadcast(config) as broadcast:
        relay = Relay(broadcast, owner="bench-latency")

        async def main() -> None:
            task = asyncio.create_task(relay.arun())
            await asyncio.to_thread(stop.wait)
            relay.stop()
            await task

        asyncio.run(main())


@dataclass
class Latency:
    sent: int
    heard: int
    repeats: int
    p50_ms: float
    p99_ms: float
    max_ms: float


async def latency(
    soketi: SoketiServer, outbox: dict[str, Any], rate: float, seconds: float, channels: int
) -> Latency:
    """Commit-to-arrival times at a steady ``rate``, with a relay process delivering."""
    names = [f"lat-{i}" for i in range(channels)]
    config = settings(soketi, outbox)
    tally = Counting()
    sub = await subscribed(soketi, names, tally)
    spawn = multiprocessing.get_context("spawn")
    stop = spawn.Event()
    relay = spawn.Process(target=_relay, args=(config, stop))
    relay.start()
    receive, send = spawn.Pipe(duplex=False)
    writer = spawn.Process(target=_writer, args=(config, names, rate, seconds, send))
    await asyncio.sleep(1.0)  # the relay has started and listens
    writer.start()
    committed: dict[int, float] = await asyncio.to_thread(receive.recv)
    await asyncio.to_thread(writer.join, 30)
    for _ in range(600):  # up to 30 s: everything (and the warm-up) arrived
        if len(tally.arrived) >= len(committed) + 1:
            break
        await asyncio.sleep(0.05)
    stop.set()
    await asyncio.to_thread(relay.join, 30)
    await sub.close()
    timeline = [
        (at, (tally.arrived[seq] - at) * 1000)
        for seq, at in committed.items()
        if seq in tally.arrived
    ]
    if SHOW_SLOW:
        first = min(at for at, _ in timeline)
        for at, ms in sorted(timeline, key=lambda x: -x[1])[:20]:
            print(f"  slow: committed at +{at - first:.3f} s, {ms:.1f} ms")
    waits = sorted(ms for _, ms in timeline)
    if not waits:
        raise RuntimeError("nothing arrived")
    return Latency(
        len(committed),
        len([s for s in committed if s in tally.arrived]),
        tally.repeats,
        statistics.median(waits),
        waits[min(len(waits) - 1, int(len(waits) * 0.99))],
        waits[-1],
    )


def cpu_while_waiting(
    soketi: SoketiServer, outbox: dict[str, Any], seconds: float, rate: float = 200.0
) -> dict[str, float]:
    """The relay's CPU seconds per wall second over ``seconds``: with an empty outbox; then
    with soketi stopped, rows backing off, and a writer process committing ``rate`` more a
    second (each commit a NOTIFY that wakes the relay)."""
    result: dict[str, float] = {}
    config = settings(soketi, outbox)
    with Broadcast(config) as broadcast:
        relay = Relay(broadcast, owner="bench-idle")

        async def measure(writing: bool) -> float:
            task = asyncio.create_task(relay.arun())
            spawn = multiprocessing.get_context("spawn")
            receive, send = spawn.Pipe(duplex=False)
            names = [f"down-{i}" for i in range(20)]
            writer = spawn.Process(target=_writer, args=(config, names, rate, seconds + 3, send))
            if writing:
                writer.start()
                await asyncio.sleep(2.5)  # it started, and writes
            else:
                await asyncio.sleep(0.5)
            cpu = time.process_time()
            await asyncio.sleep(seconds)
            used = time.process_time() - cpu
            if writing:
                await asyncio.to_thread(receive.recv)
                await asyncio.to_thread(writer.join, 30)
            relay.stop()
            await task
            return used / seconds

        result["empty"] = asyncio.run(measure(False))
        soketi.stop()
        try:
            for n in range(200):
                broadcast.channel(f"down-{n % 20}", {"seq": n}, "tick", send="outbox")
            result["service down"] = asyncio.run(measure(True))
        finally:
            soketi.start()
        backlog = relay.store.stats(time.time()).backlog
        result["dead rows"] = float(backlog["dead"])
        result["pending rows"] = float(backlog["pending"])
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pg", default=PG_URL, help="a PostgreSQL URL (a schema is made)")
    parser.add_argument("--rows", type=int, default=30_000, help="rows drained for throughput")
    parser.add_argument("--channels", type=int, default=200)
    parser.add_argument("--batch", type=int, default=2000, help="OUTBOX batch (throughput)")
    parser.add_argument("--rate", type=float, default=500.0, help="publishes/s for latency")
    parser.add_argument("--seconds", type=float, default=10.0, help="latency run length")
    parser.add_argument("--idle", type=float, default=3.0, help="seconds of each idle wait")
    parser.add_argument("--no-targets", action="store_true", help="exit 0 whatever the figures")
    parser.add_argument(
        "--profile", metavar="FILE", help="write the throughput relay's cProfile stats to FILE"
    )
    parser.add_argument(
        "--only-throughput", action="store_true", help="skip the latency and idle figures"
    )
    args = parser.parse_args(argv)
    missed = []
    with SoketiServer() as soketi:
        with pg_outbox(args.pg, batch=args.batch) as outbox:
            done = asyncio.run(
                throughput(soketi, outbox, args.rows, args.channels, profile=args.profile)
            )
        print(
            f"throughput: {done.per_second:,.0f} publishes/s ({done.rows:,} rows in "
            f"{done.seconds:.2f} s, batch {args.batch}; relay delivered {done.delivered:,}, "
            f"subscriber heard {done.heard:,}, repeats {done.repeats}) "
            f"target >= {THROUGHPUT_TARGET:,.0f}/s: {done.per_second / THROUGHPUT_TARGET:.2f}x"
        )
        print(
            f"relay CPU: {done.cpu_us_per_row:.0f} µs per row ({done.user:.2f} s user + "
            f"{done.system:.2f} s system for {done.rows:,} rows; getrusage of the relay "
            "process, all threads) "
            f"target <= {CPU_TARGET_US:.0f} µs: {CPU_TARGET_US / done.cpu_us_per_row:.2f}x"
        )
        print(
            f"the other CPU per row over the drain: soketi {done.soketi / done.rows * 1e6:.0f} µs, "
            f"the WebSocket subscriber {done.subscriber / done.rows * 1e6:.0f} µs (PostgreSQL: "
            "not counted); 2 cores shared with other work"
        )
        if done.per_second < THROUGHPUT_TARGET:
            missed.append("throughput")
        if done.cpu_us_per_row > CPU_TARGET_US:
            missed.append("relay CPU per row")
        if args.profile:
            import pstats

            pstats.Stats(args.profile).sort_stats("tottime").print_stats(25)
        if not args.only_throughput:
            missed += latency_and_idle(soketi, args)
    if missed and not args.no_targets:
        print(f"missed: {', '.join(missed)}")
        return 1
    return 0


def latency_and_idle(soketi: SoketiServer, args: argparse.Namespace) -> list[str]:
    """Print the latency and idle-CPU figures; the targets missed."""
    missed = []
    with pg_outbox(args.pg) as outbox:
        lat = asyncio.run(latency(soketi, outbox, args.rate, args.seconds, 20))
    print(
        f"latency at {args.rate:.0f}/s for {args.seconds:.0f} s: p50 {lat.p50_ms:.1f} ms, "
        f"p99 {lat.p99_ms:.1f} ms, max {lat.max_ms:.1f} ms ({lat.heard:,} of {lat.sent:,} "
        f"heard, repeats {lat.repeats}) target p99 <= {P99_TARGET_MS:.0f} ms"
    )
    if lat.p99_ms > P99_TARGET_MS:
        missed.append("latency")
    with pg_outbox(args.pg) as outbox:
        idle = cpu_while_waiting(soketi, outbox, args.idle)
    print(
        f"relay CPU while waiting ({args.idle:.0f} s each): empty outbox "
        f"{idle['empty'] * 100:.1f}% of a core; soketi down, rows backing off and a writer "
        f"adding 200/s: {idle['service down'] * 100:.1f}% (backlog "
        f"{idle['pending rows']:.0f} pending, {idle['dead rows']:.0f} dead)"
    )
    return missed


if __name__ == "__main__":
    sys.exit(main())
