"""Publish-to-receive latency and the library's CPU under a steady load, through a soketi
cluster, through the same cluster behind nginx, and through a single soketi node (issue 21).

Usage::

    python benchmarks/cluster_latency.py                   # 4 x 500/s for 20 s, 1,000 sockets
    python benchmarks/cluster_latency.py --seconds 5 --rate 400 --subscribers 200 --no-targets
    python benchmarks/cluster_latency.py --only balanced --modes async --json

What runs, all on 127.0.0.1, per topology (``--only``; by default all three, in this order):

- **cluster**: ``--nodes`` soketi processes joined by soketi's Redis adapter
  (tests/servers/soketi_cluster.py; Redis on 127.0.0.1:6379, a channel prefix of the run's
  own).
- **balanced**: the same kind of cluster with nginx in front of its nodes
  (tests/servers/nginx_balancer.py, configured by docs/scaling.md's own snippet), as most
  teams reach a cluster. The publishers talk to nginx alone, which keeps their connections
  open and opens a new one to a node per request (soketi closes its connection after every
  answer). Where nginx is not installed these runs are skipped with a note, unless
  ``--only`` names them (then the benchmark exits 2).
- **single**: one soketi with its default (local) adapter.
- **subscribers**: ``--subscribers`` real WebSocket connections speaking the Pusher
  protocol (tests/servers/pusher_ws.py), held by ``--clients`` Python asyncio processes.
  Connection ``c`` is opened on node ``c % nodes`` and subscribes to channel
  ``c % channels`` (``--channels``; by default one channel per connection, so each event
  reaches one browser, and the deliveries per second equal the publishes per second).
- **publishers**: ``--publishers`` application processes, each publishing
  ``rate / publishers`` events a second, paced (each publish has its due time; none is
  sent early, none in a burst), spread over the channels. ``sync``: one
  ``broadcast.channel()`` after another, as a sync view does per request. ``async``: each
  publish is a task ``await broadcast.achannel()`` started at its due time on one event
  loop, as an async app serves concurrent requests (micro-batching as configured: on by
  default). Through the cluster the publishers use the pusher driver's ``hosts`` list
  (every node) when the installed driver has it; otherwise publisher ``i`` is given node
  ``i % nodes`` alone, as a load balancer would spread the apps. The output says which.
  Through the balanced cluster every publisher is given nginx's address alone; the
  subscribers still connect to the nodes directly (the WebSocket path is not measured).

What is measured, per run (topology x mode):

- **latency**: the payload carries ``time.time()`` taken just before the publish call; a
  subscriber takes ``time.time()`` when the frame is decoded (one machine, one clock).
  p50 / p99 / max over every delivery.
- **counts**: events published and their outcomes (delivered / failed / unknown), the
  deliveries expected (each subscriber of the channel, for every publish not failed),
  received, lost (a delivered publish some subscriber never got), doubled (a subscriber
  got it twice), and arrivals of failed publishes (there must be none).
- **the library's CPU**: each publisher process's CPU time (``getrusage``, user + system,
  all threads) over the publishing, minus the CPU time of the same paced loop with the
  publish call replaced by a no-op, run in the same process just before (``--baseline``
  seconds at the same rate): what remains is the cost of the publish calls (the library,
  the pusher SDK's signing, the HTTP client, the kernel's socket work). Per publish, and
  in cores at ``--rate``.
- **the client side**: each client process's CPU share and event-loop lag, so that the
  subscribers are seen not to be the bottleneck; soketi's CPU (``/proc``) per run, and
  nginx's (its master and worker processes) where it runs; the load average before and
  after each run (the machine may be shared).
- **for scale**, before each run: this process's CPU for one bare signed HTTP publish
  (``http.client``) to node 0 on a new connection, and, behind nginx, through nginx on one
  kept-open connection: the floor under any Python client on each path.

Targets (issue 21): p99 <= 50 ms, library <= 0.25 of one core at 2,000 publishes/s. The
ratios are printed (measured / target: at most 1 meets it). Exits 1 if a delivery promise
broke (lost, doubled, a failed publish that arrived), or a target was missed (not with
``--no-targets``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import hmac
import http.client
import importlib.util
import json
import multiprocessing
import os
import resource
import sys
import time
import urllib.parse
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SERVERS = ROOT / "tests" / "servers"
for _path in (SERVERS, HERE):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from _harness import machine_info, percentile  # noqa: E402
from nginx_balancer import HOST as BALANCER_HOST  # noqa: E402
from nginx_balancer import NginxBalancer, NginxUnavailable  # noqa: E402
from soketi_cluster import RedisUnavailable, SoketiCluster  # noqa: E402
from soketi_server import SoketiServer, _app  # noqa: E402

P99_TARGET_MS = 50.0
CORES_TARGET = 0.25  #: of one core, for the library at TARGET_RATE
TARGET_RATE = 2_000.0
RESULTS = HERE / "results" / "cluster_latency.json"

KINDS = ("cluster", "balanced", "single")  #: the topologies, in the order they run
DELIVERED, FAILED, UNKNOWN, BROKEN = 1, 2, 3, 4  #: a publish's outcome, as publishers report it

METHOD = (
    "Library CPU = the publisher processes' CPU time (getrusage: user + system, all threads) "
    "while publishing, minus the CPU time of the same paced loop with the publish call "
    "replaced by a no-op, measured in each process just before at the same rate; it covers "
    "the library, the pusher SDK's signing, the HTTP client and the kernel's socket work. "
    "Latency = a subscriber's time.time() on decoding the frame minus the publisher's "
    "time.time() just before the publish call (same machine, same clock)."
)


@dataclass(frozen=True)
class Settings:
    """The run's size and pace (the defaults are issue 21's)."""

    nodes: int = 3
    rate: float = TARGET_RATE  #: publishes per second, every publisher together
    publishers: int = 4
    subscribers: int = 1_000
    channels: int = 0  #: 0: one channel per subscriber
    seconds: float = 20.0
    baseline: float = 5.0  #: seconds of the paced loop without publishing, per run
    clients: int = 2  #: processes holding the WebSocket connections
    modes: tuple[str, ...] = ("sync", "async")
    topologies: tuple[str, ...] = KINDS
    settle: float = 3.0  #: seconds without a new arrival after which the run's tally closes
    timeout: float = 0.0  #: the driver's ``timeout``; 0: the driver's default
    linger: float = 0.0  #: the core's ``batch_linger`` (async publishes only)
    #: events one /batch_events request may carry: soketi's ``maxEventBatchSize`` on every
    #: node and the driver's ``max_batch_events`` (0: both left at their default, 10)
    max_batch: int = 0
    #: the async publishers' event loop: ``asyncio``'s own, or ``uvloop`` (what
    #: ``uvicorn[standard]`` runs an ASGI app on)
    loop: str = "asyncio"

    @property
    def channel_count(self) -> int:
        return self.channels or self.subscribers

    @property
    def driver_options(self) -> dict[str, Any]:
        """What the run changes in the driver's options."""
        options: dict[str, Any] = {"timeout": self.timeout} if self.timeout else {}
        if self.linger:
            options["batch_linger"] = self.linger
        if self.max_batch:
            options["max_batch_events"] = self.max_batch
        return options

    @property
    def soketi_config(self) -> dict[str, Any]:
        """What the run changes in every soketi node's configuration."""
        if not self.max_batch:
            return {}
        return {"appManager.array.apps": [{**_app(), "maxEventBatchSize": self.max_batch}]}

    @property
    def per_publisher(self) -> int:
        """Publishes each publisher makes in a run."""
        return round(self.rate / self.publishers * self.seconds)


def channel_of(settings: Settings, publisher: int, seq: int) -> int:
    """The channel index of publisher ``publisher``'s ``seq``-th publish (spread evenly)."""
    return (seq * settings.publishers + publisher) % settings.channel_count


# -- the servers -----------------------------------------------------------------------------


@dataclass
class Topology:
    """The soketi nodes of one run and how publishers and subscribers reach them."""

    name: str
    nodes: list[SoketiServer]
    options: list[dict[str, Any]]  #: DRIVERS['pusher'] of each publisher
    routing: str  #: how publishers reach the nodes, in words
    balancer: NginxBalancer | None = None  #: what the publishers talk to, if not the nodes


def hosts_supported(options: dict[str, Any]) -> bool:
    """Whether the installed pusher driver takes a ``hosts`` list."""
    from broadcasting import Broadcast, ConfigurationError

    try:
        with Broadcast({"DRIVER": "pusher", "DRIVERS": {"pusher": options}}) as broadcast:
            broadcast.driver()
    except ConfigurationError as exc:
        if exc.key == "hosts":
            return False
        raise
    return True


@contextlib.contextmanager
def topology(kind: str, settings: Settings) -> Iterator[Topology]:
    """Start the servers of ``kind`` (one of :data:`KINDS`); stop them on exit.

    ``balanced`` raises :class:`NginxUnavailable` when nginx is missing or does not start."""
    if kind == "single":
        with SoketiServer(**settings.soketi_config) as server:
            yield Topology(
                "single node",
                [server],
                [server.driver_options(**settings.driver_options)] * settings.publishers,
                "every publisher to the one node",
            )
        return
    if kind == "balanced":
        with (
            SoketiCluster(nodes=settings.nodes, **settings.soketi_config) as cluster,
            NginxBalancer([(node.host, node.port) for node in cluster.nodes]) as balancer,
        ):
            # a node's options (host and port, no hosts list), re-aimed at nginx
            aimed = balancer.driver_options(
                cluster.nodes[0].driver_options(**settings.driver_options)
            )
            if "hosts" in aimed or (aimed["host"], aimed["port"]) != (BALANCER_HOST, balancer.port):
                raise RuntimeError(f"the publishers' options do not aim at nginx: {aimed}")
            yield Topology(
                f"cluster of {settings.nodes} nodes behind nginx",
                cluster.nodes,
                [aimed] * settings.publishers,
                f"every publisher to nginx on {BALANCER_HOST}:{balancer.port} alone, balancing "
                f"over the {settings.nodes} nodes; subscribers straight to the nodes "
                f"(connection c on node c % {settings.nodes})",
                balancer,
            )
        return
    with SoketiCluster(nodes=settings.nodes, **settings.soketi_config) as cluster:
        listed = cluster.driver_options(**settings.driver_options)
        if hosts_supported(listed):
            options = [listed] * settings.publishers
            routing = f"every publisher through the driver's hosts list ({settings.nodes} nodes)"
        else:
            options = [
                cluster.nodes[i % settings.nodes].driver_options(**settings.driver_options)
                for i in range(settings.publishers)
            ]
            routing = (
                f"publisher i to node i % {settings.nodes} (the installed pusher driver has "
                "no hosts option)"
            )
        yield Topology(f"cluster of {settings.nodes} nodes", cluster.nodes, options, routing)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (Linux ``/proc``; 0 elsewhere)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text("ascii")
    except OSError:
        return 0.0
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid: int) -> float:
    """:func:`cpu_seconds` of process ``pid`` and of its descendants (nginx's master forks
    the worker that does the proxying; the master's own figure would leave it out)."""
    return cpu_seconds(pid) + sum(tree_cpu_seconds(child) for child in _children(pid))


def _children(pid: int) -> list[int]:
    """The child processes of ``pid``: from ``/proc/<pid>/task/*/children`` where the kernel
    has it (CONFIG_PROC_CHILDREN), else by each process's parent in ``/proc/*/stat``."""
    listed = list(Path(f"/proc/{pid}/task").glob("*/children"))
    if listed:
        found = []
        for path in listed:
            with contextlib.suppress(OSError):
                found += [int(child) for child in path.read_text("ascii").split()]
        return found
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text("ascii")
        except OSError:  # the process ended meanwhile
            continue
        if int(text[text.rindex(")") + 2 :].split()[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _signed_publish(node: SoketiServer, events: int = 0) -> tuple[str, bytes, dict[str, str]]:
    """A publish to ``node``'s app, signed once: the request target, body and headers. One
    event to ``/events``, or ``events`` of them in one ``/batch_events``."""
    if events:
        batch = [{"name": "floor", "channel": "floor", "data": "{}"}] * events
        body, path = json.dumps({"batch": batch}).encode(), f"/apps/{node.app_id}/batch_events"
    else:
        body = json.dumps({"name": "floor", "channels": ["floor"], "data": "{}"}).encode()
        path = f"/apps/{node.app_id}/events"
    query = urllib.parse.urlencode(
        {
            "auth_key": node.key,
            "auth_timestamp": str(int(time.time())),
            "auth_version": "1.0",
            "body_md5": hashlib.md5(body).hexdigest(),
        }
    )
    signed = hmac.new(node.secret.encode(), f"POST\n{path}\n{query}".encode(), hashlib.sha256)
    target = f"{path}?{query}&auth_signature={signed.hexdigest()}"
    return target, body, {"Content-Type": "application/json"}


def check_batch_limit(nodes: Sequence[SoketiServer], events: int) -> None:
    """Raise unless every node takes ``events`` events in one ``/batch_events`` request: a
    fuller request than a node takes is refused, and the driver then sends each of its
    publishes again alone, which would double the requests the figures count."""
    for node in nodes:
        target, body, headers = _signed_publish(node, events)
        conn = http.client.HTTPConnection(node.host, node.port, timeout=30)
        try:
            conn.request("POST", target, body, headers)
            answer = conn.getresponse()
            text = answer.read()
        finally:
            conn.close()
        # soketi 1.6 answers a refusal with HTTP 200 and {"error", "code"}: only its
        # acknowledgement is one
        if answer.status != 200 or text.replace(b" ", b"") != b'{"ok":true}':
            raise RuntimeError(
                f"soketi on port {node.port} refused {events} events in one /batch_events "
                f"request ({answer.status}: {text[:300]!r}): its maxEventBatchSize is not "
                "--max-batch"
            )


def bare_request_us(node: SoketiServer, count: int = 200) -> float:
    """CPU µs of this process per bare HTTP publish to ``node``: a request signed once and
    sent ``count`` times with ``http.client``, each on a new connection (soketi closes the
    connection after every answer): the floor under any Python client's publish."""
    target, body, headers = _signed_publish(node)
    cpu = _own_cpu()
    for _ in range(count):
        conn = http.client.HTTPConnection(node.host, node.port, timeout=30)
        try:
            conn.request("POST", target, body, headers)
            answer = conn.getresponse()
            answer.read()
        finally:
            conn.close()
        if answer.status != 200:
            raise RuntimeError(f"soketi answered the bare request with {answer.status}")
    return (_own_cpu() - cpu) / count * 1e6


def kept_open_request_us(node: SoketiServer, port: int, count: int = 200) -> float:
    """CPU µs of this process per bare HTTP publish to ``node``'s app through the balancer
    listening on ``port``: the same signed request as :func:`bare_request_us`, ``count``
    times on one connection kept open (opened before the measuring starts). An answer that
    closes the connection is an error: the figure would no longer be what it says."""
    target, body, headers = _signed_publish(node)
    conn = http.client.HTTPConnection(BALANCER_HOST, port, timeout=30)
    try:
        conn.connect()
        cpu = _own_cpu()
        for _ in range(count):
            conn.request("POST", target, body, headers)
            answer = conn.getresponse()
            answer.read()
            if answer.status != 200:
                raise RuntimeError(f"the balancer answered the bare request with {answer.status}")
            if answer.will_close:
                raise RuntimeError("the balancer closed the connection after an answer")
        return (_own_cpu() - cpu) / count * 1e6
    finally:
        conn.close()


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _own_system() -> float:
    """This process's system (kernel) CPU seconds so far: a part of :func:`_own_cpu`."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_stime


# -- the subscribers -------------------------------------------------------------------------


def _client_main(connections: list[tuple[int, str, str]], pipe: Any, received: Any) -> None:
    """A client process: opens its connections, then answers the parent's commands."""
    asyncio.run(_client(connections, pipe, received))


async def _client(connections: list[tuple[int, str, str]], pipe: Any, received: Any) -> None:
    from pusher_ws import Event, PusherSubscriber

    loop = asyncio.get_running_loop()
    run = {"id": -1}
    records: list[tuple[int, int, int, float]] = []  # publisher, seq, connection, ms
    stray = Counter[str]()
    lags: list[float] = []

    def handler(conn: int) -> Callable[[Event], None]:
        def on_event(event: Event) -> None:
            now = time.time()
            data = json.loads(event.data)
            if data.get("r") != run["id"]:
                stray["other run"] += 1
                return
            records.append((data["p"], data["s"], conn, (now - data["t"]) * 1000))

        return on_event

    gate = asyncio.Semaphore(50)

    async def open_one(conn: int, url: str, channel: str) -> PusherSubscriber:
        async with gate:
            sub = await PusherSubscriber(url, on_event=handler(conn)).connect(timeout=60)
            await sub.subscribe(channel)
            return sub

    subs = await asyncio.gather(*(open_one(*c) for c in connections))

    async def monitor() -> None:
        while True:
            started = loop.time()
            await asyncio.sleep(0.05)
            lags.append(loop.time() - started - 0.05)
            received.value = len(records)

    watcher = asyncio.create_task(monitor())
    pipe.send(("ready", len(subs)))
    cpu = wall = 0.0
    while True:
        command, arg = await asyncio.to_thread(pipe.recv)
        if command == "begin":
            run["id"] = arg
            records.clear()
            lags.clear()
            stray.clear()
            received.value = 0
            cpu, wall = _own_cpu(), time.perf_counter()
            pipe.send("ok")
        elif command == "mark":  # the publishing starts: CPU and lag from here
            lags.clear()
            cpu, wall = _own_cpu(), time.perf_counter()
            pipe.send("ok")
        elif command == "report":
            ordered = sorted(lags) or [0.0]
            closed = sum(1 for sub in subs if sub._ws is None or sub._ws.close_code is not None)
            pipe.send(
                {
                    "records": records,
                    "cpu": _own_cpu() - cpu,
                    "wall": time.perf_counter() - wall,
                    "lag_p99_ms": percentile(ordered, 99) * 1000,
                    "lag_max_ms": ordered[-1] * 1000,
                    "stray": dict(stray),
                    "connections": len(subs),
                    "closed": closed,
                    "errors": sum(len(sub.errors) for sub in subs),
                }
            )
        else:  # stop
            watcher.cancel()
            await asyncio.gather(*(sub.close() for sub in subs), return_exceptions=True)
            pipe.send("stopped")
            return


class Clients:
    """The client processes holding every subscriber's connection."""

    def __init__(self, topo: Topology, settings: Settings, prefix: str) -> None:
        spawn = multiprocessing.get_context("spawn")
        plan: list[list[tuple[int, str, str]]] = [[] for _ in range(settings.clients)]
        for conn in range(settings.subscribers):
            node = topo.nodes[conn % len(topo.nodes)]
            channel = f"{prefix}-{conn % settings.channel_count}"
            plan[conn % settings.clients].append((conn, node.ws_url(), channel))
        self.pipes: list[Any] = []
        self.counts: list[Any] = []
        self.processes: list[Any] = []
        for connections in plan:
            mine, theirs = spawn.Pipe()
            count = spawn.RawValue("q", 0)
            process = spawn.Process(
                target=_client_main,
                args=(connections, theirs, count),
                name="client process",
                daemon=True,
            )
            process.start()
            self.pipes.append(mine)
            self.counts.append(count)
            self.processes.append(process)

    def wait_ready(self, timeout: float = 180) -> int:
        """Wait until every connection is open and subscribed; return how many there are."""
        opened = 0
        for pipe, process in zip(self.pipes, self.processes, strict=True):
            _, count = _receive(pipe, process, timeout, "connect")
            opened += count
        return opened

    def command(self, command: str, arg: Any = None, timeout: float = 120) -> list[Any]:
        for pipe in self.pipes:
            pipe.send((command, arg))
        return [
            _receive(pipe, process, timeout, f"answer {command!r}")
            for pipe, process in zip(self.pipes, self.processes, strict=True)
        ]

    def received(self) -> int:
        return sum(count.value for count in self.counts)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.command("stop", timeout=30)
        for process in self.processes:
            process.join(10)
            if process.is_alive():
                process.kill()
                process.join(5)


# -- the publishers --------------------------------------------------------------------------


@dataclass(frozen=True)
class PublisherSpec:
    index: int
    mode: str
    options: dict[str, Any]
    run: int
    prefix: str
    settings: Settings
    #: the control process: the same paced loop as the publishers, beside them, through both
    #: phases, with the no-op in place of the publish call in each
    control: bool = False


def _publisher_main(spec: PublisherSpec, pipe: Any) -> None:
    """A publisher process: warm up, say ready, wait for the start time, then the baseline
    loop and the publishing loop; send back the outcomes and CPU times."""
    from broadcasting import Broadcast

    config = {"DRIVER": "pusher", "DRIVERS": {"pusher": spec.options}}
    with Broadcast(config) as broadcast:
        if spec.mode == "sync":
            result = _publish_sync(broadcast, spec, pipe)
        else:
            result = _run_loop(spec.settings.loop, _publish_async(broadcast, spec, pipe))
    pipe.send(result)


def _run_loop(loop: str, main: Any) -> Any:
    """``main`` run to its end on a new event loop of the kind ``loop`` names."""
    if loop == "uvloop":
        import uvloop

        return uvloop.run(main)
    return asyncio.run(main)


class _Loop:
    """What the paced loop of one phase records (the same in the baseline and for real)."""

    def __init__(self, spec: PublisherSpec, count: int) -> None:
        s = spec.settings
        self.spec = spec
        self.count = count
        self.interval = s.publishers / s.rate
        self.names = [f"{spec.prefix}-{i}" for i in range(s.channel_count)]
        self.outcomes = bytearray(count)
        self.calls: list[float] = [0.0] * count
        self.late = 0.0
        self.error = ""

    def payload(self, seq: int) -> tuple[str, dict[str, Any]]:
        s = self.spec.settings
        channel = self.names[channel_of(s, self.spec.index, seq)]
        return channel, {"r": self.spec.run, "p": self.spec.index, "s": seq, "t": time.time()}

    def outcome(self, seq: int, exc: BaseException | None) -> None:
        from broadcasting import PublishError

        if exc is None:
            self.outcomes[seq] = DELIVERED
        elif isinstance(exc, PublishError):
            self.outcomes[seq] = FAILED if exc.failed else UNKNOWN
            self.error = self.error or f"{type(exc).__name__}: {exc}"
        else:
            self.outcomes[seq] = BROKEN
            self.error = self.error or f"{type(exc).__name__}: {exc}"


def _phase_result(loop: _Loop, cpu: float, system: float, wall: float) -> dict[str, Any]:
    calls = sorted(loop.calls) or [0.0]
    return {
        "n": loop.count,
        "cpu": cpu,
        "system": system,
        "wall": wall,
        "late_ms": loop.late * 1000,
        "call_p50_ms": percentile(calls, 50) * 1000,
        "call_p99_ms": percentile(calls, 99) * 1000,
        "outcomes": bytes(loop.outcomes),
        "error": loop.error,
    }


def _publish_sync(broadcast: Any, spec: PublisherSpec, pipe: Any) -> dict[str, Any]:
    s = spec.settings
    warm = f"{spec.prefix}-warm"
    for n in range(2 * s.nodes):  # every node of a hosts list, every import, one connection
        broadcast.channel(warm, {"warm": n}, "warm")
    pipe.send("ready")
    start_at = pipe.recv()

    def nothing(channel: str, data: Any, event: str) -> None:
        return None

    def phase(send: Callable[[str, Any, str], Any], count: int) -> dict[str, Any]:
        loop = _Loop(spec, count)
        cpu, system, start = _own_cpu(), _own_system(), time.perf_counter()
        for seq in range(count):
            pause = start + seq * loop.interval - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            else:
                loop.late = max(loop.late, -pause)
            channel, data = loop.payload(seq)
            called = time.perf_counter()
            try:
                send(channel, data, "tick")
            except Exception as exc:
                loop.outcome(seq, exc)
            else:
                loop.outcome(seq, None)
            loop.calls[seq] = time.perf_counter() - called
        return _phase_result(
            loop, _own_cpu() - cpu, _own_system() - system, time.perf_counter() - start
        )

    time.sleep(max(0.0, start_at - time.time()))
    base = phase(nothing, round(s.baseline / s.seconds * s.per_publisher))
    real = phase(nothing if spec.control else broadcast.channel, s.per_publisher)
    return {"baseline": base, "publish": real}


async def _publish_async(broadcast: Any, spec: PublisherSpec, pipe: Any) -> dict[str, Any]:
    s = spec.settings
    warm = f"{spec.prefix}-warm"
    for n in range(2 * s.nodes):
        await broadcast.achannel(warm, {"warm": n}, "warm")
    await asyncio.to_thread(pipe.send, "ready")
    start_at = await asyncio.to_thread(pipe.recv)

    async def nothing(channel: str, data: Any, event: str) -> None:
        return None

    async def phase(send: Callable[[str, Any, str], Any], count: int) -> dict[str, Any]:
        loop = _Loop(spec, count)
        running: set[asyncio.Task[None]] = set()

        async def one(seq: int) -> None:
            channel, data = loop.payload(seq)
            called = time.perf_counter()
            try:
                await send(channel, data, "tick")
            except Exception as exc:
                loop.outcome(seq, exc)
            else:
                loop.outcome(seq, None)
            loop.calls[seq] = time.perf_counter() - called

        cpu, system, start = _own_cpu(), _own_system(), time.perf_counter()
        for seq in range(count):
            pause = start + seq * loop.interval - time.perf_counter()
            if pause > 0:
                await asyncio.sleep(pause)
            else:
                loop.late = max(loop.late, -pause)
            task = asyncio.create_task(one(seq))
            running.add(task)
            task.add_done_callback(running.discard)
        await asyncio.gather(*running)
        return _phase_result(
            loop, _own_cpu() - cpu, _own_system() - system, time.perf_counter() - start
        )

    await asyncio.sleep(max(0.0, start_at - time.time()))
    base = await phase(nothing, round(s.baseline / s.seconds * s.per_publisher))
    real = await phase(nothing if spec.control else broadcast.achannel, s.per_publisher)
    return {"baseline": base, "publish": real}


# -- one run ---------------------------------------------------------------------------------


@dataclass
class RunResult:
    """The figures of one run (topology x mode)."""

    topology: str
    mode: str
    routing: str
    publishers: int
    rate: float
    seconds: float
    subscribers: int
    channels: int
    published: int = 0
    delivered: int = 0
    failed: int = 0
    unknown: int = 0
    broken: int = 0  #: publishes that raised something other than a PublishError
    expected: int = (
        0  #: deliveries expected (every subscriber of the channel, publishes not failed)
    )
    received: int = 0
    lost: int = 0  #: deliveries of delivered publishes that never arrived
    doubled: int = 0  #: deliveries that arrived more than once
    failed_arrived: int = 0  #: deliveries of publishes reported failed (must be 0)
    misrouted: int = 0  #: arrivals on a connection not subscribed to that channel, or unpublished
    late_from_earlier_run: int = 0  #: arrivals of an earlier run's events (counted lost there)
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0
    achieved_rate: float = 0.0
    late_ms: float = 0.0  #: furthest any publisher fell behind its schedule
    call_p50_ms: float = 0.0  #: wall time of one publish call, median over publishers' medians
    call_p99_ms: float = 0.0
    publisher_cores: float = 0.0  #: the publisher processes' CPU while publishing, in cores
    baseline_cores: float = 0.0  #: the same paced loop without publishing, at the same rate
    library_us: float = 0.0  #: the library's CPU per publish
    library_system_us: float = 0.0  #: of which system (kernel) time
    #: the control process's paced loop (no publish call), µs per iteration: alone before
    #: the publishing (the machine quiet), and beside it (the machine as busy as it makes it)
    control_quiet_us: float = 0.0
    control_busy_us: float = 0.0
    #: the library's CPU per publish less the control's loop beside it (not the baseline)
    library_beside_control_us: float = 0.0
    library_cores: float = 0.0  #: at ``rate``
    soketi_cores: float = 0.0  #: every node together, over the publishing
    balancer_cores: float | None = None  #: nginx, master and worker, over the publishing
    bare_request_us: float = 0.0  #: CPU of one bare HTTP publish from Python (the floor)
    #: the same through the balancer on one kept-open connection (balanced topology only)
    balancer_request_us: float | None = None
    client_cores: list[float] = field(default_factory=list)  #: each client process
    client_us_per_event: float = 0.0
    client_lag_p99_ms: float = 0.0
    client_lag_max_ms: float = 0.0
    client_connections: int = 0
    client_closed: int = 0
    client_errors: int = 0  #: pusher:error frames the subscribers received
    load_before: tuple[float, float, float] = (0.0, 0.0, 0.0)
    load_after: tuple[float, float, float] = (0.0, 0.0, 0.0)
    first_error: str = ""

    @property
    def promises_kept(self) -> bool:
        return not (
            self.lost or self.doubled or self.failed_arrived or self.misrouted or self.broken
        )

    @property
    def p99_ratio(self) -> float:
        return self.p99_ms / P99_TARGET_MS

    @property
    def cores_ratio(self) -> float:
        """The library's cores at the target rate against the target (CPU per publish x rate)."""
        return self.library_us * TARGET_RATE / 1e6 / CORES_TARGET


def one_run(
    topo: Topology, clients: Clients, mode: str, settings: Settings, run: int, prefix: str
) -> RunResult:
    """Publishers at the paced rate in ``mode``; the subscribers' tally and every figure."""
    result = RunResult(
        topo.name,
        mode,
        topo.routing,
        settings.publishers,
        settings.rate,
        settings.seconds,
        settings.subscribers,
        settings.channel_count,
    )
    if settings.max_batch:
        check_batch_limit(topo.nodes, settings.max_batch)
    result.bare_request_us = bare_request_us(topo.nodes[0])
    balancer_pid = topo.balancer.process.pid if topo.balancer and topo.balancer.process else 0
    if topo.balancer is not None:
        result.balancer_request_us = kept_open_request_us(topo.nodes[0], topo.balancer.port)
    clients.command("begin", run)
    spawn = multiprocessing.get_context("spawn")
    pipes, processes = [], []
    for index in range(settings.publishers + 1):  # the last: the control process
        is_control = index == settings.publishers
        options = topo.options[index - 1 if is_control else index]
        spec = PublisherSpec(index, mode, options, run, prefix, settings, is_control)
        mine, theirs = spawn.Pipe()
        process = spawn.Process(
            target=_publisher_main, args=(spec, theirs), name="publisher process", daemon=True
        )
        process.start()
        pipes.append(mine)
        processes.append(process)
    try:
        for pipe, process in zip(pipes, processes, strict=True):
            if _receive(pipe, process, 120, "start") != "ready":
                raise RuntimeError("a publisher said something else than 'ready'")
        start_at = time.time() + 0.5
        for pipe in pipes:
            pipe.send(start_at)
        result.load_before = os.getloadavg()
        time.sleep(max(0.0, start_at + settings.baseline - time.time()))
        clients.command("mark")
        soketi_cpu = sum(cpu_seconds(node.process.pid) for node in topo.nodes if node.process)
        nginx_cpu = tree_cpu_seconds(balancer_pid) if balancer_pid else 0.0
        soketi_wall = time.perf_counter()
        reports = []
        for pipe, process in zip(pipes, processes, strict=True):
            reports.append(_receive(pipe, process, settings.seconds * 3 + 120, "finish"))
        control = reports.pop()
        soketi_cpu = (
            sum(cpu_seconds(node.process.pid) for node in topo.nodes if node.process) - soketi_cpu
        )
        wall = time.perf_counter() - soketi_wall
        result.soketi_cores = soketi_cpu / wall
        if balancer_pid:
            result.balancer_cores = (tree_cpu_seconds(balancer_pid) - nginx_cpu) / wall
        result.load_after = os.getloadavg()
    finally:
        for process in processes:
            process.join(30)
            if process.is_alive():
                process.kill()
    _publisher_figures(result, reports, control, settings)
    subscribers_of = Counter(c % settings.channel_count for c in range(settings.subscribers))
    outcomes = [report["publish"]["outcomes"] for report in reports]
    upper = sum(
        subscribers_of[channel_of(settings, p, seq)]
        for p, codes in enumerate(outcomes)
        for seq, code in enumerate(codes)
        if code in (DELIVERED, UNKNOWN, BROKEN)
    )
    _wait_for_arrivals(clients, upper, settings.settle)
    _tally(result, clients.command("report"), outcomes, settings, subscribers_of)
    return result


def _receive(pipe: Any, process: Any, timeout: float, what: str) -> Any:
    """The next message of a child process; a clear error if it died or hung instead."""
    try:
        if pipe.poll(timeout):
            return pipe.recv()
    except EOFError:
        pass
    process.join(5)
    raise RuntimeError(
        f"a {process.name} did not {what} (exit code {process.exitcode}; its traceback, if "
        "any, is above)"
    )


def _publisher_figures(
    result: RunResult, reports: list[dict[str, Any]], control: dict[str, Any], settings: Settings
) -> None:
    # the control's paced loop, alone before the publishing and beside it: what the loop
    # costs on a quiet machine and on one as busy as the publishing makes it
    quiet = control["baseline"]["cpu"] / max(1, control["baseline"]["n"])
    busy = control["publish"]["cpu"] / max(1, control["publish"]["n"])
    result.control_quiet_us, result.control_busy_us = quiet * 1e6, busy * 1e6
    published = sum(report["publish"]["n"] for report in reports)
    result.library_beside_control_us = (
        sum(report["publish"]["cpu"] for report in reports) / published - busy
    ) * 1e6
    library = system = publishing = baseline = 0.0
    walls = []
    for report in reports:
        base, real = report["baseline"], report["publish"]
        per_loop = base["cpu"] / base["n"] if base["n"] else 0.0
        library += real["cpu"] - per_loop * real["n"]
        per_loop = base["system"] / base["n"] if base["n"] else 0.0
        system += real["system"] - per_loop * real["n"]
        publishing += real["cpu"] / real["wall"]
        baseline += base["cpu"] / base["wall"] if base["wall"] else 0.0
        walls.append(real["wall"])
        result.first_error = result.first_error or real["error"]
    result.published = sum(report["publish"]["n"] for report in reports)
    codes = Counter(code for report in reports for code in report["publish"]["outcomes"])
    result.delivered, result.failed = codes[DELIVERED], codes[FAILED]
    result.unknown, result.broken = codes[UNKNOWN], codes[BROKEN]
    result.achieved_rate = result.published / max(walls)
    result.late_ms = max(report["publish"]["late_ms"] for report in reports)
    result.call_p50_ms = sorted(r["publish"]["call_p50_ms"] for r in reports)[len(reports) // 2]
    result.call_p99_ms = max(r["publish"]["call_p99_ms"] for r in reports)
    result.publisher_cores = publishing
    result.baseline_cores = baseline
    result.library_us = library / result.published * 1e6
    result.library_system_us = system / result.published * 1e6
    result.library_cores = result.library_us * settings.rate / 1e6


def _wait_for_arrivals(clients: Clients, upper: int, settle: float, limit: float = 120) -> None:
    """Until every delivery that may come has come, or none came for ``settle`` seconds."""
    deadline = time.monotonic() + limit
    last, quiet_since = -1, time.monotonic()
    while time.monotonic() < deadline:
        now = clients.received()
        if now >= upper:
            return
        if now != last:
            last, quiet_since = now, time.monotonic()
        elif time.monotonic() - quiet_since > settle:
            return
        time.sleep(0.1)


def _tally(
    result: RunResult,
    reports: list[dict[str, Any]],
    outcomes: Sequence[bytes],
    settings: Settings,
    subscribers_of: Counter[int],
) -> None:
    arrivals = Counter[tuple[int, int, int]]()
    first: dict[tuple[int, int, int], float] = {}  # each delivery's latency, first arrival
    for report in reports:
        for publisher, seq, conn, ms in report["records"]:
            key = (publisher, seq, conn)
            arrivals[key] += 1
            first.setdefault(key, ms)
        result.late_from_earlier_run += sum(report["stray"].values())
    latencies: list[float] = []
    for key, times in arrivals.items():
        publisher, seq, conn = key
        known = publisher < len(outcomes) and seq < len(outcomes[publisher])
        if not known or conn % settings.channel_count != channel_of(settings, publisher, seq):
            result.misrouted += times
            continue
        latencies.append(first[key])
        result.doubled += times - 1
        if outcomes[publisher][seq] == FAILED:
            result.failed_arrived += 1
    for publisher, codes in enumerate(outcomes):
        for seq, code in enumerate(codes):
            channel = channel_of(settings, publisher, seq)
            if code != FAILED:
                result.expected += subscribers_of[channel]
            if code == DELIVERED:
                got = sum(
                    1
                    for conn in range(channel, settings.subscribers, settings.channel_count)
                    if (publisher, seq, conn) in arrivals
                )
                result.lost += subscribers_of[channel] - got
    result.received = sum(arrivals.values())
    ordered = sorted(latencies) or [0.0]
    result.p50_ms = percentile(ordered, 50)
    result.p99_ms = percentile(ordered, 99)
    result.max_ms = ordered[-1]
    result.client_cores = [r["cpu"] / r["wall"] for r in reports]
    cpu = sum(r["cpu"] for r in reports)
    result.client_us_per_event = cpu / max(1, result.received) * 1e6
    result.client_lag_p99_ms = max(r["lag_p99_ms"] for r in reports)
    result.client_lag_max_ms = max(r["lag_max_ms"] for r in reports)
    result.client_connections = sum(r["connections"] for r in reports)
    result.client_closed = sum(r["closed"] for r in reports)
    result.client_errors = sum(r["errors"] for r in reports)


# -- the whole benchmark ---------------------------------------------------------------------


def benchmark(
    settings: Settings, log: Callable[[str], None] = print, optional: Sequence[str] = ()
) -> list[RunResult]:
    """Every run of ``settings``: per topology, the servers and subscribers, then each mode.

    A topology of ``optional`` whose nginx cannot be had is skipped with a note: the default
    run still measures the rest on a machine without nginx. Any other topology lets
    :class:`NginxUnavailable` through (the user asked for it by name)."""
    results = []
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    run = 0
    for kind in settings.topologies:
        with contextlib.ExitStack() as servers:
            try:
                topo = servers.enter_context(topology(kind, settings))
            except NginxUnavailable as exc:
                if kind not in optional:
                    raise
                log(f"skipping the {kind} topology: {exc} (--only {kind} makes this an error)")
                continue
            log(f"{topo.name}: {topo.routing}; opening {settings.subscribers:,} connections")
            clients = Clients(topo, settings, f"{prefix}-{kind}")
            try:
                opened = clients.wait_ready()
                log(f"  {opened:,} connections open and subscribed")
                for mode in settings.modes:
                    run += 1
                    result = one_run(topo, clients, mode, settings, run, f"{prefix}-{kind}")
                    results.append(result)
                    log(describe(result))
            finally:
                clients.close()
    return results


def _ratio(measured: float, target: float, unit: str, label: str) -> str:
    ratio = measured / target
    verdict = "meets it" if ratio <= 1 else "misses it"
    return f"target {label} {target:g}{unit}: {ratio:.2f}x ({verdict})"


def _per_bare(r: RunResult) -> str:
    """The library's CPU per publish in bare publishes of the same path, measured in the same
    run: a figure the machine's speed of the day (which moves both) changes far less than µs."""
    bare = r.balancer_request_us if r.balancer_request_us is not None else r.bare_request_us
    if bare <= 0:
        return ""
    return f"; the library's publish costs {r.library_us / bare:.2f} of one such publish"


def describe(r: RunResult) -> str:
    """The run's figures in a few lines."""
    call = "channel()" if r.mode == "sync" else "await achannel()"
    loads = (
        f"{r.load_before[0]:.2f} before, {r.load_after[0]:.2f} after "
        f"(1-minute load average, {os.cpu_count()} cores)"
    )
    clients = ", ".join(f"{c * 100:.0f}%" for c in r.client_cores)
    lines = [
        f"{r.topology}, {r.mode} ({call}): {r.publishers} publishers x "
        f"{r.rate / r.publishers:,.0f}/s for {r.seconds:g} s to {r.subscribers:,} connections "
        f"on {r.channels:,} channels; {r.routing}",
        f"  latency publish -> receive: p50 {r.p50_ms:.1f} ms, p99 {r.p99_ms:.1f} ms, "
        f"max {r.max_ms:.1f} ms; {_ratio(r.p99_ms, P99_TARGET_MS, ' ms', 'p99 <=')}",
        f"  events: {r.published:,} published (delivered {r.delivered:,}, failed {r.failed:,}, "
        f"unknown {r.unknown:,}, other errors {r.broken:,}); deliveries expected "
        f"{r.expected:,}, received {r.received:,}: lost {r.lost:,}, doubled {r.doubled:,}, "
        f"failed but arrived {r.failed_arrived:,}, misrouted {r.misrouted:,}, late from an "
        f"earlier run {r.late_from_earlier_run:,}",
        f"  library CPU: {r.library_us:.0f} µs per publish (of which system time, the "
        f"kernel's, {r.library_system_us:.0f} µs) = {r.library_cores:.3f} of one core "
        f"at {r.rate:,.0f}/s (publisher processes {r.publisher_cores:.3f} cores, the same "
        f"paced loop without the publish call {r.baseline_cores:.3f}); "
        f"{_ratio(r.library_us * TARGET_RATE / 1e6, CORES_TARGET, ' core', 'at 2,000/s <=')}",
        f"  control process (the same paced loop, no publish call, beside the publishers): "
        f"{r.control_quiet_us:.0f} µs per iteration before the publishing, "
        f"{r.control_busy_us:.0f} µs during it; the publishers' CPU per publish less the "
        f"control's during it: {r.library_beside_control_us:.0f} µs = "
        f"{r.library_beside_control_us * r.rate / 1e6:.3f} of one core",
        f"  for scale: one bare HTTP publish from Python (http.client, signed once, a new "
        f"connection each, as soketi closes it after every answer) costs {r.bare_request_us:.0f} "
        "µs of CPU here"
        + (
            ""
            if r.balancer_request_us is None
            else f"; through nginx on a kept-open connection: {r.balancer_request_us:.0f} µs"
        )
        + _per_bare(r),
        f"  pacing: {r.achieved_rate:,.0f}/s achieved, furthest behind schedule "
        f"{r.late_ms:.1f} ms; one publish call took p50 {r.call_p50_ms:.2f} ms, "
        f"p99 {r.call_p99_ms:.1f} ms (wall)",
        f"  soketi: {r.soketi_cores:.2f} cores in all, while publishing"
        + ("" if r.balancer_cores is None else f"; balancer: {r.balancer_cores:.2f} cores"),
        f"  subscribers: {len(r.client_cores)} client processes at {clients} of a core while "
        f"publishing, {r.client_us_per_event:.0f} µs per event received (one process would "
        f"take about {1e6 / max(r.client_us_per_event, 1):,.0f} events/s on a whole core); "
        f"event-loop lag p99 {r.client_lag_p99_ms:.1f} ms, max {r.client_lag_max_ms:.1f} ms; "
        f"{r.client_closed} of {r.client_connections:,} connections closed, "
        f"{r.client_errors} protocol errors",
        f"  machine: {loads}",
    ]
    if r.first_error:
        lines.append(f"  first error: {r.first_error}")
    return "\n".join(lines)


def _ms(value: float) -> str:
    """Milliseconds with three figures at most: ``9.1 ms``, ``46.9 ms``, ``1,522 ms``."""
    return f"{value:.1f} ms" if value < 100 else f"{value:,.0f} ms"


def table(results: Sequence[RunResult]) -> str:
    """A Markdown table of the runs (for docs/scaling.md)."""
    lines = [
        "| Through | Publishing | Reached | p50 | p99 | max | Received / expected "
        "| Lost / doubled | Library CPU per publish | Load average |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        mode = "sync `channel()`" if r.mode == "sync" else "async `achannel()`"
        lines.append(
            f"| {r.topology} | {mode} | {r.achieved_rate:,.0f}/s | {_ms(r.p50_ms)} "
            f"| {_ms(r.p99_ms)} | {r.max_ms:,.0f} ms | {r.received:,} / {r.expected:,} "
            f"| {r.lost} / {r.doubled} | {r.library_us:,.0f} µs "
            f"| {r.load_before[0]:.1f} → {r.load_after[0]:.1f} |"
        )
    return "\n".join(lines)


def _parse(argv: list[str] | None) -> tuple[Settings, argparse.Namespace]:
    d = Settings()
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", type=int, default=d.nodes, help="soketi nodes in the cluster")
    parser.add_argument("--rate", type=float, default=d.rate, help="publishes/s, all together")
    parser.add_argument("--publishers", type=int, default=d.publishers, help="processes")
    parser.add_argument("--subscribers", type=int, default=d.subscribers, help="connections")
    parser.add_argument("--channels", type=int, default=0, help="0: one per subscriber")
    parser.add_argument("--seconds", type=float, default=d.seconds, help="publishing time")
    parser.add_argument("--baseline", type=float, default=d.baseline, help="baseline seconds")
    parser.add_argument("--clients", type=int, default=d.clients, help="subscriber processes")
    parser.add_argument("--modes", default="sync,async", help="sync, async or both")
    parser.add_argument(
        "--only",
        default=None,
        help=f"topologies, comma-separated, of {', '.join(KINDS)} (default: all; balanced is "
        "skipped where nginx is missing, unless named here)",
    )
    parser.add_argument("--settle", type=float, default=d.settle)
    parser.add_argument(
        "--timeout", type=float, default=0.0, help="the driver's timeout (default: its own)"
    )
    parser.add_argument(
        "--linger", type=float, default=0.0, help="batch_linger seconds (async; default 0)"
    )
    parser.add_argument(
        "--max-batch",
        type=int,
        default=0,
        help="events per /batch_events request: soketi's maxEventBatchSize on every node and "
        "the driver's max_batch_events (default: both at 10)",
    )
    parser.add_argument(
        "--loop",
        choices=("asyncio", "uvloop"),
        default="asyncio",
        help="the async publishers' event loop (uvloop: what uvicorn[standard] runs an app on; "
        "pip install uvloop)",
    )
    parser.add_argument(
        "--json",
        nargs="?",
        const=str(RESULTS),
        metavar="FILE",
        help=f"write every figure as JSON (default file: {RESULTS.relative_to(ROOT)})",
    )
    parser.add_argument("--no-targets", action="store_true", help="exit 0 whatever the figures")
    args = parser.parse_args(argv)
    modes = tuple(m.strip() for m in args.modes.split(",") if m.strip())
    kinds = tuple(k.strip() for k in (args.only or ",".join(KINDS)).split(",") if k.strip())
    if not modes or set(modes) - {"sync", "async"}:
        parser.error("--modes: sync, async or sync,async")
    if not kinds or set(kinds) - set(KINDS):
        parser.error(f"--only: one or more of {','.join(KINDS)}")
    if min(args.nodes, args.publishers, args.subscribers, args.clients) < 1 or args.rate <= 0:
        parser.error("--nodes, --publishers, --subscribers, --clients and --rate must be > 0")
    if not 0 <= args.max_batch <= 1000:
        parser.error("--max-batch: 1 to 1000 (0: the default, 10)")
    if args.seconds <= 0 or args.baseline <= 0:
        parser.error("--seconds and --baseline must be > 0")
    if args.loop == "uvloop" and importlib.util.find_spec("uvloop") is None:
        parser.error("--loop uvloop: uvloop is not installed (pip install uvloop)")
    settings = Settings(
        nodes=args.nodes,
        rate=args.rate,
        publishers=args.publishers,
        subscribers=args.subscribers,
        channels=args.channels,
        seconds=args.seconds,
        baseline=args.baseline,
        clients=min(args.clients, args.subscribers),
        modes=modes,
        topologies=kinds,
        settle=args.settle,
        timeout=args.timeout,
        linger=args.linger,
        max_batch=args.max_batch,
        loop=args.loop,
    )
    return settings, args


def main(argv: list[str] | None = None) -> int:
    settings, args = _parse(argv)
    print(
        f"{settings.publishers} publishers, {settings.rate:,.0f} publishes/s in all, "
        f"{settings.seconds:g} s per run (after a {settings.baseline:g} s baseline); "
        f"{settings.subscribers:,} connections on {settings.channel_count:,} channels in "
        f"{settings.clients} client processes; {os.cpu_count()} cores, load average "
        f"{os.getloadavg()[0]:.2f}"
    )
    print(f"Method: {METHOD}")
    print(
        f"Async publishes: batch_linger {settings.linger:g} s (--linger), on "
        f"{settings.loop}'s event loop (--loop)"
    )
    print(
        "Events per /batch_events request at most: "
        f"{settings.max_batch or 10} (--max-batch; soketi's and the driver's limit)"
    )
    # only what the user did not name may be skipped (nginx is all that may be missing)
    optional = ("balanced",) if args.only is None else ()
    try:
        results = benchmark(settings, optional=optional)
    except RedisUnavailable as exc:
        print(f"cannot run the cluster: {exc}", file=sys.stderr)
        return 2
    except NginxUnavailable as exc:
        print(f"cannot run the balanced topology (nginx): {exc}", file=sys.stderr)
        return 2
    print()
    print(table(results))
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "machine": machine_info(),
            "settings": asdict(settings),
            "method": METHOD,
            "targets": {"p99_ms": P99_TARGET_MS, "library_cores_at_2000": CORES_TARGET},
            "runs": [
                {**asdict(r), "p99_ratio": r.p99_ratio, "cores_ratio": r.cores_ratio}
                for r in results
            ],
        }
        path.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
        print(f"wrote {path}")
    broken = [f"{r.topology} {r.mode}" for r in results if not r.promises_kept]
    missed = [f"{r.topology} {r.mode}" for r in results if r.p99_ratio > 1 or r.cores_ratio > 1]
    if broken:
        print(f"delivery promises broken in: {', '.join(broken)}")
        return 1
    if missed and not args.no_targets:
        print(f"targets missed in: {', '.join(missed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
