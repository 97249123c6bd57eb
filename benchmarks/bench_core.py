"""Issue 6 items 4 and 6 (memory driver): what the core costs, with no network at all.

- Core overhead per publish with the ``null`` driver: validation, the publish
  hook and the receipt, in µs per ``Broadcast.channel`` call; again with one
  ``@hookimpl(wrapper=True)`` plugin registered, and on the async path.
- RSS after 100,000 publishes to the ``memory`` driver, with ``max_history``
  bounded and unbounded, each in a fresh interpreter so nothing else in this
  process skews the figure.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from _harness import Row, Stats, fmt, interleaved, run_python, stats

from broadcasting import Broadcast, Driver, Message, Receipt, hookimpl

SECTION_CORE = "4. Core overhead"
SECTION_MEM = "6. Memory"

PAYLOAD = {"order": 42, "status": "shipped", "items": ["book", "pen"]}


class _Wrapper:
    """A do-nothing new-style wrapper, the cheapest plugin a user can register."""

    @hookimpl(wrapper=True)
    def broadcasting_publish(self, driver: Driver, message: Message) -> Any:
        receipt: Receipt = yield
        return receipt


def _sync_loop(broadcast: Broadcast, n: int) -> float:
    """µs per publish over ``n`` sequential ``channel()`` calls."""
    channel = broadcast.channel
    start = time.perf_counter()
    for _ in range(n):
        channel("orders", PAYLOAD, "shipped")
    return (time.perf_counter() - start) / n * 1e6


def _async_loop(broadcast: Broadcast, n: int) -> float:
    async def main() -> float:
        achannel = broadcast.achannel
        start = time.perf_counter()
        for _ in range(n):
            await achannel("orders", PAYLOAD, "shipped")
        return (time.perf_counter() - start) / n * 1e6

    return asyncio.run(main())


def core_overhead(quick: bool, reps: int, warmup: int) -> list[Row]:
    n = 2_000 if quick else 20_000
    plain = Broadcast({"DRIVER": "null"})
    wrapped = Broadcast({"DRIVER": "null"}, plugins=[_Wrapper()])
    # connect both drivers before timing (the first call imports the plugin)
    plain.channel("orders", PAYLOAD, "shipped")
    wrapped.channel("orders", PAYLOAD, "shipped")
    sync_plain, sync_wrapped, async_plain = interleaved(
        [
            lambda: _sync_loop(plain, n),
            lambda: _sync_loop(wrapped, n),
            lambda: _async_loop(plain, n),
        ],
        reps=reps,
        warmup=warmup,
    )
    plain_stats = stats(sync_plain, "µs", higher_is_better=False)
    wrapped_stats = stats(sync_wrapped, "µs", higher_is_better=False)
    async_stats = stats(async_plain, "µs", higher_is_better=False)
    limit = 10.0
    rows = [
        Row(
            key="core.null.sync",
            section=SECTION_CORE,
            what=f"`channel()` on the `null` driver, per publish ({n:,} per repetition)",
            ours=plain_stats,
            target=f"≤ {limit:g} µs",
            met=plain_stats.median <= limit,
        ),
        Row(
            key="core.null.sync.wrapper",
            section=SECTION_CORE,
            what="same, one `@hookimpl(wrapper=True)` plugin registered",
            ours=wrapped_stats,
            note=f"+{fmt(wrapped_stats.median - plain_stats.median)} µs for the wrapper",
        ),
        Row(
            key="core.null.async",
            section=SECTION_CORE,
            what="`await achannel()` on the `null` driver, per publish",
            ours=async_stats,
        ),
    ]
    return rows


# -- memory -----------------------------------------------------------------------

# Runs in a fresh interpreter: publish COUNT messages to the memory driver and
# read RSS from /proc/self/statm (pages) after a warm-up and at the end.
_MEMORY_SCRIPT = r"""
import gc, json, os, sys
from broadcasting import Broadcast
PAGE = os.sysconf("SC_PAGE_SIZE")
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE
count, warm, max_history = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
options = {} if max_history == "none" else {"max_history": int(max_history)}
b = Broadcast({"DRIVER": "memory", "DRIVERS": {"memory": options}})
channel = b.channel
for i in range(warm):
    channel("orders", {"order": i, "status": "shipped"}, "shipped")
gc.collect()
before = rss()
for i in range(count):
    channel("orders", {"order": i, "status": "shipped"}, "shipped")
gc.collect()
after = rss()
print(json.dumps({"before": before, "after": after, "kept": len(b.driver().messages)}))
"""


def _memory_run(count: int, warm: int, max_history: str) -> dict[str, int]:
    code = f"import sys; sys.argv[1:] = {[str(count), str(warm), max_history]!r}\n"
    out = run_python(code + _MEMORY_SCRIPT)
    result: dict[str, int] = json.loads(out.strip().splitlines()[-1])
    return result


def memory_driver(quick: bool, reps: int) -> list[Row]:
    count = 10_000 if quick else 100_000
    warm = 2_000 if quick else 10_000
    history = 1_000
    rows = []
    for label, max_history in (("bounded", str(history)), ("unbounded", "none")):
        runs = [_memory_run(count, warm, max_history) for _ in range(max(1, min(reps, 3)))]
        per_publish = [(r["after"] - r["before"]) / count for r in runs]
        rss_after = [r["after"] / 2**20 for r in runs]
        growth = stats(per_publish, "B/publish", higher_is_better=False)
        if label == "bounded":
            # flat = under one byte per publish: allocator and page rounding, no leak
            rows.append(
                Row(
                    key="memory.memory.bounded",
                    section=SECTION_MEM,
                    what=(
                        f"RSS growth over {count:,} publishes to `memory`, "
                        f"max_history={history:,} (after {warm:,} warm-up)"
                    ),
                    ours=growth,
                    target="≤ 1 B/publish (flat)",
                    met=growth.median <= 1.0,
                    note=f"RSS after: {fmt(statistics_median(rss_after))} MiB",
                    extra={"runs": runs},
                )
            )
        else:
            rows.append(
                Row(
                    key="memory.memory.unbounded",
                    section=SECTION_MEM,
                    what=(
                        f"same, max_history unbounded (every message kept: the history "
                        f"is the growth; {runs[0]['kept']:,} kept)"
                    ),
                    ours=growth,
                    note=f"RSS after: {fmt(statistics_median(rss_after))} MiB",
                    extra={"runs": runs},
                )
            )
    return rows


def statistics_median(values: list[float]) -> float:
    return Stats("", tuple(values)).median
