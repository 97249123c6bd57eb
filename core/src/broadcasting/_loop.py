"""One background event loop per process, shared by all threads, to run async code from sync."""

from __future__ import annotations

import atexit
import inspect
import os
import threading
from collections.abc import Awaitable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    import asyncio

T = TypeVar("T")

#: Seconds a cancelled coroutine gets to finish its cleanup before run_sync returns.
CANCEL_GRACE = 1.0

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_thread: threading.Thread | None = None


def _alive(loop: asyncio.AbstractEventLoop | None, thread: threading.Thread | None) -> bool:
    return (
        loop is not None
        and thread is not None
        and thread.is_alive()
        and loop.is_running()
        and not loop.is_closed()
    )


def background_loop() -> asyncio.AbstractEventLoop:
    """The shared background loop; a new one (and thread) if it is not running."""
    global _loop, _thread
    loop, thread = _loop, _thread
    if loop is not None and _alive(loop, thread):
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

    Works from many threads at once, from sync code inside a running loop's
    thread, and in a child after ``os.fork()`` (which starts its own loop).
    Raises ``TimeoutError`` after ``timeout`` seconds. On any exit of the caller
    (a timeout, ``KeyboardInterrupt``) the coroutine is cancelled, and given
    :data:`CANCEL_GRACE` seconds to clean up, so the work does not happen anyway.
    """
    loop = background_loop()
    if threading.current_thread() is _thread:
        coro.close()
        raise RuntimeError("run_sync() cannot be called from the broadcasting loop thread")
    call = _Call(coro)
    loop.call_soon_threadsafe(call.start, loop)
    try:
        if not call.finished.wait(timeout):
            raise TimeoutError(f"run_sync: no result within {timeout:g} s (cancelled)")
    except BaseException:
        loop.call_soon_threadsafe(call.cancel)
        call.finished.wait(CANCEL_GRACE)  # let it run its cleanup before the caller goes on
        raise
    result: T = call.result()
    return result


class _Call:
    """One coroutine run on the background loop; its outcome, read once it finished."""

    def __init__(self, coro: Coroutine[Any, Any, Any]) -> None:
        self.coro = coro
        self.finished = threading.Event()
        self.task: asyncio.Task[Any] | None = None
        self.value: Any = None
        self.error: BaseException | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self.task = loop.create_task(self.coro)
        self.task.add_done_callback(self._done)

    def cancel(self) -> None:
        if self.task is not None:
            self.task.cancel()

    def _done(self, task: asyncio.Task[Any]) -> None:
        if task.cancelled():
            import asyncio

            self.error = asyncio.CancelledError()
        elif task.exception() is not None:
            self.error = task.exception()
        else:
            self.value = task.result()
        self.finished.set()

    def result(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.value


def resolve_sync(value: Any) -> Any:
    """``value``, or what it gives once awaited on the background loop if it is awaitable."""
    if inspect.isawaitable(value):
        return run_sync(_awaited(value))
    return value


async def _awaited(value: Awaitable[Any]) -> Any:
    return await value


def _shutdown() -> None:
    loop, thread = _loop, _thread
    if loop is None or thread is None or not _alive(loop, thread):
        return
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=2)


def _forget_in_child() -> None:
    """After fork: the parent's loop thread does not exist here (waiting on it would hang)."""
    global _lock, _loop, _thread
    _lock = threading.Lock()
    _loop = _thread = None


atexit.register(_shutdown)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_child)
