"""What one paced async publish costs in Python function calls, by module (issue 21): a count
that the machine's load does not change, where CPU time does.

Usage::

    python benchmarks/publish_calls.py                     # 1,000 paced publishes
    python benchmarks/publish_calls.py --count 2000 --top 40

The path measured is ``paced_cost.py``'s **pusher** workload, paced: one task per publish at
``--rate`` a second (500), ``await broadcast.achannel(...)`` through the pusher driver to a
local soketi with ``batch_linger`` (``--linger``, 0.02 s), so about ten publishes share each
``/batch_events`` request. cProfile counts every call (a coroutine's resumption counts as
one) over the run; the same paced loop with a task that does nothing is counted too and taken
off, function by function, so what is left is the library's and what it makes asyncio,
aiohttp and the builtins do.

Printed: calls per publish in all and by module (core: ``broadcasting/*``, driver:
``broadcasting_pusher/*``, the Pusher SDK, aiohttp with yarl and multidict, asyncio,
builtins, other), the requests made per publish, the functions called most often, and the
memory blocks (tracemalloc) still held after the run per publish, a leak check. The counts
hardly move from run to run: only how many publishes share a request does (printed).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import json
import pstats
import sys
import time
import tracemalloc
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from _servers import soketi
from paced_cost import paced  # one task at each due time, as paced_cost.py runs them

from broadcasting import Broadcast

Send = Callable[[int], Awaitable[object]]
Key = tuple[str, int, str]


def group(filename: str, function: str) -> str:
    """The module group a function's calls count in."""
    path = filename.replace("\\", "/")
    if filename == "~":
        return "builtins"
    if "/broadcasting_pusher/" in path:
        return "driver:" + path.rsplit("/", 1)[1].removesuffix(".py")
    if "/broadcasting/" in path:
        return "core:" + path.split("/broadcasting/", 1)[1].removesuffix(".py")
    if "/pusher/" in path:
        return "pusher-sdk"
    for name in ("aiohttp", "yarl", "multidict", "asyncio", "pluggy", "greenlet"):
        if f"/{name}/" in path:
            return name
    return "other:" + path.rsplit("/", 1)[-1]


def payload(n: int) -> dict[str, Any]:
    return {"order": n, "status": "shipped", "at": time.time()}


async def counted(send: Send, count: int, rate: float) -> Counter[Key]:
    """Calls of each function over a paced run of ``send``."""
    profile = cProfile.Profile()
    profile.enable()
    try:
        await paced(send, count, rate)
    finally:
        profile.disable()
    stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    return Counter({key: value[1] for key, value in stats.items()})


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    async def nothing(n: int) -> object:
        return None

    with soketi() as server:
        options = server.server.driver_options(batch_linger=args.linger)
        async with Broadcast({"DRIVER": "pusher", "DRIVERS": {"pusher": options}}) as b:

            async def send(n: int) -> object:
                return await b.achannel(f"orders-{n % 100}", payload(n), "shipped")

            await paced(send, 200, args.rate)  # connections open, code paths warm
            empty = await counted(nothing, args.count, args.rate)
            calls = await counted(send, args.count, args.rate)
            gc.collect()
            tracemalloc.start()
            before = len(tracemalloc.take_snapshot().traces)
            await paced(send, args.count, args.rate)
            gc.collect()
            after = len(tracemalloc.take_snapshot().traces)
            tracemalloc.stop()
    mine = Counter(calls)
    mine.subtract(empty)
    # one signed request per /events or /batch_events call (asend, a coroutine, counts each
    # of its resumptions as a call)
    requests = sum(n for key, n in calls.items() if key[2] == "request_for")
    by_group: Counter[str] = Counter()
    for (filename, _, function), n in mine.items():
        by_group[group(filename, function)] += n
    top = sorted(mine.items(), key=lambda item: -item[1])[: args.top]
    return {
        "count": args.count,
        "calls_per_publish": sum(mine.values()) / args.count,
        "library_calls_per_publish": sum(
            n for name, n in by_group.items() if name.startswith(("core:", "driver:"))
        )
        / args.count,
        "requests_per_publish": requests / args.count,
        "by_group": {name: n / args.count for name, n in by_group.most_common() if n},
        "top": [
            (f"{group(f, fn)} {fn}:{line}", n / args.count) for (f, line, fn), n in top if n > 0
        ],
        "blocks_held_per_publish": (after - before) / args.count,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=1000, help="publishes counted")
    parser.add_argument("--rate", type=float, default=500.0, help="publishes a second")
    parser.add_argument("--linger", type=float, default=0.02, help="the pusher batch_linger")
    parser.add_argument("--top", type=int, default=30, help="functions listed")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    if args.count < 10 or args.rate <= 0:
        parser.error("--count must be at least 10, --rate positive")
    result = asyncio.run(measure(args))
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(
        f"{result['count']} paced publishes at {args.rate:g}/s, linger {args.linger:g} s: "
        f"{result['calls_per_publish']:.1f} calls per publish "
        f"({result['library_calls_per_publish']:.1f} in the core and the driver), "
        f"{result['requests_per_publish']:.3f} requests per publish, "
        f"{result['blocks_held_per_publish']:.2f} blocks held per publish"
    )
    print("\nBy module (calls per publish):")
    for name, n in result["by_group"].items():
        print(f"  {n:8.2f}  {name}")
    print("\nFunctions called most (calls per publish):")
    for name, n in result["top"]:
        print(f"  {n:8.2f}  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
