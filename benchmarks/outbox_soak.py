"""Crash soak of the outbox: writers commit (and roll back) publishes into PostgreSQL (or
MariaDB, or a SQLite file) while relays deliver them to soketi (or to the Ably emulator), and
relays are killed with SIGKILL at random moments.

Usage::

    python benchmarks/outbox_soak.py                     # 10,000 publishes, 4 writers,
                                                         # 3 relays, 20 kills
    python benchmarks/outbox_soak.py --publishes 2000 --kills 5 --rate 500 --seed 7
    python benchmarks/outbox_soak.py --at-least-once     # rows out are sent again
    python benchmarks/outbox_soak.py --driver ably       # to the Ably emulator
    python benchmarks/outbox_soak.py --store mysql       # the outbox in MariaDB (--mysql URL)

Each writer is a process with its own SQLAlchemy connection: each publish is
``channel(..., send="outbox", transaction=conn)`` in a transaction of its own, which it
commits, or (``--rollback``, a share of them) rolls back. Every tenth publish goes to two
channels (rows in two partitions, one message id). The relays are processes running
``Relay(...).run()``; the killer sends one of them SIGKILL at random moments (``--kills``
times, spread over the writing) and starts a new one in its place. At the end the relays
get SIGTERM (each must exit 0). A WebSocket subscriber counts what soketi delivered.

With ``--driver ably`` the relays publish over HTTPS to the test suite's Ably emulator
(tests/servers/ably_emulator.py, run in this process; it checks the wire format and, like
Ably, stores a message id once per channel and acknowledges it again without storing it).
The Ably driver de-duplicates, so a relay sends again the rows it finds in ``sending``
from a killed relay instead of marking them ``unknown``: no row may end ``unknown``, and
what the emulator stored (each channel's messages, in order) must hold every committed
publish exactly once. The resends the emulator absorbed are counted (``absorbed``).

Checks (the promises of docs/background.md):

- every committed publish arrived, except rows the relays reported ``unknown`` (a killed
  relay may or may not have sent them; without ``--at-least-once`` they are not sent
  again), each of which is listed;
- nothing arrived twice (with ``--at-least-once``, a row a killed relay had sent is
  sent again by the next: repeats are counted, not errors);
- nothing from a rolled-back transaction arrived, and nothing nobody published;
- each channel's events from one writer first arrived in that writer's commit order;
- no row is left pending or sending, and none is dead.

Prints a summary; exits 1 if a promise broke, listing what broke.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SERVERS = ROOT / "tests" / "servers"
if str(SERVERS) not in sys.path:
    sys.path.insert(0, str(SERVERS))

PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
MYSQL_URL = "mysql+pymysql://root@127.0.0.1:3306/test"


@dataclass(frozen=True)
class Settings:
    """The soak's size and pace."""

    publishes: int = 10_000
    writers: int = 4
    relays: int = 3
    kills: int = 20
    channels: int = 16
    rate: float = 1_000.0  #: publishes per second, all writers together
    rollback: float = 0.1  #: share of transactions rolled back
    at_least_once: bool = False
    batch: int = 200
    seed: int = 1
    pg: str = PG_URL
    #: where the outbox lives: ``"postgresql"`` (a schema of ``pg``), ``"mysql"`` (a
    #: database of ``mysql``'s server, the run's own), or ``"sqlite"`` (a file; the writers'
    #: transactions are ``sqlite3`` connections')
    store: str = "postgresql"
    #: where the relays deliver: ``"pusher"`` (soketi) or ``"ably"`` (the Ably emulator)
    driver: str = "pusher"
    mysql: str = MYSQL_URL


@dataclass
class Result:
    settings: Settings
    committed: int = 0
    rolled_back: int = 0
    arrived: int = 0  #: events (one per channel of a publish)
    unknown_rows: int = 0
    unknown_missing: int = 0  #: events of unknown rows that never arrived
    repeats: int = 0
    absorbed: int = 0  #: resends the Ably emulator acknowledged without storing (ably)
    kills: int = 0
    seconds: float = 0.0
    backlog: dict[str, int] = field(default_factory=dict)
    broken: list[str] = field(default_factory=list)

    def summary(self) -> str:
        s = self.settings
        return (
            f"outbox soak ({s.store}, {s.driver}): {s.publishes:,} publishes by "
            f"{s.writers} writers, {s.relays} relays, "
            f"{self.kills} SIGKILLs, at_least_once={s.at_least_once}, in {self.seconds:.1f} s\n"
            f"  committed {self.committed:,}, rolled back {self.rolled_back:,}; events "
            f"arrived {self.arrived:,}; unknown rows {self.unknown_rows} (events never "
            f"arrived: {self.unknown_missing}); repeats {self.repeats}"
            + (f"; resends absorbed by the emulator {self.absorbed}" if s.driver == "ably" else "")
            + "\n"
            f"  outbox at the end: {self.backlog}\n"
            f"  {'OK: every promise kept' if not self.broken else 'BROKEN:'}"
            + "".join(f"\n    {line}" for line in self.broken[:50])
        )


def channels_of(settings: Settings, writer: int, seq: int) -> list[str]:
    """The channels of a writer's publish (every tenth goes to two)."""
    rng = random.Random(f"{settings.seed}-{writer}-{seq}")
    first = rng.randrange(settings.channels)
    if seq % 10 == 9:
        return [
            f"soak-{first}",
            f"soak-{(first + 1 + rng.randrange(settings.channels - 1)) % settings.channels}",
        ]
    return [f"soak-{first}"]


# -- the processes ---------------------------------------------------------------------


def writer_main(config_path: str, writer: int, settings: Settings, out: str) -> None:
    """Commit or roll back ``publishes / writers`` publishes, paced; write what committed."""
    from broadcasting import Broadcast

    count = settings.publishes // settings.writers + (
        writer < settings.publishes % settings.writers
    )
    pace = settings.rate / settings.writers
    rng = random.Random(f"{settings.seed}-w{writer}")
    committed: list[int] = []
    rolled: list[int] = []
    with Broadcast(config_path) as broadcast, _transactions(broadcast, settings) as begin:
        start = time.perf_counter()
        for seq in range(count):
            pause = start + seq / pace - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            data = {"w": writer, "s": seq}
            with begin() as (conn, finish):
                channels = channels_of(settings, writer, seq)
                broadcast.channel(channels, data, "tick", send="outbox", transaction=conn)
                keep = rng.random() >= settings.rollback
                finish(keep)
                (committed if keep else rolled).append(seq)
    Path(out).write_text(json.dumps({"committed": committed, "rolled": rolled}), "utf-8")


@contextlib.contextmanager
def _transactions(broadcast: Any, settings: Settings) -> Any:
    """``begin()``: a context giving a transaction to pass as ``transaction=`` and
    ``finish(commit: bool)``; SQLAlchemy on PostgreSQL and MariaDB, ``sqlite3`` on the SQLite
    file."""
    if settings.store == "sqlite":
        import sqlite3

        path = broadcast.config.outbox["url"].reveal().removeprefix("sqlite:///")
        conn = sqlite3.connect(path, timeout=60, isolation_level=None)

        @contextlib.contextmanager
        def begin_sqlite() -> Any:
            conn.execute("BEGIN IMMEDIATE")  # one writer at a time: ids in commit order
            yield conn, lambda keep: conn.execute("COMMIT" if keep else "ROLLBACK")

        try:
            yield begin_sqlite
        finally:
            conn.close()
        return
    import sqlalchemy

    url = broadcast.config.outbox["url"].reveal()
    engine = sqlalchemy.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))

    @contextlib.contextmanager
    def begin_pg() -> Any:
        with engine.connect() as conn:
            transaction = conn.begin()
            yield conn, lambda keep: transaction.commit() if keep else transaction.rollback()

    try:
        yield begin_pg
    finally:
        engine.dispose()


def relay_main(config_path: str, owner: str) -> None:
    """A relay until SIGTERM."""
    from broadcasting import Broadcast
    from broadcasting.outbox._relay import Relay

    with Broadcast(config_path) as broadcast:
        Relay(broadcast, owner=owner).run()


def _spawn(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=ROOT,
        env=None if env is None else {**os.environ, **env},
    )


def counting_emulator() -> Any:
    """An Ably emulator (not started) that also counts the messages it was sent again and
    acknowledged without storing (``absorbed``): a relay's resends of maybe-sent rows."""
    from ably_emulator import AblyEmulator

    class CountingEmulator(AblyEmulator):
        absorbed = 0

        def _store(self, channel: str, message: dict[str, Any], request: Any) -> str:
            msg_id = message.get("id")
            with self._lock:
                again = isinstance(msg_id, str) and (channel, msg_id) in self._serials
            if again:
                self.absorbed += 1
            serial: str = super()._store(channel, message, request)
            return serial

    return CountingEmulator()


def ably_arrivals(emulator: Any, channels: list[str]) -> list[tuple[str, int, int]]:
    """What the emulator stored, channel by channel in its order, as (channel, w, s)."""
    arrivals: list[tuple[str, int, int]] = []
    for channel in channels:
        for message in emulator.messages(channel):
            data = json.loads(message.data) if isinstance(message.data, str) else message.data
            arrivals.append((channel, data["w"], data["s"]))
    return arrivals


# -- the run ---------------------------------------------------------------------------


def _write(path: Path, config: dict[str, Any]) -> str:
    path.write_text(json.dumps(config), "utf-8")
    return str(path)


def _read(outs: list[str]) -> list[dict[str, list[int]]]:
    """What each writer committed and rolled back (a writer that failed wrote nothing)."""
    return [json.loads(Path(out).read_text("utf-8")) for out in outs if Path(out).exists()]


@contextlib.contextmanager
def _schema(settings: Settings) -> Any:
    """A PostgreSQL schema or a MariaDB database of the run's own (``None`` for a SQLite
    outbox)."""
    if settings.store == "sqlite":
        yield None
        return
    if settings.store == "mysql":
        import sqlalchemy

        name = f"soak_{uuid.uuid4().hex[:12]}"
        server = sqlalchemy.create_engine(settings.mysql, isolation_level="AUTOCOMMIT")
        try:
            with server.connect() as conn:
                conn.exec_driver_sql(f"CREATE DATABASE `{name}`")
            try:
                yield name
            finally:
                with server.connect() as conn:
                    conn.exec_driver_sql(f"DROP DATABASE `{name}`")
        finally:
            server.dispose()
        return
    import psycopg

    url = settings.pg
    name = f"soak_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {name}")
    try:
        yield name
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {name} CASCADE")


async def soak(server: Any, settings: Settings) -> Result:
    """Run the soak against ``server``: a started ``SoketiServer``, or with
    ``settings.driver == "ably"`` a started :func:`counting_emulator`."""
    from pusher_ws import Event, PusherSubscriber

    from broadcasting.outbox._row import UNKNOWN
    from broadcasting.outbox._store import Store

    result = Result(settings)
    rng = random.Random(settings.seed)
    arrivals: list[tuple[str, int, int]] = []

    def heard(event: Event) -> None:
        data = json.loads(event.data)
        arrivals.append((event.channel, data["w"], data["s"]))

    channels = [f"soak-{i}" for i in range(settings.channels)]
    ably = settings.driver == "ably"
    sub = None
    env: dict[str, str] | None = None
    if ably:
        env = {"SSL_CERT_FILE": server.ca_path}  # the relays trust the emulator's CA
        options = server.options(
            at_least_once=settings.at_least_once, retry_backoff=0.05, retry_max_backoff=0.5
        )
    else:
        sub = await PusherSubscriber(server.ws_url(), on_event=heard).connect()
        await sub.subscribe(*channels)
        options = server.driver_options(at_least_once=settings.at_least_once)
    started = time.monotonic()
    with _schema(settings) as schema, tempfile.TemporaryDirectory() as tmp:
        where: dict[str, Any] = {"url": f"sqlite:///{Path(tmp) / 'outbox.sqlite3'}"}
        if settings.store == "mysql":
            url = settings.mysql.rsplit("/", 1)[0] + f"/{schema}"
            where = {"url": url, "table": "broadcasting_outbox"}
        elif schema is not None:
            where = {"url": settings.pg, "table": f"{schema}.broadcasting_outbox"}
        outbox = {**where, "partitions": 16, "lease": 1.0, "batch": settings.batch}
        config = {
            "DRIVER": settings.driver,
            "DRIVERS": {settings.driver: options},
            "OUTBOX": outbox,
        }
        config_path = _write(Path(tmp) / "broadcasting.json", config)
        store = Store.from_config(outbox)
        store.create_tables()
        shape = json.dumps(settings.__dict__)
        relays = {
            f"relay-{i}": _spawn("--role", "relay", config_path, f"relay-{i}", env=env)
            for i in range(settings.relays)
        }
        outs = [str(Path(tmp) / f"writer-{w}.json") for w in range(settings.writers)]
        writers = [
            _spawn("--role", "writer", config_path, str(w), shape, outs[w])
            for w in range(settings.writers)
        ]
        writing = settings.publishes / settings.rate
        moments = sorted(rng.uniform(0.3, max(0.6, writing)) for _ in range(settings.kills))
        born = settings.relays
        killed: list[subprocess.Popen[bytes]] = []  # reaped at the end, not left as zombies
        try:
            for moment in moments:
                await asyncio.sleep(max(0.0, started + moment - time.monotonic()))
                victim = rng.choice(sorted(relays))
                killed.append(relays.pop(victim))
                killed[-1].send_signal(signal.SIGKILL)
                result.kills += 1
                relays[f"relay-{born}"] = _spawn(
                    "--role", "relay", config_path, f"relay-{born}", env=env
                )
                born += 1
            for writer in writers:
                code = await asyncio.to_thread(writer.wait, 300)
                if code != 0:
                    result.broken.append(f"a writer exited with {code}")
            deadline = time.monotonic() + 120
            while True:  # until nothing is left to send
                backlog = dict(store.stats(time.time()).backlog)
                if backlog["pending"] + backlog["sending"] == 0 or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.1)
            for relay in relays.values():
                relay.send_signal(signal.SIGTERM)
            for name, relay in relays.items():
                code = await asyncio.to_thread(relay.wait, 30)
                if code != 0:
                    result.broken.append(f"{name} exited with {code} after SIGTERM, not 0")
        finally:
            for process in (*relays.values(), *writers, *killed):
                if process.poll() is None:
                    process.kill()
                    process.wait()
        await asyncio.sleep(0.2)
        if sub is not None:
            await sub.flush()
            await sub.close()
        else:
            arrivals = ably_arrivals(server, channels)
            result.absorbed = server.absorbed
            if server.violations:
                result.broken.extend(f"emulator: {v}" for v in server.violations[:20])
        result.seconds = time.monotonic() - started
        result.backlog = dict(store.stats(time.time()).backlog)
        unknown = store.rows(UNKNOWN, 1_000_000)
        store.close()
        done = _read(outs)
    check(settings, result, done, arrivals, unknown)
    if ably and unknown:
        result.broken.append(f"{len(unknown)} rows unknown: the Ably driver de-duplicates")
    return result


def check(
    settings: Settings,
    result: Result,
    written: list[dict[str, list[int]]],
    arrivals: list[tuple[str, int, int]],
    unknown: list[Any],
) -> None:
    """Compare what committed with what arrived (see the module docstring)."""
    broken = result.broken
    expected: dict[tuple[str, int, int], int] = {}
    rolled: set[tuple[int, int]] = set()
    for writer, done in enumerate(written):
        for seq in done["committed"]:
            for channel in channels_of(settings, writer, seq):
                expected[(channel, writer, seq)] = 0
        rolled.update((writer, seq) for seq in done["rolled"])
    result.committed = sum(len(done["committed"]) for done in written)
    result.rolled_back = len(rolled)
    if len(written) != settings.writers:
        broken.append(f"only {len(written)} of {settings.writers} writers reported")
    maybe: set[tuple[str, int, int]] = set()
    for row in unknown:
        data = json.loads(row.body)
        maybe.update((channel, data["w"], data["s"]) for channel in row.channels)
    result.unknown_rows = len(unknown)
    counts = Counter(arrivals)
    result.arrived = len(arrivals)
    for key, count in counts.items():
        if (key[1], key[2]) in rolled:
            broken.append(f"{key}: rolled back, arrived {count} time(s)")
        elif key not in expected:
            broken.append(f"{key}: nobody committed it, arrived {count} time(s)")
        elif count > 1:
            result.repeats += count - 1
            if not settings.at_least_once:
                broken.append(f"{key}: arrived {count} times")
    for key in expected:
        if key not in counts:
            if key in maybe:
                result.unknown_missing += 1
            else:
                broken.append(f"{key}: committed, never arrived, not reported unknown")
    last: dict[tuple[str, int], int] = defaultdict(lambda: -1)
    first: set[tuple[str, int, int]] = set()
    for channel, writer, seq in arrivals:
        if (channel, writer, seq) in first:  # a repeat (at_least_once): the first counts
            continue
        first.add((channel, writer, seq))
        if seq < last[(channel, writer)] and (channel, writer, seq) not in maybe:
            broken.append(
                f"{channel}: writer {writer}'s {seq} arrived after its {last[(channel, writer)]}"
            )
        last[(channel, writer)] = max(seq, last[(channel, writer)])
    if result.backlog.get("pending") or result.backlog.get("sending"):
        broken.append(f"rows left to send: {result.backlog}")
    if result.backlog.get("dead"):
        broken.append(f"dead rows: {result.backlog}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:2] == ["--role", "writer"]:
        config, writer, shape, out = argv[2:6]
        writer_main(config, int(writer), Settings(**json.loads(shape)), out)
        return 0
    if argv[:2] == ["--role", "relay"]:
        relay_main(argv[2], argv[3])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    defaults = Settings()
    parser.add_argument("--publishes", type=int, default=defaults.publishes)
    parser.add_argument("--writers", type=int, default=defaults.writers)
    parser.add_argument("--relays", type=int, default=defaults.relays)
    parser.add_argument("--kills", type=int, default=defaults.kills)
    parser.add_argument("--channels", type=int, default=defaults.channels)
    parser.add_argument("--rate", type=float, default=defaults.rate, help="publishes/s")
    parser.add_argument("--rollback", type=float, default=defaults.rollback)
    parser.add_argument("--batch", type=int, default=defaults.batch, help="OUTBOX batch")
    parser.add_argument("--at-least-once", action="store_true")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--pg", default=PG_URL)
    parser.add_argument("--mysql", default=MYSQL_URL, help="a SQLAlchemy URL of MariaDB/MySQL")
    parser.add_argument("--store", choices=["postgresql", "mysql", "sqlite"], default="postgresql")
    parser.add_argument("--driver", choices=["pusher", "ably"], default="pusher")
    args = parser.parse_args(argv)
    settings = Settings(
        args.publishes,
        args.writers,
        args.relays,
        args.kills,
        args.channels,
        args.rate,
        args.rollback,
        args.at_least_once,
        args.batch,
        args.seed,
        args.pg,
        args.store,
        args.driver,
        args.mysql,
    )
    if settings.driver == "ably":
        with counting_emulator() as emulator:
            result = asyncio.run(soak(emulator, settings))
    else:
        from soketi_server import SoketiServer

        with SoketiServer() as soketi:
            result = asyncio.run(soak(soketi, settings))
    print(result.summary())
    return 1 if result.broken else 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
