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

from _harness import Row, fmt, interleaved, run_python, stats

from broadcasting import Broadcast, Receipt
from broadcasting.plugin import Driver, Message, hookimpl

SECTION_CORE = "4. Core overhead"
SECTION_MEM = "6. Memory"

PAYLOAD = {"order": 42, "status": "shipped", "items": ["book", "pen"]}


class _Wrapper:
    """A do-nothing new-style wrapper, the cheapest plugin a user can register."""

    @hookimpl(wrapper=True)
    def broadcasting_publish(self, driver: Driver, message: Message) -> Any:
        receipt: Receipt = yield
        return receipt


BATCH = 100  # calls timed together; the per-call figure is the median over batches


def _median_per_call(batch_ns: list[int]) -> float:
    """µs per call: the median batch, so a batch the OS interrupted does not count."""
    batch_ns.sort()
    return batch_ns[len(batch_ns) // 2] / BATCH / 1000


def _sync_loop(broadcast: Broadcast, n: int) -> float:
    """µs per publish: ``n`` sequential ``channel()`` calls, timed in batches of BATCH."""
    channel = broadcast.channel
    clock = time.perf_counter_ns
    batches = []
    for _ in range(n // BATCH):
        start = clock()
        for _ in range(BATCH):
            channel("orders", PAYLOAD, "shipped")
        batches.append(clock() - start)
    return _median_per_call(batches)


def _async_loop(broadcast: Broadcast, n: int) -> float:
    async def main() -> float:
        achannel = broadcast.achannel
        clock = time.perf_counter_ns
        batches = []
        for _ in range(n // BATCH):
            start = clock()
            for _ in range(BATCH):
                await achannel("orders", PAYLOAD, "shipped")
            batches.append(clock() - start)
        return _median_per_call(batches)

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
            what=(
                f"`channel()` on the `null` driver, per publish ({n:,} per repetition, "
                f"median of batches of {BATCH})"
            ),
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
# read RSS from /proc/self/statm (pages) after a warm-up and at ten checkpoints.
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
checkpoints = [rss()]
for step in range(10):
    for i in range(count // 10):
        channel("orders", {"order": i, "status": "shipped"}, "shipped")
    gc.collect()
    checkpoints.append(rss())
print(json.dumps({"rss": checkpoints, "kept": len(b.driver().driver.messages)}))
"""


def _memory_run(count: int, warm: int, max_history: str) -> dict[str, Any]:
    code = f"import sys; sys.argv[1:] = {[str(count), str(warm), max_history]!r}\n"
    out = run_python(code + _MEMORY_SCRIPT)
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def memory_driver(quick: bool) -> list[Row]:
    from bench_pusher import memory_row

    count = 10_000 if quick else 100_000
    warm = 2_000 if quick else 10_000
    history = 1_000
    bounded = _memory_run(count, warm, str(history))
    unbounded = _memory_run(count, warm, "none")
    growth = (unbounded["rss"][-1] - unbounded["rss"][0]) / count
    return [
        memory_row(
            "memory.memory.bounded",
            SECTION_MEM,
            f"RSS growth over {count:,} publishes to `memory`, max_history={history:,} "
            f"(after {warm:,} warm-up)",
            bounded,
            count,
            judge=not quick,
        ),
        Row(
            key="memory.memory.unbounded",
            section=SECTION_MEM,
            what=(
                "same, max_history unbounded: every message is kept, so the history is "
                f"the growth ({unbounded['kept']:,} kept)"
            ),
            ours=stats([growth], "B/publish", higher_is_better=False),
            note=(
                f"RSS {fmt(unbounded['rss'][0] / 2**20)} -> {fmt(unbounded['rss'][-1] / 2**20)} MiB"
            ),
            extra=unbounded,
        ),
    ]
