"""One background event loop per process, for running async code from sync callers.

``run_sync(coro)`` works from plain scripts, from many threads at once, and
from sync code that is itself running inside an event loop's thread (where
``asyncio.run`` fails with "event loop is already running"). It never creates
a loop per call: every call shares one daemon thread's loop.
"""

from __future__ import annotations

import atexit
import threading
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    import asyncio

T = TypeVar("T")

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_thread: threading.Thread | None = None


def background_loop() -> asyncio.AbstractEventLoop:
    """Return the shared background loop, starting its thread on first use."""
    global _loop, _thread
    import asyncio  # here, not at import: sync-only users never pay for asyncio

    loop = _loop
    if loop is not None and not loop.is_closed():
        return loop
    with _lock:
        if _loop is None or _loop.is_closed():
            new_loop = asyncio.new_event_loop()
            ready = threading.Event()

            def run() -> None:
                asyncio.set_event_loop(new_loop)
                new_loop.call_soon(ready.set)
                new_loop.run_forever()

            thread = threading.Thread(target=run, name="broadcasting-loop", daemon=True)
            thread.start()
            ready.wait()
            _loop, _thread = new_loop, thread
        return _loop


def run_sync(coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
    """Run ``coro`` on the background loop and wait for its result in this thread."""
    import asyncio

    loop = background_loop()
    if threading.current_thread() is _thread:
        coro.close()
        raise RuntimeError("run_sync() cannot be called from the broadcasting loop thread")
    return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout)


def _shutdown() -> None:
    loop, thread = _loop, _thread
    if loop is None or thread is None or loop.is_closed():
        return
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=2)


atexit.register(_shutdown)
