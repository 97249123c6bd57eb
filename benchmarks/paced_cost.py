"""What one publish costs when publishes come one at a time, as a web app makes them, against
the same publishes back to back (issue 21: why the library's CPU per publish in the cluster
benchmark is several times what a tight loop suggests).

Usage::

    python benchmarks/paced_cost.py                        # 2,000 each, at 500/s, 3 rounds
    python benchmarks/paced_cost.py --count 500 --rounds 1 --only core,control

Three workloads, each run in one asyncio process, each publish a task of its own (as in
``cluster_latency.py``'s async publishers):

- **control**: no library at all: a fixed piece of work, four times ``json.dumps`` of the
  payload and HMAC-SHA256 of the text (about what the core costs back to back), a small
  code path;
- **core**: ``await broadcast.achannel(...)`` with the ``null`` driver: the core's whole path
  (validation, the message, the hook, the batcher, the outcome), no I/O;
- **pusher**: ``achannel`` through the pusher driver to a local soketi with
  ``batch_linger`` (``--linger``, 0.02 s): ten publishes share a request either way (checked
  on soketi's own count of API calls), on a new TCP connection each (soketi closes it).

Two ways to run each, ``--count`` publishes:

- **back to back**: ten tasks at once, then the next ten as soon as the loop has run those
  (their requests still under way: the loop is never idle);
- **paced**: one task at each due time, ``--rate`` a second (500: one publisher's share of
  issue 21's 2,000/s over 4 processes), the loop idle in between.

The cost per publish is this process's CPU time (``getrusage``: user + system) over the run
minus that of the same loop with a task that does nothing, divided by ``--count``. ``--rounds``
rounds, the workloads in a rotated order; each figure is the least run of the rounds less the
least empty run (each the one least disturbed by other work on the machine). Printed: µs per
publish each way, and the ratio paced / back to back, with issue 21's budget (125 µs a
publish) for scale.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import resource
import sys
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

from _servers import Soketi, soketi

from broadcasting import Broadcast

BUDGET_US = 125.0  #: issue 21: a quarter of a core at 2,000 publishes/s
BURST = 10  #: tasks at once, back to back: one full /batch_events request
CONTROL_PARTS = 4  #: texts the control encodes and signs per publish (about the core's cost)
WORKLOADS = ("control", "core", "pusher")
Send = Callable[[int], Awaitable[object]]


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def back_to_back(send: Send, count: int) -> float:
    """CPU seconds for ``count`` sends, ten tasks at a time, the next ten as soon as the loop
    has run those (not waiting for their answers: the loop never idles)."""
    start = cpu_seconds()
    running: list[asyncio.Future[object]] = []
    for first in range(0, count, BURST):
        running += [asyncio.ensure_future(send(n)) for n in range(first, min(first + BURST, count))]
        await asyncio.sleep(0)
    await asyncio.gather(*running)
    return cpu_seconds() - start


async def paced(send: Send, count: int, rate: float) -> float:
    """CPU seconds for ``count`` sends, one task at each due time."""
    running: set[asyncio.Task[object]] = set()
    start, began = cpu_seconds(), time.perf_counter()
    for n in range(count):
        pause = began + n / rate - time.perf_counter()
        if pause > 0:
            await asyncio.sleep(pause)
        task: asyncio.Task[object] = asyncio.ensure_future(send(n))
        running.add(task)
        task.add_done_callback(running.discard)
    await asyncio.gather(*running)
    return cpu_seconds() - start


@dataclass
class Figures:
    """CPU seconds of one workload's runs and of the empty loop's beside them, each round's,
    both ways."""

    back_to_back: list[float] = field(default_factory=list)
    back_to_back_empty: list[float] = field(default_factory=list)
    paced: list[float] = field(default_factory=list)
    paced_empty: list[float] = field(default_factory=list)

    def per_publish(self, count: int) -> tuple[float, float]:
        """µs per publish, back to back and paced: the least run less the least empty run."""
        tight = min(self.back_to_back) - min(self.back_to_back_empty)
        spaced = min(self.paced) - min(self.paced_empty)
        return tight / count * 1e6, spaced / count * 1e6


def payload(n: int) -> dict[str, Any]:
    return {"order": n, "status": "shipped", "at": time.time()}


def control_send() -> Send:
    key = b"a-secret-of-the-app"

    async def send(n: int) -> object:
        signed = b""
        for part in range(CONTROL_PARTS):
            text = json.dumps({**payload(n), "part": part}, separators=(",", ":"))
            body = f"POST\n/apps/1/events\n{text}".encode()
            signed = hmac.new(key, body + signed, hashlib.sha256).digest()
        return signed

    return send


def broadcast_send(broadcast: Broadcast) -> Send:
    async def send(n: int) -> object:
        return await broadcast.achannel(f"orders-{n % 100}", payload(n), "shipped")

    return send


async def measure(args: argparse.Namespace, server: Soketi | None) -> dict[str, Figures]:
    async def nothing(n: int) -> object:
        return None

    figures = {name: Figures() for name in args.only}
    async with AsyncExitStack() as stack:
        sends: dict[str, Send] = {"control": control_send()}
        null = await stack.enter_async_context(Broadcast({"DRIVER": "null"}))
        sends["core"] = broadcast_send(null)
        if server is not None:
            options = server.server.driver_options(batch_linger=args.linger)
            pusher = Broadcast({"DRIVER": "pusher", "DRIVERS": {"pusher": options}})
            sends["pusher"] = broadcast_send(await stack.enter_async_context(pusher))
        for send in sends.values():  # open the connections, warm the code paths
            await back_to_back(send, 5 * BURST)
        for round_ in range(args.rounds):
            order = args.only[round_ % len(args.only) :] + args.only[: round_ % len(args.only)]
            for name in order:
                send, count = sends[name], args.count
                calls = server.http_calls() if name == "pusher" and server else 0
                fig = figures[name]
                fig.back_to_back_empty.append(await back_to_back(nothing, count))
                fig.back_to_back.append(await back_to_back(send, count))
                fig.paced_empty.append(await paced(nothing, count, args.rate))
                fig.paced.append(await paced(send, count, args.rate))
                if name == "pusher" and server:
                    made = server.http_calls() - calls
                    if made > 2 * count / BURST + 2:
                        raise SystemExit(f"pusher: {made} requests for {2 * count} publishes")
                tight = (fig.back_to_back[-1] - fig.back_to_back_empty[-1]) / count * 1e6
                spaced = (fig.paced[-1] - fig.paced_empty[-1]) / count * 1e6
                print(
                    f"round {round_ + 1}: {name}: {tight:.0f} µs back to back, {spaced:.0f} µs "
                    "paced",
                    file=sys.stderr,
                    flush=True,
                )
    return figures


def table(figures: dict[str, Figures], args: argparse.Namespace) -> str:
    lines = [
        f"| Workload | Back to back (µs/publish) | Paced at {args.rate:g}/s (µs/publish) "
        "| Paced / back to back |",
        "|---|---|---|---|",
    ]
    for name, fig in figures.items():
        tight, spaced = fig.per_publish(args.count)
        ratio = f"{spaced / tight:.1f}x" if tight > 0 else "n/a"
        lines.append(f"| {name} | {tight:.1f} | {spaced:.1f} | {ratio} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=2000, help="publishes per run")
    parser.add_argument("--rate", type=float, default=500.0, help="paced publishes a second")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--linger", type=float, default=0.02, help="the pusher batch_linger")
    parser.add_argument("--only", default=",".join(WORKLOADS), help="workloads, comma-separated")
    args = parser.parse_args(argv)
    args.only = [w.strip() for w in args.only.split(",") if w.strip()]
    if not args.only or set(args.only) - set(WORKLOADS):
        parser.error(f"--only: one or more of {','.join(WORKLOADS)}")
    if args.count < BURST or args.rate <= 0 or args.rounds < 1:
        parser.error(f"--count must be at least {BURST}, --rate and --rounds positive")
    print(
        f"{args.count} publishes per run, paced at {args.rate:g}/s, {args.rounds} rounds; "
        f"least run less least empty run. Budget (issue 21): {BUDGET_US:.0f} µs per publish."
    )
    if "pusher" in args.only:
        with soketi(metrics=True) as server:
            figures = asyncio.run(measure(args, server))
    else:
        figures = asyncio.run(measure(args, None))
    print(table(figures, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
