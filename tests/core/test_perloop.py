"""PerLoop: one object per event loop, closed with the driver or when its loop ends."""

from __future__ import annotations

import asyncio
import threading

from broadcasting.plugin import PerLoop


class Thing:
    def __init__(self) -> None:
        self.closed_on: asyncio.AbstractEventLoop | None = None


async def close_thing(thing: Thing) -> None:
    thing.closed_on = asyncio.get_running_loop()


def test_one_object_per_loop_reused_within_it() -> None:
    per_loop: PerLoop[Thing] = PerLoop(Thing, close_thing)

    async def twice() -> tuple[Thing, Thing]:
        return per_loop.get(), per_loop.get()

    first, again = asyncio.run(twice())
    other, _ = asyncio.run(twice())
    assert first is again
    assert other is not first
    assert per_loop.created == 2


def test_a_loop_that_ends_closes_its_object_on_that_loop() -> None:
    per_loop: PerLoop[Thing] = PerLoop(Thing, close_thing)
    seen: list[asyncio.AbstractEventLoop] = []

    async def use() -> Thing:
        seen.append(asyncio.get_running_loop())
        return per_loop.get()

    thing = asyncio.run(use())
    assert thing.closed_on is seen[0]  # closed while its loop still ran
    assert per_loop.items() == []


def test_aclose_closes_this_loops_object_and_get_makes_a_new_one() -> None:
    per_loop: PerLoop[Thing] = PerLoop(Thing, close_thing)

    async def run() -> tuple[Thing, Thing]:
        first = per_loop.get()
        await per_loop.aclose()
        assert first.closed_on is asyncio.get_running_loop()
        return first, per_loop.get()

    first, second = asyncio.run(run())
    assert second is not first


def test_close_from_another_thread_closes_on_the_objects_own_loop() -> None:
    per_loop: PerLoop[Thing] = PerLoop(Thing, close_thing)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        thing = asyncio.run_coroutine_threadsafe(_get(per_loop), loop).result(5)
        per_loop.close()  # from the main thread: waits for the loop thread to close it
        assert thing.closed_on is loop
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


async def _get(per_loop: PerLoop[Thing]) -> Thing:
    return per_loop.get()


def test_sync_close_inside_the_running_loop_does_not_block_it() -> None:
    per_loop: PerLoop[Thing] = PerLoop(Thing, close_thing)

    async def run() -> Thing:
        thing = per_loop.get()
        per_loop.close()  # a sync close() called from async code
        await asyncio.sleep(0.01)
        return thing

    assert asyncio.run(run()).closed_on is not None


def test_a_forked_child_starts_empty_and_leaves_the_parents_objects_open() -> None:
    import os

    per_loop: PerLoop[Thing] = PerLoop(Thing, close_thing)
    loop = asyncio.new_event_loop()
    try:
        parents = loop.run_until_complete(_get(per_loop))
        pid = os.fork()
        if pid == 0:  # child: no parent objects, a new one for a new loop, nothing closed
            fresh = asyncio.run(_get(per_loop))
            ok = per_loop.created >= 1 and fresh is not parents and parents.closed_on is None
            os._exit(0 if ok and len(per_loop.items()) == 0 else 1)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert per_loop.items() == [(loop, parents)]  # the parent's is untouched
    finally:
        loop.run_until_complete(per_loop.aclose())
        loop.close()
