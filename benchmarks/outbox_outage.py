"""Outage proof of the outbox: soketi is stopped for 30 seconds under a steady load.

Usage::

    python benchmarks/outbox_outage.py                   # 200 publishes/s, a 30 s outage
    python benchmarks/outbox_outage.py --outage 10 --rate 500 --backoff-cap 5

A writer process commits ``rate`` publishes a second into a PostgreSQL outbox (each in a
transaction of its own, ``send="outbox"``; the crash soak's writer, benchmarks/
outbox_soak.py) for ``before + outage + after`` seconds, while one relay process delivers
them to soketi. ``before`` seconds after the writer's first commit soketi is killed
(SIGKILL: a graceful stop drops its WebSocket connections first and may still acknowledge
publishes, which then reach no subscriber); ``outage`` seconds later it is started again on
the same port. Meanwhile the backlog grows and the relay waits: its rows back off
(``--backoff-cap``: the relay's ``Backoff.cap``, default the library's), so it must not spin.
Measured:

- the backlog's peak (pending rows), polled every 0.2 s;
- the relay's CPU during the outage: its process's user + system time (``/proc/<pid>/stat``)
  over the outage's wall time, in %, next to the same figure under the load before it;
- the drain time: from soketi being back until no row committed before then is pending.

A WebSocket subscriber counts what soketi delivered; it loses its connection when soketi
stops and connects again once soketi is back. The relay is paused (SIGSTOP) for the moment
soketi takes to start and the subscriber to subscribe again, then resumed (SIGCONT):
soketi keeps nothing for a channel nobody subscribes to, so an event sent in that gap would
reach no one and the count could not tell it from a lost one. The pause is not in the
CPU figure (it is read before), and the outbox keeps its default lease (30 s), which the
pause does not lapse (a lapsed lease would turn the rows the paused relay had marked
``sending`` into ``unknown`` ones, as it should, but that is the crash soak's business).

Checks: every committed publish arrived once, in each channel's commit order (rows the relay
reported ``unknown``, maybe delivered by a request cut off when soketi stopped, are
listed, as in the crash soak), nothing else arrived, no row is left pending, sending or
dead, and the relay exits 0 on SIGTERM. Prints a summary; exits 1 if a promise broke.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SERVERS = ROOT / "tests" / "servers"
for _path in (SERVERS, HERE):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

import outbox_soak  # noqa: E402

PG_URL = outbox_soak.PG_URL


@dataclass(frozen=True)
class Settings:
    """The outage's length and the load around it."""

    rate: float = 200.0  #: publishes per second
    before: float = 3.0  #: seconds of load before soketi stops
    outage: float = 30.0  #: seconds soketi is down
    after: float = 5.0  #: seconds of load after soketi is back
    channels: int = 16
    batch: int = 200
    backoff_cap: float | None = None  #: the relay's Backoff.cap (None: the library's)
    seed: int = 1
    pg: str = PG_URL
    log: str | None = None  #: a file the relay's stderr (its warnings) is appended to

    @property
    def publishes(self) -> int:
        return round(self.rate * (self.before + self.outage + self.after))


@dataclass
class Result:
    settings: Settings
    committed: int = 0
    arrived: int = 0
    unknown_rows: int = 0
    unknown_missing: int = 0
    backlog_peak: int = 0
    drain_seconds: float = 0.0
    cpu_outage_percent: float = 0.0
    cpu_load_percent: float = 0.0
    seconds: float = 0.0
    backlog: dict[str, int] = field(default_factory=dict)
    broken: list[str] = field(default_factory=list)

    def summary(self) -> str:
        s = self.settings
        cap = "default" if s.backoff_cap is None else f"{s.backoff_cap:g} s"
        return (
            f"outbox outage: soketi down {s.outage:g} s under {s.rate:g} publishes/s "
            f"({s.publishes:,} publishes, backoff cap {cap}), in {self.seconds:.1f} s\n"
            f"  backlog peak {self.backlog_peak:,} rows; drained {self.drain_seconds:.1f} s "
            f"after soketi was back\n"
            f"  relay CPU: {self.cpu_outage_percent:.1f} % during the outage, "
            f"{self.cpu_load_percent:.1f} % under the load before it\n"
            f"  committed {self.committed:,}; events arrived {self.arrived:,}; unknown rows "
            f"{self.unknown_rows} (events never arrived: {self.unknown_missing})\n"
            f"  outbox at the end: {self.backlog}\n"
            f"  {'OK: every promise kept' if not self.broken else 'BROKEN:'}"
            + "".join(f"\n    {line}" for line in self.broken[:50])
        )


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (Linux ``/proc``)."""
    stat = Path(f"/proc/{pid}/stat").read_text("ascii")
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def relay_main(config_path: str, owner: str, cap: str) -> None:
    """A relay until SIGTERM, its rows backing off at most ``cap`` seconds (``""``: default)."""
    from broadcasting import Broadcast
    from broadcasting.outbox._policy import Backoff
    from broadcasting.outbox._relay import Relay

    backoff = Backoff(cap=float(cap)) if cap else None
    with Broadcast(config_path) as broadcast:
        Relay(broadcast, owner=owner, backoff=backoff).run()


def _spawn(script: Path, *args: str, log: str | None = None) -> Any:
    import subprocess

    with open(log or os.devnull, "ab") as stderr:
        return subprocess.Popen(
            [sys.executable, str(script), *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            cwd=ROOT,
        )


async def _subscribe(soketi: Any, channels: list[str], heard: Any) -> Any:
    """A subscriber of ``channels``, trying again until soketi answers (10 s at most)."""
    from pusher_ws import PusherSubscriber

    deadline = time.monotonic() + 10
    while True:
        try:
            sub = await PusherSubscriber(soketi.ws_url(), on_event=heard).connect()
            await sub.subscribe(*channels)
            return sub
        except Exception:  # refused, or soketi not ready yet: try again
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)


async def outage(soketi: Any, settings: Settings) -> Result:
    """Run the outage against ``soketi`` (a started ``SoketiServer``; left running)."""
    from pusher_ws import Event

    from broadcasting.outbox._row import PENDING, UNKNOWN
    from broadcasting.outbox._store import Store

    result = Result(settings)
    arrivals: list[tuple[str, int, int]] = []

    def heard(event: Event) -> None:
        data = json.loads(event.data)
        arrivals.append((event.channel, data["w"], data["s"]))

    channels = [f"soak-{i}" for i in range(settings.channels)]
    shape = outbox_soak.Settings(
        publishes=settings.publishes,
        writers=1,
        relays=1,
        kills=0,
        channels=settings.channels,
        rate=settings.rate,
        rollback=0.0,
        batch=settings.batch,
        seed=settings.seed,
        pg=settings.pg,
    )
    sub = await _subscribe(soketi, channels, heard)
    started = time.monotonic()
    with outbox_soak._schema(shape) as schema, tempfile.TemporaryDirectory() as tmp:
        outbox = {
            "url": settings.pg,
            "table": f"{schema}.broadcasting_outbox",
            "partitions": 16,  # the default lease (30 s): the pause below must not lapse it
            "batch": settings.batch,
        }
        config = {"DRIVER": "pusher", "DRIVERS": {"pusher": soketi.driver_options()}}
        config_path = outbox_soak._write(
            Path(tmp) / "broadcasting.json", {**config, "OUTBOX": outbox}
        )
        store = Store.from_config(outbox)
        store.create_tables()
        cap = "" if settings.backoff_cap is None else str(settings.backoff_cap)
        relay = _spawn(
            HERE / "outbox_outage.py",
            "--role",
            "relay",
            config_path,
            "relay-0",
            cap,
            log=settings.log,
        )
        out = str(Path(tmp) / "writer-0.json")
        writer = _spawn(
            HERE / "outbox_soak.py",
            "--role",
            "writer",
            config_path,
            "0",
            json.dumps(shape.__dict__),
            out,
        )

        def pending() -> int:
            return store.stats(time.time()).backlog["pending"]

        def written() -> int:
            return sum(store.stats(time.time()).backlog.values())

        try:
            # the load starts with the writer's first commit, not with its spawn (a process
            # that starts slowly on a busy machine would otherwise write nothing before, or
            # during, the outage)
            waited = time.monotonic()
            while not written():
                if time.monotonic() > waited + 120:
                    result.broken.append("the writer committed nothing within 120 s")
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(settings.before)
            cpu_load = cpu_seconds(relay.pid) / (time.monotonic() - started)
            # a crash (SIGKILL): a graceful stop first drops the WebSocket connections and
            # may still acknowledge publishes for a while, which then reach no one
            os.killpg(soketi.process.pid, signal.SIGKILL)
            await asyncio.to_thread(soketi.stop)
            cpu0, t0 = cpu_seconds(relay.pid), time.monotonic()
            with contextlib.suppress(Exception):
                await sub.close()
            while time.monotonic() < t0 + settings.outage:
                result.backlog_peak = max(result.backlog_peak, pending())
                await asyncio.sleep(min(0.2, max(0.0, t0 + settings.outage - time.monotonic())))
            cpu1, t1 = cpu_seconds(relay.pid), time.monotonic()
            result.backlog_peak = max(result.backlog_peak, pending())
            relay.send_signal(signal.SIGSTOP)
            try:
                await asyncio.to_thread(soketi.start)
                sub = await _subscribe(soketi, channels, heard)
                last = max((row.id for row in store.rows(PENDING, 1_000_000)), default=0)
            finally:
                relay.send_signal(signal.SIGCONT)
            back = time.monotonic()
            while True:  # until no row committed before soketi was back is pending
                head = store.rows(PENDING, 1)
                if not head or head[0].id > last:
                    break
                if time.monotonic() > back + 300:
                    result.broken.append(f"not drained 300 s after soketi was back: {head}")
                    break
                await asyncio.sleep(0.05)
            result.drain_seconds = time.monotonic() - back
            result.cpu_outage_percent = 100 * (cpu1 - cpu0) / (t1 - t0)
            result.cpu_load_percent = 100 * cpu_load
            code = await asyncio.to_thread(writer.wait, 300)
            if code != 0:
                result.broken.append(f"the writer exited with {code}")
            deadline = time.monotonic() + 120
            while True:
                backlog = dict(store.stats(time.time()).backlog)
                if backlog["pending"] + backlog["sending"] == 0 or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.1)
            relay.send_signal(signal.SIGTERM)
            code = await asyncio.to_thread(relay.wait, 30)
            if code != 0:
                result.broken.append(f"the relay exited with {code} after SIGTERM, not 0")
        finally:
            for process in (relay, writer):
                if process.poll() is None:
                    process.kill()
                    process.wait()
        await asyncio.sleep(0.2)
        await sub.flush()
        await sub.close()
        result.seconds = time.monotonic() - started
        result.backlog = dict(store.stats(time.time()).backlog)
        unknown = store.rows(UNKNOWN, 1_000_000)
        store.close()
        written = outbox_soak._read([out])
    soaked = outbox_soak.Result(shape, backlog=result.backlog)
    outbox_soak.check(shape, soaked, written, arrivals, unknown)
    result.committed, result.arrived = soaked.committed, soaked.arrived
    result.unknown_rows, result.unknown_missing = soaked.unknown_rows, soaked.unknown_missing
    result.broken.extend(soaked.broken)
    return result


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:2] == ["--role", "relay"]:
        relay_main(argv[2], argv[3], argv[4])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    defaults = Settings()
    parser.add_argument("--rate", type=float, default=defaults.rate, help="publishes/s")
    parser.add_argument("--before", type=float, default=defaults.before, help="seconds")
    parser.add_argument("--outage", type=float, default=defaults.outage, help="seconds")
    parser.add_argument("--after", type=float, default=defaults.after, help="seconds")
    parser.add_argument("--channels", type=int, default=defaults.channels)
    parser.add_argument("--batch", type=int, default=defaults.batch, help="OUTBOX batch")
    parser.add_argument("--backoff-cap", type=float, default=None, help="seconds")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--pg", default=PG_URL)
    parser.add_argument("--log", default=None, help="append the relay's stderr to this file")
    args = parser.parse_args(argv)
    settings = Settings(
        args.rate,
        args.before,
        args.outage,
        args.after,
        args.channels,
        args.batch,
        args.backoff_cap,
        args.seed,
        args.pg,
        args.log,
    )
    from soketi_server import SoketiServer

    with SoketiServer() as soketi:
        result = asyncio.run(outage(soketi, settings))
    print(result.summary())
    return 1 if result.broken else 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
