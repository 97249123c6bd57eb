"""Issue 6 items 1-3 for Ably: our ``ably`` driver against the raw SDK, on the emulator.

No Ably server runs here, so both contenders publish over HTTPS to the test
suite's Ably REST emulator (served from its own process by
``_ably_server.py``), which counts the requests. The emulator is Python, so
under concurrency it can be the bottleneck for both sides; the ratio then
tells less about the clients than the Pusher ratios do.

- sync sequential: ``Broadcast.channel`` against ``AblyRestSync`` ``publish``;
- async, 32 in flight: ``Broadcast.achannel`` against ``AblyRest`` (async);
- fan-out of one event to 1,000 channels: one ``channel()`` call against the
  Masonite 1.4 loop of one ``publish`` per channel.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from typing import Any

from _harness import Row, compare, elapsed, interleaved, latency_rows, rate, stats
from _servers import AblyServer, ably_emulator, ably_emulator_installed, log
from bench_pusher import (
    CONCURRENCY,
    FANOUT,
    PAYLOAD,
    SECTION_LATENCY,
    Percentiles,
    bounded_gather,
)

SECTION_SYNC = "1. Sync sequential"
SECTION_ASYNC = "2. Async, 32 in flight"
SECTION_FANOUT = "3. Fan-out 1,000 channels"


def driver_installed() -> bool:
    from importlib.metadata import entry_points

    return any(ep.name == "ably" for ep in entry_points(group="broadcasting.drivers"))


def our_config(server: AblyServer, **options: Any) -> dict[str, Any]:
    return {"DRIVER": "ably", "DRIVERS": {"ably": {**server.sdk_options(), **options}}}


class Workloads:
    def __init__(self, server: AblyServer, quick: bool, reps: int, warmup: int) -> None:
        self.server = server
        self.quick = quick
        self.reps = reps
        self.warmup = warmup
        self.has_ours = driver_installed()
        self.loop = asyncio.new_event_loop()
        self.channels = [f"fan-{i}" for i in range(FANOUT)]

    def close(self) -> None:
        self.loop.close()

    def _ours(self, **options: Any) -> Any:
        from broadcasting import Broadcast

        return Broadcast(our_config(self.server, **options))

    def _reset_after(self, fn: Callable[[], float]) -> Callable[[], float]:
        """Run ``fn``, then clear the emulator's records (untimed) so it does not grow."""

        def run() -> float:
            value = fn()
            self.server.reset()
            return value

        return run

    def _missing(self, key: str, section: str, what: str, base: Any, name: str, target: str) -> Row:
        return Row(
            key=key,
            section=section,
            what="Ably: " + what,
            baseline=base,
            baseline_name=name,
            target=target,
            note="the `ably` driver is not installed: ours not measured",
        )

    def sync_sequential(self) -> Row:
        from ably.sync import AblyRestSync

        n = 200 if self.quick else 1_000
        sdk = AblyRestSync(**self.server.sdk_options())
        sdk_channel = sdk.channels.get("orders")
        runs = [
            self._reset_after(
                lambda: rate(n, lambda: [sdk_channel.publish("shipped", PAYLOAD) for _ in range(n)])
            )
        ]
        ours = None
        if self.has_ours:
            ours = self._ours()
            channel = ours.channel
            runs.insert(
                0,
                self._reset_after(
                    lambda: rate(
                        n, lambda: [channel("orders", PAYLOAD, "shipped") for _ in range(n)]
                    )
                ),
            )
        results = interleaved(runs, self.reps, self.warmup)
        sdk.close()
        what = f"`channel()` vs SDK `publish()`, {n:,} publishes one after another"
        base = stats(results[-1], "pub/s")
        if ours is None:
            return self._missing("ably.sync", SECTION_SYNC, what, base, "AblyRestSync", "")
        ours.close()
        return compare(
            "ably.sync",
            SECTION_SYNC,
            "Ably: " + what,
            stats(results[0], "pub/s"),
            base,
            "AblyRestSync",
            note="no target in the issue for Ably's sync path",
        )

    def async_concurrent(self) -> Row:
        from ably import AblyRest

        n = 200 if self.quick else 600
        loop = self.loop
        sdk = AblyRest(**self.server.sdk_options())
        sdk_channel = sdk.channels.get("orders")

        async def sdk_publish(i: int) -> object:
            return await sdk_channel.publish("shipped", PAYLOAD)

        runs = [
            self._reset_after(
                lambda: rate(n, lambda: loop.run_until_complete(bounded_gather(n, sdk_publish)))
            )
        ]
        ours = None
        if self.has_ours:
            ours = self._ours()
            achannel = ours.achannel

            async def our_publish(i: int) -> object:
                return await achannel("orders", PAYLOAD, "shipped")

            runs.insert(
                0,
                self._reset_after(
                    lambda: rate(n, lambda: loop.run_until_complete(bounded_gather(n, our_publish)))
                ),
            )
        results = interleaved(runs, self.reps, self.warmup)
        loop.run_until_complete(sdk.close())
        what = f"`achannel()` vs SDK `publish()`, {n:,} publishes, {CONCURRENCY} in flight"
        base = stats(results[-1], "pub/s")
        if ours is None:
            return self._missing("ably.async", SECTION_ASYNC, what, base, "AblyRest", ">= 1x")
        loop.run_until_complete(ours.aclose())
        return compare(
            "ably.async",
            SECTION_ASYNC,
            "Ably: " + what + " (driver defaults: micro-batching on)",
            stats(results[0], "pub/s"),
            base,
            "AblyRest (async)",
            target=1.0,
        )

    def latency(self) -> list[Row]:
        """p50/p99 of a single publish with 32 in flight: batching on, off, and the SDK."""
        from ably import AblyRest

        if not self.has_ours:
            return []
        n = 200 if self.quick else 600
        loop = self.loop
        sdk = AblyRest(**self.server.sdk_options())
        sdk_channel = sdk.channels.get("orders")
        contenders = [self._ours(), self._ours(batch=False)]
        timings = [Percentiles() for _ in range(3)]

        def ours(broadcast: Any) -> Callable[[int], Awaitable[object]]:
            async def publish(i: int) -> object:
                return await broadcast.achannel("orders", PAYLOAD, "shipped")

            return publish

        async def sdk_publish(i: int) -> object:
            return await sdk_channel.publish("shipped", PAYLOAD)

        publishers = [ours(contenders[0]), ours(contenders[1]), sdk_publish]
        runs = [
            self._reset_after(t.runner(loop, n, p))
            for t, p in zip(timings, publishers, strict=True)
        ]
        interleaved(runs, self.reps, self.warmup)
        for broadcast in contenders:
            loop.run_until_complete(broadcast.aclose())
        loop.run_until_complete(sdk.close())
        base = timings[2].last(self.reps)
        what = f"Ably: `achannel()` latency, {n:,} publishes, {CONCURRENCY} in flight"
        return [
            *latency_rows(
                "ably.latency", SECTION_LATENCY, what + ", batching on (default)",
                timings[0].last(self.reps), base, "AblyRest (async)",
            ),
            *latency_rows(
                "ably.latency.unbatched", SECTION_LATENCY, what + ", `batch: False`",
                timings[1].last(self.reps), base, "AblyRest (async)",
            ),
        ]  # fmt: skip

    def _count(self, publish: Callable[[], object]) -> int:
        self.server.reset()
        publish()
        count = self.server.publish_requests()
        self.server.reset()
        return count

    def fanout(self) -> list[Row]:
        from ably.sync import AblyRestSync

        channels = self.channels
        reps = self.reps
        sdk = AblyRestSync(**self.server.sdk_options())

        def masonite_loop() -> None:
            # Masonite 1.4: one publish per channel of the list
            for name in channels:
                sdk.channels.get(name).publish("shipped", PAYLOAD)

        runs: list[Callable[[], float]] = [self._reset_after(lambda: 1000 * elapsed(masonite_loop))]
        ours = None
        if self.has_ours:
            ours = self._ours()
            loop = self.loop
            runs.append(
                self._reset_after(
                    lambda: 1000 * elapsed(lambda: ours.channel(channels, PAYLOAD, "shipped"))
                )
            )
            runs.append(
                self._reset_after(
                    lambda: (
                        1000
                        * elapsed(
                            lambda: loop.run_until_complete(
                                ours.achannel(channels, PAYLOAD, "shipped")
                            )
                        )
                    )
                )
            )
        results = interleaved(runs, reps, self.warmup)
        loop_stats = stats(results[0], "ms", higher_is_better=False)
        loop_calls = self._count(masonite_loop)
        sdk.close()
        what = f"one event to {FANOUT:,} channels, wall time"
        if ours is None:
            return [
                self._missing("ably.fanout", SECTION_FANOUT, what, loop_stats, "loop", ">= 50x")
            ]
        sync_calls = self._count(lambda: ours.channel(channels, PAYLOAD, "shipped"))
        async_calls = self._count(
            lambda: self.loop.run_until_complete(ours.achannel(channels, PAYLOAD, "shipped"))
        )
        receipt = ours.channel(channels, PAYLOAD, "shipped")
        self.server.reset()
        ours.close()
        self.loop.run_until_complete(ours.aclose())
        most = max(sync_calls, async_calls)
        return [
            Row(
                key="ably.fanout.requests",
                section=SECTION_FANOUT,
                what=(
                    f"Ably: HTTP requests for one event to {FANOUT:,} channels (counted by the "
                    f"emulator: sync {sync_calls}, async {async_calls}; "
                    f"Receipt.requests {receipt.requests})"
                ),
                ours=stats([most], "requests", higher_is_better=False),
                baseline=stats([loop_calls], "requests", higher_is_better=False),
                baseline_name="Masonite 1.4 loop",
                ratio=loop_calls / max(1, most),
                target="≤ 10 requests",
                met=most <= 10,
            ),
            compare(
                "ably.fanout.sync",
                SECTION_FANOUT,
                f"Ably: `channel()` to {FANOUT:,} channels vs one `publish()` per channel",
                stats(results[1], "ms", higher_is_better=False),
                loop_stats,
                "Masonite 1.4 loop",
                target=50,
            ),
            compare(
                "ably.fanout.async",
                SECTION_FANOUT,
                f"Ably: `achannel()` to {FANOUT:,} channels vs one `publish()` per channel",
                stats(results[2], "ms", higher_is_better=False),
                loop_stats,
                "Masonite 1.4 loop",
                target=50,
            ),
        ]


def run_all(quick: bool, reps: int, warmup: int) -> list[Row]:
    if not ably_emulator_installed():
        log("[bench] tests/servers/ably_emulator.py is missing: Ably not measured")
        return []
    with ably_emulator() as server:
        previous = os.environ.get("SSL_CERT_FILE")
        os.environ["SSL_CERT_FILE"] = server.ca_path  # both clients trust the emulator's CA
        work = Workloads(server, quick, reps, warmup)
        try:
            return [
                work.sync_sequential(),
                work.async_concurrent(),
                *work.fanout(),
                *work.latency(),
            ]
        finally:
            work.close()
            if previous is None:
                os.environ.pop("SSL_CERT_FILE", None)
            else:
                os.environ["SSL_CERT_FILE"] = previous
