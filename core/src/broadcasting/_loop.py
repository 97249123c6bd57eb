"""One background event loop per process, shared by all threads, to run async code from sync."""

from __future__ import annotations

import atexit
import threading
from collections.abc import Awaitable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

from broadcasting._fork import in_forked_child

if TYPE_CHECKING:
    import asyncio

T = TypeVar("T")

#: Seconds a cancelled coroutine gets to finish its cleanup before run_sync returns.
CANCEL_GRACE = 1.0

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_thread: threading.Thread | None = None


def _alive(loop: asyncio.AbstractEventLoop | None, thread: threading.Thread | None) -> bool:
    # a closed loop is not running; a forked child's copy of it is, without its thread
    return loop is not None and thread is not None and thread.is_alive() and loop.is_running()


def background_loop() -> asyncio.AbstractEventLoop:
    """The shared background loop; a new one (and thread) if it is not running."""
    global _loop, _thread
    loop = _loop
    if loop is not None and _alive(loop, _thread):
        return loop
    import asyncio  # here, not at import: sync-only users never pay for asyncio

    with _lock:
        if _loop is None or not _alive(_loop, _thread):
            new_loop = asyncio.new_event_loop()
            ready = threading.Event()

            def run() -> None:
                asyncio.set_event_loop(new_loop)
                new_loop.call_soon(ready.set)
                try:
                    new_loop.run_forever()
                finally:
                    new_loop.close()

            thread = threading.Thread(target=run, name="broadcasting-loop", daemon=True)
            thread.start()
            ready.wait()
            _loop, _thread = new_loop, thread
        return _loop


def run_sync(coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
    """Run ``coro`` on the background loop and wait for its result in this thread.

    Works from many threads at once, inside a running loop's thread, and after ``os.fork()``.
    Raises ``TimeoutError`` after ``timeout`` seconds. On any exit of the caller the coroutine
    is cancelled and given :data:`CANCEL_GRACE` seconds to clean up, so the work does not happen.
    """
    loop = background_loop()
    import asyncio  # loaded by background_loop()

    if not asyncio.iscoroutine(coro):  # the loop would refuse it and the caller wait for ever
        raise TypeError(f"run_sync() runs a coroutine, not {type(coro).__name__}")
    if threading.current_thread() is _thread:
        coro.close()
        raise RuntimeError("run_sync() cannot be called from the broadcasting loop thread")
    ended = threading.Event()
    tasks: list[asyncio.Task[T]] = []

    def start() -> None:
        tasks.append(loop.create_task(coro))
        tasks[0].add_done_callback(done)

    def done(task: asyncio.Task[T]) -> None:
        if not task.cancelled():
            task.exception()  # retrieved: a failure after the caller left is not logged
        ended.set()

    loop.call_soon_threadsafe(start)
    try:
        if not ended.wait(timeout):
            raise TimeoutError(f"run_sync: no result within {timeout:g} s (cancelled)")
    except BaseException:
        loop.call_soon_threadsafe(lambda: tasks[0].cancel())  # start() ran first: FIFO
        ended.wait(CANCEL_GRACE)  # let it run its cleanup before the caller goes on
        raise
    return tasks[0].result()


async def _awaited(value: Awaitable[T]) -> T:
    return await value


def _shutdown() -> None:
    loop, thread = _loop, _thread
    if loop is not None and thread is not None and _alive(loop, thread):
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=2)


@in_forked_child
def _forget_in_child() -> None:
    """After fork: the parent's loop thread does not exist here (waiting on it would hang)."""
    global _lock, _loop, _thread
    _lock = threading.Lock()
    _loop = _thread = None


atexit.register(_shutdown)
