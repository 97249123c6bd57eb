"""Review (session 36b) of the relay's loop: a stop() made before the run begins, a relay run
again after a stop, and an idle wait with a short lease. Against a real SQLite outbox file
and the in-process ``memory`` driver."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from broadcasting import Broadcast
from broadcasting.outbox._relay import Relay


@pytest.fixture
def broadcast(tmp_path: Path) -> Iterator[Broadcast]:
    outbox = {"url": f"sqlite:///{tmp_path / 'outbox.sqlite3'}", "partitions": 2, "lease": 1}
    with Broadcast({"DRIVER": "memory", "DRIVERS": {"memory": {}}, "OUTBOX": outbox}) as b:
        yield b


def sent(broadcast: Broadcast) -> list[Any]:
    return [m.data for m in broadcast.driver("memory").driver.messages]


async def until(check: Callable[[], bool], seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)


# -- stop() before the run begins --------------------------------------------------------


async def test_a_stop_before_arun_begins_ends_it_at_once(broadcast: Broadcast) -> None:
    """``arun()`` cleared the stop flag as it began: a ``stop()`` made before (from another
    thread, a signal handler, a shutdown hook racing the worker's start) was lost, and the
    relay ran on until stopped again."""
    relay = Relay(broadcast, owner="early")
    relay.stop()
    task = asyncio.create_task(relay.arun())
    try:
        await asyncio.wait_for(asyncio.shield(task), 20)  # generous: it should not even start
    finally:
        relay.stop()
        await asyncio.wait_for(task, 20)
    assert relay.partitions == ()


def test_a_stop_from_another_thread_before_run_begins_ends_it(broadcast: Broadcast) -> None:
    relay = Relay(broadcast, owner="early-thread")
    stopper = threading.Thread(target=relay.stop)
    stopper.start()
    stopper.join()
    runner = threading.Thread(target=relay.run)
    runner.start()
    runner.join(20)
    stuck = runner.is_alive()
    relay.stop()
    runner.join(20)
    assert not stuck


async def test_a_relay_runs_again_after_a_stop(broadcast: Broadcast) -> None:
    """A stop ends the run it reaches (or the next one to begin), not the relay: the same
    relay may run again, a round at a time or as a loop. (Once a run had stopped, the flag
    stayed set: ``run_once()`` then fetched the rows and sent none of them.)"""
    relay = Relay(broadcast, owner="again")
    await broadcast.achannel("orders", {"n": 1}, "tick", send="outbox")
    first = asyncio.create_task(relay.arun())
    await until(lambda: sent(broadcast) == [{"n": 1}])
    relay.stop()
    await asyncio.wait_for(first, 20)

    await broadcast.achannel("orders", {"n": 2}, "tick", send="outbox")
    assert (await relay.arun_once()).delivered == 1
    assert sent(broadcast) == [{"n": 1}, {"n": 2}]

    await broadcast.achannel("orders", {"n": 3}, "tick", send="outbox")
    second = asyncio.create_task(relay.arun())  # runs: the first run's stop is spent
    await until(lambda: len(sent(broadcast)) == 3)
    assert not second.done()
    relay.stop()
    await asyncio.wait_for(second, 20)
    assert sent(broadcast) == [{"n": 1}, {"n": 2}, {"n": 3}]


# -- the idle wait and the lease ----------------------------------------------------------


async def test_an_idle_wait_is_not_longer_than_the_leases_renewal_period(
    broadcast: Broadcast,
) -> None:
    """An idle relay waited up to 1 s between looks, whatever its lease: with ``lease = 1``
    (the least) the claim after the wait came more than a lease after the one before, so
    the leases lapsed for a moment on every idle wait, and another relay could take them.
    The wait now ends when the leases are due for renewal (a quarter lease, at most 1 s).
    What is checked is the wait the relay asks of the store, not how long it took."""
    relay = Relay(broadcast, owner="idle")
    assert relay.lease == 1
    store = relay.store
    asked: list[float] = []
    wait = store.wait

    def recorded(timeout: float) -> bool:  # the real store's wait, its timeout recorded
        asked.append(timeout)
        return wait(timeout)

    store.wait = recorded  # type: ignore[method-assign]
    task = asyncio.create_task(relay.arun())
    try:
        # the idle wait doubles from 10 ms: ten looks find it at its longest
        await until(lambda: len(asked) >= 12)
    finally:
        relay.stop()
        await asyncio.wait_for(task, 20)
    assert asked and max(asked) <= relay.lease / 4, asked
