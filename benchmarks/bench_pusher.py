"""Issue 6 items 1-3, 5 and 6 for Pusher: our ``pusher`` driver against the raw SDK, on soketi.

Every workload publishes the same payload to the same soketi, ours and the
SDK's in turn (interleaved repetitions), so their ratio holds on a busy machine.

- sync sequential: ``Broadcast.channel`` against ``pusher.Pusher.trigger`` with
  the SDK's default backend (requests);
- async, 32 in flight (``asyncio.gather`` bounded by a semaphore):
  ``Broadcast.achannel`` against the SDK's aiohttp ``AsyncIOBackend``;
- fan-out of one event to 1,000 channels: one ``channel()`` call against the
  Masonite 1.4 loop of one ``trigger`` per channel; the HTTP calls of each are
  counted by a second soketi with its metrics on;
- time to first publish in a fresh interpreter, and the ``ably`` modules that
  using ``pusher`` imports (counted from ``sys.modules``);
- RSS of a process that publishes 100,000 events to soketi.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

from _harness import (
    Row,
    compare,
    fmt,
    interleaved,
    latency_rows,
    percentile,
    rate,
    run_python,
    stats,
)
from _servers import Soketi

SECTION_SYNC = "1. Sync sequential"
SECTION_ASYNC = "2. Async, 32 in flight"
SECTION_FANOUT = "3. Fan-out 1,000 channels"
SECTION_START = "5. Start-up"
SECTION_MEM = "6. Memory"
SECTION_LATENCY = "7. Latency of one publish, 32 in flight"

PAYLOAD = {"order": 42, "status": "shipped", "items": ["book", "pen"]}
CONCURRENCY = 32
FANOUT = 1_000


def driver_installed() -> bool:
    from importlib.metadata import entry_points

    return any(ep.name == "pusher" for ep in entry_points(group="broadcasting.drivers"))


def our_config(server: Soketi, **options: Any) -> dict[str, Any]:
    """The seed's configuration shape, pointed at soketi (plain HTTP on loopback)."""
    return {
        "DRIVER": "pusher",
        "DRIVERS": {
            "pusher": {
                "app_id": server.pusher_options["app_id"],
                "client": server.pusher_options["key"],
                "secret": server.pusher_options["secret"],
                "host": server.pusher_options["host"],
                "port": server.pusher_options["port"],
                "ssl": False,
                **options,
            }
        },
    }


def sdk_client(server: Soketi, backend: Any = None) -> Any:
    import pusher

    if backend is None:
        return pusher.Pusher(**server.pusher_options)
    return pusher.Pusher(backend=backend, **server.pusher_options)


async def bounded_gather(n: int, publish: Callable[[int], Awaitable[object]]) -> None:
    """``n`` publishes with at most CONCURRENCY in flight."""
    sem = asyncio.Semaphore(CONCURRENCY)

    async def one(i: int) -> None:
        async with sem:
            await publish(i)

    await asyncio.gather(*(one(i) for i in range(n)))


async def timed_gather(n: int, publish: Callable[[int], Awaitable[object]]) -> list[float]:
    """Like :func:`bounded_gather`; returns each publish's latency in milliseconds."""
    sem = asyncio.Semaphore(CONCURRENCY)
    latencies: list[float] = []

    async def one(i: int) -> None:
        async with sem:
            start = time.perf_counter()
            await publish(i)
            latencies.append((time.perf_counter() - start) * 1000)

    await asyncio.gather(*(one(i) for i in range(n)))
    return latencies


class Percentiles:
    """p50 and p99 of each repetition of one contender (warm-up runs are dropped)."""

    def __init__(self) -> None:
        self.p50: list[float] = []
        self.p99: list[float] = []

    def runner(
        self, loop: asyncio.AbstractEventLoop, n: int, publish: Callable[[int], Awaitable[object]]
    ) -> Callable[[], float]:
        def run() -> float:
            latencies = loop.run_until_complete(timed_gather(n, publish))
            self.p50.append(percentile(latencies, 50))
            self.p99.append(percentile(latencies, 99))
            return self.p50[-1]

        return run

    def last(self, reps: int) -> tuple[list[float], list[float]]:
        return self.p50[-reps:], self.p99[-reps:]


class Workloads:
    """The pusher workloads, for whichever contenders are available."""

    def __init__(self, server: Soketi, counting: Soketi, quick: bool, reps: int, warmup: int):
        self.server = server
        self.counting = counting
        self.quick = quick
        self.reps = reps
        self.warmup = warmup
        self.has_ours = driver_installed()
        self.loop = asyncio.new_event_loop()
        self.channels = [f"fan-{i}" for i in range(FANOUT)]

    def close(self) -> None:
        self.loop.close()

    def _ours(self, server: Soketi, **options: Any) -> Any:
        from broadcasting import Broadcast

        return Broadcast(our_config(server, **options))

    def _missing(
        self, key: str, section: str, what: str, baseline: Any, name: str, target: str = ""
    ) -> Row:
        return Row(
            key=key,
            section=section,
            what="Pusher: " + what,
            baseline=baseline,
            baseline_name=name,
            met=None,
            target=target,
            note="the `pusher` driver is not installed: ours not measured",
        )

    # -- 1. sync sequential ------------------------------------------------------

    def sync_sequential(self) -> Row:
        n = 200 if self.quick else 1_000
        sdk = sdk_client(self.server)

        def run_sdk() -> float:
            return rate(n, lambda: [sdk.trigger("orders", "shipped", PAYLOAD) for _ in range(n)])

        runs = [run_sdk]
        ours = None
        if self.has_ours:
            ours = self._ours(self.server)
            channel = ours.channel

            def run_ours() -> float:
                return rate(n, lambda: [channel("orders", PAYLOAD, "shipped") for _ in range(n)])

            runs.insert(0, run_ours)
        results = interleaved(runs, self.reps, self.warmup)
        what = f"`channel()` vs SDK `trigger()`, {n:,} publishes one after another"
        base = stats(results[-1], "pub/s")
        if ours is None:
            return self._missing(
                "pusher.sync", SECTION_SYNC, what, base, "requests backend", ">= 2x"
            )
        ours.close()
        return compare(
            "pusher.sync",
            SECTION_SYNC,
            "Pusher: " + what,
            stats(results[0], "pub/s"),
            base,
            "SDK default (requests)",
            target=2.0,
        )

    # -- 2. async, 32 in flight ---------------------------------------------------------

    def async_concurrent(self) -> list[Row]:
        from pusher.aiohttp import AsyncIOBackend

        n = 500 if self.quick else 2_000
        sdk = sdk_client(self.server, AsyncIOBackend)
        loop = self.loop

        def run_sdk() -> float:
            async def publish(i: int) -> object:
                return await sdk.trigger("orders", "shipped", PAYLOAD)

            return rate(n, lambda: loop.run_until_complete(bounded_gather(n, publish)))

        def run_ours(broadcast: Any) -> Callable[[], float]:
            achannel = broadcast.achannel

            async def publish(i: int) -> object:
                return await achannel("orders", PAYLOAD, "shipped")

            return lambda: rate(n, lambda: loop.run_until_complete(bounded_gather(n, publish)))

        what = f"`achannel()` vs SDK `trigger()`, {n:,} publishes, {CONCURRENCY} in flight"
        if not self.has_ours:
            base = stats(interleaved([run_sdk], self.reps, self.warmup)[0], "pub/s")
            return [
                self._missing(
                    "pusher.async", SECTION_ASYNC, what, base, "aiohttp backend", ">= 1.5x"
                )
            ]
        ours = self._ours(self.server)
        unbatched = self._ours(self.server, batch=False)
        results = interleaved(
            [run_ours(ours), run_ours(unbatched), run_sdk], self.reps, self.warmup
        )
        loop.run_until_complete(ours.aclose())
        loop.run_until_complete(unbatched.aclose())
        base = stats(results[2], "pub/s")
        return [
            compare(
                "pusher.async",
                SECTION_ASYNC,
                "Pusher: " + what + " (driver defaults: micro-batching on)",
                stats(results[0], "pub/s"),
                base,
                "SDK AsyncIOBackend (aiohttp)",
                target=1.5,
            ),
            compare(
                "pusher.async.unbatched",
                SECTION_ASYNC,
                "Pusher: same with `batch: False`, one request per publish "
                "(for reference: the default lets waiting publishes share `/batch_events` "
                "requests)",
                stats(results[1], "pub/s"),
                base,
                "SDK AsyncIOBackend (aiohttp)",
            ),
        ]

    # -- 7. latency of one publish ----------------------------------------------------

    def latency(self) -> list[Row]:
        """p50/p99 of a single publish with 32 in flight: batching on, off, and the SDK."""
        from pusher.aiohttp import AsyncIOBackend

        if not self.has_ours:
            return []
        n = 500 if self.quick else 2_000
        loop = self.loop
        sdk = sdk_client(self.server, AsyncIOBackend)
        contenders = [self._ours(self.server), self._ours(self.server, batch=False)]
        timings = [Percentiles() for _ in range(3)]

        def ours(broadcast: Any) -> Callable[[int], Awaitable[object]]:
            async def publish(i: int) -> object:
                return await broadcast.achannel("orders", PAYLOAD, "shipped")

            return publish

        async def sdk_publish(i: int) -> object:
            return await sdk.trigger("orders", "shipped", PAYLOAD)

        publishers = [ours(contenders[0]), ours(contenders[1]), sdk_publish]
        runs = [t.runner(loop, n, p) for t, p in zip(timings, publishers, strict=True)]
        interleaved(runs, self.reps, self.warmup)
        for broadcast in contenders:
            loop.run_until_complete(broadcast.aclose())
        base = timings[2].last(self.reps)
        what = f"Pusher: `achannel()` latency, {n:,} publishes, {CONCURRENCY} in flight"
        name = "SDK AsyncIOBackend (aiohttp)"
        return [
            *latency_rows(
                "pusher.latency", SECTION_LATENCY, what + ", batching on (default)",
                timings[0].last(self.reps), base, name,
            ),
            *latency_rows(
                "pusher.latency.unbatched", SECTION_LATENCY, what + ", `batch: False`",
                timings[1].last(self.reps), base, name,
            ),
        ]  # fmt: skip

    # -- 3. fan-out ------------------------------------------------------------------

    def _count_calls(self, publish: Callable[[], object]) -> int:
        before = self.counting.http_calls()
        publish()
        return self.counting.http_calls() - before

    def fanout(self) -> list[Row]:
        channels = self.channels
        reps = self.reps
        sdk = sdk_client(self.server)

        def masonite_loop(client: Any) -> None:
            # Masonite 1.4: one trigger per channel of the list
            for name in channels:
                client.trigger(name, "shipped", PAYLOAD)

        def sdk_chunked(client: Any) -> None:
            # the best a careful SDK user does by hand: 100 channels per trigger
            for start in range(0, len(channels), 100):
                client.trigger(channels[start : start + 100], "shipped", PAYLOAD)

        runs: list[Callable[[], float]] = [
            lambda: 1000 * _elapsed(lambda: masonite_loop(sdk)),
            lambda: 1000 * _elapsed(lambda: sdk_chunked(sdk)),
        ]
        ours = None
        if self.has_ours:
            ours = self._ours(self.server)
            loop = self.loop

            def run_ours_sync() -> float:
                return 1000 * _elapsed(lambda: ours.channel(channels, PAYLOAD, "shipped"))

            def run_ours_async() -> float:
                return 1000 * _elapsed(
                    lambda: loop.run_until_complete(ours.achannel(channels, PAYLOAD, "shipped"))
                )

            runs += [run_ours_sync, run_ours_async]
        results = interleaved(runs, reps, self.warmup)
        loop_stats = stats(results[0], "ms", higher_is_better=False)
        chunked_stats = stats(results[1], "ms", higher_is_better=False)

        # request counts, on the soketi with metrics (not timed)
        counting_sdk = sdk_client(self.counting)
        loop_calls = self._count_calls(lambda: masonite_loop(counting_sdk))
        chunked_calls = self._count_calls(lambda: sdk_chunked(counting_sdk))
        what = f"one event to {FANOUT:,} channels, wall time"
        if ours is None:
            return [
                self._missing("pusher.fanout", SECTION_FANOUT, what, loop_stats, "loop", ">= 50x"),
            ]
        counted = self._ours(self.counting)
        sync_calls = self._count_calls(lambda: counted.channel(channels, PAYLOAD, "shipped"))
        async_calls = self._count_calls(
            lambda: self.loop.run_until_complete(counted.achannel(channels, PAYLOAD, "shipped"))
        )
        receipt = counted.channel(channels, PAYLOAD, "shipped")
        counted.close()
        self.loop.run_until_complete(counted.aclose())
        ours.close()
        self.loop.run_until_complete(ours.aclose())
        sync_stats = stats(results[2], "ms", higher_is_better=False)
        async_stats = stats(results[3], "ms", higher_is_better=False)
        calls_ok = max(sync_calls, async_calls) <= 10
        rows = [
            Row(
                key="pusher.fanout.requests",
                section=SECTION_FANOUT,
                what=(
                    f"Pusher: HTTP requests for one event to {FANOUT:,} channels "
                    f"(counted by soketi: sync {sync_calls}, async {async_calls}; "
                    f"Receipt.requests {receipt.requests})"
                ),
                ours=stats([max(sync_calls, async_calls)], "requests", higher_is_better=False),
                baseline=stats([loop_calls], "requests", higher_is_better=False),
                baseline_name="Masonite 1.4 loop",
                ratio=loop_calls / max(1, max(sync_calls, async_calls)),
                target="≤ 10 requests",
                met=calls_ok,
            ),
            compare(
                "pusher.fanout.sync",
                SECTION_FANOUT,
                f"Pusher: `channel()` to {FANOUT:,} channels vs one `trigger()` per channel",
                sync_stats,
                loop_stats,
                "Masonite 1.4 loop",
                target=50,
            ),
            compare(
                "pusher.fanout.async",
                SECTION_FANOUT,
                f"Pusher: `achannel()` to {FANOUT:,} channels vs one `trigger()` per channel",
                async_stats,
                loop_stats,
                "Masonite 1.4 loop",
                target=50,
            ),
            compare(
                "pusher.fanout.chunked",
                SECTION_FANOUT,
                f"Pusher: `channel()` to {FANOUT:,} channels vs SDK by hand, 100 per "
                f"`trigger()` ({chunked_calls} requests) — for reference",
                sync_stats,
                chunked_stats,
                "SDK chunked by hand",
            ),
        ]
        return rows

    # -- 5. start-up ---------------------------------------------------------------

    def first_publish(self) -> list[Row]:
        runs_n = 3 if self.quick else 7
        options = self.server.pusher_options
        sdk_code = (
            "import time; t = time.perf_counter()\n"
            "import pusher\n"
            f"pusher.Pusher(**{options!r}).trigger('orders', 'shipped', {PAYLOAD!r})\n"
            "print(time.perf_counter() - t)\n"
        )
        rows: list[Row] = []
        sdk_times: list[float] = []
        our_times: list[float] = []
        ably_modules: list[str] = []
        for _ in range(runs_n):
            sdk_times.append(1000 * float(run_python(sdk_code).split()[-1]))
            if self.has_ours:
                out = run_python(_FIRST_PUBLISH.replace("CONFIG", repr(our_config(self.server))))
                result = json.loads(out.strip().splitlines()[-1])
                our_times.append(1000 * result["seconds"])
                ably_modules = result["ably_modules"]
        base = stats(sdk_times, "ms", higher_is_better=False)
        what = "time to first publish in a fresh interpreter (imports + connect + 1 publish)"
        if not self.has_ours:
            return [self._missing("pusher.first_publish", SECTION_START, what, base, "SDK")]
        rows.append(
            compare(
                "pusher.first_publish",
                SECTION_START,
                "Pusher: " + what,
                stats(our_times, "ms", higher_is_better=False),
                base,
                "`import pusher` + `trigger()`",
            )
        )
        rows.append(
            Row(
                key="pusher.ably_modules",
                section=SECTION_START,
                what=(
                    "`ably` modules in `sys.modules` after a publish through `pusher`"
                    + (f": {', '.join(ably_modules[:5])}" if ably_modules else "")
                ),
                ours=stats([len(ably_modules)], "modules", higher_is_better=False),
                target="0",
                met=not ably_modules,
                extra={"ably_modules": ably_modules},
            )
        )
        return rows

    # -- 6. memory -------------------------------------------------------------------

    def memory(self) -> list[Row]:
        count = 10_000 if self.quick else 100_000
        warm = 5_000 if self.quick else 10_000
        what = (
            f"RSS growth over {count:,} publishes to soketi through `pusher` "
            f"(`achannel()`, {CONCURRENCY} workers, after {warm:,} warm-up)"
        )
        if not self.has_ours:
            return [
                Row(
                    key="memory.pusher",
                    section=SECTION_MEM,
                    what=what,
                    note="the `pusher` driver is not installed: not measured",
                )
            ]
        code = (
            _MEMORY_PUSHER.replace("CONFIG", repr(our_config(self.server)))
            .replace("COUNT", str(count))
            .replace("WARM", str(warm))
            .replace("CONCURRENCY", str(CONCURRENCY))
        )
        result = json.loads(run_python(code, timeout=600).strip().splitlines()[-1])
        return [memory_row("memory.pusher", SECTION_MEM, what, result, count, judge=not self.quick)]


def memory_row(
    key: str, section: str, what: str, result: dict[str, Any], count: int, *, judge: bool = True
) -> Row:
    """RSS growth per publish between the first and last checkpoint, against 8 B/publish.

    8 bytes is one list slot: anything a publish left behind for good (the
    smallest Python object is 16 bytes) would show as more than that, while
    allocator and page rounding stay well under it over 100,000 publishes.
    """
    checkpoints = result["rss"]
    growth = (checkpoints[-1] - checkpoints[0]) / count
    note = (
        f"RSS {fmt(checkpoints[0] / 2**20)} -> {fmt(checkpoints[-1] / 2**20)} MiB"
        + (f", {fmt(result['rate'])} pub/s" if "rate" in result else "")
        + ("" if judge else "; quick run: too few publishes to judge")
    )
    return Row(
        key=key,
        section=section,
        what=what,
        ours=stats([growth], "B/publish", higher_is_better=False),
        target="< 8 B/publish (flat)",
        met=(growth < 8) if judge else None,
        note=note,
        extra=result,
    )


def _elapsed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


_FIRST_PUBLISH = r"""
import json, sys, time
t = time.perf_counter()
from broadcasting import Broadcast
Broadcast(CONFIG).channel("orders", {"order": 42, "status": "shipped"}, "shipped")
seconds = time.perf_counter() - t
ably = sorted(m for m in sys.modules if m == "ably" or m.startswith("ably."))
print(json.dumps({"seconds": seconds, "ably_modules": ably}))
"""

_MEMORY_PUSHER = r"""
import asyncio, gc, json, os, time
from broadcasting import Broadcast
PAGE = os.sysconf("SC_PAGE_SIZE")
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE
async def publish_many(b, n):
    # fixed workers, no task per publish: what stays behind is the driver's
    numbers = iter(range(n))
    async def worker():
        for i in numbers:
            await b.achannel("orders", {"order": i, "status": "shipped"}, "shipped")
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
async def main():
    b = Broadcast(CONFIG)
    await publish_many(b, WARM)
    gc.collect()
    checkpoints = [rss()]
    t = time.perf_counter()
    for _ in range(10):
        await publish_many(b, COUNT // 10)
        gc.collect()
        checkpoints.append(rss())
    seconds = time.perf_counter() - t
    await b.aclose()
    return {"rss": checkpoints, "rate": COUNT / seconds}
print(json.dumps(asyncio.run(main())))
"""


def run_all(server: Soketi, counting: Soketi, quick: bool, reps: int, warmup: int) -> list[Row]:
    work = Workloads(server, counting, quick, reps, warmup)
    try:
        rows = [work.sync_sequential(), *work.async_concurrent(), *work.fanout()]
        rows += work.latency()
        rows += work.first_publish()
        rows += work.memory()
        return rows
    finally:
        work.close()
