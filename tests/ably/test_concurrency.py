"""Sync and async publishing: scripts, threads, sync code inside a running loop, many loops.

Against the local emulator (Ably cannot run here); driver, SDK and httpx are real.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from broadcasting import Broadcast, Receipt
from broadcasting_ably import BroadcastAblyDriver
from servers.ably_emulator import AblyEmulator


def test_sync_publish_runs_in_the_calling_thread(
    emulator: AblyEmulator, broadcast: Broadcast, monkeypatch: pytest.MonkeyPatch
) -> None:
    """AblyRestSync: no hop to a background event loop, no loop created per call.

    Publishes, state queries, revocations and the health check alike: each is
    one coroutine that the sync path runs to its end without suspending it.
    """
    driver = broadcast.driver(BroadcastAblyDriver).driver
    broadcast.channel("orders", "first")
    http = driver._clients.get(3, aio=False).http
    threads: list[int] = []
    original = http.make_request

    def spy(*args: Any, **kwargs: Any) -> Any:
        threads.append(threading.get_ident())
        return original(*args, **kwargs)

    monkeypatch.setattr(http, "make_request", spy)
    new_loop = asyncio.new_event_loop
    monkeypatch.setattr(asyncio, "new_event_loop", lambda: pytest.fail("a loop was created"))
    for _ in range(3):
        broadcast.channel(["orders", "audit"], "m")
    assert broadcast.channel_info("orders").name == "orders"
    assert broadcast.members("presence:x") == []
    broadcast.terminate_user("7")
    assert broadcast.driver().check().status == "ok"
    monkeypatch.setattr(asyncio, "new_event_loop", new_loop)
    # three publishes and two queries on the shared client (the other two make their own)
    assert threads == [threading.get_ident()] * 5
    assert len(emulator.messages("orders")) == 4
    assert [r.status for r in emulator.requests[-4:]] == [200, 200, 201, 201]


def test_eight_threads_publish_each_on_a_sync_client_of_its_own_at_a_time(
    emulator: AblyEmulator, broadcast: Broadcast
) -> None:
    """Threads do not share a client (its httpcore pool is not safe across threads); each
    takes an idle one or makes one, and hands it back for the next call."""
    driver = broadcast.driver(BroadcastAblyDriver).driver
    per_thread = 10

    def work(n: int) -> list[Receipt]:
        return [broadcast.channel([f"t{n}", "all"], {"n": n, "i": i}) for i in range(per_thread)]

    with ThreadPoolExecutor(8) as pool:
        receipts = [r for batch in pool.map(work, range(8)) for r in batch]

    assert len(receipts) == 8 * per_thread
    assert len({r.message_id for r in receipts}) == len(receipts)
    assert len(emulator.messages("all")) == 8 * per_thread
    for n in range(8):
        assert sorted(m.data["i"] for m in emulator.messages(f"t{n}")) == list(range(per_thread))
    [idle] = driver._clients._sync.values()  # one host count: the emulator's
    assert 1 <= len(idle) <= 8  # at most one a thread, all handed back
    assert emulator.violations == []


async def test_async_publish_does_not_block_the_loop(
    emulator: AblyEmulator, abroadcast: Broadcast
) -> None:
    """The emulator answers only once the loop itself opened the gate, five ticks in."""
    gate = emulator.hold_next(limit=10)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1
            if ticks == 5:
                gate.set()  # only possible if the loop runs while the publish waits

    task = asyncio.create_task(ticker())
    receipt = await abroadcast.achannel("orders", "m")
    task.cancel()
    assert ticks >= 5  # a blocked loop would have ticked 0 times before the answer
    assert receipt.requests == 1
    assert len(emulator.messages("orders")) == 1


async def test_many_async_publishes_at_once(emulator: AblyEmulator, abroadcast: Broadcast) -> None:
    receipts = await asyncio.gather(
        *(abroadcast.achannel(["x", f"c{i}"], {"i": i}) for i in range(30))
    )
    assert len({r.message_id for r in receipts}) == 30
    assert len(emulator.messages("x")) == 30
    assert emulator.violations == []


async def test_sync_call_inside_a_running_loop(
    emulator: AblyEmulator, abroadcast: Broadcast
) -> None:
    """Sync code called from a coroutine (a notebook cell, a sync helper in an async app)."""
    assert asyncio.get_running_loop().is_running()
    receipt = abroadcast.channel(["a", "b"], "from sync code")
    assert receipt.requests == 1
    assert [m.data for m in emulator.messages("a")] == ["from sync code"]
    # and async publishing on the same driver still works in this loop
    await abroadcast.achannel("a", "from async code")
    assert len(emulator.messages("a")) == 2


def test_each_event_loop_gets_its_own_async_client(
    emulator: AblyEmulator, broadcast: Broadcast
) -> None:
    driver = broadcast.driver(BroadcastAblyDriver).driver
    clients = []

    async def publish(tag: str) -> None:
        await broadcast.achannel("loops", tag)
        clients.append(driver._clients.get(3, aio=True))

    asyncio.run(publish("first"))
    asyncio.run(publish("second"))  # a new loop: a new client, no "attached to a different loop"

    results: list[BaseException | None] = []

    def in_thread() -> None:
        try:
            asyncio.run(publish("thread"))
            results.append(None)
        except BaseException as exc:
            results.append(exc)

    thread = threading.Thread(target=in_thread)
    thread.start()
    thread.join(10)

    assert results == [None]
    assert len({id(c) for c in clients}) == 3
    assert [m.data for m in emulator.messages("loops")] == ["first", "second", "thread"]


async def test_close_is_idempotent_and_the_driver_reconnects(
    emulator: AblyEmulator, make_broadcast: Callable[..., Broadcast]
) -> None:
    broadcast = make_broadcast()
    ably = broadcast.driver(BroadcastAblyDriver)
    await ably.achannel("c", "1")
    ably.channel("c", "2")
    await ably.aclose()
    await ably.aclose()
    ably.close()
    assert ably.driver._clients._sync == {}
    await ably.achannel("c", "3")
    ably.channel("c", "4")
    await broadcast.aclose()
    assert [m.data for m in emulator.messages("c")] == ["1", "2", "3", "4"]


def test_clients_of_finished_loops_are_closed_and_dropped(
    emulator: AblyEmulator, broadcast: Broadcast
) -> None:
    """``asyncio.run`` per call (a sync framework calling async code) leaks nothing."""
    driver = broadcast.driver(BroadcastAblyDriver).driver
    seen = []

    async def publish(i: int) -> None:
        await broadcast.achannel("runs", {"i": i})
        seen.append(driver._clients.get(3, aio=True))

    for i in range(5):
        asyncio.run(publish(i))

    assert all(client.http._Http__client.is_closed for client in seen)
    (loops,) = driver._clients.loops.values()  # the emulator has no fallback hosts: one client
    assert loops.items() == []  # each loop closed its client as it ended
    assert loops.created == 5
    assert [m.data["i"] for m in emulator.messages("runs")] == list(range(5))


def test_the_sync_path_never_waits_for_a_loop() -> None:
    """An operation that would suspend on the sync path is a bug, said at once."""
    from broadcasting_ably._transport import finish

    with pytest.raises(RuntimeError, match="suspended on the sync path"):
        finish(asyncio.sleep(0))
