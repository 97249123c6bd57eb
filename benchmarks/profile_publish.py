"""Profile one workload of the benchmarks, to see what limits it.

Usage (pyinstrument must be installed; it is not needed by run.py)::

    python benchmarks/profile_publish.py pusher-async        # ours, driver defaults
    python benchmarks/profile_publish.py pusher-async-sdk    # SDK AsyncIOBackend
    python benchmarks/profile_publish.py ably-async          # ours
    python benchmarks/profile_publish.py ably-async-sdk      # AblyRest
    python benchmarks/profile_publish.py core-null           # channel() on the null driver

Prints CPU time per publish of the client and of the server process, then the
pyinstrument call tree (``async_mode="disabled"``: samples of this thread,
so time waiting in the event loop's ``select`` shows as such) and the top
functions by own time from cProfile. Writes both to
``results/profiles/<workload>.txt``.
"""

from __future__ import annotations

import asyncio
import contextlib
import cProfile
import io
import os
import pstats
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import _servers  # noqa: E402
from bench_pusher import PAYLOAD, bounded_gather  # noqa: E402

WORKLOADS = ("pusher-async", "pusher-async-sdk", "ably-async", "ably-async-sdk", "core-null")


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def _server(workload: str) -> Iterator[tuple[int | None, Any]]:
    if workload.startswith("pusher"):
        with _servers.soketi() as server:
            yield server.proc.pid, server
    elif workload.startswith("ably"):
        with _servers.ably_emulator() as server:
            os.environ["SSL_CERT_FILE"] = server.ca_path
            yield server.proc.pid, server
    else:
        yield None, None


def _publisher(workload: str, server: Any) -> tuple[Callable[[int], Awaitable[object]], Any]:
    from broadcasting import Broadcast

    if workload == "pusher-async":
        from bench_pusher import our_config

        b = Broadcast(our_config(server))
        return (lambda i: b.achannel("orders", PAYLOAD, "shipped")), b
    if workload == "pusher-async-sdk":
        from bench_pusher import sdk_client
        from pusher.aiohttp import AsyncIOBackend

        sdk = sdk_client(server, AsyncIOBackend)
        return (lambda i: sdk.trigger("orders", "shipped", PAYLOAD)), None
    if workload == "ably-async":
        from bench_ably import our_config as ably_config

        b = Broadcast(ably_config(server))
        return (lambda i: b.achannel("orders", PAYLOAD, "shipped")), b
    if workload == "ably-async-sdk":
        from ably import AblyRest

        channel = AblyRest(**server.sdk_options()).channels.get("orders")
        return (lambda i: channel.publish("shipped", PAYLOAD)), None
    b = Broadcast({"DRIVER": "null"})

    async def null(i: int) -> object:
        return b.channel("orders", PAYLOAD, "shipped")

    return null, b


def main() -> int:
    if len(sys.argv) != 2 or sys.argv[1] not in WORKLOADS:
        print(__doc__)
        return 2
    from pyinstrument import Profiler

    workload = sys.argv[1]
    n = 20_000 if workload == "core-null" else 1_000
    out = io.StringIO()
    with _server(workload) as (pid, server):
        publish, owner = _publisher(workload, server)

        async def run() -> None:
            await bounded_gather(200, publish)  # warm-up
            server_cpu = _cpu_seconds(pid) if pid else 0.0
            client_cpu, start = time.process_time(), time.perf_counter()
            await bounded_gather(n, publish)
            wall = time.perf_counter() - start
            client = (time.process_time() - client_cpu) / n * 1e6
            served = ((_cpu_seconds(pid) - server_cpu) / n * 1e6) if pid else 0.0
            print(
                f"{workload}: {n / wall:,.0f} pub/s; CPU per publish: client {client:,.0f} µs, "
                f"server {served:,.0f} µs",
                file=out,
            )
            profiler = Profiler(interval=0.0005, async_mode="disabled")
            profiler.start()
            await bounded_gather(n, publish)
            profiler.stop()
            out.write(profiler.output_text(unicode=False, show_all=False))
            stats_profile = cProfile.Profile()
            stats_profile.enable()
            await bounded_gather(n, publish)
            stats_profile.disable()
            stream = io.StringIO()
            pstats.Stats(stats_profile, stream=stream).sort_stats("tottime").print_stats(25)
            out.write(stream.getvalue())
            if owner is not None:
                await owner.aclose()

        asyncio.run(run())
    text = out.getvalue()
    print(text)
    target = HERE / "results" / "profiles" / f"{workload}.txt"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
