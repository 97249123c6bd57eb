"""The CPU one HTTP request costs in each candidate client, against soketi (issue 21): the
evidence for the pusher driver's choice of transport.

Usage::

    python benchmarks/http_clients.py                      # 500 requests at 50/s, 3 rounds
    python benchmarks/http_clients.py --count 2000 --rounds 5
    python benchmarks/http_clients.py --only aiohttp,streams --rate 100

Why: issue 21 allows the library 0.25 of one core while 4 processes publish 2,000 events/s
in all, i.e. 125 µs of CPU per publish, for everything (the core, the driver, the SDK's
signing, the HTTP client, the kernel's socket work). soketi answers every request with
``Connection: close`` and a ``/batch_events`` request carries at most 10 events, so an async
publisher at 500 publishes/s sends 50 requests a second, each on a new TCP connection. The
profiles show the HTTP client as the largest single share of a publish; this measures that
share alone, for each client the driver could use, so the choice rests on a figure.

What each client sends, to one soketi on 127.0.0.1 (``_servers.soketi()``): the same signed
``POST /apps/{id}/batch_events`` of 10 events, built by the driver's own code
(``_api.request_for``), so every client writes the bytes the driver would. It is signed again
before each measured run (a run is far shorter than the signature's lifetime), outside the
measurement. The clients:

- **aiohttp**: a ``ClientSession`` made by the driver's ``_transport._new_transport`` (its
  connector, limits and timeouts), used as ``SessionBackend._send`` uses it;
- **driver asend**: ``Broadcast(...).driver("pusher").driver.asend(batch)``: the same
  session, plus what the driver does per request (building the body, signing, routing, reading
  the answer). Its difference to the aiohttp row is the driver's own share;
- **httpcore**: an ``AsyncConnectionPool`` (skipped if httpcore is not installed);
- **h11 + streams**: h11's parser over ``asyncio.open_connection`` (skipped without h11);
- **streams**: ``asyncio.open_connection``, the request written by hand and the answer read by
  its ``Content-Length``: the floor for any client on asyncio's streams;
- **http.client (sync)**: the driver's sync ``ConnectionPool.request``, paced with
  ``time.sleep`` on the main thread, as a sync view publishes.

Every answer must be a 200 that acknowledges the batch (soketi's body is ``{"ok": true}``,
Pusher's ``{}``); the driver's asend checks its answer itself and raises otherwise. Any other
answer ends the run with exit 1.

How it is measured: each client sends ``--count`` requests at a paced ``--rate`` (each request
starts at its due time, one at a time: none early, none in a burst; at 50/s the CPU caches
are cold between requests, as in the publishing benchmark). Its cost is this process's CPU
time over the run (``getrusage``: user + system, all threads) minus that of the same paced
loop with a send that does nothing (async or sync, as the client), per request. A few
requests first, not measured, open the client and warm its code paths. ``--rounds`` rounds,
each measuring both empty loops and every client in a rotated order (none is always first);
the table shows the least of the rounds (min of N: the run least disturbed by other work on a
shared machine) and their median, the ratio to aiohttp's least, and the cost per publish when
a request carries 10 of them. soketi's own CPU is not counted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import os
import resource
import statistics
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Union

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import _servers  # noqa: E402

from broadcasting import Broadcast  # noqa: E402
from broadcasting._types import Message, encode_payload  # noqa: E402
from broadcasting.plugin import Batch, Part  # noqa: E402
from broadcasting_pusher._api import request_for, wire  # noqa: E402
from broadcasting_pusher._driver import BroadcastPusherDriver  # noqa: E402
from broadcasting_pusher._hosts import Hosts  # noqa: E402
from broadcasting_pusher._rules import MAX_BATCH_EVENTS  # noqa: E402
from broadcasting_pusher._settings import parse_settings  # noqa: E402
from broadcasting_pusher._transport import ConnectionPool, _new_transport  # noqa: E402

BUDGET_US = 125.0  #: CPU per publish, in all: 0.25 core at 2,000 publishes/s (issue 21)
WARM_UP = 3  #: requests sent before each measured run, not measured
ACCEPTED: list[object] = [{}, {"ok": True}]  #: bodies of a 200 that acknowledged the batch


class Wire(NamedTuple):
    """One signed request, as the driver would send it."""

    method: str
    target: str  #: path and signed query
    body: bytes
    headers: dict[str, str]


#: What a send returns: the status and body, or None when the send checked the answer itself.
Answer = Union[tuple[int, bytes], None]
AsyncSend = Callable[[Wire], Awaitable[Answer]]
SyncSend = Callable[[Wire], Answer]


@dataclass(frozen=True)
class Target:
    """The soketi the clients talk to, and the driver's options for it."""

    options: dict[str, Any]

    @property
    def host(self) -> str:
        return str(self.options["host"])

    @property
    def port(self) -> int:
        return int(self.options["port"])

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"


def batch_of_events() -> Batch:
    """A request's worth of publishes: 10 events, each to a channel of its own."""
    parts = []
    for seq in range(MAX_BATCH_EVENTS):
        data = {"id": seq, "status": "shipped", "items": 3}
        channel = f"orders-{seq}"
        message = Message((channel,), "shipped", data, encode_payload(data), uuid.uuid4().hex)
        parts.append(Part(message, (channel,)))
    return Batch(tuple(parts))


def signed(target: Target, batch: Batch) -> Wire:
    """``batch`` as the driver's ``/batch_events`` request, signed now."""
    driver = BroadcastPusherDriver.from_config(target.options)
    try:
        method, path, body, headers, _ = wire(request_for(driver._client, batch, None))
    finally:
        driver.close()
    return Wire(method, path, body, headers)


def acknowledged(answer: Answer) -> bool:
    if answer is None:
        return True
    status, body = answer
    try:
        return status == 200 and json.loads(body) in ACCEPTED
    except ValueError:
        return False


def _head(request: Wire, target: Target) -> bytes:
    lines = [f"{request.method} {request.target} HTTP/1.1", f"Host: {target.host}:{target.port}"]
    lines += [f"{name}: {value}" for name, value in request.headers.items()]
    lines += [f"Content-Length: {len(request.body)}", "", ""]
    return "\r\n".join(lines).encode("latin-1")


def _status_and_length(head: bytes) -> tuple[int, int]:
    """The status and ``Content-Length`` of an answer's head (soketi always sends one)."""
    status_line, *fields = head.decode("latin-1").split("\r\n")
    status = int(status_line.split(" ", 2)[1])
    for line in fields:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            return status, int(value)
    raise RuntimeError(f"an answer without Content-Length: {status_line}")


# -- the clients ----------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def aiohttp_session(target: Target) -> AsyncIterator[AsyncSend]:
    """The session the driver makes, used as its SessionBackend uses it."""
    import aiohttp

    settings = parse_settings(target.options)
    session = _new_transport(settings, Hosts(settings.nodes))
    assert isinstance(session, aiohttp.ClientSession)

    async def send(request: Wire) -> Answer:
        url = target.base_url + request.target
        async with session.request(
            request.method, url, data=request.body, headers=request.headers
        ) as response:
            return response.status, await response.read()

    try:
        yield send
    finally:
        await session.close()


@contextlib.asynccontextmanager
async def driver_asend(target: Target) -> AsyncIterator[AsyncSend]:
    """The driver's own ``asend``: it builds, signs and checks each request itself."""
    config = {"DRIVER": "pusher", "DRIVERS": {"pusher": target.options}}
    async with Broadcast(config) as broadcast:
        driver = broadcast.driver("pusher").driver
        batch = batch_of_events()

        async def send(request: Wire) -> Answer:
            await driver.asend(batch)  # raises unless soketi acknowledged it
            return None

        yield send


@contextlib.asynccontextmanager
async def httpcore_pool(target: Target) -> AsyncIterator[AsyncSend]:
    import httpcore

    async with httpcore.AsyncConnectionPool() as pool:

        async def send(request: Wire) -> Answer:
            response = await pool.request(
                request.method,
                target.base_url + request.target,
                headers=list(request.headers.items()),
                content=request.body,
            )
            return response.status, response.content

        yield send


@contextlib.asynccontextmanager
async def h11_streams(target: Target) -> AsyncIterator[AsyncSend]:
    """h11 parses, asyncio's streams carry: a new connection per request (soketi closes it)."""
    import h11

    async def send(request: Wire) -> Answer:
        reader, writer = await asyncio.open_connection(target.host, target.port)
        try:
            conn = h11.Connection(h11.CLIENT)
            headers = [("Host", f"{target.host}:{target.port}"), *request.headers.items()]
            headers.append(("Content-Length", str(len(request.body))))
            head = h11.Request(method=request.method, target=request.target, headers=headers)
            for event in (head, h11.Data(data=request.body), h11.EndOfMessage()):
                writer.write(conn.send(event) or b"")
            status, body = 0, b""
            while True:
                got = conn.next_event()
                if got is h11.NEED_DATA:
                    conn.receive_data(await reader.read(65536))
                elif isinstance(got, h11.Response):
                    status = got.status_code
                elif isinstance(got, h11.Data):
                    body += got.data
                elif isinstance(got, (h11.EndOfMessage, h11.ConnectionClosed)):
                    return status, body
        finally:
            writer.close()

    yield send


@contextlib.asynccontextmanager
async def raw_streams(target: Target) -> AsyncIterator[AsyncSend]:
    """The request written by hand, the answer read by its Content-Length: the floor."""

    async def send(request: Wire) -> Answer:
        reader, writer = await asyncio.open_connection(target.host, target.port)
        try:
            writer.write(_head(request, target) + request.body)
            status, length = _status_and_length(await reader.readuntil(b"\r\n\r\n"))
            return status, await reader.readexactly(length)
        finally:
            writer.close()

    yield send


@contextlib.contextmanager
def sync_pool(target: Target) -> Iterator[SyncSend]:
    """The driver's sync transport: ``ConnectionPool.request`` over ``http.client``."""
    pool = ConnectionPool(parse_settings(target.options))

    def send(request: Wire) -> Answer:
        return pool.request(request.method, request.target, request.body, request.headers)

    try:
        yield send
    finally:
        pool.close()


@contextlib.asynccontextmanager
async def async_nothing(target: Target) -> AsyncIterator[AsyncSend]:
    async def send(request: Wire) -> Answer:
        return None

    yield send


@contextlib.contextmanager
def sync_nothing(target: Target) -> Iterator[SyncSend]:
    yield lambda request: None


AsyncOpener = Callable[[Target], contextlib.AbstractAsyncContextManager[AsyncSend]]
SyncOpener = Callable[[Target], contextlib.AbstractContextManager[SyncSend]]


@dataclass(frozen=True)
class Client:
    key: str  #: for --only
    label: str  #: in the table
    opener: Union[AsyncOpener, SyncOpener]
    is_async: bool = True
    needs: str | None = None  #: the optional package it needs

    @property
    def installed(self) -> bool:
        return self.needs is None or importlib.util.find_spec(self.needs) is not None


CLIENTS = (
    Client("aiohttp", "aiohttp (the driver's session)", aiohttp_session),
    Client("asend", "driver asend (aiohttp + signing)", driver_asend),
    Client("httpcore", "httpcore AsyncConnectionPool", httpcore_pool, needs="httpcore"),
    Client("h11", "h11 + asyncio streams", h11_streams, needs="h11"),
    Client("streams", "asyncio streams, by hand", raw_streams),
    Client("sync", "http.client (the driver's sync pool)", sync_pool, is_async=False),
)
EMPTY = {
    True: Client("empty-async", "empty async loop", async_nothing),
    False: Client("empty-sync", "empty sync loop", sync_nothing, is_async=False),
}


# -- the measurement ------------------------------------------------------------------------


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass(frozen=True)
class Pace:
    count: int
    rate: float


class WrongAnswer(Exception):
    pass


def _check(client: Client, bad: int, pace: Pace) -> None:
    if bad:
        raise WrongAnswer(f"{client.label}: {bad} of {pace.count} answers were not 200 {{}}")


async def _measure_async(client: Client, target: Target, pace: Pace) -> float:
    opener: AsyncOpener = client.opener  # type: ignore[assignment]
    async with opener(target) as send:
        for _ in range(WARM_UP):
            if not acknowledged(await send(signed(target, batch_of_events()))):
                raise WrongAnswer(f"{client.label}: the warm-up was not answered 200 {{}}")
        request, bad = signed(target, batch_of_events()), 0
        began, start = cpu_seconds(), time.perf_counter()
        for i in range(pace.count):
            pause = start + i / pace.rate - time.perf_counter()
            if pause > 0:
                await asyncio.sleep(pause)
            if not acknowledged(await send(request)):
                bad += 1
        spent = cpu_seconds() - began
    _check(client, bad, pace)
    return spent / pace.count


def _measure_sync(client: Client, target: Target, pace: Pace) -> float:
    opener: SyncOpener = client.opener  # type: ignore[assignment]
    with opener(target) as send:
        for _ in range(WARM_UP):
            if not acknowledged(send(signed(target, batch_of_events()))):
                raise WrongAnswer(f"{client.label}: the warm-up was not answered 200 {{}}")
        request, bad = signed(target, batch_of_events()), 0
        began, start = cpu_seconds(), time.perf_counter()
        for i in range(pace.count):
            pause = start + i / pace.rate - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            if not acknowledged(send(request)):
                bad += 1
        spent = cpu_seconds() - began
    _check(client, bad, pace)
    return spent / pace.count


def measure(client: Client, target: Target, pace: Pace) -> float:
    """CPU seconds per iteration of ``client``'s paced run (each async one on a new loop)."""
    if client.is_async:
        return asyncio.run(_measure_async(client, target, pace))
    return _measure_sync(client, target, pace)


@dataclass
class Figures:
    """Each client's CPU per request, one figure per round, in µs (the empty loop subtracted)."""

    per_request: dict[str, list[float]] = field(default_factory=dict)
    empty: dict[bool, list[float]] = field(default_factory=dict)


def run(clients: Sequence[Client], target: Target, pace: Pace, rounds: int) -> Figures:
    figures = Figures()
    kinds = sorted({c.is_async for c in clients}, reverse=True)
    entries = [EMPTY[kind] for kind in kinds] + list(clients)
    for round_ in range(rounds):
        shift = round_ % len(entries)
        order = entries[shift:] + entries[:shift]  # none is always first
        raw = {}
        for entry in order:
            raw[entry.key] = measure(entry, target, pace)
            gross = raw[entry.key] * 1e6
            _servers.log(f"round {round_ + 1}: {entry.label}: {gross:.0f} µs per iteration, gross")
        for kind in kinds:
            figures.empty.setdefault(kind, []).append(raw[EMPTY[kind].key] * 1e6)
        for client in clients:
            net = (raw[client.key] - raw[EMPTY[client.is_async].key]) * 1e6
            figures.per_request.setdefault(client.key, []).append(net)
    return figures


def table(clients: Sequence[Client], figures: Figures, rounds: int) -> list[str]:
    least = {c.key: min(figures.per_request[c.key]) for c in clients}
    reference = least.get("aiohttp")
    lines = [
        f"| client | CPU µs per request (min of {rounds}) | median | vs aiohttp "
        f"| µs per publish ({MAX_BATCH_EVENTS} per request) |",
        "|---|--:|--:|--:|--:|",
    ]
    for c in clients:
        median = statistics.median(figures.per_request[c.key])
        ratio = f"{least[c.key] / reference:.2f}" if reference and reference > 0 else "-"
        per_publish = least[c.key] / MAX_BATCH_EVENTS
        lines.append(
            f"| {c.label} | {least[c.key]:,.0f} | {median:,.0f} | {ratio} | {per_publish:,.0f} |"
        )
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--rate", type=float, default=50.0, help="requests per second")
    parser.add_argument("--count", type=int, default=500, help="requests per client per round")
    parser.add_argument("--rounds", type=int, default=3)
    keys = ",".join(c.key for c in CLIENTS)
    parser.add_argument("--only", default=keys, help=f"clients, comma-separated ({keys})")
    args = parser.parse_args(argv)
    wanted = [key.strip() for key in args.only.split(",") if key.strip()]
    unknown = sorted(set(wanted) - {c.key for c in CLIENTS})
    if unknown or args.rate <= 0 or args.count < 1 or args.rounds < 1:
        parser.error(f"unknown clients: {unknown}" if unknown else "rate, count, rounds: > 0")
    clients = []
    for c in CLIENTS:
        if c.key not in wanted:
            continue
        if not c.installed:
            print(f"{c.label}: skipped, {c.needs} is not installed (pip install {c.needs})")
            continue
        clients.append(c)
    if not clients:
        print("no client to measure")
        return 0  # a client that is not installed is skipped, not an error
    pace = Pace(args.count, args.rate)
    load_before = os.getloadavg()[0]
    with _servers.soketi() as server:
        target = Target(dict(server.pusher_options))
        try:
            figures = run(clients, target, pace, args.rounds)
        except WrongAnswer as exc:
            print(f"FAILED: {exc}")
            return 1
    empty = ", ".join(
        f"{'async' if kind else 'sync'} {statistics.median(values):,.0f} µs"
        for kind, values in figures.empty.items()
    )
    print(
        f"CPU per signed {MAX_BATCH_EVENTS}-event /batch_events POST to soketi (a new TCP "
        f"connection each: soketi closes them): {pace.count} requests at {pace.rate:g}/s per "
        f"client, {args.rounds} rounds; the empty paced loop subtracted ({empty} per "
        f"iteration, median); {os.cpu_count()} cores, load average {load_before:.2f} -> "
        f"{os.getloadavg()[0]:.2f}."
    )
    print()
    print("\n".join(table(clients, figures, args.rounds)))
    print()
    print(
        f"Budget (issue 21): {BUDGET_US:g} µs of CPU per publish in all (core, driver, "
        "signing, HTTP client, kernel): 0.25 core at 2,000 publishes/s."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
