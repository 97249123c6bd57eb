"""Queue soak: publishes sent as Celery, RQ and Dramatiq tasks, with workers killed mid-task.

Usage::

    python benchmarks/queue_soak.py                              # 2,000 publishes per kind
    python benchmarks/queue_soak.py --kinds rq,dramatiq --count 5000 --kills 10 --seed 3

For each kind (``celery-amqp``: Celery on RabbitMQ, ``celery-redis``: Celery on Redis,
``rq``, ``dramatiq``: Dramatiq on RabbitMQ, ``dramatiq-redis``: Dramatiq on Redis) it starts
real worker processes (the app in ``tests/queues/worker_app.py``), publishes ``--count``
messages with ``send=<queue>`` to a real soketi, and counts what a real WebSocket subscriber
receives. Workers die by SIGKILL in two ways: a share of the messages is marked to kill the
process that runs it just before or just after its publish request (``--crashes``), and
``--kills`` times a random worker process is killed from outside at a random moment (and the
worker restarted if it died whole). The journal of attempts (Redis) says how each message
ended.

Checked for every publish: it arrived exactly once (journal ``done``), or it is reported
unknown (journal ``unknown``, logged at ERROR by the worker) and arrived at most once;
nothing arrived twice, nothing failed, nothing was left unfinished. Prints a Markdown
table; exits 1 if a promise broke. The services: Redis 127.0.0.1:6379 (db 13), RabbitMQ
127.0.0.1:5672 (guest/guest), soketi from the test suite (Node.js).
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
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
APP_DIR = ROOT / "tests" / "queues"
SERVERS = ROOT / "tests" / "servers"
for _folder in (SERVERS, APP_DIR):
    if str(_folder) not in sys.path:
        sys.path.insert(0, str(_folder))

from pusher_ws import PusherSubscriber  # noqa: E402
from soketi_server import SoketiServer  # noqa: E402

from broadcasting import Broadcast  # noqa: E402
from broadcasting.contrib._queue import QueuePlugin, RedisJournal, parse  # noqa: E402

REDIS_DB = 13  # the queue tests' own database number
REDIS_URL = f"redis://127.0.0.1:6379/{REDIS_DB}"
AMQP_URL = "amqp://guest:guest@127.0.0.1:5672//"  # Celery (kombu)
PIKA_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"  # Dramatiq (pika)
#: kind -> (queue plugin, broker URL)
KINDS = {
    "celery-amqp": ("celery", AMQP_URL),
    "celery-redis": ("celery", REDIS_URL),
    "rq": ("rq", REDIS_URL),
    "dramatiq": ("dramatiq", PIKA_URL),
    "dramatiq-redis": ("dramatiq", REDIS_URL),
}
BIN = Path(sys.executable).parent
#: fast retries: the soak's outages are short
FAST_RETRY = {"retries": 3, "backoff": 0.2, "max_backoff": 1.0}


@dataclass
class Setup:
    """One kind's names: its queue, its journal's key prefix, the driver options."""

    kind: str
    driver_options: dict[str, Any]
    retry: dict[str, Any] = field(default_factory=lambda: dict(FAST_RETRY))
    uid: str = field(default_factory=lambda: uuid.uuid4().hex[:10])
    #: message ids published (their RQ jobs and results are deleted by :meth:`cleanup`)
    ids: list[str] = field(default_factory=list)

    @property
    def plugin(self) -> str:
        return KINDS[self.kind][0]

    @property
    def broker(self) -> str:
        return KINDS[self.kind][1]

    @property
    def queue(self) -> str:
        return f"bq-{self.uid}"

    @property
    def prefix(self) -> str:
        return f"bq-journal:{self.uid}:"

    def env(self) -> dict[str, str]:
        """The environment ``worker_app`` reads."""
        path = os.pathsep.join([str(APP_DIR), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        return {
            **os.environ,
            "PYTHONPATH": path,
            "BQ_KIND": self.plugin,
            "BQ_BROKER": self.broker,
            "BQ_QUEUE": self.queue,
            "BQ_JOURNAL": REDIS_URL,
            "BQ_PREFIX": self.prefix,
            "BQ_DRIVER": json.dumps(self.driver_options),
            "BQ_RETRY": json.dumps(self.retry),
        }

    def journal(self) -> RedisJournal:
        return RedisJournal(REDIS_URL, prefix=self.prefix)

    def producer(self) -> tuple[Broadcast, QueuePlugin]:
        """The application's side: its own Broadcast and plugin, aimed at the same queue."""
        config = {"DRIVER": "pusher", "DRIVERS": {"pusher": self.driver_options}}
        target = "worker_app:broadcast"
        journal = self.journal()
        plugin: QueuePlugin
        if self.plugin == "celery":
            from celery import Celery

            from broadcasting.contrib.celery import CeleryQueue

            app = Celery(f"producer-{self.uid}", broker=self.broker)
            app.conf.broker_connection_retry_on_startup = True
            # as worker_app's: this run's keys in Redis, unacked ones too, under its prefix
            app.conf.broker_transport_options = {"global_keyprefix": f"{self.queue}:"}
            plugin = CeleryQueue(app, target, journal=journal, queue=self.queue, **self.retry)
        elif self.plugin == "rq":
            import redis
            import rq

            from broadcasting.contrib.rq import RQQueue

            queue = rq.Queue(self.queue, connection=redis.Redis.from_url(self.broker))
            plugin = RQQueue(queue, target, journal=journal, **self.retry)
        else:
            from queue_services import dramatiq_broker

            from broadcasting.contrib.dramatiq import DramatiqQueue

            broker = dramatiq_broker(self.broker, self.queue)  # as worker_app's
            plugin = DramatiqQueue(
                target, broker=broker, journal=journal, queue_name=self.queue, **self.retry
            )
        return Broadcast(config, plugins=[plugin]), plugin

    def cleanup(self) -> None:
        """Delete what this run left in Redis and RabbitMQ."""
        import redis

        client = redis.Redis.from_url(REDIS_URL)
        keys = list(client.scan_iter(f"{self.prefix}*", count=1000))
        if self.plugin == "rq":
            keys += [f"rq:{kind}:{i}" for i in self.ids for kind in ("job", "results")]
        for start in range(0, len(keys), 500):
            client.delete(*keys[start : start + 500])
        client.close()
        delete_queue(self.queue, amqp=self.broker.startswith("amqp"))


def delete_queue(queue: str, *, amqp: bool) -> None:
    """Delete ``queue`` (and what its queue library keeps beside it) from Redis or RabbitMQ."""
    if amqp:
        import kombu

        with kombu.Connection(AMQP_URL) as conn:
            channel = conn.default_channel
            for name in (queue, f"{queue}.DQ", f"{queue}.XQ"):
                with contextlib.suppress(Exception):
                    channel.queue_delete(name)
        return
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(f"*{queue}*", count=1000))
    for start in range(0, len(keys), 500):
        client.delete(*keys[start : start + 500])
    client.close()


def stop(process: subprocess.Popen[bytes], *, graceful: bool = False) -> None:
    """End the session ``process`` leads: SIGKILL (its work is checked already), or with
    ``graceful`` SIGTERM first (a warm shutdown)."""
    if graceful and process.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(10)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(10)


def celery_node(queue: str, index: int = 0) -> list[str]:
    """A Celery worker's node-name arguments, its own: under the default (celery@<host>) every
    worker on the broker shares one pidbox queue, which RabbitMQ once refused to a second
    worker in a CI preview (RESOURCE_LOCKED on 'celery@vm.celery.pidbox'), and that worker
    never consumed."""
    return ["-n", f"{queue}-{index}@%h"]


def worker_command(setup: Setup, index: int = 0) -> list[str]:
    """The command that runs worker ``index`` of ``setup``'s kind (2 processes, or threads)."""
    if setup.plugin == "celery":
        return [
            str(BIN / "celery"),
            "-A",
            "worker_app",
            "worker",
            *celery_node(setup.queue, index),
            "-Q",
            setup.queue,
            "-P",
            "prefork",
            "-c",
            "2",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "-l",
            "WARNING",
        ]
    if setup.plugin == "rq":  # the app imported once, before the work horses fork
        return [sys.executable, "-c", RQ_WORKER, setup.broker, setup.queue]
    return [str(BIN / "dramatiq"), "worker_app", "-p", "2", "-t", "2", "-Q", setup.queue]


RQ_WORKER = """
import sys
import redis
from rq import Worker
import worker_app  # each job's work horse is forked from here: the app is loaded already

connection = redis.Redis.from_url(sys.argv[1])
Worker([sys.argv[2]], connection=connection).work(with_scheduler=True)
"""


class Worker:
    """A worker process (with its children) in a session of its own, logging to a file."""

    def __init__(self, setup: Setup, index: int = 0) -> None:
        self.setup = setup
        self.index = index
        self.log_path = Path(tempfile.mkstemp(prefix=f"{setup.kind}-", suffix=".log")[1])
        self.process: subprocess.Popen[bytes] | None = None
        self.restarts = 0

    def start(self) -> Worker:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            worker_command(self.setup, self.index),
            cwd=APP_DIR,
            env=self.setup.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        return self

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def keep_alive(self) -> None:
        """Start it again if it died whole (Dramatiq's main process exits when a child dies)."""
        if not self.alive():
            if self.process is not None:
                self._kill_group(signal.SIGKILL)
            self.restarts += 1
            self.start()

    def children(self) -> list[int]:
        """The worker's descendant processes (its pool, RQ's work horse)."""
        if self.process is None:
            return []
        found: list[int] = []
        todo = [self.process.pid]
        while todo:
            pid = todo.pop()
            with contextlib.suppress(OSError):
                for task in Path(f"/proc/{pid}/task").iterdir():
                    kids = (task / "children").read_text().split()
                    found.extend(map(int, kids))
                    todo.extend(map(int, kids))
        return found

    def kill_one(self, rng: random.Random) -> str:
        """SIGKILL a random process of the worker (a child if it has one): what was killed.

        An RQ worker only loses its work horse: when a whole RQ worker dies, RQ itself
        re-runs its job only once its cleanup finds it abandoned (minutes later, by default),
        and its scheduler lock (which runs the retries) passes to another worker after 2
        minutes; the journal then reports the job unknown, but the soak would wait too long.
        """
        kids = self.children()
        if self.setup.plugin == "rq":  # the youngest child: the work horse, not the scheduler
            kids = sorted(kids, key=_started)[-1:]
            if not kids:
                return "none"
        if kids and (self.setup.plugin == "rq" or rng.random() < 0.7):
            with contextlib.suppress(ProcessLookupError):
                os.kill(rng.choice(kids), signal.SIGKILL)
            return "child"
        self._kill_group(signal.SIGKILL)
        return "worker"

    def _kill_group(self, sig: int) -> None:
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(10)

    def stop(self) -> None:
        """SIGKILL to the whole session."""
        if self.process is not None:
            stop(self.process)

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")


def _started(pid: int) -> int:
    """When process ``pid`` started (clock ticks since boot; 0 if it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    return int(stat.rpartition(")")[2].split()[19])


@contextlib.contextmanager
def running(setup: Setup, workers: int = 1) -> Iterator[list[Worker]]:
    """``workers`` started workers of ``setup``, stopped (and the queues deleted) afterwards."""
    started = [Worker(setup, n).start() for n in range(workers)]
    try:
        yield started
    finally:
        for worker in started:
            worker.stop()
        setup.cleanup()
        for worker in started:
            worker.log_path.unlink(missing_ok=True)


@dataclass
class Result:
    """What one kind's soak saw."""

    kind: str
    publishes: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    arrivals: Counter[str] = field(default_factory=Counter)  # "<n>:<channel>" -> times
    crashed: dict[int, str] = field(default_factory=dict)
    kills: Counter[str] = field(default_factory=Counter)
    restarts: int = 0
    seconds: float = 0.0
    broken: list[str] = field(default_factory=list)


def check(outcome: str, arrived: int, crash: str | None, at_least_once: bool = False) -> str | None:
    """What broke a promise for one publish to one channel, else ``None``."""
    if outcome == "done":
        if arrived == 1 or (at_least_once and arrived >= 1):
            return None
        return f"journal says delivered, arrived {arrived} times"
    if outcome == "unknown":
        return None if arrived <= 1 or at_least_once else f"unknown, arrived {arrived} times"
    if crash is not None and outcome == "pending":
        return f"crashed {crash} its publish, and never finished"
    return f"ended {outcome!r}, arrived {arrived} times"


async def soak(
    soketi: SoketiServer,
    kind: str,
    count: int,
    *,
    crashes: int = 4,
    kills: int = 0,
    seed: int = 1,
    workers: int = 1,
    timeout: float = 120.0,
) -> Result:
    """Publish ``count`` messages through ``kind``'s workers and check each one's outcome."""
    rng = random.Random(seed)
    setup = Setup(kind, soketi.driver_options())
    result = Result(kind, publishes=count)
    channels = [f"bq-{setup.uid}-{k}" for k in range(4)]
    marked = rng.sample(range(count), min(crashes, count))
    result.crashed = {n: ("before", "after")[i % 2] for i, n in enumerate(marked)}
    broadcast, plugin = setup.producer()
    direct = Broadcast({"DRIVER": "pusher", "DRIVERS": {"pusher": setup.driver_options}})
    journal = setup.journal()
    subscriber = await PusherSubscriber(soketi.ws_url()).connect()
    started = time.monotonic()
    try:
        await subscriber.subscribe(*channels)
        with running(setup, workers) as pool:
            ids: dict[str, tuple[int, tuple[str, ...]]] = {}
            stop = threading.Event()
            killer = threading.Thread(
                target=_kill, args=(pool, kills, rng, stop, result), daemon=True
            )
            killer.start()
            for n in range(count):
                targets = (channels[n % 4],) if n % 10 else (channels[n % 4], channels[-1 - n % 4])
                targets = tuple(dict.fromkeys(targets))
                data: dict[str, Any] = {"n": n}
                if n in result.crashed:
                    data["crash"] = result.crashed[n]
                receipt = await broadcast.achannel(list(targets), data, "soak", send=plugin.name)
                assert receipt.pending, receipt
                ids[receipt.message_id] = (n, targets)
                setup.ids.append(receipt.message_id)
            deadline = time.monotonic() + timeout
            states = await _wait(journal, ids, pool, deadline, stop)
            stop.set()
            killer.join()
            result.restarts = sum(w.restarts for w in pool)
            events = await subscriber.until_marker(
                lambda marker: direct.achannel(channels[0], marker, "marker")
            )
            logs = "\n".join(w.log()[-3000:] for w in pool)
        for event in events:
            result.arrivals[f"{json.loads(event.data)['n']}:{event.channel}"] += 1
        for message_id, (n, targets) in ids.items():
            outcome = states.get(message_id, "pending")
            result.outcomes[outcome] += 1
            for channel in targets:
                broke = check(outcome, result.arrivals[f"{n}:{channel}"], result.crashed.get(n))
                if broke:
                    result.broken.append(f"#{n} ({message_id}) on {channel}: {broke}")
            if n in result.crashed and outcome != "unknown":
                result.broken.append(f"#{n} crashed {result.crashed[n]} its publish: {outcome}")
        if result.broken:
            result.broken.append("worker logs:\n" + logs)
    finally:
        result.seconds = time.monotonic() - started
        await subscriber.close()
        await broadcast.aclose()
        await direct.aclose()
    return result


def _kill(
    pool: list[Worker], kills: int, rng: random.Random, stop: threading.Event, result: Result
) -> None:
    """Kill a random worker process ``kills`` times at random moments (restarting the dead)."""
    for _ in range(kills):
        if stop.wait(rng.uniform(0.2, 1.5)):
            return
        worker = rng.choice(pool)
        result.kills[worker.kill_one(rng)] += 1
        for each in pool:
            each.keep_alive()


async def _wait(
    journal: RedisJournal,
    ids: dict[str, tuple[int, tuple[str, ...]]],
    pool: list[Worker],
    deadline: float,
    stop: threading.Event,
) -> dict[str, str]:
    """Each message's final journal state, once every one has one (or the deadline passed)."""
    states: dict[str, str] = {}
    waiting = list(ids)
    while waiting and time.monotonic() < deadline:
        pipe = journal.client.pipeline(transaction=False)
        for message_id in waiting:
            pipe.get(journal.prefix + message_id)
        found = await asyncio.to_thread(pipe.execute)
        still = []
        for message_id, raw in zip(waiting, found, strict=True):
            state = parse(raw.decode())[0] if raw else "pending"
            if state in ("done", "unknown", "failed"):
                states[message_id] = state
            else:
                still.append(message_id)
        waiting = still
        if waiting:
            if stop.is_set() or not any(w.alive() for w in pool):
                for worker in pool:  # a crash marker may have taken Dramatiq's main process
                    worker.keep_alive()
            await asyncio.sleep(0.1)
    return states


def table(results: list[Result]) -> str:
    """The results as a Markdown table."""
    lines = [
        "| kind | publishes | done | unknown | other | crash marks | kills | restarts | s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        other = r.publishes - r.outcomes["done"] - r.outcomes["unknown"]
        kills = ", ".join(f"{k} {v}" for k, v in sorted(r.kills.items())) or "0"
        lines.append(
            f"| {r.kind} | {r.publishes} | {r.outcomes['done']} | {r.outcomes['unknown']} | "
            f"{other} | {len(r.crashed)} | {kills} | {r.restarts} | {r.seconds:.1f} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--crashes", type=int, default=20)
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    results = []
    with SoketiServer() as soketi:
        for kind in args.kinds.split(","):
            result = asyncio.run(
                soak(
                    soketi,
                    kind,
                    args.count,
                    crashes=args.crashes,
                    kills=args.kills,
                    seed=args.seed,
                    workers=args.workers,
                    timeout=max(120.0, args.count / 20),
                )
            )
            results.append(result)
            for line in result.broken[:30]:
                print(f"{kind}: {line}", file=sys.stderr)
    print(table(results))
    return 1 if any(r.broken for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
