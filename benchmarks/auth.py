"""Authorizations per second: in process, through the ASGI endpoint, and in a reconnect storm.

    python benchmarks/auth.py            # full run (about two minutes on 2 cores)
    python benchmarks/auth.py --quick    # smoke run (a few seconds; writes nothing)
    # the storm on uvicorn[standard] (uvloop, httptools) too, from a second venv:
    python -m venv /tmp/std && /tmp/std/bin/pip install -e ./core -e ./plugins/pusher_driver \
        starlette "uvicorn[standard]"
    python benchmarks/auth.py --server-python "$(command -v python)" \
        --server-python /tmp/std/bin/python

Three groups (issue 11's targets: >= 20,000/s in process, >= 2,000/s through the
ASGI endpoint):

1. In process: ``broadcast.authorize()`` (a rule, the authorize hook, the
   driver's signature) for private and presence channels on the ``memory`` and
   ``pusher`` drivers, and the raw ``pusher`` SDK's ``authenticate()`` doing the
   signing alone, for a ratio. Signing is local: no server is involved.
2. Through the ASGI endpoint in process: httpx's ``ASGITransport`` posting
   pusher-js's form to the Starlette routes, 32 in flight. This counts httpx's
   own client-side cost too, so it is a floor for the endpoint.
3. Reconnect storm: a real uvicorn (its own process, so client and server do not
   share one GIL) and N clients, each on its own connection, posting all their
   authorizations at once (one private and one presence channel each), as
   browsers do when a server restart drops every WebSocket. Time to the last
   answer, throughput and latency percentiles.

Prints a table and writes ``benchmarks/results/auth.md`` (not with ``--quick``).
Figures are medians [min-max] over repetitions after one warm-up; client and
server share the machine, so absolute figures drift between runs while the
ratios hold. Timings are never asserted by the tests.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as _dt
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "auth.md"

PUSHER = {
    "app_id": "1234567",
    "key": "bench-key",
    "secret": "bench-secret",
    "cluster": "eu",
    "encryption_master_key_base64": "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
}
IN_PROCESS_TARGET = 20_000.0
ASGI_TARGET = 2_000.0


# -- the application under test ------------------------------------------------------------


def make_broadcast(driver: str) -> Any:
    """A Broadcast on ``driver`` with the rules a typical application has."""
    from broadcasting import Broadcast

    config: dict[str, Any] = {"DRIVER": driver}
    if driver == "pusher":
        config["DRIVERS"] = {"pusher": dict(PUSHER)}
    broadcast = Broadcast(config)

    @broadcast.rule("orders.{order_id}")
    def order_owner(user: dict[str, Any], order_id: str) -> bool:
        return order_id in user["orders"]

    @broadcast.rule("chat.{room}")
    def chat_member(user: dict[str, Any], room: str) -> dict[str, Any]:
        return {"id": user["id"], "name": user["name"]}

    return broadcast


USER = {"id": "1", "name": "Ada", "orders": {"42"}}


async def current_user(request: Any) -> dict[str, Any]:
    """An async app's user function (a sync one would run in the thread pool)."""
    return USER


def make_app(driver: str) -> Any:
    """The Starlette routes on ``driver``; ``constant`` is the floor: a route that only answers."""
    from starlette.applications import Starlette

    if driver == "constant":
        from starlette.requests import Request
        from starlette.responses import JSONResponse
        from starlette.routing import Route

        async def constant(request: Request) -> JSONResponse:
            await request.body()
            return JSONResponse({"auth": "constant"}, headers={"cache-control": "no-store"})

        return Starlette(routes=[Route("/broadcasting/auth", constant, methods=["POST"])])

    from broadcasting.web.starlette import broadcasting_routes

    return Starlette(routes=broadcasting_routes(make_broadcast(driver), user=current_user))


# -- statistics ------------------------------------------------------------------------------


@dataclass
class Figure:
    samples: list[float]
    unit: str

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    def text(self) -> str:
        lo, hi = min(self.samples), max(self.samples)
        return f"{_num(self.median)} [{_num(lo)}-{_num(hi)}] {self.unit}"


def _num(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


@dataclass
class Row:
    group: str
    workload: str
    ours: Figure
    baseline: Figure | None = None
    baseline_name: str = ""
    target: float | None = None
    lower_is_better: bool = False

    def ratio(self) -> str:
        if self.baseline is None:
            return "—"
        ratio = self.ours.median / self.baseline.median
        return f"**{1 / ratio if self.lower_is_better else ratio:.2f}x**"

    def met(self) -> str:
        if self.target is None:
            return "—"
        return "**yes**" if self.ours.median >= self.target else "**no**"


def rate(run: Callable[[int], None], count: int, repetitions: int) -> Figure:
    """Operations per second of ``run(count)``, one warm-up then ``repetitions``."""
    run(max(1, count // 10))
    samples = []
    for _ in range(repetitions):
        start = time.perf_counter()
        run(count)
        samples.append(count / (time.perf_counter() - start))
    return Figure(samples, "auth/s")


# -- 1. in process -----------------------------------------------------------------------------


def in_process(count: int, repetitions: int) -> list[Row]:
    rows: list[Row] = []
    raw = _raw_pusher()
    for driver in ("memory", "pusher"):
        broadcast = make_broadcast(driver)
        for kind, channel in (
            ("private", "private-orders.42"),
            ("presence", "presence-chat.1"),
            ("encrypted", "private-encrypted-orders.42"),
        ):
            if kind == "encrypted" and driver == "memory":
                continue

            def run(n: int, broadcast: Any = broadcast, channel: str = channel) -> None:
                authorize = broadcast.authorize
                for i in range(n):
                    authorize(USER, socket_id=f"{i}.1", channel_name=channel)

            ours = rate(run, count, repetitions)
            baseline = None
            if driver == "pusher" and raw is not None:
                baseline = rate(_raw_run(raw, kind, channel), count, repetitions)
            rows.append(
                Row(
                    "1. In process",
                    f"`authorize()` on `{driver}`, {kind} channel (rule + hook + signature)",
                    ours,
                    baseline,
                    "raw `pusher` SDK `authenticate()`, signing only" if baseline else "",
                    IN_PROCESS_TARGET,
                )
            )
        broadcast.close()
    broadcast = make_broadcast("memory")

    async def arun(n: int) -> None:
        for i in range(n):
            await broadcast.aauthorize(USER, socket_id=f"{i}.1", channel_name="presence-chat.1")

    rows.append(
        Row(
            "1. In process",
            "`await aauthorize()` on `memory`, presence channel",
            rate(lambda n: asyncio.run(arun(n)), count, repetitions),
            target=IN_PROCESS_TARGET,
        )
    )
    broadcast.close()
    return rows


def _raw_pusher() -> Any:
    try:
        import pusher
    except ImportError:
        return None
    return pusher.Pusher(
        app_id=PUSHER["app_id"],
        key=PUSHER["key"],
        secret=PUSHER["secret"],
        cluster=PUSHER["cluster"],
        encryption_master_key_base64=PUSHER["encryption_master_key_base64"],
    )


def _raw_run(raw: Any, kind: str, channel: str) -> Callable[[int], None]:
    import json

    def run(n: int) -> None:
        for i in range(n):
            if kind == "presence":
                raw.authenticate(
                    channel=channel,
                    socket_id=f"{i}.1",
                    custom_data={"user_id": USER["id"], "user_info": {"id": "1", "name": "Ada"}},
                )
            else:
                answer = raw.authenticate(channel=channel, socket_id=f"{i}.1")
                if kind == "encrypted":  # the SDK's bytes must become text to be sent
                    answer["shared_secret"] = answer["shared_secret"].decode()
                    json.dumps(answer)

    return run


# -- 2. the ASGI endpoint in process -----------------------------------------------------------


def asgi_in_process(count: int, repetitions: int, in_flight: int = 32) -> list[Row]:
    import httpx

    def runner(app: Any, channel: str) -> Callable[[int], None]:
        async def run_async(n: int) -> None:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
                queue = iter(range(n))

                async def worker() -> None:
                    for i in queue:
                        reply = await client.post(
                            "/broadcasting/auth",
                            data={"socket_id": f"{i}.1", "channel_name": channel},
                        )
                        if reply.status_code != 200:
                            raise RuntimeError(f"{reply.status_code}: {reply.text}")

                await asyncio.gather(*(worker() for _ in range(in_flight)))

        return lambda n: asyncio.run(run_async(n))

    floor = rate(runner(make_app("constant"), "private-orders.42"), count, repetitions)
    rows = []
    for driver, channel in (("memory", "private-orders.42"), ("pusher", "presence-chat.1")):
        kind = channel.split("-")[0]
        rows.append(
            Row(
                "2. ASGI endpoint, in process",
                f"`POST /broadcasting/auth` (Starlette routes) on `{driver}`, {kind}, "
                f"through httpx's `ASGITransport`, {in_flight} in flight",
                rate(runner(make_app(driver), channel), count, repetitions),
                floor,
                "the same through a Starlette route answering a constant: httpx's floor",
                ASGI_TARGET,
            )
        )
    return rows


def asgi_direct(count: int, repetitions: int, in_flight: int = 32) -> list[Row]:
    """The ASGI app called with a ready scope: the endpoint's own cost, no HTTP at all."""
    rows = []
    for driver, channel in (("memory", "private-orders.42"), ("pusher", "presence-chat.1")):
        app = make_app(driver)

        async def call(i: int, app: Any = app, channel: str = channel) -> None:
            body = f"socket_id={i}.1&channel_name={channel}".encode()
            scope = {
                "type": "http",
                "asgi": {"version": "3.0"},
                "http_version": "1.1",
                "method": "POST",
                "scheme": "http",
                "path": "/broadcasting/auth",
                "raw_path": b"/broadcasting/auth",
                "query_string": b"",
                "root_path": "",
                "headers": [
                    (b"host", b"bench"),
                    (b"content-type", b"application/x-www-form-urlencoded"),
                    (b"content-length", str(len(body)).encode()),
                ],
                "client": ("127.0.0.1", 1),
                "server": ("127.0.0.1", 80),
            }
            messages = [{"type": "http.request", "body": body, "more_body": False}]
            sent: list[Any] = []

            async def receive() -> Any:
                return messages.pop() if messages else {"type": "http.disconnect"}

            async def send(message: Any) -> None:
                sent.append(message)

            await app(scope, receive, send)
            if sent[0]["status"] != 200:
                raise RuntimeError(f"status {sent[0]['status']}")

        async def run_async(n: int, call: Any = call) -> None:
            queue = iter(range(n))

            async def worker() -> None:
                for i in queue:
                    await call(i)

            await asyncio.gather(*(worker() for _ in range(in_flight)))

        kind = channel.split("-")[0]
        rows.append(
            Row(
                "2. ASGI endpoint, in process",
                f"the Starlette routes' ASGI app called directly on `{driver}`, {kind}, "
                f"{in_flight} in flight (the endpoint's own cost: no HTTP client or server)",
                rate(lambda n, r=run_async: asyncio.run(r(n)), count, repetitions),
                target=ASGI_TARGET,
            )
        )
    return rows


# -- 3. reconnect storm on a real uvicorn ------------------------------------------------------


def serve(fd: int, driver: str) -> None:
    """Child process: uvicorn serving the Starlette routes on an inherited socket."""
    import uvicorn

    sock = socket.socket(fileno=fd)
    config = uvicorn.Config(make_app(driver), log_level="warning", lifespan="off", access_log=False)
    uvicorn.Server(config).run(sockets=[sock])


@dataclass
class Storm:
    seconds: float
    latencies: list[float]


async def _client(host: str, port: int, socket_id: str) -> list[float]:
    """One browser coming back: connect, post its two authorizations on that connection.

    A bare asyncio HTTP/1.1 client (no HTTP library), so the client's own cost
    stays small next to the server's. Returns each authorization's latency,
    counted from the moment the client started connecting.
    """
    started = time.perf_counter()
    reader, writer = await asyncio.open_connection(host, port)
    latencies = []
    for channel in ("private-orders.42", "presence-chat.1"):
        body = f"socket_id={socket_id}&channel_name={channel}".encode()
        writer.write(
            b"POST /broadcasting/auth HTTP/1.1\r\nHost: bench\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        answer = await reader.readexactly(length)
        if not head.startswith(b"HTTP/1.1 200 ") or b'"auth"' not in answer:
            raise RuntimeError(f"unexpected answer: {head[:100]!r} {answer[:100]!r}")
        latencies.append(time.perf_counter() - started)
    writer.close()
    return latencies


async def _storm(host: str, port: int, clients: int) -> Storm:
    started = time.perf_counter()
    each = await asyncio.gather(*(_client(host, port, f"{i}.1") for i in range(clients)))
    return Storm(time.perf_counter() - started, [x for pair in each for x in pair])


def _storms(driver: str, clients: int, repetitions: int, python: str) -> list[Storm]:
    """Storms against a real uvicorn in its own process serving ``make_app(driver)``."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(4096)
    host, port = listener.getsockname()
    child = subprocess.Popen(
        [python, __file__, "--serve-fd", str(listener.fileno()), "--driver", driver],
        pass_fds=[listener.fileno()],
    )
    try:
        # the first answer says the server is up (the socket queued the request meanwhile)
        asyncio.run(_storm(host, port, 1))
        asyncio.run(_storm(host, port, max(1, clients // 10)))  # warm-up
        return [asyncio.run(_storm(host, port, clients)) for _ in range(repetitions)]
    finally:
        child.terminate()
        child.wait(10)
        listener.close()


def reconnect_storm(
    clients: int, repetitions: int, python: str, driver: str = "pusher"
) -> list[Row]:
    storms = _storms(driver, clients, repetitions, python)
    floor = _storms("constant", clients, repetitions, python)
    requests = 2 * clients

    def throughput(runs: list[Storm]) -> Figure:
        return Figure([requests / s.seconds for s in runs], "auth/s")

    def millis(values: list[float]) -> Figure:
        return Figure([v * 1000 for v in values], "ms")

    where = f"real uvicorn (1 worker, own process, {_uvicorn_flavour(python)}) on `{driver}`"
    what = (
        f"{clients:,} clients at once, each connecting and posting a private then a "
        "presence authorization on its connection"
    )
    floor_name = "same storm, a Starlette route answering a constant: the server's floor"
    return [
        Row(
            "3. Reconnect storm",
            f"{what}: throughput — {where}",
            throughput(storms),
            throughput(floor),
            floor_name,
            ASGI_TARGET,
        ),
        Row(
            "3. Reconnect storm",
            f"{what}: time to the last answer",
            millis([s.seconds for s in storms]),
            millis([s.seconds for s in floor]),
            floor_name,
            lower_is_better=True,
        ),
        Row(
            "3. Reconnect storm",
            f"{what}: latency p50",
            millis([_percentile(s.latencies, 50) for s in storms]),
            millis([_percentile(s.latencies, 50) for s in floor]),
            floor_name,
            lower_is_better=True,
        ),
        Row(
            "3. Reconnect storm",
            f"{what}: latency p99",
            millis([_percentile(s.latencies, 99) for s in storms]),
            millis([_percentile(s.latencies, 99) for s in floor]),
            floor_name,
            lower_is_better=True,
        ),
    ]


def _uvicorn_flavour(python: str) -> str:
    """Which of uvicorn's speed-ups ``python`` has (``uvicorn[standard]`` installs both)."""
    code = (
        "import importlib.util as u; "
        "print(' and '.join(m for m in ('uvloop', 'httptools') if u.find_spec(m)))"
    )
    found = subprocess.run([python, "-c", code], capture_output=True, text=True, check=True)
    extras = found.stdout.strip()
    if not extras:
        return "plain `uvicorn`: asyncio and h11"
    return f"`uvicorn[standard]`: {extras}"


def _percentile(values: Iterable[float], pct: int) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered)) - 1))
    return ordered[index]


# -- the table ---------------------------------------------------------------------------------


def _versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    found = []
    for name in ("broadcasting", "broadcasting-pusher", "pusher", "starlette", "uvicorn", "httpx"):
        with contextlib.suppress(PackageNotFoundError):
            found.append(f"{name} {version(name)}")
    return ", ".join(found)


def table(rows: list[Row], header: str) -> str:
    lines = [
        header,
        "",
        "| # | Workload | Ours | Baseline | Ratio | Target | Met? |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        baseline = f"{row.baseline.text()} ({row.baseline_name})" if row.baseline else "—"
        target = f"≥ {row.target:,.0f} auth/s" if row.target else "—"
        lines.append(
            f"| {row.group} | {row.workload} | {row.ours.text()} | {baseline} | "
            f"{row.ratio()} | {target} | {row.met()} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run; writes nothing")
    parser.add_argument("--clients", type=int, default=None, help="reconnect storm size")
    parser.add_argument(
        "--server-python",
        action="append",
        help="the interpreter(s) that run uvicorn for the storm (default: this one); "
        "give one with uvicorn[standard] installed to measure uvloop and httptools too",
    )
    parser.add_argument("--serve-fd", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--driver", default="pusher", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_fd is not None:
        serve(args.serve_fd, args.driver)
        return 0
    quick = args.quick
    count, repetitions = (2_000, 2) if quick else (20_000, 5)
    clients = args.clients or (100 if quick else 1_000)
    rows = [
        *in_process(count, repetitions),
        *asgi_direct(count // 2, repetitions),
        *asgi_in_process(count // 4, repetitions),
    ]
    for python in args.server_python or [sys.executable]:
        rows.extend(reconnect_storm(clients, repetitions, python))
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    header = (
        f"# Authorization benchmarks\n\nRun {now} on {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, CPython {platform.python_version()}; "
        f"{'quick' if quick else 'full'} mode, {repetitions} repetitions after 1 warm-up. "
        f"Packages: {_versions()}.\n\n"
        "Figures are median [min-max] over the repetitions. *Ratio* is ours ÷ the baseline "
        "(for times, the baseline's ÷ ours): in group 1 the raw SDK doing the signing "
        "alone (ours also matches the channel rule and runs the authorize hook); in groups "
        "2 and 3 the same client and server answering from a route that returns a constant, "
        "the most that client and server allow. Client and server share a 2-core machine "
        "with other work, so absolute figures drift between runs. Made by "
        "`python benchmarks/auth.py`."
    )
    text = table(rows, header)
    print(text)
    if not quick:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(text, encoding="utf-8")
        print(f"written to {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
