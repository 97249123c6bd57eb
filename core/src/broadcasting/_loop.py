"""One background event loop per process, for running async code from sync callers.

``run_sync(coro)`` works from plain scripts, from many threads at once, and
from sync code that is itself running inside an event loop's thread (where
``asyncio.run`` fails with "event loop is already running"). It never creates
a loop per call: every call shares one daemon thread's loop.

It is public because async-only code must sometimes be driven from sync code
(the conformance kit's async observers, a driver's default ``send``); it is
safe in the ways such a helper must be:

* the coroutine never outlives the call: a timeout, a ``KeyboardInterrupt`` or
  any other exit of the caller cancels it on the loop, and waits briefly for
  the cancellation, so an error the caller sees is not followed by the work
  happening anyway;
* a loop whose thread has stopped is never handed out again: the next call
  starts a new one;
* after ``os.fork()`` the child starts its own loop (the parent's thread does
  not exist in the child, so waiting on its loop would hang forever).
"""

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
    """Return the shared background loop, starting its thread when none is running."""
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

    Raises ``TimeoutError`` after ``timeout`` seconds; the coroutine is then
    cancelled, as it is on any other exit (``KeyboardInterrupt`` included).
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
    """``value``; or, if it is awaitable (an async rule's, handler's or user function's
    result on the sync path), what it gives once run on the background loop."""
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
    """After fork: the parent's loop thread does not exist here; start afresh on demand."""
    global _lock, _loop, _thread
    _lock = threading.Lock()
    _loop = _thread = None


atexit.register(_shutdown)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_child)
