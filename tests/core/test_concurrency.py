"""Sync from threads and from inside a running loop; async never blocks the loop."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from broadcasting import Broadcast
from broadcasting.drivers.memory import BroadcastMemoryDriver
from broadcasting.plugin import Batch, Driver, run_sync


def test_8_threads_by_1000_publishes_arrive_complete_and_unduplicated(
    memory_broadcast: Broadcast, memory: BroadcastMemoryDriver
) -> None:
    def work(thread: int) -> list[str]:
        return [memory_broadcast.channel(f"t{thread}", {"n": n}).message_id for n in range(1000)]

    with ThreadPoolExecutor(8) as pool:
        ids = [i for chunk in pool.map(work, range(8)) for i in chunk]
    messages = memory.messages
    assert len(messages) == 8000
    assert len(set(ids)) == 8000
    assert Counter(m.id for m in messages) == Counter(ids)
    for thread in range(8):
        ours = [m.data["n"] for m in messages if m.channels == (f"t{thread}",)]  # type: ignore[index,call-overload]
        assert ours == list(range(1000))  # per-thread order is kept


def test_threads_share_one_connection_per_driver() -> None:
    """Eight threads ask for the driver while the first is still connecting: one connect."""
    entered = threading.Event()
    release = threading.Event()
    connects: list[int] = []

    class SlowConnect(BroadcastMemoryDriver):
        name = "slowconnect"

        @classmethod
        def from_config(cls, options: Mapping[str, Any]) -> SlowConnect:
            connects.append(1)
            entered.set()
            release.wait(5)
            return cls()

    broadcast = Broadcast({"DRIVER": "slowconnect"})
    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(broadcast.driver, SlowConnect) for _ in range(8)]
        assert entered.wait(5)
        time.sleep(0.05)  # room for a second connect, were the others not waiting on the lock
        release.set()
        drivers = {id(f.result(5)) for f in futures}
    assert connects == [1] and len(drivers) == 1


async def test_sync_call_from_inside_a_running_loop(memory_broadcast: Broadcast) -> None:
    # a sync helper called from async code (a notebook, a sync view in an async app)
    receipt = memory_broadcast.channel("c", "from inside the loop")
    assert receipt.channels == ("c",)


class AsyncOnly(Driver):
    """Implements only asend: its sync path runs on the core's background loop."""

    name = "asynconly"

    def __init__(self) -> None:
        self.loops: list[int] = []

    async def asend(self, batch: Batch) -> None:
        self.loops.append(id(asyncio.get_running_loop()))
        await asyncio.sleep(0)


async def test_async_only_driver_called_sync_from_a_running_loop_uses_one_background_loop() -> None:
    broadcaster = Broadcast().driver(AsyncOnly)
    for _ in range(3):
        broadcaster.channel("c", "m")
    await asyncio.to_thread(broadcaster.channel, "c", "m")
    loops = broadcaster.driver.loops
    assert len(set(loops)) == 1
    assert loops[0] != id(asyncio.get_running_loop())


def test_async_only_driver_from_many_threads() -> None:
    broadcaster = Broadcast().driver(AsyncOnly)
    with ThreadPoolExecutor(8) as pool:
        receipts = list(pool.map(lambda n: broadcaster.channel("c", str(n)), range(200)))
    assert len({r.message_id for r in receipts}) == 200
    assert len(set(broadcaster.driver.loops)) == 1


class SyncOnly(Driver):
    """Implements only send, and blocks until the event loop itself releases it."""

    name = "synconly"
    release = threading.Event()

    def send(self, batch: Batch) -> None:
        # Only a coroutine on the caller's loop sets this: if send ran on that
        # loop's thread, the loop could not run it and this would time out.
        if not self.release.wait(5):
            raise TimeoutError("the event loop was blocked")


async def test_a_blocking_driver_does_not_block_the_event_loop() -> None:
    driver = Broadcast().driver(SyncOnly)
    SyncOnly.release.clear()
    publishes = asyncio.gather(*(driver.achannel("c", str(n)) for n in range(4)))
    await asyncio.sleep(0)  # the loop runs on while the publishes wait in worker threads
    SyncOnly.release.set()
    receipts = await publishes
    assert len(receipts) == 4


async def test_memory_async_subscription_receives_publishes_from_threads(
    memory_broadcast: Broadcast, memory: BroadcastMemoryDriver
) -> None:
    async with memory.listen("news") as subscription:
        await asyncio.to_thread(memory_broadcast.channel, "news", {"n": 1})
        await asyncio.to_thread(memory_broadcast.channel, "other", {"n": 2})
        await memory_broadcast.achannel(["news", "other"], {"n": 3}, "update")
        first = await subscription.get(timeout=2)
        second = await subscription.get(timeout=2)
    assert (first.data, first.event) == ({"n": 1}, "base-event")
    assert (second.data, second.event) == ({"n": 3}, "update")
    memory_broadcast.channel("news", "after close")
    with pytest.raises(asyncio.TimeoutError):
        await subscription.get(timeout=0.05)


def test_memory_sync_subscription(
    memory_broadcast: Broadcast, memory: BroadcastMemoryDriver
) -> None:
    seen: list[str] = []
    unsubscribe = memory.subscribe(lambda m: seen.append(m.text), channel="a")
    everything: list[str] = []
    memory.subscribe(lambda m: everything.append(m.text))
    memory_broadcast.channel("a", "one")
    memory_broadcast.channel("b", "two")
    unsubscribe()
    memory_broadcast.channel("a", "three")
    assert seen == ["one"]
    assert everything == ["one", "two", "three"]
    assert [m.text for m in memory.received("a")] == ["one", "three"]
    memory.clear()
    assert memory.messages == []


def test_run_sync_refuses_its_own_loop_thread() -> None:
    async def inner() -> None:
        async def nothing() -> None:
            return None

        run_sync(nothing())

    with pytest.raises(RuntimeError, match="cannot be called from the broadcasting loop"):
        run_sync(inner())


def test_run_sync_cancels_the_coroutine_when_it_times_out() -> None:
    events: list[str] = []

    async def slow() -> None:
        try:
            await asyncio.sleep(5)
            events.append("finished")
        except asyncio.CancelledError:
            events.append("cancelled")
            raise

    with pytest.raises(TimeoutError, match="cancelled"):
        run_sync(slow(), timeout=0.05)
    assert events == ["cancelled"]  # cancelled before run_sync returned: nothing goes out later


def test_run_sync_never_hands_out_a_stopped_loop() -> None:
    from broadcasting import _loop

    async def running() -> asyncio.AbstractEventLoop:
        return asyncio.get_running_loop()

    first = run_sync(running())
    _loop._shutdown()  # what atexit does: the loop stops and its thread ends
    assert not first.is_running()
    second = run_sync(running())
    assert second is not first and second.is_running()


def test_run_sync_in_a_forked_child_starts_its_own_loop() -> None:
    import os

    async def answer() -> int:
        return 42

    assert run_sync(answer()) == 42  # the parent's loop thread exists now
    pid = os.fork()
    if pid == 0:  # child: the parent's loop thread is not here; this must not hang
        code = 0 if run_sync(answer(), timeout=5) == 42 else 1
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
